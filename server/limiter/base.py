"""The limiter contract shared by the in-memory and the Redis backends.

A limiter answers two questions atomically, so concurrent requests (and, with Redis, concurrent
replicas) can never both take the last unit of a limit:

* :meth:`Limiter.acquire` — may this request start? It checks every fixed window (per minute, hour
  and day, aligned to the UTC clock) and every concurrency limit, and only when all of them have
  room does it count the request in each window and take a concurrency slot. A refused request
  counts nowhere.
* :meth:`Limiter.reserve_tokens` — is any of the account's monthly token quota left, counting
  what calls in flight have reserved? If so this call's worst case is reserved too;
  :meth:`Limiter.settle_tokens` later replaces the reservation with the tokens really used.

The hot path asks both questions at once with :meth:`Limiter.admit` and ends a call with
:meth:`Limiter.finish` (settle, then release): one round trip each on a limiter with a store.
Their results are those of the separate calls made in that order (a call the quota refuses holds
no slot, but stays counted in the windows), which the backends' differential tests check.

Backends raise :class:`LimiterUnavailable` when their store cannot be reached; the interceptors
turn that into ``service_unavailable`` (or let the call through when configured to fail open).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

# Sum of the account's ledger for a month, read when a backend has no counter for it yet.
SeedTokens = Callable[[str, datetime], Awaitable[int]]


class LimiterUnavailable(Exception):
    """The limiter's store (Redis) could not answer."""


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` requests per ``seconds`` for ``subject``, in windows aligned to the clock."""

    subject: str
    name: str  # minute | hour | day
    seconds: int
    limit: int

    def start(self, now: float) -> int:
        return int(now // self.seconds) * self.seconds

    def storage_key(self, now: float) -> str:
        return f"{self.subject}:w{self.seconds}:{self.start(now)}"


@dataclass(frozen=True, slots=True)
class Concurrency:
    """At most ``limit`` calls of ``subject`` in flight at once."""

    subject: str
    limit: int


@dataclass(frozen=True, slots=True)
class WindowCount:
    window: Window
    count: int  # requests counted in the current window (this one included when admitted)
    reset: int  # Unix seconds at which the current window ends

    @property
    def remaining(self) -> int:
        return max(0, self.window.limit - self.count)

    @property
    def full(self) -> bool:
        return self.count >= self.window.limit


@dataclass(frozen=True, slots=True)
class Slot:
    """A concurrency slot held by one call; give it back with :meth:`Limiter.release`."""

    id: str
    subjects: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    windows: tuple[WindowCount, ...]
    in_flight: tuple[tuple[Concurrency, int], ...]  # calls in flight per limit (this one included)
    slot: Slot | None
    now: float

    def refused_windows(self) -> list[WindowCount]:
        return [w for w in self.windows if w.full] if not self.allowed else []

    def refused_concurrency(self) -> list[Concurrency]:
        if self.allowed:
            return []
        return [c for c, n in self.in_flight if n >= c.limit]

    def retry_after(self) -> int:
        """Whole seconds until every refusing window has reset (1 for a concurrency refusal)."""
        waits = [w.reset - self.now for w in self.refused_windows()]
        return max(1, math.ceil(max(waits))) if waits else 1


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    account_id: str
    period: str  # YYYY-MM (UTC)
    amount: int


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    allowed: bool
    used: int  # settled tokens this month
    reserved: int  # tokens reserved by calls in flight (this one included when allowed)
    quota: int
    reservation: Reservation | None


@dataclass(frozen=True, slots=True)
class QuotaAsk:
    """What :meth:`Limiter.admit` reserves in a monthly quota (see :meth:`Limiter.reserve_tokens`)."""

    account_id: str
    amount: int  # the call's worst case, tokens
    quota: int  # the plan's monthly tokens (> 0)
    seed: SeedTokens


@dataclass(frozen=True, slots=True)
class Entry:
    """The answer of :meth:`Limiter.admit`.

    ``quota`` is None when no quota was asked for or the rate limits refused the call (then
    nothing was reserved). When the quota refuses, ``admission.slot`` is None: no slot is held."""

    admission: Admission
    quota: QuotaCheck | None


_MONTH_CACHE: list[tuple[float, float, tuple[str, datetime, datetime]]] = []


def month_of(now: float) -> tuple[str, datetime, datetime]:
    """The UTC calendar month containing ``now``: its label, first instant and end (exclusive).

    Every call runs this, so the current month is remembered (one comparison while it lasts)."""
    if _MONTH_CACHE:
        first, end, answer = _MONTH_CACHE[0]
        if first <= now < end:
            return answer
    moment = datetime.fromtimestamp(now, UTC)
    start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stop = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    answer = (start.strftime("%Y-%m"), start, stop)
    _MONTH_CACHE[:] = [(start.timestamp(), stop.timestamp(), answer)]
    return answer


class Limiter(abc.ABC):
    """Counts requests, concurrency slots and monthly tokens. One instance per process."""

    name: str = "limiter"
    # The wall clock the windows and months are read from (Unix seconds). Injected by tests (an
    # instance attribute), so a test of fixed windows need not wait for a fresh wall-clock minute.
    clock: Callable[[], float] = time.time

    def now(self, now: float | None = None) -> float:
        """``now`` if given, else the limiter's clock."""
        return self.clock() if now is None else now

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Begin background work (lease renewal)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop background work and drop connections."""

    @abc.abstractmethod
    async def acquire(
        self, windows: Sequence[Window], concurrency: Sequence[Concurrency], *, now: float | None = None
    ) -> Admission:
        """Admit a request if every window and concurrency limit has room, counting it in all."""

    @abc.abstractmethod
    async def release(self, slot: Slot) -> None:
        """Give a concurrency slot back. Idempotent."""

    def release_now(self, slot: Slot) -> bool:
        """Give the slot back without waiting, if this limiter can (no I/O): True when done.

        The hot path calls this first and only falls back to :meth:`release` (in a task of its
        own, safe from cancellation) when it returns False."""
        return False

    async def admit(
        self,
        windows: Sequence[Window],
        concurrency: Sequence[Concurrency],
        quota: QuotaAsk | None,
        *,
        now: float | None = None,
    ) -> Entry:
        """:meth:`acquire`, then — if admitted and ``quota`` is given — :meth:`reserve_tokens`;
        a slot taken for a call the quota refuses is given back at once (and not counted in
        ``admission.in_flight``).

        Raises :class:`LimiterUnavailable` (then nothing is held) or what ``quota.seed`` raises.
        Backends with a store override it to decide everything in one round trip."""
        admission = await self.acquire(windows, concurrency, now=now)
        if quota is None or not admission.allowed:
            return Entry(admission, None)
        try:
            check = await self.reserve_tokens(
                quota.account_id, quota.amount, quota.quota, quota.seed, now=admission.now
            )
        except BaseException:
            if admission.slot is not None and not self.release_now(admission.slot):
                await asyncio.shield(self.release(admission.slot))
            raise
        if check.reservation is None and admission.slot is not None:
            if not self.release_now(admission.slot):
                await self.release(admission.slot)
            in_flight = tuple((c, n - 1) for c, n in admission.in_flight)
            admission = dataclasses.replace(admission, slot=None, in_flight=in_flight)
        return Entry(admission, check)

    async def finish(self, slot: Slot | None, reservation: Reservation | None, used: int) -> None:
        """The call is over: :meth:`settle_tokens` (``used`` tokens), then :meth:`release`.
        Idempotent; never raises :class:`LimiterUnavailable` (what could not be done now is retried
        in the background or runs out with its lease)."""
        if reservation is not None:
            await self.settle_tokens(reservation, used)
        if slot is not None:
            await self.release(slot)

    def finish_now(self, slot: Slot | None, reservation: Reservation | None, used: int) -> bool:
        """:meth:`finish` without waiting, if this limiter can (no I/O): True when done."""
        return False

    def finish_soon(self, slot: Slot | None, reservation: Reservation | None, used: int) -> asyncio.Future[None] | None:
        """Start :meth:`finish` now, without a task of its own, if this limiter can: a future done
        when it is (cancelling it does not stop the finish). None: call :meth:`finish` instead."""
        return None

    @abc.abstractmethod
    async def reserve_tokens(
        self, account_id: str, amount: int, quota: int, seed: SeedTokens, *, now: float | None = None
    ) -> QuotaCheck:
        """Reserve ``amount`` tokens (the call's worst case) while used + reserved is below ``quota``.

        So calls are admitted until the quota is used up or spoken for by calls in flight, and the
        month's usage can pass the quota by at most one call's reservation, however many run at once."""

    @abc.abstractmethod
    async def settle_tokens(self, reservation: Reservation, used: int) -> None:
        """Replace a reservation by the tokens really used. Idempotent per reservation."""

    @abc.abstractmethod
    async def in_flight(self, subject: str) -> int:
        """Calls of ``subject`` holding a slot now (for tests and operators)."""

    @abc.abstractmethod
    async def tokens(self, account_id: str, *, now: float | None = None) -> tuple[int, int] | None:
        """(used, reserved) tokens of the account this month, or None if not loaded yet."""
