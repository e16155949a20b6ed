"""Giving the memory of a burst back to the operating system once the process goes idle.

Thousands of streams at once take tens of MiB of heap (their connections, tasks, buffers, frames).
When they end, CPython frees the objects, but glibc's allocator keeps the freed pages (in the middle
of its heaps and in the heaps of other threads) for reuse: the process's RSS stays at the burst's
peak until something asks for them back. ``malloc_trim(0)`` does (it ``madvise``s every free page of
every heap back to the kernel).

:class:`IdleRelease` counts the calls in progress (the error interceptor, which every API call passes,
tells it when one starts and ends). When the count drops to zero and stays there for
``quiet_seconds`` with no call in between, it runs once for that idle period: if the process's RSS
has grown by at least ``min_growth`` bytes since the last release, a full garbage collection (on the
event loop, which is idle: the cycles that cancelled calls leave behind) and then ``malloc_trim(0)``
in a worker thread (it walks the heaps; ctypes releases the GIL). Nothing of this runs per call but
two counter updates, and nothing at all where the C library is not glibc.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("plutos.memory")

QUIET_SECONDS = 1.0  # no call in progress for this long: the process is idle
MIN_GROWTH = 4 << 20  # release only when RSS grew by at least this much since the last release
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def glibc_malloc_trim() -> Callable[[], object] | None:
    """``malloc_trim(0)`` of the process's C library when it is glibc (``None`` elsewhere: musl,
    macOS, a static build), as a callable without arguments."""
    try:
        version = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        return None
    if not version or not version.startswith("glibc"):
        return None
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


def resident_bytes() -> int:
    """This process's resident set size in bytes (``/proc/self/statm``; 0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class IdleRelease:
    """Calls in progress, and the release of freed memory once they have all ended.

    ``call_started`` / ``call_ended`` are called once per call each (they must pair up). After the
    count has been zero for ``quiet_seconds`` with no call started meanwhile, ``idle_periods`` goes
    up by one and, when ``resident()`` has grown by ``min_growth`` bytes or more since the last
    release (or since start), ``release`` runs in the loop's default executor after a
    ``gc.collect()``; ``releases`` counts those that finished. ``release=None`` (no glibc) turns
    the releases off; the idle periods are still counted."""

    def __init__(
        self,
        *,
        quiet_seconds: float = QUIET_SECONDS,
        min_growth: int = MIN_GROWTH,
        release: Callable[[], object] | None = None,
        resident: Callable[[], int] = resident_bytes,
    ) -> None:
        self.in_flight = 0
        self.idle_periods = 0
        self.releases = 0
        self._quiet = quiet_seconds
        self._min_growth = min_growth
        self._release = release
        self._resident = resident
        self._starts = 0  # calls started so far: a change between two looks means the process was not idle
        self._starts_when_armed = 0
        self._timer: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Future[object] | None = None
        self._floor = resident()  # RSS after the last release (or at start)

    @classmethod
    def for_this_process(cls) -> IdleRelease:
        """The instance a serving process uses: glibc's ``malloc_trim`` when there is one."""
        return cls(release=glibc_malloc_trim())

    def call_started(self) -> None:
        self.in_flight += 1
        self._starts += 1

    def call_ended(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._timer is None:
            self._arm()

    def close(self) -> None:
        """Cancel a pending idle check (the process is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: nothing to wait with
            return
        self._starts_when_armed = self._starts
        # A context of its own: not the last call's (its state, its request id in the log lines).
        self._timer = loop.call_later(self._quiet, self._quiet_check, context=contextvars.Context())

    def _quiet_check(self) -> None:
        self._timer = None
        if self.in_flight:
            return  # busy again: the end of the last call in progress arms the next check
        if self._starts != self._starts_when_armed:
            self._arm()  # calls came and went meanwhile: wait for a quiet period of its own
            return
        self.idle_periods += 1
        if self._release is None or self._releasing is not None:
            return
        before = self._resident()
        if before - self._floor < self._min_growth:
            return
        started = time.perf_counter()
        gc.collect()  # on the loop (finalizers may touch loop objects); nothing else is running
        collected = time.perf_counter()
        self._releasing = asyncio.get_running_loop().run_in_executor(None, self._release)
        self._releasing.add_done_callback(lambda f: self._released(f, before, started, collected))

    def _released(self, future: asyncio.Future[object], before: int, started: float, collected: float) -> None:
        self._releasing = None
        if future.cancelled() or future.exception() is not None:
            with contextlib.suppress(BaseException):
                log.warning("releasing freed memory failed: %r", future.exception())
            return
        self._floor = self._resident()
        self.releases += 1
        log.info(
            "idle: RSS %.1f -> %.1f MiB (freed memory given back to the OS; gc %.1f ms, malloc_trim %.1f ms)",
            before / 2**20,
            self._floor / 2**20,
            1000 * (collected - started),
            1000 * (time.perf_counter() - collected),
        )
