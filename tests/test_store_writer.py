"""The group-commit writer's own SQLite path (sqlite3 ``executemany`` replaced by multi-row
``INSERT``s with SQLAlchemy's bind processors) stores exactly what SQLAlchemy Core stores."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, insert

from server.store.database import create_engine as create_async_engine
from server.store.database import json_text, session_factory
from server.store.migrate import upgrade
from server.store.models import LedgerEntry, ProcessRecord, new_row
from server.store.upsert import upsert_adding
from server.store.usage_rollup import _KEYS, _SUMS, _TABLE, daily_totals, roll_up_usage
from server.store.writer import CHECKPOINT_EVERY, RecordWriter, _groups, _multi_row

pytestmark = pytest.mark.sqlite_only


def _rows(n: int) -> list[Any]:
    start = datetime(2025, 3, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    rows: list[Any] = []
    for i in range(n):
        at = start + timedelta(microseconds=37 * i)
        rows.append(
            new_row(
                ProcessRecord,
                id=f"proc_{i:06d}",
                account_id=f"acct_{i % 3}",
                key_id="key_1",
                kind="batch" if i % 2 else "process",
                batch_id=None,
                batch_index=i if i % 2 else None,
                model="m" if i % 5 else "other",
                input="héllo \u2603 \x00 'quoted' " * (i % 4),
                options={"temperature": 0.1 * (i % 7), "stop": ["\n"]} if i % 3 else {"maxTokens": i},
                output="" if i % 11 == 0 else f"answer {i}",
                prompt_tokens=i,
                completion_tokens=2 * i,
                status="failed" if i % 13 == 0 else "completed",
                error_code="upstream_error" if i % 13 == 0 else None,
                created_at=at,
                processing_time_ms=i % 1000,
            )
        )
        rows.append(
            new_row(
                LedgerEntry,
                account_id=f"acct_{i % 3}",
                key_id="key_1",
                record_id=f"proc_{i:06d}",
                model="m" if i % 5 else "other",
                prompt_tokens=i,
                completion_tokens=2 * i,
                cost_units=12_345 * i,
                counts_as_request=i % 2,
                created_at=at,
            )
        )
    return rows


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(path) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2, 3").fetchall()
            for table in ("process_records", "usage_ledger", "usage_daily")
        }


async def _migrated(path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade(engine)
    await engine.dispose()


def test_multi_row_statement_keeps_the_tail() -> None:
    sql = "INSERT INTO t (a, b) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET b = t.b + excluded.b"
    assert _multi_row(sql, 1) == sql
    assert _multi_row(sql, 3) == (
        "INSERT INTO t (a, b) VALUES (?, ?), (?, ?), (?, ?) ON CONFLICT (a) DO UPDATE SET b = t.b + excluded.b"
    )


async def test_the_writer_stores_what_core_stores(tmp_path: Path) -> None:
    # 1,200 calls: the records span several statements (at most 500 rows each).
    ours, core = tmp_path / "ours.db", tmp_path / "core.db"
    await _migrated(ours)
    await _migrated(core)

    engine = create_async_engine(f"sqlite+aiosqlite:///{ours}")
    writer = RecordWriter(session_factory(engine))
    writer.add_hook(roll_up_usage)
    writer.start()
    rows = _rows(1200)
    # Several concurrent writes, so commits carry many calls' rows at once.
    await asyncio.gather(*(writer.write(*rows[i : i + 200]) for i in range(0, len(rows), 200)))
    await writer.close()
    await engine.dispose()

    sync = create_engine(f"sqlite:///{core}", json_serializer=json_text)  # the store's JSON spelling
    with sync.begin() as conn:
        for table, given, objects in _groups(_rows(1200)):
            conn.execute(insert(table), [{k: d[k] for k in given} for d in objects])
        # The roll-up through Core as well, from the same rows.
        entries = [r for r in _rows(1200) if isinstance(r, LedgerEntry)]
        conn.execute(upsert_adding("sqlite", _TABLE, _KEYS, _SUMS), daily_totals(entries))
    sync.dispose()

    mine, theirs = _dump(ours), _dump(core)
    assert len(mine["process_records"]) == 1200 and len(mine["usage_ledger"]) == 1200
    assert mine == theirs


async def _writer(path: Path) -> tuple[RecordWriter, Any]:
    await _migrated(path)
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    writer = RecordWriter(session_factory(engine))
    writer.start()
    return writer, engine


async def test_a_lone_call_commits_on_the_loop_others_on_the_writer_thread(tmp_path: Path) -> None:
    writer, engine = await _writer(tmp_path / "w.db")
    threads: list[int] = []
    writer.add_hook(lambda tx, rows: threads.append(threading.get_ident()))
    rows = _rows(3)
    with writer.expect():  # the only call in progress: nothing else needs the loop meanwhile
        await writer.write(*rows[0:2])
    with writer.expect(), writer.expect():  # another call is still running: the thread commits
        await writer.write(*rows[2:4])
    await writer.write(*rows[4:6])  # not announced (a hook's own write): as a lone call
    await writer.close()
    await engine.dispose()
    loop_thread = threading.get_ident()
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
    assert threads[2] == loop_thread
    assert len(_dump(tmp_path / "w.db")["process_records"]) == 3


async def test_the_writer_checkpoints_the_wal_itself(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, engine = await _writer(path)
    rows = _rows(CHECKPOINT_EVERY + 1)
    for i in range(0, len(rows), 2):
        with writer.expect():
            await writer.write(*rows[i : i + 2])
    await writer.write()  # the checkpoint runs after the commit that reaches CHECKPOINT_EVERY
    # The database file alone (without its -wal file) holds what was checkpointed.
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    with sqlite3.connect(copy) as conn:
        checkpointed = conn.execute("SELECT count(*) FROM process_records").fetchone()[0]
    await writer.close()
    await engine.dispose()
    assert checkpointed >= CHECKPOINT_EVERY - 1


# -- a bad day: locks held elsewhere, rows the store refuses (issue 16 item 1, issue 15 item 6) --


def _call(i: int, **record: Any) -> list[Any]:
    """One call's rows (record + ledger entry), the record's columns overridden by ``record``."""
    rows = _rows(i + 1)[2 * i : 2 * i + 2]
    rows[0].__dict__.update(record)
    return rows


def _hold_write_lock(path: Path, release: threading.Event, held: threading.Event) -> threading.Thread:
    """An outside connection (another process would do the same) holding SQLite's write lock
    until ``release`` is set."""

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(30)
        conn.rollback()
        conn.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


async def test_a_lock_held_elsewhere_never_blocks_the_loop_and_the_write_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, engine = await _writer(path)
    release, held = threading.Event(), threading.Event()
    holder = _hold_write_lock(path, release, held)
    await asyncio.to_thread(held.wait, 10)
    with writer.expect():  # a lone call: it would commit on the loop if the lock were free
        pending = asyncio.ensure_future(writer.write(*_call(0)))
        # The loop keeps running while the lock is held: other clients are served meanwhile.
        ticks = 0
        for _ in range(5):
            await asyncio.sleep(0.02)
            ticks += 1
        assert not pending.done()
        release.set()  # run by this loop: had the commit blocked the loop, this would never run in time
        assert await pending == ()
    holder.join(5)
    await writer.close()
    await engine.dispose()
    assert ticks == 5
    assert len(_dump(path)["process_records"]) == 1


async def test_a_lock_held_past_the_retry_budget_is_a_503_not_a_500(tmp_path: Path) -> None:
    from core.errors import PlutosError

    path = tmp_path / "w.db"
    writer, engine = await _writer(path)
    writer.retry_budget, writer.lock_wait = 0.3, 0.1
    release, held = threading.Event(), threading.Event()
    holder = _hold_write_lock(path, release, held)
    await asyncio.to_thread(held.wait, 10)
    with pytest.raises(PlutosError) as raised:
        await writer.write(*_call(0))
    release.set()
    holder.join(5)
    assert raised.value.code == "service_unavailable" and raised.value.retry_after == 1
    assert "locked" not in raised.value.message
    # The store is back: the next write goes through.
    assert await writer.write(*_call(1)) == ()
    await writer.close()
    await engine.dispose()
    assert [r[0] for r in _dump(path)["process_records"]] == ["proc_000001"]


async def test_a_refused_row_does_not_sink_the_calls_committed_with_it(tmp_path: Path) -> None:
    from server.store.models import salvaged_record

    path = tmp_path / "w.db"
    writer, engine = await _writer(path)
    writer.add_salvage(ProcessRecord, salvaged_record)
    writer.add_hook(roll_up_usage)
    good_a, bad, good_b = _call(0), _call(1, input=None), _call(2)  # input is NOT NULL
    with writer.expect(), writer.expect(), writer.expect():
        results = await asyncio.gather(writer.write(*good_a), writer.write(*bad), writer.write(*good_b))
    await writer.close()
    await engine.dispose()
    assert results[0] == () and results[2] == ()
    assert results[1] == (bad[0],)  # the caller learns its record was refused
    with sqlite3.connect(path) as conn:
        records = conn.execute("SELECT id, status, error_code, input FROM process_records ORDER BY id").fetchall()
        ledger = conn.execute("SELECT record_id FROM usage_ledger ORDER BY record_id").fetchall()
        daily = conn.execute("SELECT sum(prompt_tokens + completion_tokens) FROM usage_daily").fetchone()[0]
    assert records[0][1:3] == (good_a[0].status, good_a[0].error_code) and records[2][1] == good_b[0].status
    assert records[1] == ("proc_000001", "failed", "internal_error", "")  # salvaged: still billed
    assert [r[0] for r in ledger] == ["proc_000000", "proc_000001", "proc_000002"]
    assert daily == sum(3 * i for i in range(3))


async def test_a_row_without_a_salvaged_form_is_left_out_and_its_call_told(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer, engine = await _writer(path)
    bad = _call(0, input=None)  # no salvage registered for records here
    assert await writer.write(*bad) == (bad[0],)
    await writer.close()
    await engine.dispose()
    dump = _dump(path)
    assert dump["process_records"] == [] and len(dump["usage_ledger"]) == 1
