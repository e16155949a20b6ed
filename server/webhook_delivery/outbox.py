"""The outbox writer: turns the rows of a write transaction into webhook deliveries, in that
same transaction (a RecordWriter hook), so an event exists exactly when its record does.

- Every stored processing result (``ProcessRecord``: a /process call, a /stream call, one /batch
  item) → ``processing.completed`` or ``processing.failed`` for the account's subscribed webhooks.
- Ledger entries of accounts subscribed to ``usage.threshold`` → the month's token total (from
  ``usage_daily``, already updated in this transaction) is compared with the plan's quota; each
  configured fraction crossed for the first time inserts a ``usage_threshold_crossings`` row (its
  primary key makes the insert succeed in one transaction only, across replicas) and an event.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Table, func, select

from core.ids import new_id
from server.config import Plan
from server.store.models import (
    Account,
    LedgerEntry,
    ProcessRecord,
    UsageDaily,
    UsageThresholdCrossing,
    Webhook,
    WebhookDelivery,
    utcnow,
)
from server.store.upsert import insert_ignoring_conflicts
from server.store.writer import WriteTransaction
from server.webhook_delivery.events import USAGE_THRESHOLD, payload, processing_event, threshold_data
from server.webhook_delivery.settings import WebhookSettings

_CROSSINGS: Table = UsageThresholdCrossing.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class AccountWebhooks:
    plan: str | None
    subscriptions: tuple[tuple[str, frozenset[str]], ...]  # (webhook id, events)

    def webhooks_for(self, event: str) -> list[str]:
        return [webhook_id for webhook_id, events in self.subscriptions if event in events]


NO_WEBHOOKS = AccountWebhooks(None, ())


class SubscriptionCache:
    """Each account's webhooks, cached for ``ttl`` seconds (most accounts have none: cached too)."""

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self._ttl = ttl
        self._max = max_entries
        self._entries: dict[str, tuple[float, AccountWebhooks]] = {}

    def invalidate(self, account_id: str) -> None:
        self._entries.pop(account_id, None)

    def get(self, tx: WriteTransaction, account_ids: Iterable[str]) -> dict[str, AccountWebhooks]:
        now = time.monotonic()
        found: dict[str, AccountWebhooks] = {}
        missing: list[str] = []
        for account_id in account_ids:
            entry = self._entries.get(account_id)
            if entry is not None and entry[0] > now:
                found[account_id] = entry[1]
            else:
                missing.append(account_id)
        if missing:
            query = (
                select(Account.id, Account.plan, Webhook.id, Webhook.events)
                .outerjoin(Webhook, Webhook.account_id == Account.id)
                .where(Account.id.in_(missing))
                .order_by(Webhook.created_at)
            )
            plans: dict[str, str] = {}
            subs: dict[str, list[tuple[str, frozenset[str]]]] = {a: [] for a in missing}
            for account_id, plan, webhook_id, events in tx.execute(query).all():
                plans[account_id] = plan
                if webhook_id is not None:
                    subs[account_id].append((webhook_id, frozenset(events)))
            if len(self._entries) + len(missing) > self._max:
                self._entries.clear()
            for account_id in missing:
                value = AccountWebhooks(plans.get(account_id), tuple(subs[account_id]))
                self._entries[account_id] = (now + self._ttl, value)
                found[account_id] = value
        return found


def month_of(moment: datetime) -> tuple[str, date, date]:
    """``YYYY-MM`` and the first and last day of the UTC month holding ``moment``."""
    day = moment.astimezone(UTC).date()
    first = day.replace(day=1)
    following = date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)
    last = date.fromordinal(following.toordinal() - 1)
    return first.strftime("%Y-%m"), first, last


class Outbox:
    def __init__(self, plans: dict[str, Plan], config: WebhookSettings) -> None:
        self.plans = plans
        self.cache = SubscriptionCache(config.cache_ttl)
        # (basis points, fraction as configured), ascending.
        self.thresholds = sorted({(round(f * 10_000), f) for f in config.usage_thresholds})
        self.added = False  # set when a transaction queued deliveries; read after its commit

    def write_events(self, tx: WriteTransaction, rows: list[Any]) -> None:
        """RecordWriter hook (runs inside the write transaction)."""
        records = [r for r in rows if isinstance(r, ProcessRecord)]
        entries = [r for r in rows if isinstance(r, LedgerEntry)]
        if not records and not entries:
            return
        accounts = self.cache.get(tx, {r.account_id for r in records} | {e.account_id for e in entries})
        now = utcnow()
        deliveries: list[WebhookDelivery] = []
        for record in records:
            hooks = accounts.get(record.account_id, NO_WEBHOOKS)
            if not hooks.subscriptions:
                continue
            event, data = processing_event(record)
            targets = hooks.webhooks_for(event)
            if targets:
                body = payload(event, data, now)
                deliveries.extend(_delivery(w, record.account_id, event, body, now) for w in targets)
        periods: dict[str, set[datetime]] = {}
        for entry in entries:
            if accounts.get(entry.account_id, NO_WEBHOOKS).webhooks_for(USAGE_THRESHOLD):
                periods.setdefault(entry.account_id, set()).add(entry.created_at.astimezone(UTC).replace(day=1))
        for account_id in sorted(periods):
            for month in sorted(periods[account_id]):
                deliveries.extend(self._crossings(tx, account_id, accounts[account_id], month, now))
        if deliveries:
            tx.session().add_all(deliveries)
            self.added = True

    def _crossings(
        self, tx: WriteTransaction, account_id: str, hooks: AccountWebhooks, month: datetime, now: datetime
    ) -> list[WebhookDelivery]:
        plan = self.plans.get(hooks.plan or "")
        if plan is None or plan.monthly_tokens <= 0 or not self.thresholds:
            return []
        period, first, last = month_of(month)
        used = int(
            (
                tx.execute(
                    select(func.coalesce(func.sum(UsageDaily.prompt_tokens + UsageDaily.completion_tokens), 0)).where(
                        UsageDaily.account_id == account_id, UsageDaily.day >= first, UsageDaily.day <= last
                    )
                )
            ).scalar_one()
        )
        crossed = [(bp, f) for bp, f in self.thresholds if used * 10_000 >= bp * plan.monthly_tokens]
        if not crossed:
            return []
        fired = set(
            (
                tx.execute(
                    select(UsageThresholdCrossing.threshold_bp).where(
                        UsageThresholdCrossing.account_id == account_id, UsageThresholdCrossing.period == period
                    )
                )
            ).scalars()
        )
        dialect = tx.dialect_name
        deliveries: list[WebhookDelivery] = []
        for bp, fraction in crossed:
            if bp in fired:
                continue
            row = {
                "account_id": account_id,
                "period": period,
                "threshold_bp": bp,
                "used_tokens": used,
                "crossed_at": now,
            }
            stmt = insert_ignoring_conflicts(dialect, _CROSSINGS, row).returning(_CROSSINGS.c.threshold_bp)
            if tx.execute(stmt).first() is None:
                continue  # another transaction recorded this crossing first
            body = payload(
                USAGE_THRESHOLD,
                threshold_data(
                    period=period,
                    threshold=fraction,
                    used_tokens=used,
                    monthly_tokens=plan.monthly_tokens,
                    plan=plan.name,
                ),
                now,
            )
            deliveries.extend(
                _delivery(w, account_id, USAGE_THRESHOLD, body, now) for w in hooks.webhooks_for(USAGE_THRESHOLD)
            )
        return deliveries


def _delivery(webhook_id: str, account_id: str, event: str, body: str, now: datetime) -> WebhookDelivery:
    return WebhookDelivery(
        id=new_id("msg"),
        webhook_id=webhook_id,
        account_id=account_id,
        event=event,
        payload=body,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
