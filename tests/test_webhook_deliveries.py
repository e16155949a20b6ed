"""Webhook deliveries over REST and gRPC: the list, redelivery of a failed delivery, and the signed
`ping` of POST /v1/webhooks/{id}:test — against a real receiver and the real dispatcher."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import httpx
from plutos.v1 import webhooks_pb2

from core.ids import new_id
from gateway.app import RunningPlatform
from server.store.models import WebhookDelivery, utcnow
from server.webhook_delivery.events import payload
from tests.conftest import GrpcClients, new_key
from tests.limits_support import bearer, md
from tests.webhook_receiver import Receiver, header_signature_ok
from tests.webhooks_support import SECRET, create_webhook


async def enqueue(platform: RunningPlatform, hook: dict[str, str], *, due_in: float = 0) -> str:
    """An outbox row as the writer makes them (the dispatcher sends it when due)."""
    now = utcnow()
    row = WebhookDelivery(
        id=new_id("msg"),
        webhook_id=hook["id"],
        account_id=hook["accountId"],
        event="processing.completed",
        payload=payload("processing.completed", {"id": "proc_0"}, now),
        status="pending",
        attempts=0,
        next_attempt_at=now + timedelta(seconds=due_in),
        created_at=now,
    )
    async with platform.runtime.sessions.begin() as session:
        session.add(row)
    platform.runtime.webhooks.dispatcher.wake()
    return row.id


async def until(client: httpx.AsyncClient, hook_id: str, status: str, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        r = await client.get(f"/webhooks/{hook_id}/deliveries")
        assert r.status_code == 200, r.text
        first: dict[str, object] = r.json()["data"][0]
        if first["status"] == status or time.monotonic() > deadline:
            return first
        await asyncio.sleep(0.1)


async def test_list_and_redeliver_a_failed_delivery(
    platform: RunningPlatform, base_url: str, receiver: Receiver
) -> None:
    key = await new_key(platform, plan="pro")
    path = receiver.new_path(lambda nth: 503 if nth <= 4 else 200)  # fails all 4 attempts, then works
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(key.secret), timeout=60) as client:
        hook = await create_webhook(client, receiver.url(path), ["processing.completed"])
        hook["accountId"] = key.account_id
        delivery_id = await enqueue(platform, hook)
        failed = await until(client, hook["id"], "failed")
        assert failed["id"] == delivery_id and failed["status"] == "failed"
        assert (failed["attempts"], failed["lastStatusCode"], failed["lastError"]) == (4, 503, "HTTP 503")
        assert failed["event"] == "processing.completed" and "nextAttemptAt" not in failed

        r = await client.post(f"/webhooks/{hook['id']}/deliveries/{delivery_id}:redeliver", json={})
        assert r.status_code == 200, r.text
        assert r.json()["delivery"]["status"] == "pending" and r.json()["delivery"]["attempts"] == 0
        delivered = await until(client, hook["id"], "delivered")
        assert delivered["status"] == "delivered" and delivered["attempts"] == 1
        assert delivered["lastStatusCode"] == 200 and "deliveredAt" in delivered
        assert {got.id for got in receiver.at(path)} == {delivery_id}  # one webhook-id throughout

        # A pending delivery is on its way already; unknown ids and bad filters are refused.
        later = await enqueue(platform, hook, due_in=3600)
        r = await client.post(f"/webhooks/{hook['id']}/deliveries/{later}:redeliver", json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        r = await client.post(f"/webhooks/{hook['id']}/deliveries/msg_nope:redeliver", json={})
        assert r.status_code == 404
        r = await client.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "pending"})
        assert [d["id"] for d in r.json()["data"]] == [later]
        assert r.json()["data"][0]["nextAttemptAt"]
        r = await client.get(f"/webhooks/{hook['id']}/deliveries", params={"status": "lost"})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "status"
        page = (await client.get(f"/webhooks/{hook['id']}/deliveries", params={"limit": 1})).json()
        assert page["hasMore"] and page["data"][0]["id"] == later
        await client.delete(f"/webhooks/{hook['id']}")


async def test_ping_reports_the_receivers_answer(platform: RunningPlatform, base_url: str, receiver: Receiver) -> None:
    key = await new_key(platform, plan="pro")
    ok, broken = receiver.new_path(), receiver.new_path(lambda nth: 500)
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(key.secret), timeout=60) as client:
        hook = await create_webhook(client, receiver.url(ok), ["processing.failed"], SECRET)
        r = await client.post(f"/webhooks/{hook['id']}:test", json={})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["delivered"] is True and answer["statusCode"] == 200 and "error" not in answer
        (got,) = receiver.at(ok)
        assert got.json()["event"] == "ping" and got.id == answer["deliveryId"]
        assert header_signature_ok(got, SECRET)

        bad = await create_webhook(client, receiver.url(broken), ["processing.failed"])
        answer = (await client.post(f"/webhooks/{bad['id']}:test", json={})).json()
        assert answer["delivered"] is False and answer["statusCode"] == 500 and answer["error"] == "HTTP 500"
        # Not stored, not retried.
        assert (await client.get(f"/webhooks/{bad['id']}/deliveries")).json()["data"] == []
        for h in (hook, bad):
            await client.delete(f"/webhooks/{h['id']}")


async def test_another_accounts_webhook_is_not_found(
    platform: RunningPlatform, http: httpx.AsyncClient, anon: httpx.AsyncClient, receiver: Receiver
) -> None:
    hook = await create_webhook(http, receiver.url(receiver.new_path()), ["processing.completed"])
    stranger = await new_key(platform, plan="pro")
    for method, path in [
        ("GET", f"/webhooks/{hook['id']}/deliveries"),
        ("POST", f"/webhooks/{hook['id']}:test"),
        ("POST", f"/webhooks/{hook['id']}/deliveries/msg_x:redeliver"),
    ]:
        r = await anon.request(method, path, json={} if method == "POST" else None, headers=bearer(stranger.secret))
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", (path, r.text)
    await http.delete(f"/webhooks/{hook['id']}")


async def test_deliveries_over_grpc(
    platform: RunningPlatform, base_url: str, grpc_clients: GrpcClients, receiver: Receiver
) -> None:
    key = await new_key(platform, plan="pro")
    path = receiver.new_path()
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(key.secret), timeout=60) as client:
        hook = await create_webhook(client, receiver.url(path), ["processing.completed"])
        hook["accountId"] = key.account_id
        delivery_id = await enqueue(platform, hook)
        await until(client, hook["id"], "delivered")
    meta = md(key.secret)
    listed = await grpc_clients.webhooks.ListWebhookDeliveries(
        webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=hook["id"]), metadata=meta
    )
    assert [d.id for d in listed.data] == [delivery_id] and listed.data[0].last_status_code == 200
    again = await grpc_clients.webhooks.RedeliverWebhookDelivery(
        webhooks_pb2.RedeliverWebhookDeliveryRequest(webhook_id=hook["id"], id=delivery_id), metadata=meta
    )
    assert again.delivery.status == "pending"
    ping = await grpc_clients.webhooks.TestWebhook(webhooks_pb2.TestWebhookRequest(id=hook["id"]), metadata=meta)
    assert ping.delivered and ping.status_code == 200
