"""Authentication over REST and gRPC: keys are hashed; bad, revoked and expired keys get 401."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import grpc
import httpx
import pytest
from plutos.v1 import models_pb2
from sqlalchemy import select

from gateway.app import RunningPlatform
from server.keys import revoke_key, rotate_key
from server.store.models import ApiKey, utcnow
from tests.conftest import GrpcClients, error_trailers, new_key, rich_status


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def assert_401(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_api_key"
    assert r.json()["error"]["requestId"] == r.headers["x-request-id"]


async def test_missing_key(anon: httpx.AsyncClient) -> None:
    await assert_401(await anon.get("/models"))


@pytest.mark.parametrize("header", ["Bearer", "Basic abc", "pk_abc", "Bearer pk_not_a_real_key"])
async def test_malformed_or_unknown_key(anon: httpx.AsyncClient, header: str) -> None:
    await assert_401(await anon.get("/models", headers={"Authorization": header}))


async def test_keys_are_stored_only_as_sha256_with_a_prefix(platform: RunningPlatform) -> None:
    created = await new_key(platform, plan="free")
    async with platform.runtime.sessions() as session:
        row = (await session.execute(select(ApiKey).where(ApiKey.id == created.id))).scalar_one()
    assert row.key_hash == hashlib.sha256(created.secret.encode()).hexdigest()
    assert row.prefix == created.secret[:10]
    assert created.secret not in {row.key_hash, row.prefix, row.name}


async def test_revoked_key_is_rejected(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    created = await new_key(platform, plan="free")
    assert (await anon.get("/models", headers=bearer(created.secret))).status_code == 200
    await revoke_key(platform.runtime.sessions, created.id)
    platform.runtime.authenticator.invalidate()  # skip the cache TTL instead of sleeping
    await assert_401(await anon.get("/models", headers=bearer(created.secret)))


async def test_expired_key_is_rejected(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    created = await new_key(platform, plan="free", expires_at=utcnow() - timedelta(seconds=1))
    r = await anon.get("/models", headers=bearer(created.secret))
    await assert_401(r)
    assert "expired" in r.json()["error"]["message"]


async def test_rotated_key_old_secret_works_during_grace(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    old = await new_key(platform, plan="free")
    new = (await rotate_key(platform.runtime.sessions, old.id, timedelta(hours=1))).new
    assert new is not None and new.account_id == old.account_id
    platform.runtime.authenticator.invalidate()
    assert (await anon.get("/models", headers=bearer(old.secret))).status_code == 200
    assert (await anon.get("/models", headers=bearer(new.secret))).status_code == 200


async def test_rotated_key_without_grace_stops_at_once(platform: RunningPlatform, anon: httpx.AsyncClient) -> None:
    old = await new_key(platform, plan="free")
    new = (await rotate_key(platform.runtime.sessions, old.id, timedelta(0))).new
    assert new is not None
    platform.runtime.authenticator.invalidate()
    await assert_401(await anon.get("/models", headers=bearer(old.secret)))
    assert (await anon.get("/models", headers=bearer(new.secret))).status_code == 200


async def test_grpc_without_key_is_unauthenticated_with_error_info(grpc_clients: GrpcClients) -> None:
    from google.rpc import error_details_pb2

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.models.ListModels(models_pb2.ListModelsRequest())
    err = caught.value
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED
    status = rich_status(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "invalid_api_key"
    request_id = {k: v for k, v in error_trailers(err)}["x-request-id"]
    assert isinstance(request_id, str) and request_id.startswith("req_")


async def test_health_and_reflection_need_no_key(grpc_clients: GrpcClients) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(grpc_clients.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="plutos.v1.ProcessingService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
