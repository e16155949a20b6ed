"""A revoked or rotated-out key, or a suspended account, stops working on every replica: two
replicas on one store and one Redis, with an auth cache TTL far longer than the test, so only the
Redis pub/sub invalidation (server/auth_invalidation.py) can explain the other replica's 401/403."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.app import RunningPlatform
from server.keys import ADMIN_SCOPES, DEFAULT_SCOPES
from tests.conftest import new_key
from tests.limits_support import bearer, http_client, platform_with, wait_until
from tests.redis_support import RedisServer

LONG_TTL = 600.0  # seconds: longer than the whole test


@pytest.fixture(scope="module")
async def replicas(platform: RunningPlatform, redis_server: RedisServer) -> AsyncIterator[list[RunningPlatform]]:
    async with (
        platform_with(platform, redis_url=redis_server.url, auth_cache_ttl=LONG_TTL) as a,
        platform_with(platform, redis_url=redis_server.url, auth_cache_ttl=LONG_TTL) as b,
    ):
        for running in (a, b):
            invalidation = running.runtime.authenticator.invalidation
            assert invalidation is not None
            await wait_until(lambda inv=invalidation: _subscribed(inv), "the replicas to subscribe")  # type: ignore[misc]
        yield [a, b]


async def _subscribed(invalidation: object) -> bool:
    return bool(invalidation.subscribed.is_set())  # type: ignore[attr-defined]


async def status_on(client: httpx.AsyncClient, secret: str) -> int:
    return (await client.get("/models", headers=bearer(secret))).status_code


async def test_revocation_rotation_and_suspension_reach_the_other_replica(
    platform: RunningPlatform, replicas: list[RunningPlatform]
) -> None:
    a, b = replicas
    owner = await new_key(platform, plan="pro", scopes=[*DEFAULT_SCOPES, "keys"])
    victim = await new_key(platform, plan="pro", account_id=owner.account_id)
    rotated = await new_key(platform, plan="pro", account_id=owner.account_id)
    operator = await new_key(platform, plan="enterprise", scopes=list(ADMIN_SCOPES))
    async with http_client(a) as on_a, http_client(b) as on_b:
        for secret in (owner.secret, victim.secret, rotated.secret):
            assert await status_on(on_b, secret) == 200  # now cached on B for LONG_TTL

        r = await on_a.post(f"/keys/{victim.id}:revoke", json={}, headers=bearer(owner.secret))
        assert r.status_code == 200, r.text
        r = await on_a.post(f"/keys/{rotated.id}:rotate", json={"graceSeconds": 0}, headers=bearer(owner.secret))
        assert r.status_code == 200, r.text
        successor = r.json()["secret"]

        async def gone_on_b() -> bool:
            return await status_on(on_b, victim.secret) == 401 and await status_on(on_b, rotated.secret) == 401

        await wait_until(gone_on_b, "B to refuse the revoked and the rotated-out key", within=20)
        assert await status_on(on_b, successor) == 200

        r = await on_a.patch(
            f"/admin/accounts/{owner.account_id}", json={"suspended": True}, headers=bearer(operator.secret)
        )
        assert r.status_code == 200, r.text

        async def suspended_on_b() -> bool:
            return await status_on(on_b, owner.secret) == 403

        await wait_until(suspended_on_b, "B to see the suspension", within=20)
        r = await on_b.get("/models", headers=bearer(owner.secret))
        assert r.json()["error"]["code"] == "account_suspended"
