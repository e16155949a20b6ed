"""The attacker's checks (issue 16): header bombs and slow headers, the gRPC message limit,
SSRF spellings, duplicate Authorization headers, trailing slashes, cross-account ids and
internals in error messages. Each asserts what the client sees on the wire."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import uvicorn
from plutos.v1 import processing_pb2

from bridge.http_protocol import HeadWithBody, HttpLimits, bounded_protocol
from gateway.app import RunningPlatform
from tests.conftest import MODEL, GrpcClients

# -- raw HTTP/1.1 on a socket: what an attacker sends, byte for byte ---------------------------


async def _raw(port: int, payload: bytes, *, read_timeout: float = 30.0) -> bytes:
    """Send ``payload``, then read until the server closes the connection (bounded)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        chunks = []
        with contextlib.suppress(ConnectionError):
            while chunk := await asyncio.wait_for(reader.read(65536), read_timeout):
                chunks.append(chunk)
        return b"".join(chunks)
    finally:
        writer.close()


def _status_and_json(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body else None


async def test_a_header_bomb_is_431_before_it_is_read(platform: RunningPlatform) -> None:
    # 8 MiB of one header value, offered as fast as the server takes it: answered after the limit.
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.http_port)
    sent = 0

    async def bomb() -> None:
        nonlocal sent
        writer.write(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Bomb: ")
        while sent < 8 * 1024 * 1024:
            writer.write(b"a" * 65536)
            await writer.drain()
            sent += 65536

    sending = asyncio.ensure_future(bomb())
    answer = await asyncio.wait_for(reader.read(65536), 30)
    sending.cancel()
    with contextlib.suppress(BaseException):
        await sending
    writer.close()
    status, body = _status_and_json(answer)
    assert status == 431
    assert body["error"]["code"] == "headers_too_large" and body["error"]["details"]["maxBytes"] == 32 * 1024
    assert sent < 8 * 1024 * 1024  # the server stopped reading long before the end


async def test_too_many_header_lines_are_431(platform: RunningPlatform) -> None:
    lines = b"".join(b"X-H%d: 1\r\n" % i for i in range(1000))
    answer = await _raw(platform.http_port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
    status, body = _status_and_json(answer)
    assert status == 431 and body["error"]["code"] == "headers_too_large"


@pytest.mark.parametrize(
    "payload",
    [
        b"POST /v1/process HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /v1/models HTTP/9.9\r\nHost: x\r\n\r\n",
        b"\x00\x01\x02 garbage\r\n\r\n",
    ],
    ids=["bad-content-length", "header-without-colon", "unknown-version", "binary"],
)
async def test_malformed_http_is_a_400_envelope_with_a_request_id(platform: RunningPlatform, payload: bytes) -> None:
    answer = await _raw(platform.http_port, payload)
    status, body = _status_and_json(answer)
    assert status == 400 and body["error"]["code"] == "invalid_parameters"
    head = answer.partition(b"\r\n\r\n")[0].decode().lower()
    assert f"x-request-id: {body['error']['requestId']}".lower() in head


async def test_headers_within_the_limits_pass(platform: RunningPlatform) -> None:
    lines = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 200) for i in range(90))
    answer = await _raw(
        platform.http_port, b"GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + lines + b"\r\n"
    )
    status, body = _status_and_json(answer)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"  # reached the API


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_a_sized_response_leaves_in_one_write_and_a_stream_head_at_once() -> None:
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n"
    sized = _Transport()
    wrapped = HeadWithBody(sized)
    wrapped.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # passes at once
    wrapped.write(head)
    assert sized.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    wrapped.write(b"{}")
    assert sized.writes[1:] == [head + b"{}"] and not wrapped.is_closing()
    stream = _Transport()  # an SSE head (chunked) must reach the client before the first event
    wrapped = HeadWithBody(stream)
    sse = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    wrapped.write(sse)
    wrapped.write(b"5\r\nhello\r\n")
    assert stream.writes == [sse, b"5\r\nhello\r\n"]
    dropped = _Transport()  # a held head is still sent when the connection closes before the body
    wrapped = HeadWithBody(dropped)
    wrapped.write(head)
    wrapped.close()
    assert dropped.writes == [head] and dropped.closed


# A small REST server with the same protocol and short timeouts (the platform's are 10 s and 5 s).
SHORT = HttpLimits(max_header_bytes=1024, max_headers=10, header_timeout=0.5, idle_timeout=0.5)


@pytest.fixture
async def short_timeouts() -> AsyncIterator[int]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app, http=bounded_protocol(SHORT), lifespan="off", log_level="warning", timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(1000):
        if server.started:
            break
        await asyncio.sleep(0.01)
    yield sock.getsockname()[1]
    server.should_exit = True
    await task


async def test_slow_headers_are_408_after_the_header_timeout(short_timeouts: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts)
    answered = asyncio.ensure_future(reader.read(65536))
    for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"1" * 200:  # one byte at a time, never done
        if answered.done():
            break
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.05)
    answer = await asyncio.wait_for(answered, 10)
    writer.close()
    status, body = _status_and_json(answer)
    assert status == 408 and body["error"]["code"] == "request_timeout"


async def test_a_connection_that_never_sends_is_closed(short_timeouts: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts)
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the server, nothing said
    writer.close()


async def test_an_idle_kept_alive_connection_is_closed_and_a_busy_one_served(short_timeouts: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", short_timeouts)
    for _ in range(3):  # several requests on one connection, each well within the timeouts
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.readuntil(b"ok"), 10)).startswith(b"HTTP/1.1 200")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # then idle: closed
    writer.close()


async def test_the_small_servers_header_limits(short_timeouts: int) -> None:
    big = await _raw(short_timeouts, b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 2000 + b"\r\n\r\n")
    many = await _raw(short_timeouts, b"GET / HTTP/1.1\r\n" + b"X-B: 1\r\n" * 11 + b"\r\n")
    fine = await _raw(short_timeouts, b"GET / HTTP/1.1\r\nConnection: close\r\n" + b"X-B: 1\r\n" * 9 + b"\r\n")
    assert _status_and_json(big)[0] == 431 and _status_and_json(many)[0] == 431
    assert fine.startswith(b"HTTP/1.1 200")


async def test_grpc_takes_no_message_larger_than_the_rest_body_limit(
    platform: RunningPlatform, grpc_clients: GrpcClients, auth_md: Any
) -> None:
    limit = platform.runtime.settings.max_body_bytes
    request = processing_pb2.ProcessRequest(input="a" * (limit + 1), model=MODEL)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_clients.processing.Process(request, metadata=auth_md)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- SSRF by spelling (item 6) -------------------------------------------------------------------

SSRF_SPELLINGS = [
    "http://localhost/",
    "http://localhost./",
    "http://LOCALHOST../",
    "http://a.localhost/",
    "http://127.0.0.1./",
    "http://127.1/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://0177.0.0.1/",
    "http://0.0.0.0/",
    "http://10.1.2.3/",
    "http://192.168.0.1./",
    "http://100.64.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.100.100.200/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://instance-data./",
    "http://[::1]/",
    "http://[::]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:0:7f00:1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::a9fe:a9fe]/",
    "http://[64:ff9b:1::a00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[2002:a9fe:a9fe::]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",
    "http://[fc00::1]/",
    "http://[ff02::1]/",
]


@pytest.mark.parametrize("url", SSRF_SPELLINGS)
async def test_every_spelling_of_a_private_destination_is_refused(url: str) -> None:
    from server.webhook_delivery.destinations import DestinationRefused, check_destination, parse_webhook_url

    with pytest.raises((DestinationRefused, OSError, ValueError)):  # refused, unresolvable or not a URL
        await check_destination(parse_webhook_url(url), allow_private=False)


async def test_public_addresses_pass() -> None:
    from server.webhook_delivery.destinations import check_destination, parse_webhook_url

    # (An IPv4-mapped IPv6 address is refused whatever it maps: write the IPv4 address itself.)
    for url in ("http://93.184.215.14/", "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/"):
        assert await check_destination(parse_webhook_url(url), allow_private=False)


@pytest.fixture
def private_urls_refused(platform: RunningPlatform) -> Any:
    """The platform's creation-time policy as shipped (the tests' platform allows loopback receivers)."""
    import dataclasses

    webhooks = platform.runtime.webhooks
    allowed = webhooks.config
    webhooks.config = dataclasses.replace(allowed, allow_private_urls=False)
    yield
    webhooks.config = allowed


@pytest.mark.parametrize(
    "url", ["http://localhost./hook", "http://127.0.0.1./hook", "http://[::ffff:127.0.0.1]/", "http://no-such.invalid/"]
)
async def test_creating_a_webhook_to_a_private_or_unresolvable_host_is_400(
    http: Any, private_urls_refused: Any, url: str
) -> None:
    r = await http.post("/webhooks", json={"url": url, "events": ["processing.completed"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["details"]["field"] == "url"


# -- per-account caps under concurrency (item 5) -----------------------------------------------


async def test_the_webhook_cap_holds_under_40_simultaneous_creates(platform: RunningPlatform, base_url: str) -> None:
    import httpx

    from tests.conftest import new_key

    key = await new_key(platform, name="cap")
    cap = platform.runtime.webhooks.config.max_per_account
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=60) as c:
        answers = await asyncio.gather(
            *(
                c.post("/webhooks", json={"url": f"http://127.0.0.1:9/{i}", "events": ["processing.completed"]})
                for i in range(2 * cap)
            )
        )
        listed = (await c.get("/webhooks")).json()["webhooks"]
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * cap + [400] * cap, codes
    assert len(listed) == cap


# -- Authorization parsing and key visibility (item 9) -------------------------------------------


@pytest.mark.parametrize("url", ["http://user:s3cr3t@127.0.0.1:9/h", "https://token@example.com/hook"])
async def test_webhook_urls_with_credentials_are_refused(http: Any, url: str) -> None:
    r = await http.post("/webhooks", json={"url": url, "events": ["processing.completed"]})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_parameters" and error["details"]["field"] == "url"
    assert "s3cr3t" not in error["message"] and "token" not in error["message"]  # not echoed


async def test_two_authorization_headers_are_400(base_url: str, key: Any) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
        for first, second in ((key.secret, "pk_wrong"), ("pk_wrong", key.secret), (key.secret, key.secret)):
            headers = [("Authorization", f"Bearer {first}"), ("Authorization", f"Bearer {second}")]
            r = await c.get("/models", headers=headers)
            assert r.status_code == 400, r.text
            assert r.json()["error"]["code"] == "invalid_parameters"


async def test_two_authorization_metadata_entries_are_invalid_argument(grpc_clients: GrpcClients, key: Any) -> None:
    from plutos.v1 import models_pb2

    metadata = (("authorization", f"Bearer {key.secret}"), ("authorization", "Bearer pk_wrong"))
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=metadata)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_models_lists_only_what_the_key_may_use(platform: RunningPlatform, base_url: str) -> None:
    import httpx

    from tests.conftest import new_key

    narrow = await new_key(platform, name="narrow", models=["another-model"])
    wide = await new_key(platform, name="wide", models=[MODEL])
    async with httpx.AsyncClient(base_url=base_url, timeout=60) as c:
        none = (await c.get("/models", headers={"Authorization": f"Bearer {narrow.secret}"})).json()
        one = (await c.get("/models", headers={"Authorization": f"Bearer {wide.secret}"})).json()
    assert none["models"] == []
    assert [m["id"] for m in one["models"]] == [MODEL]


# -- trailing slashes and unknown paths (item 8) ---------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/models/", "/v1/usage/", "/v1/process/", "/v1/webhooks/", "/v1//models"])
async def test_a_trailing_slash_is_a_404_envelope_not_a_redirect(platform: RunningPlatform, path: str) -> None:
    request = f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n".encode()
    answer = await _raw(platform.http_port, request)
    status, body = _status_and_json(answer)
    assert status == 404 and body["error"]["code"] == "not_found"
    assert b"location:" not in answer.lower() and b"evil.example" not in answer


# -- cross-account ids ---------------------------------------------------------------------------


async def test_another_accounts_ids_are_not_found(platform: RunningPlatform, base_url: str, http: Any) -> None:
    import httpx

    from tests.conftest import new_key

    record = (await http.post("/process", json={"input": "Hi", "model": MODEL, "options": {"maxTokens": 1}})).json()
    hook = (
        await http.post("/webhooks", json={"url": "http://127.0.0.1:9/x", "events": ["processing.completed"]})
    ).json()
    other = await new_key(platform, name="other")
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {other.secret}"}) as c:
        assert (await c.get(f"/process/{record['id']}")).status_code == 404
        assert (await c.delete(f"/webhooks/{hook['id']}")).status_code == 404
        assert hook["id"] not in str((await c.get("/webhooks")).json())
    await http.delete(f"/webhooks/{hook['id']}")


# -- no internals in error messages (item 7) -------------------------------------------------------

INTERNALS = ("plutos.v1", "Traceback", "<class", "got 'dict'", "bytes-like", "Message type", "google.protobuf", "repr")

BAD_BODIES = [
    ("/webhooks", {"url": {}, "events": ["processing.completed"]}),
    ("/webhooks", {"": 1}),
    ("/webhooks", {"url": "http://127.0.0.1:9/", "events": "processing.completed"}),
    ("/webhooks", {"url": ["x"], "events": [1]}),
    ("/process", {"input": ["a"], "model": MODEL}),
    ("/process", {"input": "a", "model": MODEL, "options": {"maxTokens": "many"}}),
    ("/process", {"input": "a", "model": MODEL, "options": {"temperature": {}}}),
    ("/process", {"input": "a", "model": MODEL, "options": {"stop": {"a": 1}}}),
    ("/process", {"input": "a", "model": {"id": MODEL}}),
    ("/batch", {"inputs": "a", "model": MODEL}),
    ("/batch", {"inputs": [{"x": 1}], "model": MODEL}),
    ("/process", {"x" * 5000: 1}),
]


@pytest.mark.parametrize(("path", "body"), BAD_BODIES)
async def test_bad_bodies_get_messages_without_internals(http: Any, path: str, body: Any) -> None:
    r = await http.post(path, json=body)
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert not any(word in message for word in INTERNALS), message
    assert len(r.text) < 2000


async def test_a_huge_id_is_not_echoed_whole(http: Any, grpc_clients: GrpcClients, auth_md: Any) -> None:
    r = await http.get("/process/" + "x" * 20_000)
    assert r.status_code == 404 and len(r.text) < 2000
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await grpc_clients.processing.GetProcess(processing_pb2.GetProcessRequest(id="y" * 1_000_000), metadata=auth_md)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert len(raised.value.details() or "") < 1000


@pytest.mark.parametrize("method", ["/plutos.v1.ProcessingService/Process", "/plutos.v1.ProcessingService/Stream"])
async def test_malformed_protobuf_is_invalid_argument(grpc_clients: GrpcClients, auth_md: Any, method: str) -> None:
    garbage = b"\xff\xff\xff\xff\x0f"  # sent as it is: no request serializer, no response deserializer
    if method.endswith("Stream"):
        call: Any = grpc_clients.channel.unary_stream(method, None, None)(garbage, metadata=auth_md)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            async for _ in call:
                pass
    else:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await grpc_clients.channel.unary_unary(method, None, None)(garbage, metadata=auth_md)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "class" not in (raised.value.details() or "")


# -- dates at the edge of the calendar (item 4) -----------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "end_date=9999-12-31",
        "start_date=9999-12-31",
        "start_date=9999-12-01&end_date=9999-12-31",
        "start_date=0001-01-01",
        "end_date=0001-01-01",
        "start_date=0001-01-01&end_date=0001-01-31",
        "start_date=0000-01-01",
        "end_date=10000-01-01",
    ],
)
async def test_every_date_gives_200_or_400(http: Any, grpc_clients: GrpcClients, auth_md: Any, query: str) -> None:
    from plutos.v1 import usage_pb2

    r = await http.get(f"/usage?{query}")
    assert r.status_code in (200, 400), r.text
    fields = dict(part.split("=") for part in query.split("&"))
    try:
        await grpc_clients.usage.GetUsage(usage_pb2.GetUsageRequest(**fields), metadata=auth_md)
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# -- orphans (item 10) --------------------------------------------------------------------------------


async def test_a_cancelled_batch_leaves_no_item_without_its_batch(
    platform: RunningPlatform, grpc_clients: GrpcClients, auth_md: Any
) -> None:
    from sqlalchemy import select

    from server.store.models import Batch, ProcessRecord

    request = processing_pb2.BatchRequest(
        inputs=[f"Write a long story number {i}." for i in range(30)],
        model=MODEL,
        options=processing_pb2.ProcessOptions(max_tokens=40),
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await grpc_clients.processing.Batch(request, metadata=auth_md, timeout=0.5)
    for _ in range(100):  # the cancelled items are written in the background
        async with platform.runtime.sessions() as s:
            orphans = (
                await s.execute(
                    select(ProcessRecord.id).where(
                        ProcessRecord.batch_id.is_not(None), ProcessRecord.batch_id.not_in(select(Batch.id))
                    )
                )
            ).all()
            cancelled = (await s.execute(select(ProcessRecord.id).where(ProcessRecord.status == "cancelled"))).all()
        if cancelled:
            break
        await asyncio.sleep(0.1)
    assert orphans == []
