"""The upstream HTTP/1.1 client (server/backends/http_client.py) against raw asyncio servers on loopback.

test_upstream.py drives it through the gateway against llama-cpp-python's server and a fault
injector; these pin down the wire-level cases those cannot show: keep-alive reuse, answers ended by
closing the connection, chunked bodies split across reads, a dropped idle connection, the pool's
limit, timeouts and bytes that are not HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from server.backends.http_client import ConnectError, ConnectionClosed, HttpPool, ProtocolError


@asynccontextmanager
async def raw_server(respond: Callable[[bytes, asyncio.StreamWriter], object]) -> AsyncIterator[tuple[int, list[int]]]:
    """A server that reads each request head + body and lets ``respond`` write bytes back.
    Yields its port and the list of connection numbers requests arrived on."""
    seen: list[int] = []
    count = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        me = count
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                seen.append(me)
                result = respond(head + body, writer)
                if asyncio.iscoroutine(result):
                    await result
                await writer.drain()
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, seen
    finally:
        server.close()
        await server.wait_closed()


def ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: " + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body


async def post(pool: HttpPool, body: bytes = b"{}", read_timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    response = await pool.post(
        "/chat/completions", body, {"content-type": "application/json"}, connect_timeout=2.0, read_timeout=read_timeout
    )
    data = await response.read(read_timeout)
    response.release()
    return response.status, response.headers, data


async def test_requests_reuse_one_keep_alive_connection() -> None:
    requests: list[bytes] = []

    def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        requests.append(request)
        writer.write(ok(b'{"n":1}', b"X-Request-Id: up-1\r\n"))

    async with raw_server(respond) as (port, seen):
        pool = HttpPool(f"http://127.0.0.1:{port}/v1", max_connections=4)
        for _ in range(3):
            status, headers, data = await post(pool, b'{"a":1}')
            assert (status, data, headers["x-request-id"]) == (200, b'{"n":1}', "up-1")
        await pool.close()
    assert seen == [1, 1, 1]
    head = requests[0].split(b"\r\n\r\n")[0].decode()
    assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{port}" in head and "Content-Length: 7" in head
    assert requests[0].endswith(b'{"a":1}')


async def test_an_answer_ended_by_closing_the_connection_is_read_whole() -> None:
    def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + b'{"done":true}')
        writer.close()

    async with raw_server(respond) as (port, _):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        assert (await post(pool))[2] == b'{"done":true}'
        assert (await post(pool))[2] == b'{"done":true}'  # a new connection: the first one is gone
        await pool.close()


async def test_a_chunked_body_split_across_reads_arrives_in_order() -> None:
    async def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in (b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"):
            writer.write(f"{len(piece):x}\r\n".encode() + piece[:3])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(piece[3:] + b"\r\n")
        writer.write(b"0\r\n\r\n")

    async with raw_server(respond) as (port, seen):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        for _ in range(2):
            response = await pool.post("/x", b"", {}, connect_timeout=2, read_timeout=2)
            pieces = []
            while piece := await response.read_chunk(2):
                pieces.append(piece)
            assert len(pieces) > 1 and b"".join(pieces) == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
            assert response.at_eof()
            response.release()
        await pool.close()
    assert seen == [1, 1]


async def test_an_idle_connection_the_server_dropped_is_not_reused() -> None:
    def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(b"x"))
        writer.close()  # after answering, as a server whose keep-alive timeout passed

    async with raw_server(respond) as (port, seen):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        assert (await post(pool))[2] == b"x"
        await asyncio.sleep(0.05)  # the close reaches the client
        assert (await post(pool))[2] == b"x"
        await pool.close()
    assert seen == [1, 2]


async def test_a_connection_closed_before_any_answer_says_so() -> None:
    def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.close()

    async with raw_server(respond) as (port, _):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        with pytest.raises(ConnectionClosed) as err:
            await post(pool)
        assert err.value.before_response
        await pool.close()


async def test_the_pool_limit_makes_callers_wait_then_gives_up_after_the_connect_timeout() -> None:
    release = asyncio.Event()

    async def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(ok(b"slow"))

    async with raw_server(respond) as (port, seen):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        first = asyncio.ensure_future(post(pool))
        await asyncio.sleep(0.05)
        with pytest.raises(ConnectError, match="no free connection"):
            await pool.post("/x", b"", {}, connect_timeout=0.2, read_timeout=2)
        second = asyncio.ensure_future(post(pool))  # waits for the first to finish
        await asyncio.sleep(0.05)
        release.set()
        assert (await first)[2] == b"slow" and (await second)[2] == b"slow"
        await pool.close()
    assert seen == [1, 1]


async def test_silence_is_a_timeout_and_closing_frees_the_slot() -> None:
    async def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with raw_server(respond) as (port, _):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        with pytest.raises(TimeoutError):
            await pool.post("/x", b"", {}, connect_timeout=1, read_timeout=0.2)
        with pytest.raises(TimeoutError):  # the slot came back: this one connects, then times out too
            await pool.post("/x", b"", {}, connect_timeout=1, read_timeout=0.2)
        await pool.close()


async def test_the_read_timeout_counts_from_each_read_not_from_the_first() -> None:
    """A body whose pieces each come within the read timeout is read whole, however long it lasts
    in all (the waits share one timer, moved along); silence longer than the timeout still ends it."""

    async def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(30):  # 1.5 s of pieces, 0.05 s apart, with a read timeout of 1 s
            piece = b"data: %d\n\n" % i
            writer.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
        await asyncio.sleep(5)  # then silence

    async with raw_server(respond) as (port, _):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        response = await pool.post("/x", b"", {}, connect_timeout=2, read_timeout=1.0)
        body = b""
        with pytest.raises(TimeoutError):
            while True:
                body += await response.read_chunk(1.0)
        assert body == b"".join(b"data: %d\n\n" % i for i in range(30))
        response.close()
        await pool.close()


async def test_bytes_that_are_not_http_are_a_protocol_error() -> None:
    def respond(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")

    async with raw_server(respond) as (port, _):
        pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
        with pytest.raises(ProtocolError):
            await post(pool)
        await pool.close()


async def test_nothing_listening_is_a_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = HttpPool(f"http://127.0.0.1:{port}", max_connections=1)
    with pytest.raises(ConnectError, match="cannot connect"):
        await post(pool)
    await pool.close()
