"""Freed memory goes back to the OS once the process is idle (server/memory_release.py).

The idle tracking runs on a real event loop with a short quiet period; the release is a recording
function (what it releases is the allocator's business) except in the last test, which calls
glibc's ``malloc_trim`` for real. The gateway's own tracker is exercised through the platform in
tests/test_concurrent_streams.py.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from server.memory_release import IdleRelease, glibc_malloc_trim, resident_bytes
from tests.limits_support import wait_until

QUIET = 0.01


class Recorder:
    """A release that counts its calls (it runs in a worker thread)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


class Growing:
    """A resident-size reader whose figure grows by ``step`` bytes at every look."""

    def __init__(self, step: int) -> None:
        self.value = 100 << 20
        self.step = step

    def __call__(self) -> int:
        self.value += self.step
        return self.value


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (bounded, not timed)."""

    async def holds() -> bool:
        return condition()

    await wait_until(holds, "the idle tracker", within=10)


async def quiet_periods_pass(idle: IdleRelease, periods: int) -> None:
    await until(lambda: idle.idle_periods >= periods)


async def test_freed_memory_is_released_once_every_call_has_ended() -> None:
    release = Recorder()
    idle = IdleRelease(quiet_seconds=QUIET, min_growth=1, release=release, resident=Growing(1 << 20))
    for _ in range(3):
        idle.call_started()
    idle.call_ended()
    idle.call_ended()
    assert idle.in_flight == 1
    idle.call_ended()
    await until(lambda: idle.releases == 1)  # counted once the release has returned
    assert (idle.in_flight, idle.idle_periods, idle.releases, release.calls) == (0, 1, 1, 1)


async def test_one_release_per_idle_period() -> None:
    release = Recorder()
    idle = IdleRelease(quiet_seconds=QUIET, min_growth=1, release=release, resident=Growing(1 << 20))
    idle.call_started()
    idle.call_ended()
    await until(lambda: idle.releases == 1)
    await asyncio.sleep(20 * QUIET)  # still idle: nothing more happens
    assert (idle.idle_periods, release.calls) == (1, 1)
    idle.call_started()
    idle.call_ended()  # a new idle period begins
    await until(lambda: idle.releases == 2)
    assert (idle.idle_periods, release.calls) == (2, 2)


async def test_nothing_is_released_while_a_call_is_in_progress() -> None:
    release = Recorder()
    idle = IdleRelease(quiet_seconds=QUIET, min_growth=1, release=release, resident=Growing(1 << 20))
    idle.call_started()
    idle.call_started()
    idle.call_ended()
    await asyncio.sleep(20 * QUIET)
    assert (idle.idle_periods, release.calls) == (0, 0)
    idle.call_ended()
    await quiet_periods_pass(idle, 1)


async def test_calls_that_come_and_go_during_the_quiet_period_postpone_it() -> None:
    idle = IdleRelease(quiet_seconds=0.2, min_growth=1, release=None)
    idle.call_started()
    idle.call_ended()  # the check is armed
    idle.call_started()
    idle.call_ended()  # ...and a call came and went before it ran: it waits a full period again
    await quiet_periods_pass(idle, 1)
    assert idle.idle_periods == 1


async def test_no_release_when_memory_has_not_grown_since_the_last() -> None:
    release = Recorder()
    idle = IdleRelease(quiet_seconds=QUIET, min_growth=4 << 20, release=release, resident=Growing(0))
    idle.call_started()
    idle.call_ended()
    await quiet_periods_pass(idle, 1)
    assert (idle.releases, release.calls) == (0, 0)


def glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION") is not None
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not glibc(), reason="malloc_trim is glibc's")
def test_glibc_malloc_trim_is_called_for_real() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None
    assert trim() in (0, 1)  # 1: memory was given back
    assert resident_bytes() > 0
