"""An ``openai-compatible`` catalogue entry's upstream settings, read and checked from its
``[[models]]`` table (docs/upstreams.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from server.config import ModelSpec


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """A catalogue entry's upstream settings (the ``[[models]]`` keys besides the common ones)."""

    base_url: str
    upstream_model: str
    api_key_env: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0  # longest silence between two pieces of the upstream's answer
    total_timeout: float = 600.0  # longest whole call, when the caller sets no earlier deadline
    max_retries: int = 2
    retry_backoff: float = 0.25  # first backoff, doubled each retry, with jitter
    retry_backoff_max: float = 4.0
    max_retry_after: float = 30.0  # a longer Retry-After is passed to the caller instead of waited
    stream: bool = True  # ask the upstream to stream (false: one JSON answer)
    stream_usage: bool = True  # send stream_options.include_usage
    max_connections: int = 1000  # one per stream in flight (HTTP/1.1): docs/scaling.md
    max_tokens_param: str = "max_tokens"  # "max_completion_tokens" for OpenAI's reasoning models
    extra_body: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, spec: ModelSpec) -> UpstreamConfig:
        o = spec.options
        where = f"model {spec.id}"
        if "api_key" in o:
            raise ValueError(
                f"{where}: never put the key in the catalogue; name its environment variable with api_key_env"
            )
        base_url = o.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError(f"{where}: base_url must be an http(s) URL (e.g. https://api.openai.com/v1)")
        timeout = o.get("timeout", {})
        if isinstance(timeout, int | float):
            timeout = {"read": timeout}
        if not isinstance(timeout, dict) or not set(timeout) <= {"connect", "read", "total"}:
            raise ValueError(f"{where}: timeout is seconds, or a table with connect, read, total")
        extra = o.get("extra_body", {})
        if not isinstance(extra, dict):
            raise ValueError(f"{where}: extra_body must be a table")
        defaults = cls(base_url="", upstream_model="")
        config = cls(
            base_url=base_url.rstrip("/"),
            upstream_model=str(o.get("upstream_model", spec.id)),
            api_key_env=o.get("api_key_env"),
            connect_timeout=float(timeout.get("connect", defaults.connect_timeout)),
            read_timeout=float(timeout.get("read", defaults.read_timeout)),
            total_timeout=float(timeout.get("total", defaults.total_timeout)),
            max_retries=int(o.get("max_retries", defaults.max_retries)),
            retry_backoff=float(o.get("retry_backoff", defaults.retry_backoff)),
            retry_backoff_max=float(o.get("retry_backoff_max", defaults.retry_backoff_max)),
            max_retry_after=float(o.get("max_retry_after", defaults.max_retry_after)),
            stream=bool(o.get("stream", spec.supports_streaming)),
            stream_usage=bool(o.get("stream_usage", True)),
            max_connections=int(o.get("max_connections", defaults.max_connections)),
            max_tokens_param=str(o.get("max_tokens_param", "max_tokens")),
            extra_body=dict(extra),
        )
        if min(config.connect_timeout, config.read_timeout, config.total_timeout) <= 0:
            raise ValueError(f"{where}: timeouts must be positive")
        if config.max_retries < 0 or config.max_connections < 1:
            raise ValueError(f"{where}: max_retries must be >= 0 and max_connections >= 1")
        return config

    def api_key(self, model_id: str) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ValueError(f"model {model_id}: environment variable {self.api_key_env} (api_key_env) is not set")
        return key
