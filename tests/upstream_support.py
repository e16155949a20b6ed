"""For the tests that put an ``openai-compatible`` upstream behind the gateway: catalogue entries,
unique inputs, and the record and ledger row a call left."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select

from gateway.app import RunningPlatform
from server.config import ModelSpec, _parse_model
from server.store.models import LedgerEntry, ProcessRecord

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


def unique(text: str = "Hi there") -> str:
    """An input no other test sends, so the fault injector's log and the store can be searched by it."""
    return f"{text} [{uuid.uuid4().hex[:8]}]"


async def record_and_ledger(up: RunningPlatform, text: str) -> tuple[ProcessRecord, LedgerEntry | None]:
    """The stored record for the one call sent with ``text`` and its ledger row (polls for up to
    ~10 s while the background writer stores them; AssertionError if it never does)."""
    for _ in range(200):
        async with up.runtime.sessions() as session:
            record = (
                await session.execute(select(ProcessRecord).where(ProcessRecord.input == text))
            ).scalar_one_or_none()
            if record is not None:
                ledger = (
                    await session.execute(select(LedgerEntry).where(LedgerEntry.record_id == record.id))
                ).scalar_one_or_none()
                return record, ledger
        await asyncio.sleep(0.05)
    raise AssertionError(f"no record for input {text!r}")
