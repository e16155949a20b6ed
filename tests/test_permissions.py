"""Key scopes, model allow-lists and key lifecycle, over REST and gRPC, and the CLI that sets them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from typing import Any

import grpc
import httpx
import pytest
from plutos.v1 import models_pb2, processing_pb2, usage_pb2, webhooks_pb2

from gateway.app import SERVICE_NAMES, RunningPlatform
from server.keys import SCOPES, revoke_key, rotate_key
from server.permissions import required_scope
from server.store.models import utcnow
from tests.conftest import MODEL, GrpcClients, new_key
from tests.limits_support import bearer, error_info, md

CHEAP = {"input": "Hi", "model": MODEL, "options": {"maxTokens": 1}}

# One call per RPC, over REST: (scope it needs, method, path, JSON body).
REST_CALLS = [
    ("process", "POST", "/process", CHEAP),
    ("process", "GET", "/process/proc_missing", None),
    ("batch", "POST", "/batch", {"inputs": ["Hi"], "model": MODEL, "options": {"maxTokens": 1}}),
    ("stream", "POST", "/stream", CHEAP),
    ("models", "GET", "/models", None),
    ("usage", "GET", "/usage", None),
    ("webhooks", "GET", "/webhooks", None),
    ("webhooks", "POST", "/webhooks", {"url": "https://example.com/hook", "events": ["process.completed"]}),
    ("webhooks", "DELETE", "/webhooks/wh_missing", None),
    ("webhooks", "GET", "/webhooks/wh_missing/deliveries", None),
    ("process", "GET", "/process", None),
    ("usage", "GET", "/usage/daily", None),
    ("keys", "GET", "/keys", None),
    ("keys", "POST", "/keys/key_missing:revoke", {}),
    ("admin", "GET", "/admin/accounts", None),
    ("admin", "GET", "/admin/audit", None),
]


def test_every_rpc_needs_a_known_scope() -> None:
    from google.protobuf import descriptor_pool

    pool = descriptor_pool.Default()
    for service_name in SERVICE_NAMES:
        for method in pool.FindServiceByName(service_name).methods:
            assert required_scope(f"/{service_name}/{method.name}") in SCOPES, method.full_name
    assert required_scope("/plutos.v1.NewService/Method") not in SCOPES  # unmapped RPCs fail closed


@pytest.mark.parametrize(("scope", "method", "path", "body"), REST_CALLS)
async def test_a_key_without_the_scope_gets_403(
    platform: RunningPlatform, anon: httpx.AsyncClient, scope: str, method: str, path: str, body: object
) -> None:
    others = [s for s in SCOPES if s != scope]
    key = await new_key(platform, plan="pro", scopes=others)
    r = await anon.request(method, path, json=body, headers=bearer(key.secret))
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["code"] == "permission_denied" and error["details"] == {"scope": scope}
    assert scope in error["message"]
    assert r.headers["X-RateLimit-Limit"] == "300"  # refused calls still count and carry the figures


@pytest.mark.parametrize(("scope", "method", "path", "body"), REST_CALLS)
async def test_a_key_with_only_that_scope_passes_the_check(
    platform: RunningPlatform, anon: httpx.AsyncClient, scope: str, method: str, path: str, body: object
) -> None:
    key = await new_key(platform, plan="pro", scopes=[scope])
    r = await anon.request(method, path, json=body, headers=bearer(key.secret))
    assert r.status_code != 403, r.text  # 200, or 404 / 501 from the handler itself


async def test_grpc_scopes(platform: RunningPlatform, grpc_clients: GrpcClients) -> None:
    key = await new_key(platform, plan="pro", scopes=["models"])
    meta = md(key.secret)
    assert (await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=meta)).models
    refused: list[grpc.aio.UnaryUnaryCall[Any, Any]] = [
        grpc_clients.processing.Process(processing_pb2.ProcessRequest(input="Hi", model=MODEL), metadata=meta),
        grpc_clients.usage.GetUsage(usage_pb2.GetUsageRequest(), metadata=meta),
        grpc_clients.webhooks.ListWebhooks(webhooks_pb2.ListWebhooksRequest(), metadata=meta),
    ]
    for call in refused:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(caught.value)[0] == "permission_denied"
    stream = grpc_clients.processing.Stream(processing_pb2.StreamRequest(input="Hi", model=MODEL), metadata=meta)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stream.read()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_model_allow_list(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    allowed = await new_key(platform, plan="pro", models=[MODEL])
    assert (await anon.post("/process", json=CHEAP, headers=bearer(allowed.secret))).status_code == 200
    other = await new_key(platform, plan="pro", models=["some-other-model"])
    for path in ("/process", "/stream"):
        r = await anon.post(path, json=CHEAP, headers=bearer(other.secret))
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "permission_denied"
        assert r.json()["error"]["details"] == {"model": MODEL}
    r = await anon.post("/batch", json={"inputs": ["Hi"], "model": MODEL}, headers=bearer(other.secret))
    assert r.status_code == 403


# -- key lifecycle over gRPC (REST is covered in test_auth.py) -------------------------------------


async def assert_grpc_401(grpc_clients: GrpcClients, secret: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=md(secret))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error_info(caught.value)[0] == "invalid_api_key"


async def test_expired_revoked_and_rotated_out_keys_over_grpc(
    platform: RunningPlatform, grpc_clients: GrpcClients, anon: httpx.AsyncClient
) -> None:
    expired = await new_key(platform, plan="free", expires_at=utcnow() - timedelta(seconds=1))
    await assert_grpc_401(grpc_clients, expired.secret)

    revoked = await new_key(platform, plan="free")
    await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=md(revoked.secret))
    await revoke_key(platform.runtime.sessions, revoked.id)
    platform.runtime.authenticator.invalidate()
    await assert_grpc_401(grpc_clients, revoked.secret)

    in_grace = await new_key(platform, plan="free")
    successor = (await rotate_key(platform.runtime.sessions, in_grace.id, timedelta(hours=1))).new
    assert successor is not None
    platform.runtime.authenticator.invalidate()
    for secret in (in_grace.secret, successor.secret):
        await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=md(secret))

    rotated_out = await new_key(platform, plan="free")
    replacement = (await rotate_key(platform.runtime.sessions, rotated_out.id, timedelta(0))).new
    assert replacement is not None
    platform.runtime.authenticator.invalidate()
    await assert_grpc_401(grpc_clients, rotated_out.secret)
    r = await anon.get("/models", headers=bearer(rotated_out.secret))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=md(replacement.secret))


# -- the CLI ---------------------------------------------------------------------------------------


def plutos_cli(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PLUTOS_DATABASE_URL": platform.runtime.settings.database_url}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_cli_creates_keys_with_scopes_models_and_limits(
    platform: RunningPlatform, anon: httpx.AsyncClient
) -> None:
    done = plutos_cli(
        platform, "keys", "create", "--plan", "free", "--scopes", "models,process", "--models", MODEL,
        "--requests-per-minute", "7", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["scopes"] == ["models", "process"] and created["models"] == [MODEL]
    h = bearer(created["key"])
    r = await anon.get("/models", headers=h)
    assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "7"
    assert (await anon.post("/process", json=CHEAP, headers=h)).status_code == 200
    r = await anon.post("/batch", json={"inputs": ["Hi"], "model": MODEL}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["details"] == {"scope": "batch"}


def test_cli_rejects_unknown_scopes(platform: RunningPlatform) -> None:
    done = plutos_cli(platform, "keys", "create", "--scopes", "process,admin")
    assert done.returncode == 2 and "admin" in done.stderr
