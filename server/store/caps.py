"""Count-based per-account caps that hold under concurrency ("at most N webhooks per account").

Check-then-insert in two concurrent transactions lets both see N-1 rows and both insert. Here the
account's row is locked first — ``SELECT … FOR UPDATE`` on PostgreSQL; on SQLite the write
transaction (``sessions.begin()``, ``BEGIN IMMEDIATE``) already holds the database's one write
lock — so the count and the insert of one transaction happen before the next transaction of the
same account counts. Use inside ``async with sessions.begin() as session``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.store.models import Account


async def lock_account(session: AsyncSession, account_id: str) -> None:
    """Hold ``account_id``'s row until the transaction ends (its caps are counted one at a time)."""
    if session.bind.dialect.name != "sqlite":
        await session.execute(select(Account.id).where(Account.id == account_id).with_for_update())


async def count_under_lock(session: AsyncSession, account_id: str, column: Any) -> int:
    """Lock the account (see :func:`lock_account`), then count its rows: ``column`` is the
    ``account_id`` column of the capped table (e.g. ``Webhook.account_id``)."""
    await lock_account(session, account_id)
    return int((await session.execute(select(func.count()).where(column == account_id))).scalar_one())


async def below_cap(session: AsyncSession, account_id: str, column: Any, cap: int) -> bool:
    """Whether the account may add one more row under ``cap``; the answer holds until the
    transaction ends, so insert in the same transaction."""
    return await count_under_lock(session, account_id, column) < cap
