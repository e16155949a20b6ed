"""Group commit: rows from many concurrent requests go to the database in one transaction.

A request hands its rows to :meth:`RecordWriter.write` and waits for the commit that carries them,
so a record is durable and readable (``GET /v1/process/{id}``) as soon as the response is sent,
yet under load one commit serves many requests instead of one commit each.

Hooks (:meth:`RecordWriter.add_hook`) run inside that transaction and see every row of it: the
usage roll-up and the webhook outbox are written atomically with the records they derive from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

log = logging.getLogger("plutos.store.writer")

WriteHook = Callable[[AsyncSession, list[Any]], Awaitable[None]]


class RecordWriter:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_batch: int = 512) -> None:
        self._sessions = sessions
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[tuple[Any, ...], asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._hooks: list[WriteHook] = []
        self._listeners: list[Callable[[], None]] = []

    def add_hook(self, hook: WriteHook) -> None:
        """Run ``hook(session, rows)`` in every write transaction, in the order added."""
        self._hooks.append(hook)

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every successful commit."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="record-writer")

    async def write(self, *rows: Any) -> None:
        """Persist ``rows`` together; returns once they are committed."""
        await asyncio.shield(self.submit(*rows))

    def submit(self, *rows: Any) -> asyncio.Future[None]:
        """Queue ``rows`` without waiting (used where the caller is already gone)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((rows, future))
        return future

    async def close(self) -> None:
        """Flush everything queued, then stop."""
        if self._task is None:
            return
        while not self._queue.empty():
            await asyncio.sleep(0.01)
            if self._task.done():
                break
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit([row for rows, _ in batch for row in rows])
            except Exception:
                if len(batch) == 1:
                    log.exception("writing %d rows failed", len(batch[0][0]))
                    _settle(batch, error=True)
                    continue
                # One bad group must not sink the others: retry each on its own.
                for item in batch:
                    try:
                        await self._commit(list(item[0]))
                        _settle([item])
                    except Exception:
                        log.exception("writing %d rows failed", len(item[0]))
                        _settle([item], error=True)
                continue
            _settle(batch)

    async def _commit(self, rows: list[Any]) -> None:
        async with self._sessions.begin() as session:
            session.add_all(rows)
            for hook in self._hooks:
                await hook(session, rows)
        for listener in self._listeners:
            listener()


def _settle(batch: list[tuple[tuple[Any, ...], asyncio.Future[None]]], error: bool = False) -> None:
    for _, future in batch:
        if not future.done():
            if error:
                future.set_exception(RuntimeError("database write failed"))
            else:
                future.set_result(None)
