"""Rate limits, concurrency limits and monthly token quotas.

``create_limiter(settings)`` picks the backend: Redis when ``redis_url`` is set (shared by every
replica), otherwise in-memory (one process).
"""

from __future__ import annotations

from server.config import Settings
from server.limiter.base import (
    Admission,
    Concurrency,
    Entry,
    Limiter,
    LimiterUnavailable,
    QuotaAsk,
    QuotaCheck,
    Reservation,
    Slot,
    Window,
    WindowCount,
)
from server.limiter.memory import MemoryLimiter


def create_limiter(settings: Settings) -> Limiter:
    if settings.redis_url:
        from server.limiter.redis_backend import RedisLimiter

        return RedisLimiter(settings.redis_url)
    return MemoryLimiter()


__all__ = [
    "Admission",
    "Concurrency",
    "Entry",
    "Limiter",
    "LimiterUnavailable",
    "MemoryLimiter",
    "QuotaAsk",
    "QuotaCheck",
    "Reservation",
    "Slot",
    "Window",
    "WindowCount",
    "create_limiter",
]
