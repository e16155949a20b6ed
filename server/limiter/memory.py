"""The in-memory limiter: one process, the default.

Every check-and-count runs without awaiting between the check and the count, so on one event
loop it is atomic by construction. It does not share counts with other processes: run several
replicas (or ``serve --workers N``) with the Redis limiter instead.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from server.limiter.base import (
    Admission,
    Concurrency,
    Limiter,
    QuotaCheck,
    Reservation,
    SeedTokens,
    Slot,
    Window,
    WindowCount,
    month_of,
)


@dataclass(slots=True)
class _Month:
    used: int
    reservations: dict[str, int] = field(default_factory=dict)
    reserved: int = 0  # the sum of ``reservations``, kept as they come and go


_NEVER = (-1, 0)  # a window never counted: no period, no requests


class MemoryLimiter(Limiter):
    name = "memory"

    def __init__(self) -> None:
        # window subject+length -> (window start, count); one entry per subject, reset lazily.
        self._windows: dict[tuple[str, int], tuple[int, int]] = {}
        self._slots: dict[str, set[str]] = {}
        # (account, YYYY-MM) -> month counter; seeded from the ledger on first use.
        self._months: dict[tuple[str, str], _Month] = {}
        self._seeding: dict[tuple[str, str], asyncio.Future[None]] = {}
        self._ids = itertools.count(1)

    async def acquire(
        self, windows: Sequence[Window], concurrency: Sequence[Concurrency], *, now: float | None = None
    ) -> Admission:
        now = self.now(now)
        table = self._windows
        # Per window: its key, the start of its current period and the count in it so far.
        seen: list[tuple[tuple[str, int], int, int]] = []
        allowed = True
        for w in windows:
            key = (w.subject, w.seconds)
            start = w.start(now)
            period, count = table.get(key, _NEVER)
            if period != start:
                count = 0
            if count >= w.limit:
                allowed = False
            seen.append((key, start, count))
        slots = self._slots
        in_flight = [len(slots.get(c.subject, ())) for c in concurrency]
        if allowed:
            for c, n in zip(concurrency, in_flight, strict=True):
                if n >= c.limit:
                    allowed = False
        slot = None
        if allowed:
            seen = [(key, start, count + 1) for key, start, count in seen]
            for key, start, count in seen:
                table[key] = (start, count)
            if concurrency:
                # Slot ids only have to be unique within this process.
                slot = Slot(f"s{next(self._ids)}", tuple(c.subject for c in concurrency))
                for i, c in enumerate(concurrency):
                    held = slots.get(c.subject)
                    if held is None:
                        held = slots[c.subject] = set()
                    held.add(slot.id)
                    in_flight[i] += 1
        return Admission(
            allowed=allowed,
            windows=tuple(
                WindowCount(w, count, start + w.seconds) for w, (_, start, count) in zip(windows, seen, strict=True)
            ),
            in_flight=tuple(zip(concurrency, in_flight, strict=True)),
            slot=slot,
            now=now,
        )

    async def release(self, slot: Slot) -> None:
        self.release_now(slot)

    def release_now(self, slot: Slot) -> bool:
        for subject in slot.subjects:
            held = self._slots.get(subject)
            if held is not None:
                held.discard(slot.id)
                if not held:
                    del self._slots[subject]
        return True

    async def reserve_tokens(
        self, account_id: str, amount: int, quota: int, seed: SeedTokens, *, now: float | None = None
    ) -> QuotaCheck:
        period, start, _ = month_of(self.now(now))
        month = self._months.get((account_id, period))
        if month is None:
            month = await self._month(account_id, period, start, seed)
        used, reserved = month.used, month.reserved
        if amount > 0 and used + reserved >= quota:
            return QuotaCheck(False, used, reserved, quota, None)
        reservation = Reservation(f"r{next(self._ids)}", account_id, period, amount)
        month.reservations[reservation.id] = amount
        month.reserved += amount
        return QuotaCheck(True, used, reserved + amount, quota, reservation)

    async def settle_tokens(self, reservation: Reservation, used: int) -> None:
        self._settle(reservation, used)

    def _settle(self, reservation: Reservation, used: int) -> None:
        month = self._months.get((reservation.account_id, reservation.period))
        if month is not None:
            amount = month.reservations.pop(reservation.id, None)
            if amount is not None:
                month.reserved -= amount
                month.used += used

    async def finish(self, slot: Slot | None, reservation: Reservation | None, used: int) -> None:
        self.finish_now(slot, reservation, used)

    def finish_now(self, slot: Slot | None, reservation: Reservation | None, used: int) -> bool:
        if reservation is not None:
            self._settle(reservation, used)
        if slot is not None:
            self.release_now(slot)
        return True

    async def in_flight(self, subject: str) -> int:
        return len(self._slots.get(subject, ()))

    async def tokens(self, account_id: str, *, now: float | None = None) -> tuple[int, int] | None:
        month = self._months.get((account_id, month_of(self.now(now))[0]))
        return None if month is None else (month.used, month.reserved)

    async def _month(self, account_id: str, period: str, start: datetime, seed: SeedTokens) -> _Month:
        key = (account_id, period)
        while (month := self._months.get(key)) is None:
            pending = self._seeding.get(key)
            if pending is not None:  # another call is reading the ledger: wait, then look again
                await asyncio.wait({pending})
                continue
            done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._seeding[key] = done
            try:
                used = await seed(account_id, start)
                self._months.setdefault(key, _Month(used))
            finally:  # on failure the next caller seeds again
                del self._seeding[key]
                done.set_result(None)
        return month
