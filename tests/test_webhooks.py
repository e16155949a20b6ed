"""Webhooks: /v1/webhooks CRUD, signed deliveries to a real loopback receiver, retries, the SSRF
policy, usage thresholds, and durability across a kill -9 of a real `plutos serve` process."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, func, select, update

from core.errors import PlutosError
from gateway.app import RunningPlatform, start_platform
from server.backends.base import Backend, GenerationParams, GenerationState, PreparedPrompt
from server.catalogue import BACKENDS
from server.config import ModelSpec, Plan
from server.keys import CreatedKey
from server.store.models import LedgerEntry, UsageThresholdCrossing, Webhook, WebhookAttempt, WebhookDelivery
from server.store.usage_rollup import roll_up_usage
from server.store.writer import RecordWriter
from server.webhook_delivery.destinations import (
    DestinationRefused,
    check_destination,
    is_public_address,
    parse_webhook_url,
)
from server.webhook_delivery.dispatcher import Claimed, Dispatcher
from server.webhook_delivery.outbox import Outbox
from tests.conftest import MODEL, TEST_WEBHOOKS, new_key
from tests.conftest import test_settings as settings_for_tests
from tests.serve_support import announced_urls, plutos_json, spawn_serve
from tests.webhook_receiver import Receiver, body_signature_ok, header_signature_ok
from tests.webhooks_support import SECRET, create_webhook

ROOT = Path(__file__).resolve().parents[1]
SHORT = {"maxTokens": 2}


def client_for(base_url: str, key: CreatedKey) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Bearer {key.secret}"}, timeout=120)


async def deliveries_of(platform: RunningPlatform, webhook_id: str) -> list[WebhookDelivery]:
    async with platform.runtime.sessions() as session:
        rows = await session.execute(select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id))
        return list(rows.scalars())


async def settled(platform: RunningPlatform, webhook_id: str, count: int, timeout: float = 30) -> list[Any]:
    """Wait (bounded) until ``count`` deliveries of the webhook are no longer pending."""
    deadline = time.monotonic() + timeout
    rows: list[WebhookDelivery] = []
    while time.monotonic() < deadline:
        rows = await deliveries_of(platform, webhook_id)
        if len(rows) >= count and all(r.status != "pending" for r in rows):
            break
        await asyncio.sleep(0.05)
    return rows


# --- /v1/webhooks ------------------------------------------------------------------------------


async def test_create_list_and_delete(http: httpx.AsyncClient, receiver: Receiver) -> None:
    url = receiver.url(receiver.new_path())
    created = await create_webhook(http, url, ["processing.completed", "usage.threshold"], SECRET)
    assert list(created) == ["id", "url", "events", "hasSecret", "createdAt"]
    assert re.fullmatch(r"wh_[0-9a-f]{16}", created["id"])
    assert created["url"] == url
    assert created["events"] == ["processing.completed", "usage.threshold"]
    assert created["hasSecret"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created["createdAt"])

    listed = (await http.get("/webhooks")).json()["webhooks"]
    assert created in listed
    assert all("secret" not in w for w in listed)

    r = await http.delete(f"/webhooks/{created['id']}")
    assert r.status_code == 200
    assert r.json() == {"id": created["id"], "deleted": True}
    assert created["id"] not in [w["id"] for w in (await http.get("/webhooks")).json()["webhooks"]]
    assert (await http.delete(f"/webhooks/{created['id']}")).status_code == 404


async def test_webhook_without_secret_gets_one_generated_and_shown_once(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    created = await create_webhook(http, receiver.url(receiver.new_path()), ["processing.failed"])
    assert list(created) == ["id", "url", "events", "hasSecret", "createdAt", "secret"]
    assert created["hasSecret"] is True
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]{43}=", created["secret"])
    assert len(base64.b64decode(created["secret"][len("whsec_") :])) == 32
    other = await create_webhook(http, receiver.url(receiver.new_path()), ["processing.failed"])
    assert other["secret"] != created["secret"]
    listed = (await http.get("/webhooks")).json()["webhooks"]
    assert {k: v for k, v in created.items() if k != "secret"} in listed
    assert all("secret" not in w for w in listed)
    for hook in (created, other):
        await http.delete(f"/webhooks/{hook['id']}")


@pytest.mark.parametrize(
    "url",
    [
        "",
        "not a url",
        "example.com/hook",
        "ftp://example.com/hook",
        "http://",
        "https:///path-only",
        "javascript:alert(1)",
        "http://example.com:99999/",
        "https://example.com/" + "x" * 3000,
    ],
)
async def test_invalid_url_is_400(http: httpx.AsyncClient, url: str) -> None:
    r = await http.post("/webhooks", json={"url": url, "events": ["processing.completed"]})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["details"]["field"] == "url"


@pytest.mark.parametrize("events", [[], ["processing.done"], ["processing.completed", "usage.exceeded"]])
async def test_unknown_or_missing_event_is_400(http: httpx.AsyncClient, events: list[str]) -> None:
    r = await http.post("/webhooks", json={"url": "https://example.com/hook", "events": events})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "invalid_parameters"
    assert error["details"]["field"] == "events"
    assert error["details"]["allowed"] == ["processing.completed", "processing.failed", "usage.threshold"]


async def test_whsec_secret_must_be_base64(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/webhooks", json={"url": "https://example.com/h", "events": ["usage.threshold"], "secret": "whsec_!!"}
    )
    assert r.status_code == 400
    assert r.json()["error"]["details"]["field"] == "secret"


async def test_another_accounts_webhook_cannot_be_deleted_or_seen(
    http: httpx.AsyncClient, platform: RunningPlatform, base_url: str, receiver: Receiver
) -> None:
    mine = await create_webhook(http, receiver.url(receiver.new_path()), ["processing.completed"])
    other = await new_key(platform, plan="free")
    async with client_for(base_url, other) as client:
        r = await client.delete(f"/webhooks/{mine['id']}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        assert (await client.get("/webhooks")).json() == {"webhooks": []}
    assert mine["id"] in [w["id"] for w in (await http.get("/webhooks")).json()["webhooks"]]
    await http.delete(f"/webhooks/{mine['id']}")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://172.16.5.4/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://[::1]/hook",
        "http://[fd00:ec2::254]/hook",
        "http://[fe80::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
    ],
)
async def test_private_destinations_are_refused_by_default(
    http: httpx.AsyncClient, platform: RunningPlatform, url: str
) -> None:
    hub = platform.runtime.webhooks
    allowed = hub.config
    hub.config = dataclasses.replace(allowed, allow_private_urls=False)  # the default policy, for this call
    try:
        r = await http.post("/webhooks", json={"url": url, "events": ["processing.completed"]})
    finally:
        hub.config = allowed
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_parameters"
    assert r.json()["error"]["details"]["field"] == "url"
    assert "public address" in r.json()["error"]["message"]


async def test_public_addresses_pass_the_policy() -> None:
    for ip in ("93.184.216.34", "8.8.8.8", "[2606:4700:4700::1111]"):
        assert await check_destination(parse_webhook_url(f"https://{ip}/hook"), allow_private=False)
    import ipaddress

    assert not is_public_address(ipaddress.ip_address("64:ff9b::a00:1"))  # NAT64 of 10.0.0.1


async def test_delivery_time_check_refuses_a_name_that_now_resolves_privately(receiver: Receiver) -> None:
    """DNS rebinding: a name that passed at creation is resolved and checked again at delivery."""
    path = receiver.new_path()
    strict = Dispatcher(None, dataclasses.replace(_webhook_settings(), allow_private_urls=False))  # type: ignore[arg-type]
    strict.open_client()
    lenient = Dispatcher(None, _webhook_settings())  # type: ignore[arg-type]
    lenient.open_client()
    delivery = Claimed(
        id="msg_rebinding",
        webhook_id="wh_x",
        payload='{"event":"e"}',
        attempt=1,
        url=f"http://localhost:{receiver.port}{path}",
        secret=None,
    )
    try:
        refused = await strict.send(delivery)
        assert not refused.delivered
        assert refused.error is not None and refused.error.startswith("refused")
        assert receiver.at(path) == []
        allowed = await lenient.send(delivery)
        assert allowed.delivered and allowed.status_code == 200
        assert len(receiver.at(path)) == 1
    finally:
        await strict.close()
        await lenient.close()


def _webhook_settings() -> Any:
    from server.webhook_delivery.settings import WebhookSettings

    return WebhookSettings.from_table(dict(TEST_WEBHOOKS))


async def test_check_destination_refuses_loopback_names() -> None:
    with pytest.raises(DestinationRefused):
        await check_destination(parse_webhook_url("http://localhost/x"), allow_private=False)
    with pytest.raises(DestinationRefused):
        await check_destination(parse_webhook_url("http://app.localhost/x"), allow_private=False)


# --- deliveries --------------------------------------------------------------------------------


async def test_signed_delivery_of_a_completed_process(
    http: httpx.AsyncClient, platform: RunningPlatform, receiver: Receiver
) -> None:
    path = receiver.new_path()
    hook = await create_webhook(http, receiver.url(path), ["processing.completed"], SECRET)
    body = (await http.post("/process", json={"input": "Say hi", "model": MODEL, "options": SHORT})).json()
    got = await receiver.wait_for(path, 1)
    assert len(got) == 1
    delivery = next(iter(got.values()))
    assert re.fullmatch(r"msg_[0-9a-f]{16}", delivery.headers["webhook-id"])
    assert delivery.headers["content-type"] == "application/json"
    assert header_signature_ok(delivery, SECRET)
    assert body_signature_ok(delivery, SECRET)
    payload = delivery.json()
    assert list(payload) == ["event", "timestamp", "data", "signature"]
    assert payload["event"] == "processing.completed"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["timestamp"])
    data = payload["data"]
    assert data["id"] == body["id"]
    assert data["type"] == "process"
    assert data["status"] == "completed"
    assert data["output"] == body["output"]
    assert data["usage"] == body["usage"]
    assert data["createdAt"] == body["createdAt"]
    _verify_with_the_python_sdk(delivery.body, delivery.headers, SECRET)
    # The outbox row and its attempt are recorded.
    rows = await settled(platform, hook["id"], 1)
    assert [(r.id, r.status, r.attempts) for r in rows] == [(delivery.id, "delivered", 1)]
    await http.delete(f"/webhooks/{hook['id']}")


def _verify_with_the_python_sdk(body: bytes, headers: dict[str, str], secret: str) -> None:
    """The SDK in clients/python must accept what the server sends."""
    src = str(ROOT / "clients" / "python" / "src")
    if not Path(src, "plutos_ai", "webhooks.py").exists():
        return
    sys.path.insert(0, src)
    try:
        from plutos_ai import webhooks
    except ImportError:
        return
    finally:
        sys.path.remove(src)
    assert webhooks.verify(body, headers, secret)["event"]


async def test_generated_secret_signs_deliveries_the_standardwebhooks_package_verifies(
    http: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = receiver.new_path()
    hook = await create_webhook(http, receiver.url(path), ["processing.completed"])
    await http.post("/process", json={"input": "Hello", "model": MODEL, "options": SHORT})
    (delivery,) = (await receiver.wait_for(path, 1)).values()
    assert list(delivery.json()) == ["event", "timestamp", "data", "signature"]
    assert header_signature_ok(delivery, hook["secret"])  # standardwebhooks.Webhook("whsec_…").verify
    assert body_signature_ok(delivery, hook["secret"])
    assert not header_signature_ok(delivery, SECRET)
    await http.delete(f"/webhooks/{hook['id']}")


async def test_a_webhook_stored_without_secret_is_sent_unsigned(
    http: httpx.AsyncClient, platform: RunningPlatform, receiver: Receiver
) -> None:
    """Webhooks created before secrets were generated have none; their deliveries carry no signature."""
    path = receiver.new_path()
    hook = await create_webhook(http, receiver.url(path), ["processing.completed"])
    async with platform.runtime.sessions.begin() as session:
        await session.execute(update(Webhook).where(Webhook.id == hook["id"]).values(secret=None))
    await http.post("/process", json={"input": "Hello", "model": MODEL, "options": SHORT})
    (delivery,) = (await receiver.wait_for(path, 1)).values()
    assert list(delivery.json()) == ["event", "timestamp", "data"]
    assert "webhook-signature" not in delivery.headers
    assert {"webhook-id", "webhook-timestamp"} <= set(delivery.headers)
    await http.delete(f"/webhooks/{hook['id']}")


async def test_only_subscribed_events_of_the_own_account_are_written(
    http: httpx.AsyncClient, platform: RunningPlatform, base_url: str, receiver: Receiver
) -> None:
    failed_only = await create_webhook(http, receiver.url(receiver.new_path()), ["processing.failed"])
    other = await new_key(platform, plan="free")
    async with client_for(base_url, other) as client:
        others = await create_webhook(client, receiver.url(receiver.new_path()), ["processing.completed"])
        r = await http.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})
        assert r.status_code == 200
        # Events are written in the record's transaction: after the response their absence is final.
        assert await deliveries_of(platform, failed_only["id"]) == []
        assert await deliveries_of(platform, others["id"]) == []
        await client.delete(f"/webhooks/{others['id']}")
    await http.delete(f"/webhooks/{failed_only['id']}")


async def test_batch_sends_one_event_per_item(
    http: httpx.AsyncClient, platform: RunningPlatform, receiver: Receiver
) -> None:
    path = receiver.new_path()
    hook = await create_webhook(http, receiver.url(path), ["processing.completed", "processing.failed"])
    r = await http.post("/batch", json={"inputs": ["One", "", "Three"], "model": MODEL, "options": SHORT})
    assert r.status_code == 200, r.text
    batch = r.json()
    got = await receiver.wait_for(path, 3)
    events = sorted((d.json() for d in got.values()), key=lambda p: p["data"]["batchIndex"])
    assert [p["event"] for p in events] == ["processing.completed", "processing.failed", "processing.completed"]
    assert {p["data"]["batchId"] for p in events} == {batch["id"]}
    assert [p["data"]["batchIndex"] for p in events] == [0, 1, 2]
    assert all(p["data"]["type"] == "batch" for p in events)
    assert events[1]["data"]["error"] == {"code": "invalid_parameters"}
    assert [p["data"]["output"] for p in events] == [res["output"] for res in batch["results"]]
    await http.delete(f"/webhooks/{hook['id']}")


async def test_cancelled_stream_sends_processing_failed(http: httpx.AsyncClient, receiver: Receiver) -> None:
    path = receiver.new_path()
    hook = await create_webhook(http, receiver.url(path), ["processing.failed"])
    body = {"input": "Write a very long story about the sea.", "model": MODEL, "options": {"maxTokens": 400}}
    async with http.stream("POST", "/stream", json=body) as response:
        async for chunk in response.aiter_raw():
            if b"partial" in chunk:
                break  # leave after the first chunk: the server cancels the generation
    (delivery,) = (await receiver.wait_for(path, 1)).values()
    payload = delivery.json()
    assert payload["event"] == "processing.failed"
    assert payload["data"]["type"] == "stream"
    assert payload["data"]["status"] == "cancelled"
    assert payload["data"]["error"] == {"code": "cancelled"}
    assert 0 < payload["data"]["usage"]["completionTokens"] < 400
    await http.delete(f"/webhooks/{hook['id']}")


async def test_receiver_error_is_retried_with_the_same_id(
    http: httpx.AsyncClient, platform: RunningPlatform, receiver: Receiver
) -> None:
    path = receiver.new_path(lambda nth: 500 if nth == 1 else 200)
    hook = await create_webhook(http, receiver.url(path), ["processing.completed"], "plain-secret")
    await http.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})
    got = await receiver.wait_for(path, 1)
    assert len(got) == 1
    attempts = receiver.at(path)
    assert [a.status for a in attempts] == [500, 200]
    assert attempts[0].id == attempts[1].id  # receivers dedupe by webhook-id
    assert attempts[0].body == attempts[1].body
    assert all(header_signature_ok(a, "plain-secret") for a in attempts)
    (row,) = await settled(platform, hook["id"], 1)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 200)
    async with platform.runtime.sessions() as session:
        recorded = (
            await session.execute(
                select(WebhookAttempt.attempt, WebhookAttempt.status_code, WebhookAttempt.error)
                .where(WebhookAttempt.delivery_id == row.id)
                .order_by(WebhookAttempt.attempt)
            )
        ).all()
    assert [tuple(r) for r in recorded] == [(1, 500, "HTTP 500"), (2, 200, None)]
    await http.delete(f"/webhooks/{hook['id']}")


async def test_delivery_fails_after_the_last_attempt(
    http: httpx.AsyncClient, platform: RunningPlatform, receiver: Receiver
) -> None:
    path = receiver.new_path(lambda nth: 503)
    hook = await create_webhook(http, receiver.url(path), ["processing.completed"])
    await http.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})
    (row,) = await settled(platform, hook["id"], 1)
    attempts = 1 + len(TEST_WEBHOOKS["retry_schedule"])  # type: ignore[arg-type]
    assert (row.status, row.attempts, row.last_status_code, row.last_error) == ("failed", attempts, 503, "HTTP 503")
    assert len(receiver.at(path)) == attempts
    async with platform.runtime.sessions() as session:
        count = (await session.execute(select(func.count()).where(WebhookAttempt.delivery_id == row.id))).scalar_one()
    assert count == attempts
    await http.delete(f"/webhooks/{hook['id']}")


# --- a platform with a tiny monthly quota and a model that fails mid-generation ----------------


class FailingBackend(Backend):
    """Produces three tokens, then fails as an upstream would. (A real model cannot be made to
    fail half-way on demand; this is the one fake here.)"""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    async def prepare(self, text: str, params: GenerationParams) -> PreparedPrompt:
        return PreparedPrompt(text=text, params=params, prompt_tokens=len(text.split()))

    async def stream(self, prompt: PreparedPrompt, state: GenerationState) -> AsyncGenerator[str, None]:
        for word in ("one ", "two ", "three "):
            state.completion_tokens += 1
            state.text_parts.append(word)
            yield word
        raise PlutosError("upstream_error", "The upstream model went away.")


FAILING_MODEL = "failing-test-model"


@pytest.fixture(scope="module")
async def quota_platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningPlatform]:
    BACKENDS["test-failing"] = FailingBackend
    base = settings_for_tests(tmp_path_factory.mktemp("quota"))
    plans = {**base.plans, "tiny": Plan("tiny", 1000, 10000, 100000, 10, monthly_tokens=150)}
    failing = ModelSpec(
        id=FAILING_MODEL,
        name="Failing",
        description="",
        max_tokens=100,
        supports_streaming=True,
        input_price=base.models[0].input_price,
        output_price=base.models[0].output_price,
        backend="test-failing",
    )
    running = await start_platform(dataclasses.replace(base, plans=plans, models=[*base.models, failing]))
    yield running
    await running.stop(grace=1)
    BACKENDS.pop("test-failing", None)


async def test_usage_thresholds_fire_once_each(quota_platform: RunningPlatform, receiver: Receiver) -> None:
    key = await new_key(quota_platform, plan="tiny")
    path = receiver.new_path()
    async with client_for(f"http://127.0.0.1:{quota_platform.http_port}/v1", key) as client:
        hook = await create_webhook(client, receiver.url(path), ["usage.threshold"], SECRET)
        used = 0
        for _ in range(20):  # ~30 tokens a call against a quota of 150
            r = await client.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})
            used += r.json()["usage"]["totalTokens"]
            if used >= 150:
                break
        assert used >= 150
        for _ in range(2):  # further calls past the quota fire nothing new
            await client.post("/process", json={"input": "Hi", "model": MODEL, "options": SHORT})
    got = await receiver.wait_for(path, 3)
    payloads = sorted((d.json() for d in got.values()), key=lambda p: p["data"]["threshold"])
    assert [p["data"]["threshold"] for p in payloads] == [0.5, 0.8, 1.0]
    for p in payloads:
        assert p["event"] == "usage.threshold"
        assert p["data"]["monthlyTokens"] == 150
        assert p["data"]["plan"] == "tiny"
        assert p["data"]["usedTokens"] >= p["data"]["threshold"] * 150
        assert re.fullmatch(r"\d{4}-\d\d", p["data"]["period"])
    assert all(body_signature_ok(d, SECRET) and header_signature_ok(d, SECRET) for d in got.values())
    rows = await settled(quota_platform, hook["id"], 3)
    assert len(rows) == 3  # once per threshold, however many calls followed
    async with quota_platform.runtime.sessions() as session:
        crossings = (
            await session.execute(
                select(UsageThresholdCrossing.threshold_bp).where(UsageThresholdCrossing.account_id == key.account_id)
            )
        ).scalars()
        assert sorted(crossings) == [5000, 8000, 10000]


async def test_failed_generation_sends_processing_failed_and_bills_what_was_made(
    quota_platform: RunningPlatform, receiver: Receiver
) -> None:
    key = await new_key(quota_platform)
    path = receiver.new_path()
    async with client_for(f"http://127.0.0.1:{quota_platform.http_port}/v1", key) as client:
        await create_webhook(client, receiver.url(path), ["processing.failed"])
        r = await client.post("/process", json={"input": "four words of input", "model": FAILING_MODEL})
        assert r.status_code == 502
        assert r.json()["error"]["code"] == "upstream_error"
        async with client.stream("POST", "/stream", json={"input": "two words", "model": FAILING_MODEL}) as s:
            raw = b"".join([chunk async for chunk in s.aiter_raw()])
        assert b"event: error" in raw
        got = await receiver.wait_for(path, 2)  # the stream's record is written after it ends
        usage = (await client.get("/usage")).json()["usage"]
    by_type = {d.json()["data"]["type"]: d.json()["data"] for d in got.values()}
    assert set(by_type) == {"process", "stream"}
    for data, prompt in ((by_type["process"], 4), (by_type["stream"], 2)):
        assert data["status"] == "failed"
        assert data["error"] == {"code": "upstream_error"}
        assert data["output"] == "one two three "
        assert data["usage"] == {"promptTokens": prompt, "completionTokens": 3, "totalTokens": prompt + 3}
    # Both calls are billed for the tokens produced before the failure.
    assert usage["totalRequests"] == 2
    assert usage["totalTokens"] == (4 + 3) + (2 + 3)
    assert usage["requestsByModel"] == {FAILING_MODEL: 2}


async def test_racing_writers_fire_each_threshold_once(quota_platform: RunningPlatform, receiver: Receiver) -> None:
    """Two writers (as two replicas would) cross the thresholds at the same moment: each fires once."""
    key = await new_key(quota_platform, plan="tiny")
    async with client_for(f"http://127.0.0.1:{quota_platform.http_port}/v1", key) as client:
        hook = await create_webhook(client, receiver.url(receiver.new_path()), ["usage.threshold"])
    runtime = quota_platform.runtime
    writers = []
    for _ in range(2):
        writer = RecordWriter(runtime.sessions)
        writer.add_hook(roll_up_usage)
        writer.add_hook(Outbox(runtime.settings.plans, runtime.webhooks.config).write_events)
        writer.start()
        writers.append(writer)
    now = datetime.now(UTC)

    def entry() -> LedgerEntry:
        return LedgerEntry(
            account_id=key.account_id,
            key_id=key.id,
            record_id="proc_race",
            model=MODEL,
            prompt_tokens=8,
            completion_tokens=2,
            cost_units=0,
            counts_as_request=1,
            created_at=now,
        )

    try:
        # 30 entries of 10 tokens (quota 150) written concurrently through both writers.
        await asyncio.gather(*(writers[i % 2].write(entry()) for i in range(30)))
    finally:
        for writer in writers:
            await writer.close()
    rows = await deliveries_of(quota_platform, hook["id"])
    thresholds = sorted(json.loads(r.payload)["data"]["threshold"] for r in rows)
    assert thresholds == [0.5, 0.8, 1.0]


# --- durability: kill -9 of a real server process ----------------------------------------------


def _write_config(tmp: Path) -> Path:
    cfg = tmp / "plutos.toml"
    cfg.write_text(
        "[webhooks]\n"
        "allow_private_urls = true\n"
        "retry_schedule = [0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3]\n"
        "timeout = 2.0\n"
        "lease = 3.0\n"
        "poll_interval = 0.1\n"
        "concurrency = 2\n"
    )
    return cfg


async def _serve(cfg: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`plutos serve` in a subprocess; returns once it announces its REST address (bounded)."""
    proc = spawn_serve(cfg, env, log, "--http-port", "0", "--grpc-port", "0")
    try:
        urls = await announced_urls(proc, log)
    except AssertionError:
        proc.kill()
        raise
    return proc, urls[0]


async def eventually(predicate: Callable[[], bool], timeout: float = 30) -> bool:
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


@pytest.mark.sqlite_only
async def test_kill_9_with_pending_deliveries_loses_no_event(tmp_path: Path, receiver: Receiver) -> None:
    cfg = _write_config(tmp_path)
    env = {**os.environ, "PLUTOS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'kill.db'}"}
    env.pop("PLUTOS_CONFIG", None)
    key = plutos_json(cfg, env, "keys", "create", "--plan", "enterprise", "--json")
    gate = threading.Event()  # the receiver hangs until the gate opens: deliveries stay in flight
    path = receiver.new_path(lambda nth: 200 if gate.wait(timeout=20) else 599)

    proc, base_url = await _serve(cfg, env, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=120
        ) as client:
            await create_webhook(client, receiver.url(path), ["processing.completed"], SECRET)
            ids = []
            for i in range(6):
                r = await client.post("/process", json={"input": f"Count {i}", "model": MODEL, "options": SHORT})
                assert r.status_code == 200
                ids.append(r.json()["id"])
        assert await eventually(lambda: receiver.arrivals.get(path, 0) > 0), "no delivery was in flight"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    # Nothing was acknowledged before the kill. Let the hung handlers finish, then restart.
    gate.set()
    assert await eventually(lambda: len(receiver.at(path)) >= receiver.arrivals.get(path, 0))
    before_restart = len(receiver.at(path))

    proc, _ = await _serve(cfg, env, tmp_path / "second.log")
    try:
        deadline = time.monotonic() + 60
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline and len(seen) < len(ids):
            for got in receiver.at(path)[before_restart:]:
                if got.status == 200:
                    seen[got.id] = got
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert sorted(g.json()["data"]["id"] for g in seen.values()) == sorted(ids)
    assert all(header_signature_ok(g, SECRET) and body_signature_ok(g, SECRET) for g in seen.values())


@pytest.mark.sqlite_only
async def test_kill_9_mid_flow_duplicates_only_what_was_in_flight(tmp_path: Path, receiver: Receiver) -> None:
    """The duplicate rate of at-least-once delivery across a kill -9 (docs/security.md): a receiver
    answering 200 in ~50 ms, 30 events flowing, the server killed mid-flow and restarted."""
    cfg = _write_config(tmp_path)
    env = {**os.environ, "PLUTOS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'dup.db'}"}
    env.pop("PLUTOS_CONFIG", None)
    key = plutos_json(cfg, env, "keys", "create", "--plan", "enterprise", "--json")

    def answer_in_50ms(nth: int) -> int:
        time.sleep(0.05)
        return 200

    path = receiver.new_path(answer_in_50ms)
    proc, base_url = await _serve(cfg, env, tmp_path / "first.log")
    try:
        async with httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {key['key']}"}, timeout=120
        ) as client:
            await create_webhook(client, receiver.url(path), ["processing.completed"], SECRET)
            inputs = [f"Say {i}" for i in range(30)]
            r = await client.post("/batch", json={"inputs": inputs, "model": MODEL, "options": {"maxTokens": 1}})
            assert r.status_code == 200
        assert await eventually(lambda: len(receiver.at(path)) >= 5), "deliveries did not start"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    proc, _ = await _serve(cfg, env, tmp_path / "second.log")
    try:
        delivered = await receiver.wait_for(path, 30, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert len(delivered) == 30  # nothing lost
    answered = [g.id for g in receiver.at(path) if g.status == 200]
    duplicates = len(answered) - len(set(answered))
    print(f"\n{duplicates} of 30 events delivered twice across the kill -9 (concurrency 2)")
    assert duplicates <= 10  # only those in flight or not yet recorded at the kill, never the backlog


async def test_a_held_claims_lease_is_renewed_and_a_stale_one_is_not(platform: RunningPlatform) -> None:
    """A claim this process still holds (sending, or recording a slow outcome) keeps its lease, so
    no other dispatcher sends it again meanwhile; a claim superseded by a newer attempt is left alone.

    The two rows are claims as a dispatcher leaves them: pending, with the lease (an hour here) in
    next_attempt_at. Not due, so the session platform's own running dispatcher never claims them
    under the test, however slow the machine (rows due now were its to take between the insert and
    the renewal, changing the very columns under test)."""
    sessions = platform.runtime.sessions
    now = datetime.now(UTC)
    claimed_until = now + timedelta(hours=1)
    ids = ["msg_lease_1", "msg_lease_2"]
    async with sessions.begin() as s:
        for delivery_id in ids:
            s.add(
                WebhookDelivery(
                    id=delivery_id,
                    webhook_id="wh_gone",
                    account_id="acct_lease",
                    event="processing.completed",
                    payload="{}",
                    status="pending",
                    attempts=1,
                    next_attempt_at=claimed_until,
                    created_at=now,
                )
            )
    try:
        dispatcher = Dispatcher(sessions, dataclasses.replace(_webhook_settings(), lease=2 * 3600.0))
        await dispatcher.renew({"msg_lease_1": 1, "msg_lease_2": 0})  # 2: our claim was attempt 0, now stale
        async with sessions() as s:
            rows = (await s.execute(select(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))).scalars()
            due = {d.id: (d.next_attempt_at, d.attempts, d.status) for d in rows}
    finally:
        async with sessions.begin() as s:
            await s.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    # Renewed: a new lease from the renewal on (two hours), past the claim's; the row is otherwise as it was.
    assert due["msg_lease_1"][0] >= now + timedelta(hours=2)
    assert due["msg_lease_1"][1:] == (1, "pending")
    assert due["msg_lease_2"] == (claimed_until, 1, "pending")
