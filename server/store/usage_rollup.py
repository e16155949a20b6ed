"""Daily usage roll-ups, maintained in the transaction that writes the ledger entries.

Each write transaction aggregates its ledger entries by (account, UTC day, model) and adds the sums
to ``usage_daily`` with one upsert (``INSERT ... ON CONFLICT DO UPDATE``, on SQLite and PostgreSQL).
Keys are upserted in sorted order so concurrent replicas lock rows in the same order (no deadlock).
"""

from __future__ import annotations

from datetime import UTC, date
from typing import Any

from sqlalchemy import Table

from server.store.models import LedgerEntry, UsageDaily
from server.store.upsert import upsert_adding, upsert_adding_sql
from server.store.writer import RawColumn, WriteTransaction, bound_columns, raw_sqlite_executemany

_KEYS = ["account_id", "day", "model"]
_SUMS = ("requests", "prompt_tokens", "completion_tokens", "cost_units", "cached_requests")
_TABLE: Table = UsageDaily.__table__  # type: ignore[assignment]
_UPSERTS: dict[str, Any] = {}


def daily_totals(entries: list[LedgerEntry]) -> list[dict[str, Any]]:
    """The ``usage_daily`` increments for ``entries``, sorted by key."""
    totals: dict[tuple[str, date, str], list[int]] = {}
    for e in entries:
        key = (e.account_id, e.created_at.astimezone(UTC).date(), e.model)
        acc = totals.setdefault(key, [0, 0, 0, 0, 0])
        acc[0] += int(e.counts_as_request if e.counts_as_request is not None else 1)
        acc[1] += e.prompt_tokens
        acc[2] += e.completion_tokens
        acc[3] += e.cost_units
        acc[4] += int(e.__dict__.get("cached") or 0)  # rows from new_row() may leave it out
    return [
        {"account_id": a, "day": d, "model": m, **dict(zip(_SUMS, sums, strict=True))}
        for (a, d, m), sums in sorted(totals.items())
    ]


_SQLITE: list[tuple[str, list[RawColumn]]] = []  # the upsert for sqlite3, made on first use


def roll_up_usage(tx: WriteTransaction, rows: list[Any]) -> None:
    """RecordWriter hook: add this transaction's ledger entries to ``usage_daily``."""
    entries = [r for r in rows if isinstance(r, LedgerEntry)]
    if not entries:
        return
    increments = daily_totals(entries)
    dialect = tx.dialect_name
    if dialect == "sqlite":  # the sqlite3 connection itself: Core's executemany costs more than the upsert
        if not _SQLITE:
            columns = [*_KEYS, *_SUMS]
            sql = upsert_adding_sql(_TABLE, _KEYS, _SUMS, ["?"] * len(columns))
            _SQLITE.append((sql, bound_columns(_TABLE, columns, tx.connection.dialect)))
        raw_sqlite_executemany(tx, *_SQLITE[0], increments)
        return
    stmt = _UPSERTS.get(dialect)
    if stmt is None:
        stmt = _UPSERTS[dialect] = upsert_adding(dialect, _TABLE, _KEYS, _SUMS)
    tx.execute(stmt, increments)
