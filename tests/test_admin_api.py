"""AdminService and the admin key endpoints over REST and gRPC: accounts with a plan and this month's
usage, plan changes, suspension (403 account_suspended), any account's keys, and the audit trail."""

from __future__ import annotations

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2
from plutos.v1 import admin_pb2, keys_pb2

from gateway.app import RunningPlatform
from server.keys import ADMIN_SCOPES
from server.store.models import UsageDaily, utcnow
from tests.conftest import GrpcClients, new_key, seeded_usage_daily
from tests.limits_support import bearer, error_info, md


@pytest.fixture(scope="module")
async def admin(platform: RunningPlatform, base_url: str) -> httpx.AsyncClient:
    key = await new_key(platform, plan="enterprise", name="operator", scopes=list(ADMIN_SCOPES))
    client = httpx.AsyncClient(base_url=base_url, headers=bearer(key.secret), timeout=60)
    client.key = key  # type: ignore[attr-defined]
    return client


async def test_operator_flow_account_key_suspend_audit(
    platform: RunningPlatform, admin: httpx.AsyncClient, anon: httpx.AsyncClient
) -> None:
    r = await admin.post("/admin/accounts", json={"name": "Acme", "plan": "free"})
    assert r.status_code == 200, r.text
    account = r.json()["account"]
    assert account["plan"] == "free" and account["suspended"] is False and account["keyCount"] == 0
    assert account["usage"] == {"totalRequests": 0, "totalTokens": 0, "totalCost": 0.0}

    r = await admin.post(f"/admin/accounts/{account['id']}/keys", json={"name": "owner", "scopes": ["models", "keys"]})
    assert r.status_code == 200, r.text
    owner = r.json()
    assert owner["key"]["accountId"] == account["id"]
    h = bearer(owner["secret"])
    r = await anon.get("/keys", headers=h)  # the account's own key manages its keys from here on
    assert r.status_code == 200 and [k["id"] for k in r.json()["keys"]] == [owner["key"]["id"]]
    assert (await anon.get("/models", headers=h)).headers["X-RateLimit-Limit"] == "60"  # free

    r = await admin.patch(f"/admin/accounts/{account['id']}", json={"plan": "pro"})
    assert r.status_code == 200 and r.json()["account"]["plan"] == "pro"
    assert (await anon.get("/models", headers=h)).headers["X-RateLimit-Limit"] == "300"

    r = await admin.patch(f"/admin/accounts/{account['id']}", json={"suspended": True})
    assert r.status_code == 200 and r.json()["account"]["suspended"] is True
    r = await anon.get("/models", headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "account_suspended"
    await admin.patch(f"/admin/accounts/{account['id']}", json={"suspended": False})
    assert (await anon.get("/models", headers=h)).status_code == 200

    r = await admin.get(f"/admin/accounts/{account['id']}/keys")
    assert [k["id"] for k in r.json()["keys"]] == [owner["key"]["id"]]
    r = await admin.post(f"/admin/accounts/{account['id']}/keys/{owner['key']['id']}:revoke", json={})
    assert r.status_code == 200 and r.json()["key"]["status"] == "revoked"
    assert (await anon.get("/models", headers=h)).status_code == 401

    r = await admin.get("/admin/audit", params={"account_id": account["id"], "limit": 100})
    assert r.status_code == 200, r.text
    events = r.json()["data"]
    assert [e["action"] for e in events][::-1] == [
        "account.created",
        "key.created",
        "account.updated",
        "account.updated",
        "account.updated",
        "key.revoked",
    ]
    assert {e["actor"] for e in events} == {admin.key.id}  # type: ignore[attr-defined]
    assert events[-1]["details"] == {"name": "Acme", "plan": "free"}
    assert owner["secret"] not in r.text


async def test_accounts_list_with_month_to_date_usage(platform: RunningPlatform, admin: httpx.AsyncClient) -> None:
    made = [(await admin.post("/admin/accounts", json={"plan": "pro"})).json()["account"] for _ in range(3)]
    today = utcnow().date()
    row = UsageDaily(
        account_id=made[0]["id"],
        day=today,
        model="m",
        requests=3,
        prompt_tokens=10,
        completion_tokens=5,
        cost_units=12_345,
    )
    async with seeded_usage_daily(platform, [row]):
        r = await admin.get("/admin/accounts", params={"limit": 2})
        assert r.status_code == 200, r.text
        page = r.json()
        assert [a["id"] for a in page["data"]] == [made[2]["id"], made[1]["id"]] and page["hasMore"]
        r = await admin.get("/admin/accounts", params={"limit": 1, "after": page["lastId"]})
        first = r.json()["data"][0]
        assert first["id"] == made[0]["id"]
        assert first["usage"] == {"totalRequests": 3, "totalTokens": 15, "totalCost": 1.2345e-06}
        got = await admin.get(f"/admin/accounts/{made[0]['id']}")
        assert got.json()["account"]["usage"]["totalRequests"] == 3


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("POST", "/admin/accounts", {"plan": "platinum"}, 400, "plan"),
        ("PATCH", "/admin/accounts/acct_nope", {"plan": "pro"}, 404, None),
        ("GET", "/admin/accounts/acct_nope", None, 404, None),
        ("POST", "/admin/accounts/acct_nope/keys", {}, 404, None),
        ("GET", "/admin/accounts?limit=0", None, 400, "limit"),  # 0 is out of range, not "the default"
        ("GET", "/admin/audit?limit=500", None, 400, "limit"),
        ("POST", "/admin/accounts", {"plan": "pro", "credit": 5}, 400, None),
    ],
)
async def test_bad_admin_input(
    admin: httpx.AsyncClient, method: str, path: str, body: object, status: int, field: str | None
) -> None:
    r = await admin.request(method, path, json=body if method != "GET" else None)
    assert r.status_code == status, r.text
    if field is not None:
        assert r.json()["error"]["details"]["field"] == field


async def test_admin_key_limits_follow_the_target_plan(admin: httpx.AsyncClient) -> None:
    account = (await admin.post("/admin/accounts", json={"plan": "free"})).json()["account"]
    r = await admin.post(f"/admin/accounts/{account['id']}/keys", json={"limits": {"requestsPerMinute": 61}})
    assert r.status_code == 400 and r.json()["error"]["details"] == {"field": "limits.requestsPerMinute", "max": 60}
    r = await admin.post(f"/admin/accounts/{account['id']}/keys", json={"scopes": ["admin"]})
    assert r.status_code == 400 and r.json()["error"]["details"]["field"] == "scopes"


async def test_admin_over_grpc(platform: RunningPlatform, admin: httpx.AsyncClient, grpc_clients: GrpcClients) -> None:
    meta = md(admin.key.secret)  # type: ignore[attr-defined]
    made = await grpc_clients.admin.CreateAccount(admin_pb2.CreateAccountRequest(name="g", plan="pro"), metadata=meta)
    key = await grpc_clients.keys.CreateKey(
        keys_pb2.CreateKeyRequest(account_id=made.account.id, scopes=["usage"]), metadata=meta
    )
    assert key.key.account_id == made.account.id
    updated = await grpc_clients.admin.UpdateAccount(
        admin_pb2.UpdateAccountRequest(id=made.account.id, suspended=True), metadata=meta
    )
    assert updated.account.suspended and updated.account.key_count == 1
    audit = await grpc_clients.admin.ListAuditEvents(
        admin_pb2.ListAuditEventsRequest(account_id=made.account.id), metadata=meta
    )
    assert [e.action for e in audit.data] == ["account.updated", "key.created", "account.created"]
    got = await grpc_clients.admin.GetAccount(admin_pb2.GetAccountRequest(id=made.account.id), metadata=meta)
    assert got.account.suspended and got.account.plan == "pro"
    listed = await grpc_clients.admin.ListAccounts(admin_pb2.ListAccountsRequest(limit=100), metadata=meta)
    assert made.account.id in [a.id for a in listed.data]
    # UpdateKey over gRPC, by update_mask: clear the allow-list, rename.
    changed = await grpc_clients.keys.UpdateKey(
        keys_pb2.UpdateKeyRequest(
            account_id=made.account.id,
            id=key.key.id,
            name="renamed",
            update_mask=field_mask_pb2.FieldMask(paths=["name", "models"]),
        ),
        metadata=meta,
    )
    assert changed.key.name == "renamed" and list(changed.key.models) == [] and list(changed.key.scopes) == ["usage"]
    # A suspended account's key: PERMISSION_DENIED with reason account_suspended.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.keys.ListKeys(keys_pb2.ListKeysRequest(), metadata=md(key.secret))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_info(caught.value)[0] == "account_suspended"
    # Without the admin scope: PERMISSION_DENIED, scope admin.
    plain = await new_key(platform, plan="pro", scopes=["keys"])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.admin.ListAccounts(admin_pb2.ListAccountsRequest(), metadata=md(plain.secret))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
