"""The limiter's pipelined Redis connection (server/limiter/resp.py): when it gives up on Redis.

Against a real redis-server (tests/redis_support.py). A Redis that stops answering is a silent
loopback server that accepts and never replies. The event loop kept busy elsewhere is a
``time.sleep`` on the loop (what thousands of streams' callbacks do to it under a burst); under
uvloop — what ``plutos serve`` runs — due timers run before the loop reads its sockets.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.limiter import resp
from tests.redis_support import RedisServer

TIMEOUT = 0.3
PING = resp.encode("PING")


def on_uvloop(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(scenario())


async def test_a_call_issued_behind_a_batch_is_timed_from_its_own_write(redis_server: RedisServer) -> None:
    pipe = resp.Pipe(redis_server.url, timeout=TIMEOUT)
    try:
        assert await pipe.call(PING) == b"PONG"  # connected
        first = asyncio.ensure_future(pipe.call(PING))
        await asyncio.sleep(0)  # issued: it leaves in this turn's write
        second = asyncio.ensure_future(pipe.call(PING))
        await asyncio.sleep(0)  # issued while the first is on the way: it leaves when that is answered
        time.sleep(2 * TIMEOUT)  # noqa: ASYNC251 - the loop busy: the first's reply unread, the second unwritten
        # Redis answered the first at once and answers the second as soon as it is written.
        assert await first == b"PONG"
        assert await second == b"PONG"
    finally:
        pipe.close()


def test_replies_unread_while_the_loop_was_busy_are_not_a_timeout(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        pipe = resp.Pipe(redis_server.url, timeout=TIMEOUT)
        try:
            assert await pipe.call(PING) == b"PONG"
            received = pipe._received
            busy: list[bool] = []

            def then_busy(data: bytes) -> None:
                received(data)  # the first's reply: the second leaves now
                if not busy:  # ...and the other sockets read in this poll keep the loop busy
                    busy.append(True)
                    time.sleep(2 * TIMEOUT)

            monkeypatch.setattr(pipe, "_received", then_busy)
            first = asyncio.ensure_future(pipe.call(PING))
            await asyncio.sleep(0)
            second = asyncio.ensure_future(pipe.call(PING))
            assert await first == b"PONG"
            # The watchdog's timer comes due before the loop reads the second's reply: not a timeout.
            assert await second == b"PONG"
            assert busy
        finally:
            pipe.close()

    on_uvloop(scenario)


def test_a_redis_that_does_not_answer_times_every_waiting_call_out() -> None:
    async def scenario() -> None:
        silent = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        pipe = resp.Pipe(f"redis://127.0.0.1:{port}/0", timeout=TIMEOUT)
        try:
            calls = [asyncio.ensure_future(pipe.call(PING)) for _ in range(3)]
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 20 * TIMEOUT)
            assert all(isinstance(r, RedisTimeoutError) for r in results), results
        finally:
            pipe.close()
            silent.close()

    on_uvloop(scenario)
