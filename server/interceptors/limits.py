"""Rate limits, key scopes and the monthly token quota, for every plutos.v1 RPC: one interceptor,
after authentication (one layer rather than three: each grpc-interceptor layer costs tens of µs
per call).

In order, for each call:

1. **Rate limits.** The call is admitted against the per-minute, per-hour and per-day windows and,
   for calls that run a model, the concurrency limit. The ``x-ratelimit-*`` figures go into the
   call's response metadata, which is sent on every outcome; they describe the **per-minute
   window** (the tightest one when a key has its own limit). Refused: ``rate_limit_exceeded``
   with ``retry-after``.
2. **Scope.** A key without the RPC's scope gets ``permission_denied`` (counted, with figures).
3. **Quota.** A generating call reserves its worst-case tokens in the account's monthly quota
   (``insufficient_quota`` once the quota is used up or reserved by calls in flight) and settles
   with the tokens really used
   (``CallState.tokens_used``, which :class:`~server.services.generation.Generation` adds to when
   it bills a ledger row).

Whatever ends a call — success, error, validation failure, deadline, cancellation, a client that
disconnects mid-stream, a server exception — the slot is released and the reservation settled
exactly once: in ``finally`` for unary calls; for streams in the ``finally`` of a wrapping async
generator (after closing the handler's generator, so its usage is billed first) and, as a safety
net, from the RPC's done callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from core.errors import PlutosError
from server.call_state import Caller, CallState, current_call
from server.config import Settings
from server.interceptors.base import Handler, call_next, is_api_method, is_stream
from server.limiter.base import (
    Admission,
    Concurrency,
    Limiter,
    LimiterUnavailable,
    QuotaAsk,
    QuotaCheck,
    Reservation,
    SeedTokens,
    Slot,
    Window,
    WindowCount,
    month_of,
)
from server.limiter.policy import GENERATING, generating_concurrency, token_reservation, windows_for
from server.observability.metrics import CONCURRENCY_SLOTS, LIMITER_DECISIONS, LIMITER_ERRORS, QUOTA_RESERVATIONS
from server.permissions import has_scope, require_scope

log = logging.getLogger("plutos.limits")

DECISIONS = {
    outcome: LIMITER_DECISIONS.labels(outcome)
    for outcome in ("allowed", "minute", "hour", "day", "concurrent", "quota", "unavailable")
}


class Finisher:
    """Runs an async clean-up exactly once, in its own task so a second cancellation of the
    call cannot interrupt it half-way."""

    __slots__ = ("_cleanup", "_task")

    def __init__(self, cleanup: Callable[[], Awaitable[None]]) -> None:
        self._cleanup = cleanup
        self._task: asyncio.Future[None] | None = None

    def start(self) -> asyncio.Future[None]:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())
        return self._task

    async def _run(self) -> None:
        try:
            await self._cleanup()
        except Exception:
            log.exception("limit clean-up failed")


async def finish_all(*finishers: Finisher | None) -> None:
    """Start every clean-up, then wait for all of them (shielded from a second cancellation)."""
    tasks = [f.start() for f in finishers if f is not None]
    if tasks:
        await asyncio.shield(asyncio.gather(*tasks))


class _GuardedStream:
    """Wraps a server stream so its slot is released and its reservation settled when it ends,
    however it ends — both in one :meth:`Limiter.finish` when they end together."""

    __slots__ = ("limiter", "pending", "released", "reservation", "response", "settled", "slot", "started", "state")

    def __init__(
        self, response: Any, limiter: Limiter, slot: Slot | None, reservation: Reservation | None, state: CallState
    ) -> None:
        self.response = response
        self.limiter = limiter
        self.slot = slot
        self.reservation = reservation
        self.state = state
        self.started = False
        self.released = slot is None
        self.settled = reservation is None
        self.pending: list[asyncio.Future[None]] = []

    async def iterate(self) -> AsyncIterator[Any]:
        self.started = True
        try:
            async for message in self.response:
                yield message
        finally:
            # Close the handler first: its own clean-up bills the tokens the call used.
            aclose = getattr(self.response, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:
                    log.exception("closing a stream handler failed")
            self.end(settle=True)
            if self.pending:
                await asyncio.shield(asyncio.gather(*self.pending))

    def end(self, *, settle: bool) -> None:
        """Release the slot and, if ``settle``, settle the reservation with the tokens the call has
        used so far: each once, together in one :meth:`Limiter.finish` when both are due."""
        slot = None if self.released else self.slot
        reservation = None if self.settled or not settle else self.reservation
        if slot is None and reservation is None:
            return
        if slot is not None:
            self.released = True
            CONCURRENCY_SLOTS.dec()
        if reservation is not None:
            self.settled = True
            QUOTA_RESERVATIONS.dec()
        used = self.state.tokens_used
        limiter = self.limiter
        if not limiter.finish_now(slot, reservation, used):
            waiter = limiter.finish_soon(slot, reservation, used)
            if waiter is None:
                waiter = Finisher(partial(limiter.finish, slot, reservation, used)).start()
            self.pending.append(waiter)

    def on_rpc_done(self, _: Any) -> None:
        """The RPC is over for gRPC: free the slot now (the client is gone), but settle only if
        the handler never ran — otherwise its generator's ``finally`` bills, then settles."""
        with contextlib.suppress(RuntimeError):  # no running loop: the server is shutting down
            self.end(settle=not self.started)


# -- headers ------------------------------------------------------------------------------------


def headline_window(windows: tuple[WindowCount, ...]) -> WindowCount | None:
    """The window the X-RateLimit-* headers describe: the per-minute one (the tightest, when a
    key has its own), or the tightest of the others when the plan has no per-minute limit."""
    pool = [w for w in windows if w.window.name == "minute"] or list(windows)
    if not pool:
        return None
    return min(pool, key=lambda w: (w.remaining, w.window.limit))


def rate_limit_headers(admission: Admission) -> dict[str, str]:
    shown = headline_window(admission.windows)
    if shown is None:
        return {}
    return {
        "x-ratelimit-limit": str(shown.window.limit),
        "x-ratelimit-remaining": str(shown.remaining),
        "x-ratelimit-reset": str(shown.reset),
    }


def _seconds(n: int) -> str:
    return f"{n} second" if n == 1 else f"{n} seconds"


def rate_limited(admission: Admission) -> PlutosError:
    retry_after = admission.retry_after()
    refused = admission.refused_windows()
    if refused:
        binding = max(refused, key=lambda w: w.reset)
        return PlutosError(
            "rate_limit_exceeded",
            f"Rate limit exceeded. Try again in {_seconds(retry_after)}.",
            {"limit": binding.window.limit, "window": binding.window.name},
            retry_after=retry_after,
        )
    limit = min(c.limit for c in admission.refused_concurrency())
    return PlutosError(
        "rate_limit_exceeded",
        f"Too many concurrent requests (at most {limit} at a time). Try again in {_seconds(retry_after)}.",
        {"limit": limit, "window": "concurrent"},
        retry_after=retry_after,
    )


def limiter_unavailable() -> PlutosError:
    return PlutosError(
        "service_unavailable", "Rate limiting is temporarily unavailable. Try again shortly.", retry_after=1
    )


def _unavailable_headers(state: CallState, windows: list[Window], now: float) -> None:
    minute = [w for w in windows if w.name == "minute"] or windows
    if minute:
        w = min(minute, key=lambda w: w.limit)
        state.response_metadata.update(
            {
                "x-ratelimit-limit": str(w.limit),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(w.start(now) + w.seconds),
            }
        )
    state.response_metadata["retry-after"] = "1"


# -- quota --------------------------------------------------------------------------------------


def insufficient_quota(check: QuotaCheck, amount: int, now: float) -> PlutosError:
    committed = check.used + check.reserved
    _, _, end = month_of(now)
    in_flight = " (partly reserved by calls in progress)" if check.reserved else ""
    return PlutosError(
        "insufficient_quota",
        f"Monthly token quota of {check.quota} tokens is used up{in_flight}; it renews on {end.date().isoformat()}. "
        "Upgrade your plan for more.",
        {"quota": check.quota, "used": committed, "requested": amount},
    )


class LimitsInterceptor(AsyncServerInterceptor):
    def __init__(self, limiter: Limiter, settings: Settings, seed: SeedTokens, *, fail_open: bool = False) -> None:
        self._limiter = limiter
        self._settings = settings
        self._seed = seed
        self._fail_open = fail_open
        # id(caller) -> (caller, its windows, its concurrency limits for generating calls). Callers
        # come from the authenticator's cache, so the same object returns until its entry expires.
        self._rules: dict[int, tuple[Caller, list[Window], list[Concurrency]]] = {}

    def _rules_for(self, who: Caller) -> tuple[list[Window], list[Concurrency]]:
        entry = self._rules.get(id(who))
        if entry is None or entry[0] is not who:
            if len(self._rules) >= 4096:
                self._rules.clear()
            entry = self._rules[id(who)] = (who, windows_for(who), generating_concurrency(who))
        return entry[1], entry[2]

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        state = current_call.get(None) if is_api_method(method_name) else None
        who = state.caller if state is not None else None
        if state is None or who is None:
            return await call_next(method, request, context)
        slot, reservation = await self._admit(state, who, method_name, request)
        if slot is None and reservation is None:
            return await call_next(method, request, context)
        try:
            response = method(request, context)
        except BaseException:
            await self._finish(slot, reservation, state)
            raise
        if is_stream(response):
            stream = _GuardedStream(response, self._limiter, slot, reservation, state)
            context.add_done_callback(stream.on_rpc_done)
            return stream.iterate()
        try:
            return await response
        finally:
            await self._finish(slot, reservation, state)

    async def _finish(self, slot: Slot | None, reservation: Reservation | None, state: CallState) -> None:
        """The call is over: settle its reservation with the tokens it used, free its slot.

        A limiter without I/O (in memory) does both at once, so nothing can interrupt them; Redis
        sends them at once (one round trip) and the call waits for the answer; failing that, they
        run in a task of their own, shielded from a second cancellation."""
        if reservation is not None:
            QUOTA_RESERVATIONS.dec()
        if slot is not None:
            CONCURRENCY_SLOTS.dec()
        limiter = self._limiter
        used = state.tokens_used
        if limiter.finish_now(slot, reservation, used):
            return
        waiter = limiter.finish_soon(slot, reservation, used)
        if waiter is not None:
            await waiter  # cancelled, the finish still runs: it is sent already
        else:
            await finish_all(Finisher(partial(limiter.finish, slot, reservation, used)))

    async def _admit(
        self, state: CallState, who: Caller, method_name: str, request: Any
    ) -> tuple[Slot | None, Reservation | None]:
        """Count the call in its windows, take a slot and reserve its worst case in the monthly
        quota — one :meth:`Limiter.admit` — or raise, in this order, ``rate_limit_exceeded``,
        ``permission_denied`` (a key without the RPC's scope: counted in the windows) or
        ``insufficient_quota``."""
        windows, concurrency = self._rules_for(who)
        generating = method_name in GENERATING
        scoped = has_scope(who, method_name)
        quota = who.plan.monthly_tokens
        ask = None
        if generating and scoped and quota > 0:
            ask = QuotaAsk(who.account_id, token_reservation(self._settings, method_name, request), quota, self._seed)
        try:
            entry = await self._limiter.admit(windows, concurrency if generating else (), ask)
        except LimiterUnavailable:
            LIMITER_ERRORS.inc()
            DECISIONS["unavailable"].inc()
            if self._fail_open:  # served uncounted: no figures to show
                require_scope(who, method_name)
                return None, None
            _unavailable_headers(state, windows, self._limiter.now())
            raise limiter_unavailable() from None
        admission = entry.admission
        state.response_metadata.update(rate_limit_headers(admission))
        if not admission.allowed:
            err = rate_limited(admission)
            DECISIONS.get(str(err.details.get("window")), DECISIONS["minute"]).inc()
            state.response_metadata["retry-after"] = str(err.retry_after)
            raise err
        DECISIONS["allowed"].inc()
        slot = admission.slot
        if slot is not None:
            CONCURRENCY_SLOTS.inc()
        if not scoped:
            await self._finish(slot, None, state)
            require_scope(who, method_name)
        check = entry.quota
        if check is None:
            return slot, None
        if check.reservation is None:  # refused: the limiter holds no slot for it
            DECISIONS["quota"].inc()
            raise insufficient_quota(check, ask.amount if ask is not None else 0, self._limiter.now())
        QUOTA_RESERVATIONS.inc()
        return slot, check.reservation
