"""Rate limits, concurrency limits and the monthly token quota, for every plutos.v1 RPC.

Two interceptors, after authentication:

* :class:`RateLimitInterceptor` admits the call against the per-minute, per-hour and per-day
  windows (and, for calls that run a model, the concurrency limit), and puts the
  ``x-ratelimit-*`` figures in the call's response metadata, which goes out on every outcome. The
  figures describe the **per-minute window** (the tightest one when a key has its own limit).
* :class:`QuotaInterceptor` reserves the worst-case tokens of a generating call in the account's
  monthly quota and settles the reservation with the tokens really used (``CallState.tokens_used``,
  which :class:`~server.services.generation.Generation` adds to when it bills a ledger row).

Whatever ends a call — success, error, validation failure, deadline, cancellation, a client that
disconnects mid-stream, a server exception — the slot is released and the reservation settled
exactly once: in ``finally`` for unary calls; for streams in the ``finally`` of a wrapping async
generator (after closing the handler's generator, so its usage is recorded first) and, as a safety
net, from the RPC's done callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from grpc_interceptor.server import AsyncServerInterceptor

from server.config import Settings
from server.context import CallState, current_call
from server.errors import PlutosError
from server.interceptors.base import Handler, call_next, is_api_method, is_stream
from server.limits.base import Admission, Limiter, LimiterUnavailable, QuotaCheck, SeedTokens, WindowCount, month_of
from server.limits.policy import GENERATING, concurrency_for, token_reservation, windows_for

log = logging.getLogger("plutos.limits")


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

    async def wait(self) -> None:
        await asyncio.shield(self.start())

    async def _run(self) -> None:
        try:
            await self._cleanup()
        except Exception:
            log.exception("limit clean-up failed")


class _GuardedStream:
    """Wraps a server stream so ``finish`` runs when it ends, however it ends."""

    __slots__ = ("finish", "response", "started")

    def __init__(self, response: Any, finish: Finisher) -> None:
        self.response = response
        self.finish = finish
        self.started = False

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
            await self.finish.wait()


async def guard_call(
    method: Handler, request: Any, context: Any, finish: Finisher, *, finish_when_rpc_ends: bool
) -> Any:
    """Call the next handler; run ``finish`` once the call is over.

    ``finish_when_rpc_ends``: also run it from the RPC's done callback even while a stream's
    generator has not been closed yet (right for a concurrency slot: the client is gone; wrong for
    a token settlement, which must wait for the handler to bill)."""
    try:
        response = method(request, context)
    except BaseException:
        await finish.wait()
        raise
    if not is_stream(response):
        try:
            return await response
        finally:
            await finish.wait()
    stream = _GuardedStream(response, finish)

    def on_rpc_done(_: Any) -> None:
        if finish_when_rpc_ends or not stream.started:
            with contextlib.suppress(RuntimeError):  # no running loop: the server is shutting down
                finish.start()

    context.add_done_callback(on_rpc_done)
    return stream.iterate()


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


class RateLimitInterceptor(AsyncServerInterceptor):
    def __init__(self, limiter: Limiter, *, fail_open: bool = False) -> None:
        self._limiter = limiter
        self._fail_open = fail_open

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        state = current_call.get(None) if is_api_method(method_name) else None
        who = state.caller if state is not None else None
        if state is None or who is None:
            return await call_next(method, request, context)
        windows = windows_for(who)
        try:
            admission = await self._limiter.acquire(windows, concurrency_for(who, method_name))
        except LimiterUnavailable:
            if self._fail_open:  # served uncounted: no figures to show
                return await call_next(method, request, context)
            _unavailable_headers(state, windows)
            raise limiter_unavailable() from None
        state.response_metadata.update(rate_limit_headers(admission))
        if not admission.allowed:
            err = rate_limited(admission)
            state.response_metadata["retry-after"] = str(err.retry_after)
            raise err
        slot = admission.slot
        if slot is None:
            return await call_next(method, request, context)

        async def release() -> None:
            await self._limiter.release(slot)

        return await guard_call(method, request, context, Finisher(release), finish_when_rpc_ends=True)


def _unavailable_headers(state: CallState, windows: list[Any]) -> None:
    minute = [w for w in windows if w.name == "minute"] or windows
    if minute:
        now = time.time()
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


def insufficient_quota(check: QuotaCheck, amount: int) -> PlutosError:
    committed = check.used + check.reserved
    remaining = max(0, check.quota - committed)
    if remaining == 0:
        _, _, end = month_of(time.time())
        message = (
            f"Monthly token quota of {check.quota} tokens is used up; it renews on {end.date().isoformat()}. "
            "Upgrade your plan for more."
        )
    else:
        message = (
            f"Insufficient quota: this request may use up to {amount} tokens but {remaining} of "
            f"{check.quota} remain this month. Lower maxTokens or upgrade your plan."
        )
    return PlutosError("insufficient_quota", message, {"quota": check.quota, "used": committed, "requested": amount})


class QuotaInterceptor(AsyncServerInterceptor):
    def __init__(self, limiter: Limiter, settings: Settings, seed: SeedTokens, *, fail_open: bool = False) -> None:
        self._limiter = limiter
        self._settings = settings
        self._seed = seed
        self._fail_open = fail_open

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        state = current_call.get(None) if method_name in GENERATING else None
        who = state.caller if state is not None else None
        if state is None or who is None or who.plan.monthly_tokens <= 0:
            return await call_next(method, request, context)
        amount = token_reservation(self._settings, method_name, request)
        try:
            check = await self._limiter.reserve_tokens(who.account_id, amount, who.plan.monthly_tokens, self._seed)
        except LimiterUnavailable:
            if self._fail_open:
                return await call_next(method, request, context)
            raise limiter_unavailable() from None
        reservation = check.reservation
        if reservation is None:
            raise insufficient_quota(check, amount)

        async def settle() -> None:
            await self._limiter.settle_tokens(reservation, state.tokens_used)

        return await guard_call(method, request, context, Finisher(settle), finish_when_rpc_ends=False)
