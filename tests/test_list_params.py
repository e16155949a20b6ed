"""The rules every list shares, over REST and gRPC: ``limit`` is 1..100 when given (0 is out of
range like 101: 400 ``invalid_parameters``, field ``limit``; unset: 20) on every paginated list,
and one date rule on every date-filtered one (``/v1/process``, ``/v1/usage``, ``/v1/usage/daily``):
a ``start_date`` after today (UTC) → 400 on ``start_date``, an ``end_date`` before ``start_date``
→ 400 on ``end_date``, a future ``end_date`` is fine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.message import Message
from plutos.v1 import admin_pb2, keys_pb2, models_pb2, openai_pb2, processing_pb2, usage_pb2, webhooks_pb2

from bridge.routes import bindings_for_modules
from core.field_ranges import declared_range
from gateway.app import RunningPlatform
from server.keys import ADMIN_SCOPES
from server.store.models import utcnow
from tests.conftest import GrpcClients, new_key, rich_status
from tests.limits_support import bearer, md
from tests.webhooks_support import create_webhook


async def grpc_field(call: Awaitable[Any]) -> str:
    """The ``field`` of a gRPC call's INVALID_ARGUMENT (BadRequest field violation)."""
    from google.rpc import error_details_pb2

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value
    status = rich_status(caught.value)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return str(bad.field_violations[0].field)
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            if "field" in info.metadata:
                return str(info.metadata["field"])
    raise AssertionError(f"no field in {status}")


API_MODULES = (admin_pb2, keys_pb2, models_pb2, openai_pb2, processing_pb2, usage_pb2, webhooks_pb2)
ListCase = tuple[str, str, Callable[..., Awaitable[Any]], Callable[..., Message]]


async def every_list(platform: RunningPlatform, base_url: str, grpc_clients: GrpcClients) -> list[ListCase]:
    """(REST path, a key that may read it, its RPC, its request type) of every paginated list —
    checked against the bridge's routes: a new list RPC must be added here."""
    admin = await new_key(platform, plan="enterprise", scopes=list(ADMIN_SCOPES))
    user = await new_key(platform, plan="pro")
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(user.secret)) as client:
        hook = await create_webhook(client, "http://127.0.0.1:9/hook", ["processing.completed"])
    lists: list[ListCase] = [
        ("/process", user.secret, grpc_clients.processing.ListProcesses, processing_pb2.ListProcessesRequest),
        ("/admin/accounts", admin.secret, grpc_clients.admin.ListAccounts, admin_pb2.ListAccountsRequest),
        ("/admin/audit", admin.secret, grpc_clients.admin.ListAuditEvents, admin_pb2.ListAuditEventsRequest),
        (
            f"/webhooks/{hook['id']}/deliveries",
            user.secret,
            grpc_clients.webhooks.ListWebhookDeliveries,
            lambda **kw: webhooks_pb2.ListWebhookDeliveriesRequest(webhook_id=hook["id"], **kw),
        ),
    ]
    bindings = bindings_for_modules(API_MODULES)
    paginated = {b.path for b in bindings if "limit" in b.request_type.DESCRIPTOR.fields_by_name}
    assert paginated == {"/v1" + path.replace(hook["id"], "{webhook_id}") for path, *_ in lists}
    return lists


def test_every_limit_declares_the_documented_bounds() -> None:
    """One fact in protos/: each request's ``limit`` is ``(plutos.v1.int_range) = {min: 1, max: 100}``,
    which the server checks and the bridge and the OpenAPI document name."""
    limits = [
        message.fields_by_name["limit"]
        for module in API_MODULES
        for message in module.DESCRIPTOR.message_types_by_name.values()
        if "limit" in message.fields_by_name
    ]
    assert len(limits) == 4
    assert {declared_range(field) for field in limits} == {(1, 100)}


async def test_limit_zero_is_out_of_range_on_every_paginated_list(
    platform: RunningPlatform, base_url: str, grpc_clients: GrpcClients
) -> None:
    lists = await every_list(platform, base_url, grpc_clients)
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path, secret, rpc, request in lists:
            for limit in (0, 101, -1):
                r = await client.get(path, params={"limit": limit}, headers=bearer(secret))
                assert r.status_code == 400, (path, limit, r.text)
                error = r.json()["error"]
                assert error["code"] == "invalid_parameters" and error["details"]["field"] == "limit", error
                assert await grpc_field(rpc(request(limit=limit), metadata=md(secret))) == "limit"
            # Unset: the default page; 1 and 100 are in range.
            for params in ({}, {"limit": 1}, {"limit": 100}):
                r = await client.get(path, params=params, headers=bearer(secret))
                assert r.status_code == 200, (path, params, r.text)
            await rpc(request(), metadata=md(secret))
            await rpc(request(limit=1), metadata=md(secret))


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("abc", "'abc'"),  # a new user's first try: answered naming int32's range
        ("99999999999", "99999999999"),  # beyond int32
        ("-99999999999", "-99999999999"),
        ("1.5", "'1.5'"),
        ("", "''"),
        ("0x10", "'0x10'"),
        ("9" * 50, "'" + "9" * 50 + "'"),
    ],
)
async def test_a_limit_that_is_no_int32_names_the_documented_bounds_on_every_list(
    platform: RunningPlatform, base_url: str, grpc_clients: GrpcClients, sent: str, shown: str
) -> None:
    """The bridge cannot put such a value in the request's int32: it answers as the server does for
    ``limit=0`` — 400 ``invalid_parameters`` on ``limit`` naming 1 to 100 — never the type's range."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        for path, secret, _, _ in await every_list(platform, base_url, grpc_clients):
            r = await client.get(f"{path}?limit={sent}", headers=bearer(secret))
            assert r.status_code == 400, (path, sent, r.text)
            error = r.json()["error"]
            assert error["code"] == "invalid_parameters" and error["details"] == {"field": "limit"}, error
            assert error["message"] == f"'limit' must be an integer between 1 and 100 (got {shown}).", error


async def test_one_date_rule_on_every_date_filtered_endpoint(
    platform: RunningPlatform, base_url: str, grpc_clients: GrpcClients
) -> None:
    key = await new_key(platform, plan="pro")
    today = utcnow().date()
    tomorrow, yesterday = (today + timedelta(days=1)).isoformat(), (today - timedelta(days=1)).isoformat()
    rest = ("/process", "/usage", "/usage/daily")
    rpcs: list[tuple[Callable[..., Awaitable[Any]], Callable[..., Message]]] = [
        (grpc_clients.processing.ListProcesses, processing_pb2.ListProcessesRequest),
        (grpc_clients.usage.GetUsage, usage_pb2.GetUsageRequest),
        (grpc_clients.usage.GetDailyUsage, usage_pb2.GetDailyUsageRequest),
    ]
    refused = [
        ({"start_date": tomorrow}, "start_date"),
        ({"start_date": tomorrow, "end_date": tomorrow}, "start_date"),
        ({"start_date": "2026-02-30"}, "start_date"),
        ({"end_date": "tomorrow"}, "end_date"),
        ({"start_date": today.isoformat(), "end_date": yesterday}, "end_date"),
    ]
    accepted = [{"start_date": today.isoformat()}, {"start_date": yesterday, "end_date": tomorrow}, {}]
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(key.secret)) as client:
        for path, (rpc, request) in zip(rest, rpcs, strict=True):
            for params, field in refused:
                r = await client.get(path, params=params)
                assert r.status_code == 400, (path, params, r.text)
                assert r.json()["error"]["details"]["field"] == field, (path, params, r.text)
                assert await grpc_field(rpc(request(**params), metadata=md(key.secret))) == field, (path, params)
            for params in accepted:
                r = await client.get(path, params=params)
                assert r.status_code == 200, (path, params, r.text)
                await rpc(request(**params), metadata=md(key.secret))
