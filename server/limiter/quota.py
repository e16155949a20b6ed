"""Monthly token usage as the ledger records it: the seed for a limiter's quota counter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.limiter.base import SeedTokens
from server.store.models import LedgerEntry


def ledger_seed(sessions: async_sessionmaker[AsyncSession]) -> SeedTokens:
    """Tokens (prompt + completion) the account used since ``start``, from ``usage_ledger``."""

    async def month_tokens(account_id: str, start: datetime) -> int:
        query = select(func.coalesce(func.sum(LedgerEntry.prompt_tokens + LedgerEntry.completion_tokens), 0)).where(
            LedgerEntry.account_id == account_id, LedgerEntry.created_at >= start
        )
        async with sessions() as session:
            return int((await session.execute(query)).scalar_one())

    return month_tokens
