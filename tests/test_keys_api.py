"""KeysService over REST and gRPC: self-service with the `keys` scope, what a key may grant, rotation
(with grace, once, exactly one successor under concurrency), revocation, and the `:verb` routes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import httpx
import pytest
from plutos.v1 import keys_pb2
from sqlalchemy import select

from gateway.app import RunningPlatform
from server.keys import DEFAULT_SCOPES
from server.store.models import ApiKey, AuditEvent, utcnow
from tests.conftest import MODEL, GrpcClients, new_key
from tests.limits_support import bearer, error_info, md

SELF_SERVICE = [*DEFAULT_SCOPES, "keys"]


async def self_service_client(platform: RunningPlatform, base_url: str, **kwargs: object) -> httpx.AsyncClient:
    key = await new_key(platform, plan="pro", scopes=SELF_SERVICE, **kwargs)
    client = httpx.AsyncClient(base_url=base_url, headers=bearer(key.secret), timeout=60)
    client.key = key  # type: ignore[attr-defined]
    return client


async def test_a_default_key_cannot_manage_keys(http: httpx.AsyncClient) -> None:
    r = await http.get("/keys")
    assert r.status_code == 403 and r.json()["error"]["details"] == {"scope": "keys"}


async def test_self_service_create_list_get_patch(platform: RunningPlatform, base_url: str) -> None:
    async with await self_service_client(platform, base_url) as client:
        r = await client.post("/keys", json={"name": "ci", "scopes": ["models"], "limits": {"requestsPerMinute": 5}})
        assert r.status_code == 200, r.text
        body = r.json()
        secret, key = body["secret"], body["key"]
        assert secret.startswith("pk_") and key["prefix"] == secret[:10] and key["status"] == "active"
        assert key["scopes"] == ["models"] and key["limits"] == {"requestsPerMinute": 5}
        assert key["accountId"] == client.key.account_id  # type: ignore[attr-defined]

        r = await client.get("/models", headers=bearer(secret))
        assert r.status_code == 200 and r.headers["X-RateLimit-Limit"] == "5"

        listed = await client.get("/keys")
        assert listed.status_code == 200
        assert key["id"] in [k["id"] for k in listed.json()["keys"]]
        assert secret not in listed.text  # the secret is returned once

        got = await client.get(f"/keys/{key['id']}")
        assert got.status_code == 200 and got.json()["key"]["name"] == "ci"

        r = await client.patch(f"/keys/{key['id']}", json={"name": "renamed", "models": [MODEL]})
        assert r.status_code == 200, r.text
        assert r.json()["key"]["name"] == "renamed" and r.json()["key"]["models"] == [MODEL]
        assert r.json()["key"]["scopes"] == ["models"]  # untouched
        r = await client.patch(f"/keys/{key['id']}", json={"models": [], "updateMask": "models"})
        assert r.json()["key"]["models"] == []  # every model again

        async with platform.runtime.sessions() as session:
            actions = (
                await session.execute(select(AuditEvent.action).where(AuditEvent.target_id == key["id"]))
            ).scalars()
            assert sorted(actions) == ["key.created", "key.updated", "key.updated"]


async def test_a_key_cannot_grant_more_than_it_has(platform: RunningPlatform, base_url: str) -> None:
    async with await self_service_client(
        platform, base_url, models=[MODEL], limits={"requests_per_minute": 50}
    ) as client:
        cases = [
            ({"scopes": ["admin"]}, "scopes"),
            ({"scopes": ["teleport"]}, "scopes"),
            ({"models": ["gpt-9"]}, "models"),
            ({"limits": {"requestsPerMinute": 51}}, "limits.requestsPerMinute"),
            ({"limits": {"requestsPerHour": 10**9}}, "limits.requestsPerHour"),  # above the plan
            ({"limits": {"requestsPerDay": 0}}, "limits.requestsPerDay"),
            ({"expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"),
        ]
        for body, field in cases:
            r = await client.post("/keys", json=body)
            assert r.status_code == 400, (body, r.text)
            assert r.json()["error"]["code"] == "invalid_parameters"
            assert r.json()["error"]["details"]["field"] == field, body
        # Unset fields inherit the caller's own restrictions.
        r = await client.post("/keys", json={})
        assert r.status_code == 200, r.text
        child = r.json()["key"]
        assert child["models"] == [MODEL] and child["limits"] == {"requestsPerMinute": 50}
        assert "admin" not in child["scopes"]

    restricted = await new_key(platform, plan="pro", scopes=["keys", "models"])
    r = await httpx.AsyncClient(base_url=base_url).post(
        "/keys", json={"scopes": ["process"]}, headers=bearer(restricted.secret)
    )
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "scopes"


async def test_rotate_with_grace_then_revoke(platform: RunningPlatform, base_url: str, anon: httpx.AsyncClient) -> None:
    expiry = (utcnow() + timedelta(days=3)).replace(microsecond=0)
    async with await self_service_client(platform, base_url) as client:
        r = await client.post("/keys", json={"name": "svc", "expiresAt": expiry.isoformat().replace("+00:00", "Z")})
        old = r.json()
        r = await client.post(f"/keys/{old['key']['id']}:rotate", json={"graceSeconds": 3600})
        assert r.status_code == 200, r.text
        rotated = r.json()
        assert rotated["replaced"]["status"] == "rotated"
        assert rotated["replaced"]["replacedBy"] == rotated["key"]["id"]
        # The replacement inherits the old key's own expiry, not the grace cutoff.
        assert rotated["key"]["expiresAt"] == old["key"]["expiresAt"]
        assert rotated["replaced"]["expiresAt"] < old["key"]["expiresAt"]
        for secret in (old["secret"], rotated["secret"]):
            assert (await anon.get("/models", headers=bearer(secret))).status_code == 200

        # A rotated-out key cannot be rotated again.
        r = await client.post(f"/keys/{old['key']['id']}:rotate", json={})
        assert r.status_code == 409 and r.json()["error"]["code"] == "conflict"
        assert r.json()["error"]["details"]["status"] == "rotated"

        r = await client.post(f"/keys/{rotated['key']['id']}:rotate", json={"graceSeconds": -1})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "graceSeconds"

        r = await client.post(f"/keys/{rotated['key']['id']}:revoke", json={})
        assert r.status_code == 200 and r.json()["key"]["status"] == "revoked"
        # This process forgets the key at once (no waiting for the cache TTL).
        r = await anon.get("/models", headers=bearer(rotated["secret"]))
        assert r.status_code == 401
        r = await client.post(f"/keys/{rotated['key']['id']}:rotate", json={})
        assert r.status_code == 409 and r.json()["error"]["details"]["status"] == "revoked"


async def test_a_key_does_not_revoke_itself_by_accident(platform: RunningPlatform, base_url: str) -> None:
    async with await self_service_client(platform, base_url) as client:
        own = client.key.id  # type: ignore[attr-defined]
        r = await client.post(f"/keys/{own}:revoke", json={})
        assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "allowSelf"
        assert (await client.get("/keys")).status_code == 200
        r = await client.post(f"/keys/{own}:revoke", json={"allowSelf": True})
        assert r.status_code == 200
        assert (await client.get("/keys")).status_code == 401


async def test_other_accounts_keys_are_not_found(platform: RunningPlatform, base_url: str) -> None:
    stranger = await new_key(platform, plan="free")
    async with await self_service_client(platform, base_url) as client:
        for method, path in [
            ("GET", f"/keys/{stranger.id}"),
            ("PATCH", f"/keys/{stranger.id}"),
            ("POST", f"/keys/{stranger.id}:rotate"),
            ("POST", f"/keys/{stranger.id}:revoke"),
            ("GET", "/keys/key_0000000000000000"),
        ]:
            r = await client.request(method, path, json={} if method != "GET" else None)
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "not_found"
        # The admin paths need the admin scope.
        r = await client.get(f"/admin/accounts/{stranger.account_id}/keys")
        assert r.status_code == 403 and r.json()["error"]["details"] == {"scope": "admin"}


async def test_custom_verbs_route_by_method_and_verb(http: httpx.AsyncClient) -> None:
    r = await http.get("/keys/key_x:rotate")
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = await http.post("/keys/key_x:teleport", json={})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = await http.put("/process")  # one path, two RPCs: Allow names both
    assert r.status_code == 405 and {"GET", "POST"} <= set(r.headers["Allow"].split(", "))


async def test_keys_over_grpc(platform: RunningPlatform, grpc_clients: GrpcClients) -> None:
    owner = await new_key(platform, plan="pro", scopes=SELF_SERVICE)
    meta = md(owner.secret)
    created = await grpc_clients.keys.CreateKey(keys_pb2.CreateKeyRequest(name="g", scopes=["usage"]), metadata=meta)
    assert created.secret.startswith("pk_") and list(created.key.scopes) == ["usage"]
    listed = await grpc_clients.keys.ListKeys(keys_pb2.ListKeysRequest(), metadata=meta)
    assert {k.id for k in listed.keys} == {owner.id, created.key.id}
    rotated = await grpc_clients.keys.RotateKey(
        keys_pb2.RotateKeyRequest(id=created.key.id, grace_seconds=0), metadata=meta
    )
    assert rotated.replaced.replaced_by == rotated.key.id
    revoked = await grpc_clients.keys.RevokeKey(keys_pb2.RevokeKeyRequest(id=rotated.key.id), metadata=meta)
    assert revoked.key.status == "revoked"
    try:
        await grpc_clients.keys.GetKey(keys_pb2.GetKeyRequest(id="key_nope"), metadata=meta)
        raise AssertionError("expected NOT_FOUND")
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.NOT_FOUND and error_info(err)[0] == "not_found"


async def test_two_simultaneous_rotations_leave_one_successor(platform: RunningPlatform, base_url: str) -> None:
    async with await self_service_client(platform, base_url) as client:
        target = (await client.post("/keys", json={"name": "contended"})).json()["key"]["id"]
        answers = await asyncio.gather(
            *(client.post(f"/keys/{target}:rotate", json={"graceSeconds": 60}) for _ in range(4))
        )
        assert sorted(r.status_code for r in answers) == [200, 409, 409, 409], [r.text for r in answers]
    async with platform.runtime.sessions() as session:
        old = await session.get(ApiKey, target)
        assert old is not None
        successors = (
            await session.execute(
                select(ApiKey.id).where(ApiKey.account_id == old.account_id, ApiKey.name == "contended")
            )
        ).scalars()
        assert {*successors} == {target, old.replaced_by}


async def test_the_key_cap_holds_under_concurrent_creates(
    platform: RunningPlatform, base_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import server.services.keys

    monkeypatch.setattr(server.services.keys, "MAX_KEYS_PER_ACCOUNT", 3)
    async with await self_service_client(platform, base_url) as client:  # the account's first key
        answers = await asyncio.gather(*(client.post("/keys", json={"name": f"k{i}"}) for i in range(5)))
        assert sorted(r.status_code for r in answers) == [200, 200, 400, 400, 400], [r.text for r in answers]
        refused = next(r for r in answers if r.status_code == 400).json()["error"]
        assert refused["details"] == {"field": "accountId", "max": 3}
        revoked = next(r for r in answers if r.status_code == 200).json()["key"]["id"]
        await client.post(f"/keys/{revoked}:revoke", json={})
        assert (await client.post("/keys", json={})).status_code == 200  # revoked keys do not count


async def test_last_used_at_is_written_off_the_request_path(
    platform: RunningPlatform, base_url: str, grpc_clients: GrpcClients
) -> None:
    """A call notes its key in memory; the authenticator's flush writes ``last_used_at`` (at most
    once per key per interval), shown as ``lastUsedAt`` on REST and ``last_used_at`` on gRPC."""
    owner = await new_key(platform, plan="pro", scopes=[*DEFAULT_SCOPES, "keys"])
    async with httpx.AsyncClient(base_url=base_url, headers=bearer(owner.secret)) as client:
        made = (await client.post("/keys", json={"name": "idle"})).json()
        await platform.runtime.authenticator.flush_last_used()
        idle = (await client.get(f"/keys/{made['key']['id']}")).json()["key"]
        assert "lastUsedAt" not in idle  # never used: unset
        before = utcnow().replace(microsecond=0)
        for _ in range(3):
            r = await client.get("/models", headers=bearer(made["secret"]))
            assert r.status_code == 200
        await platform.runtime.authenticator.flush_last_used()
        used = (await client.get(f"/keys/{made['key']['id']}")).json()["key"]
        assert used["lastUsedAt"] >= before.isoformat().replace("+00:00", "Z"), used
        listed = {k["id"]: k for k in (await client.get("/keys")).json()["keys"]}
        assert listed[made["key"]["id"]]["lastUsedAt"] == used["lastUsedAt"]
    async with platform.runtime.sessions() as session:
        row = await session.get(ApiKey, made["key"]["id"])
        assert row is not None and row.last_used_at is not None and row.last_used_at >= before
    got = await grpc_clients.keys.GetKey(keys_pb2.GetKeyRequest(id=made["key"]["id"]), metadata=md(owner.secret))
    assert got.key.HasField("last_used_at") and got.key.last_used_at.seconds >= int(before.timestamp())
    # A time never moves backwards (another replica's older flush).
    authenticator = platform.runtime.authenticator
    authenticator._used[made["key"]["id"]] = before.timestamp() - 3600
    await authenticator.flush_last_used()
    async with platform.runtime.sessions() as session:
        again = await session.get(ApiKey, made["key"]["id"])
        assert again is not None and again.last_used_at == row.last_used_at
