"""Live tests of the management methods (keys, accounts, audit, history, daily usage, deliveries)
against a running gateway. Run when PLUTOS_TEST_BASE_URL and PLUTOS_TEST_ADMIN_KEY (a key with the
admin scope: `plutos keys create --admin`) are set."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from plutos_ai import (
    AccountSuspendedError,
    AsyncPlutosAI,
    AuthenticationError,
    ConflictError,
    InvalidParametersError,
    NotFoundError,
    PermissionDeniedError,
    PlutosAI,
)
from plutos_testing import LIVE_ADMIN_KEY, LIVE_BASE_URL, LIVE_GRPC_TARGET

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE_BASE_URL and LIVE_ADMIN_KEY), reason="set PLUTOS_TEST_BASE_URL and PLUTOS_TEST_ADMIN_KEY"
    ),
]

SELF_SERVICE = ["process", "batch", "stream", "models", "usage", "webhooks", "keys"]


@pytest.fixture(scope="module")
def admin() -> Iterator[PlutosAI]:
    with PlutosAI(api_key=LIVE_ADMIN_KEY, base_url=LIVE_BASE_URL, timeout=60) as c:
        yield c


def test_operator_then_self_service(admin: PlutosAI) -> None:
    account = admin.create_account(name="sdk-python", plan="free")
    assert account.plan == "free" and not account.suspended and account.usage.total_requests == 0
    owner = admin.create_key(account_id=account.id, name="owner", scopes=SELF_SERVICE)
    assert owner.secret.startswith("pk_") and owner.key.account_id == account.id
    assert admin.get_account(account.id).key_count == 1
    assert account.id in [a.id for a in admin.list_accounts(limit=100).data]

    with PlutosAI(api_key=owner.secret, base_url=LIVE_BASE_URL, timeout=60) as client:
        child = client.create_key(name="child", scopes=["models"], limits={"requests_per_minute": 5})
        assert child.key.scopes == ["models"] and child.key.limits == {"requests_per_minute": 5}
        assert {k.id for k in client.list_keys()} == {owner.key.id, child.key.id}
        assert client.update_key(child.key.id, name="renamed").name == "renamed"
        rotation = client.rotate_key(child.key.id, grace_seconds=60)
        assert rotation.replaced.replaced_by == rotation.key.id and rotation.replaced.status == "rotated"
        with pytest.raises(ConflictError):
            client.rotate_key(child.key.id)
        revoked = client.revoke_key(rotation.key.id)
        assert revoked.status == "revoked" and child.key.last_used_at is None  # never used
        with pytest.raises(InvalidParametersError) as bad:
            client.create_key(scopes=["admin"])
        assert bad.value.details["field"] == "scopes"
        with pytest.raises(InvalidParametersError):
            client.revoke_key(owner.key.id)  # itself, without allow_self
        with pytest.raises(NotFoundError):
            client.get_key("key_0000000000000000")
        with pytest.raises(PermissionDeniedError):
            client.list_accounts()

        page = client.list_processes(limit=5)
        assert page.data == [] and not page.has_more
        assert client.get_daily_usage(dt.date.today().replace(day=1)) == []
        hook = client.create_webhook("http://127.0.0.1:9/sdk-test", ["processing.completed"])
        ping = client.test_webhook(hook.id)
        assert not ping.delivered and ping.error and ping.delivery_id
        assert client.list_webhook_deliveries(hook.id).data == []
        with pytest.raises(NotFoundError):
            client.redeliver_webhook_delivery(hook.id, "msg_0000000000000000")
        client.delete_webhook(hook.id)

        assert admin.update_account(account.id, suspended=True).suspended
        with pytest.raises(AccountSuspendedError):
            client.list_keys()
        admin.update_account(account.id, suspended=False)
        client.revoke_key(owner.key.id, allow_self=True)
        with pytest.raises(AuthenticationError):
            client.list_keys()

        # Every management result carries its response's request id, lists included.
        results: dict[str, object] = {
            "create_key": child,
            "rotate_key": rotation,
            "revoke_key": revoked,
            "list_processes": page,
            "test_webhook": ping,
        }
    results |= {
        "create_account": account,
        "get_account": admin.get_account(account.id),
        "update_account": admin.update_account(account.id, name="sdk-python"),
        "list_accounts": admin.list_accounts(limit=1),
        "list_keys": admin.list_keys(account_id=account.id),
        "get_key": admin.get_key(owner.key.id, account_id=account.id),
        "get_daily_usage": admin.get_daily_usage(),
        "list_audit_events": admin.list_audit_events(limit=1),
    }
    for name, result in results.items():
        assert (getattr(result, "request_id", None) or "").startswith("req_"), name
    assert admin.get_usage().limits.monthly_tokens > 0

    actions = [e.action for e in admin.list_audit_events(account_id=account.id, limit=100).data]
    assert actions[-1] == "account.created" and "key.rotated" in actions and actions[0] == "key.revoked"


async def test_async_client_lists_keys_of_an_account() -> None:
    async with AsyncPlutosAI(api_key=LIVE_ADMIN_KEY, base_url=LIVE_BASE_URL, timeout=60) as admin:
        account = await admin.create_account(name="sdk-python-async")
        created = await admin.create_key(account_id=account.id)
        assert [k.id for k in await admin.list_keys(account_id=account.id)] == [created.key.id]
        assert (await admin.revoke_key(created.key.id, account_id=account.id)).status == "revoked"


@pytest.mark.skipif(not LIVE_GRPC_TARGET, reason="set PLUTOS_TEST_GRPC_TARGET")
def test_grpc_client_manages_keys_and_accounts() -> None:
    from plutos_ai._gen.plutos.v1 import admin_pb2, keys_pb2, processing_pb2
    from plutos_ai.grpc import PlutosGrpcClient

    with PlutosGrpcClient(LIVE_GRPC_TARGET, api_key=LIVE_ADMIN_KEY) as admin:
        account = admin.create_account(admin_pb2.CreateAccountRequest(name="sdk-grpc")).account
        created = admin.create_key(
            keys_pb2.CreateKeyRequest(account_id=account.id, scopes=["process", "keys"])
        )
        with PlutosGrpcClient(LIVE_GRPC_TARGET, api_key=created.secret) as client:
            assert [k.id for k in client.list_keys(keys_pb2.ListKeysRequest()).keys] == [created.key.id]
            assert not client.list_processes(processing_pb2.ListProcessesRequest(limit=1)).data
            rotated = client.rotate_key(keys_pb2.RotateKeyRequest(id=created.key.id, grace_seconds=60))
            assert rotated.replaced.status == "rotated"
            with pytest.raises(ConflictError):
                client.rotate_key(keys_pb2.RotateKeyRequest(id=created.key.id))
        events = admin.list_audit_events(admin_pb2.ListAuditEventsRequest(account_id=account.id)).data
        assert events[0].action == "key.rotated"
