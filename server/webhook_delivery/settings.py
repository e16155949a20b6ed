"""The ``[webhooks]`` table of the configuration file (its schema: :class:`server.config.WebhooksTable`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.config import Settings, WebhooksTable, validate_tables


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    # Deliver to loopback/private/link-local addresses. Off by default (SSRF); tests turn it on.
    allow_private_urls: bool = False
    # Fractions of the plan's monthly token quota that fire `usage.threshold` (once per month each).
    usage_thresholds: tuple[float, ...] = (0.5, 0.8, 1.0)
    # Seconds to wait before each retry; attempts = 1 + len(retry_schedule). Each wait is scaled by
    # a random factor in [1 - retry_jitter, 1 + retry_jitter].
    retry_schedule: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    retry_jitter: float = 0.2
    # Per attempt: connect + send + response, seconds.
    timeout: float = 10.0
    # How long a claimed delivery stays invisible to other dispatchers (must exceed `timeout`).
    # After a crash, claimed deliveries go out again once their lease ends.
    lease: float = 15.0
    # How often an idle dispatcher looks for due deliveries (new events wake it at once in-process).
    poll_interval: float = 1.0
    # Deliveries sent at once by one process.
    concurrency: int = 16
    # How long an account's webhook list is cached when writing events (seconds). Creating or
    # deleting a webhook refreshes the cache at once in the process that served it.
    cache_ttl: float = 5.0
    max_per_account: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookSettings:
        return cls.from_config(settings.config.webhooks)

    @classmethod
    def from_config(cls, table: WebhooksTable) -> WebhookSettings:
        return cls(**table.model_dump())

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> WebhookSettings:
        """A ``[webhooks]`` table as a dict, validated by :class:`server.config.WebhooksTable`."""
        return cls.from_config(validate_tables({"webhooks": table}).webhooks)
