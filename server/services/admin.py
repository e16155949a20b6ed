"""AdminService: accounts and the audit trail, for keys with the ``admin`` scope.

Accounts are changed through server/keys.py (the CLI's code), which writes the audit rows. A
plan change or a suspension takes effect on every replica within the auth cache TTL (at once
where Redis carries the invalidation: server/authenticator.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2
from plutos.v1 import admin_pb2, admin_pb2_grpc
from sqlalchemy import func, select

from core.errors import PlutosError, invalid_parameter
from server.call_state import caller
from server.keys import account_not_found, create_account, update_account
from server.runtime import Runtime
from server.services.generation import timestamp
from server.services.pages import limit_of, newest_first
from server.store.models import Account, ApiKey, AuditEvent, UsageDaily, units_to_usd, utcnow


def _plan(runtime: Runtime, plan: str) -> str:
    if plan not in runtime.settings.plans:
        raise PlutosError(
            "invalid_parameters",
            f"Unknown plan '{plan}'. Plans: {', '.join(runtime.settings.plans)}.",
            {"field": "plan", "allowed": list(runtime.settings.plans)},
        )
    return plan


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def _messages(self, accounts: Sequence[Account]) -> list[admin_pb2.Account]:
        """Accounts with their key counts and this month's usage (two grouped queries)."""
        if not accounts:
            return []
        ids = [a.id for a in accounts]
        today = utcnow().date()
        async with self.runtime.sessions() as session:
            usage = {
                row[0]: row[1:]
                for row in (
                    await session.execute(
                        select(
                            UsageDaily.account_id,
                            func.sum(UsageDaily.requests),
                            func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens),
                            func.sum(UsageDaily.cost_units),
                        )
                        .where(UsageDaily.account_id.in_(ids), UsageDaily.day >= today.replace(day=1))
                        .group_by(UsageDaily.account_id)
                    )
                ).all()
            }
            counted = await session.execute(
                select(ApiKey.account_id, func.count())
                .where(ApiKey.account_id.in_(ids), ApiKey.revoked_at.is_(None))
                .group_by(ApiKey.account_id)
            )
            keys = {account_id: count for account_id, count in counted.all()}
        out = []
        for account in accounts:
            requests, tokens, units = usage.get(account.id, (0, 0, 0))
            out.append(
                admin_pb2.Account(
                    id=account.id,
                    name=account.name,
                    plan=account.plan,
                    suspended=account.suspended_at is not None,
                    created_at=timestamp(account.created_at),
                    key_count=int(keys.get(account.id, 0)),
                    usage=admin_pb2.AccountUsage(
                        total_requests=int(requests),
                        total_tokens=int(tokens),
                        total_cost=float(units_to_usd(int(units))),
                    ),
                )
            )
        return out

    async def _one(self, account: Account) -> admin_pb2.Account:
        return (await self._messages([account]))[0]

    async def CreateAccount(
        self, request: admin_pb2.CreateAccountRequest, context: Any
    ) -> admin_pb2.CreateAccountResponse:
        if len(request.name) > 200:
            raise invalid_parameter("name", "'name' may be at most 200 characters.")
        plan = _plan(self.runtime, request.plan or "free")
        account = await create_account(self.runtime.sessions, name=request.name, plan=plan, actor=caller().key_id)
        return admin_pb2.CreateAccountResponse(account=await self._one(account))

    async def ListAccounts(
        self, request: admin_pb2.ListAccountsRequest, context: Any
    ) -> admin_pb2.ListAccountsResponse:
        async with self.runtime.sessions() as session:
            page = await newest_first(session, Account, [], limit=limit_of(request), after=request.after)
        return admin_pb2.ListAccountsResponse(data=await self._messages(page.rows), **page.ids())

    async def GetAccount(self, request: admin_pb2.GetAccountRequest, context: Any) -> admin_pb2.GetAccountResponse:
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        async with self.runtime.sessions() as session:
            account = await session.get(Account, request.id)
        if account is None:
            raise account_not_found(request.id)
        return admin_pb2.GetAccountResponse(account=await self._one(account))

    async def UpdateAccount(
        self, request: admin_pb2.UpdateAccountRequest, context: Any
    ) -> admin_pb2.UpdateAccountResponse:
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        if request.HasField("name") and len(request.name) > 200:
            raise invalid_parameter("name", "'name' may be at most 200 characters.")
        account = await update_account(
            self.runtime.sessions,
            request.id,
            name=request.name if request.HasField("name") else None,
            plan=_plan(self.runtime, request.plan) if request.HasField("plan") else None,
            suspended=request.suspended if request.HasField("suspended") else None,
            actor=caller().key_id,
        )
        await self.runtime.authenticator.forget_all_everywhere()
        return admin_pb2.UpdateAccountResponse(account=await self._one(account))

    async def ListAuditEvents(
        self, request: admin_pb2.ListAuditEventsRequest, context: Any
    ) -> admin_pb2.ListAuditEventsResponse:
        filters = [AuditEvent.account_id == request.account_id] if request.account_id else []
        async with self.runtime.sessions() as session:
            page = await newest_first(
                session, AuditEvent, [], limit=limit_of(request), after=request.after, filters=filters
            )
        data = []
        for event in page.rows:
            details = struct_pb2.Struct()
            details.update(event.details or {})
            data.append(
                admin_pb2.AuditEvent(
                    id=event.id,
                    actor=event.actor,
                    account_id=event.account_id,
                    action=event.action,
                    target_id=event.target_id,
                    details=details,
                    created_at=timestamp(event.created_at),
                )
            )
        return admin_pb2.ListAuditEventsResponse(data=data, **page.ids())
