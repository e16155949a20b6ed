"""Catalogue entries for the tests that put an ``openai-compatible`` upstream behind the gateway."""

from __future__ import annotations

from typing import Any

from server.config import ModelSpec, _parse_model

KEY_ENV = "PLUTOS_TEST_UPSTREAM_KEY"
KEY_VALUE = "sk-test-upstream-0123456789"
PRICING = {"input_tokens": 0.01, "output_tokens": 0.03}


def upstream_spec(model_id: str, base_url: str, upstream_model: str, **extra: Any) -> ModelSpec:
    entry: dict[str, Any] = {
        "id": model_id,
        "backend": "openai-compatible",
        "base_url": base_url,
        "upstream_model": upstream_model,
        "api_key_env": KEY_ENV,
        "max_tokens": 2048,
        "pricing": PRICING,
        "retry_backoff": 0.05,
        "timeout": {"connect": 2, "read": 30, "total": 60},
        **extra,
    }
    return _parse_model(entry)
