"""WebhooksService: create, list and delete the caller's webhooks.

Deliveries are written by the outbox (server/webhook_delivery/outbox.py) and sent by the dispatcher.
"""

from __future__ import annotations

import time
from typing import Any

from plutos.v1 import webhooks_pb2, webhooks_pb2_grpc
from sqlalchemy import select, update

from core.errors import PlutosError, echo, invalid_parameter
from core.ids import new_id
from server.call_state import caller
from server.runtime import Runtime
from server.services.generation import timestamp
from server.services.pages import limit_of, newest_first
from server.store.caps import below_cap
from server.store.models import Webhook, WebhookDelivery, utcnow
from server.webhook_delivery.destinations import DestinationRefused, check_destination, parse_webhook_url
from server.webhook_delivery.dispatcher import Claimed
from server.webhook_delivery.events import EVENTS, PING, payload
from server.webhook_delivery.signing import new_secret, secret_problem


def _events(requested: list[str]) -> list[str]:
    if not requested:
        raise PlutosError(
            "invalid_parameters", "'events' must name at least one event.", {"field": "events", "allowed": list(EVENTS)}
        )
    unknown = [e for e in requested if e not in EVENTS]
    if unknown:
        raise PlutosError(
            "invalid_parameters",
            f"Unknown event '{unknown[0]}'. Events: {', '.join(EVENTS)}.",
            {"field": "events", "allowed": list(EVENTS)},
        )
    return list(dict.fromkeys(requested))  # keep the caller's order, drop repeats


DELIVERY_STATUSES = ("pending", "delivered", "failed")


def _delivery(d: WebhookDelivery) -> webhooks_pb2.WebhookDelivery:
    msg = webhooks_pb2.WebhookDelivery(
        id=d.id,
        webhook_id=d.webhook_id,
        event=d.event,
        status=d.status,
        attempts=d.attempts,
        created_at=timestamp(d.created_at),
    )
    if d.last_status_code is not None:
        msg.last_status_code = d.last_status_code
    if d.last_error is not None:
        msg.last_error = d.last_error
    if d.status == "pending":
        msg.next_attempt_at.CopyFrom(timestamp(d.next_attempt_at))
    if d.delivered_at is not None:
        msg.delivered_at.CopyFrom(timestamp(d.delivered_at))
    return msg


def _webhook_fields(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": hook.events,
        "has_secret": bool(hook.secret),
        "created_at": timestamp(hook.created_at),
    }


class WebhooksService(webhooks_pb2_grpc.WebhooksServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    async def CreateWebhook(
        self, request: webhooks_pb2.CreateWebhookRequest, context: Any
    ) -> webhooks_pb2.CreateWebhookResponse:
        who = caller()
        config = self.runtime.webhooks.config
        try:
            url = parse_webhook_url(request.url)
        except ValueError as exc:
            raise invalid_parameter("url", str(exc)) from None
        if url.userinfo:  # it would be stored, listed and shown in the dashboard in clear
            raise invalid_parameter(
                "url",
                "'url' must not carry credentials (user:password@); deliveries are authenticated by their signature.",
            )
        events = _events(list(request.events))
        if request.secret and (problem := secret_problem(request.secret)):
            raise invalid_parameter("secret", problem)
        try:
            if not config.allow_private_urls:  # else there is nothing to refuse
                await check_destination(url, allow_private=False)
        except DestinationRefused as exc:
            raise invalid_parameter("url", f"Webhook URLs must reach a public address: {exc}.") from None
        except (OSError, TimeoutError):
            # What cannot be checked is refused: a name that does not resolve now could resolve
            # to anything later (it is checked again at every delivery all the same).
            raise invalid_parameter(
                "url", "Webhook URLs must reach a public address: the host name could not be resolved."
            ) from None
        generated = None if request.secret else new_secret()
        async with self.runtime.sessions.begin() as session:
            if not await below_cap(session, who.account_id, Webhook.account_id, config.max_per_account):
                raise invalid_parameter("url", f"An account may have at most {config.max_per_account} webhooks.")
            hook = Webhook(
                id=new_id("wh"),
                account_id=who.account_id,
                url=request.url,
                events=events,
                secret=request.secret or generated,
                created_at=utcnow(),
            )
            session.add(hook)
        self.runtime.webhooks.subscriptions_changed(who.account_id)
        # A generated secret is shown once, here; a caller's own secret is not echoed.
        return webhooks_pb2.CreateWebhookResponse(**_webhook_fields(hook), secret=generated)

    async def ListWebhooks(
        self, request: webhooks_pb2.ListWebhooksRequest, context: Any
    ) -> webhooks_pb2.ListWebhooksResponse:
        async with self.runtime.sessions() as session:
            hooks = (
                await session.execute(
                    select(Webhook)
                    .where(Webhook.account_id == caller().account_id)
                    .order_by(Webhook.created_at, Webhook.id)
                )
            ).scalars()
            return webhooks_pb2.ListWebhooksResponse(
                webhooks=[webhooks_pb2.Webhook(**_webhook_fields(h)) for h in hooks]
            )

    async def DeleteWebhook(
        self, request: webhooks_pb2.DeleteWebhookRequest, context: Any
    ) -> webhooks_pb2.DeleteWebhookResponse:
        who = caller()
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        async with self.runtime.sessions.begin() as session:
            hook = await session.get(Webhook, request.id)
            # Another account's webhook is indistinguishable from a missing one.
            if hook is None or hook.account_id != who.account_id:
                raise PlutosError("not_found", f"No webhook with id '{echo(request.id)}'.", {"id": request.id})
            await session.delete(hook)
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.webhook_id == hook.id, WebhookDelivery.status == "pending")
                .values(status="failed", last_error="webhook deleted")
                .execution_options(synchronize_session=False)
            )
        self.runtime.webhooks.subscriptions_changed(who.account_id)
        return webhooks_pb2.DeleteWebhookResponse(id=request.id, deleted=True)

    async def _own_webhook(self, webhook_id: str, field: str = "id") -> Webhook:
        if not webhook_id:
            raise invalid_parameter(field, f"'{field}' is required.")
        async with self.runtime.sessions() as session:
            hook = await session.get(Webhook, webhook_id)
        # Another account's webhook is indistinguishable from a missing one.
        if hook is None or hook.account_id != caller().account_id:
            raise PlutosError("not_found", f"No webhook with id '{webhook_id}'.", {"id": webhook_id})
        return hook

    async def ListWebhookDeliveries(
        self, request: webhooks_pb2.ListWebhookDeliveriesRequest, context: Any
    ) -> webhooks_pb2.ListWebhookDeliveriesResponse:
        hook = await self._own_webhook(request.webhook_id, "webhookId")
        filters = []
        if request.status:
            if request.status not in DELIVERY_STATUSES:
                raise PlutosError(
                    "invalid_parameters",
                    f"'status' must be one of {', '.join(DELIVERY_STATUSES)} (got '{request.status}').",
                    {"field": "status", "allowed": list(DELIVERY_STATUSES)},
                )
            filters.append(WebhookDelivery.status == request.status)
        async with self.runtime.sessions() as session:
            page = await newest_first(
                session,
                WebhookDelivery,
                [WebhookDelivery.webhook_id == hook.id, WebhookDelivery.account_id == hook.account_id],
                limit=limit_of(request),
                after=request.after,
                filters=filters,
            )
        return webhooks_pb2.ListWebhookDeliveriesResponse(data=[_delivery(d) for d in page.rows], **page.ids())

    async def RedeliverWebhookDelivery(
        self, request: webhooks_pb2.RedeliverWebhookDeliveryRequest, context: Any
    ) -> webhooks_pb2.RedeliverWebhookDeliveryResponse:
        """A delivered or failed delivery goes out again now, as a new series of attempts (same
        ``webhook-id``, so receivers can still dedupe). A pending one is already on its way: 409."""
        hook = await self._own_webhook(request.webhook_id, "webhookId")
        if not request.id:
            raise invalid_parameter("id", "'id' is required.")
        now = utcnow()
        async with self.runtime.sessions.begin() as session:
            restarted = await session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == request.id,
                    WebhookDelivery.webhook_id == hook.id,
                    WebhookDelivery.status != "pending",
                )
                .values(status="pending", attempts=0, next_attempt_at=now, delivered_at=None)
                .execution_options(synchronize_session=False)
            )
            delivery = await session.get(WebhookDelivery, request.id)
            if delivery is None or delivery.webhook_id != hook.id:
                raise PlutosError("not_found", f"No delivery with id '{request.id}'.", {"id": request.id})
            if restarted.rowcount != 1:  # type: ignore[attr-defined]
                raise PlutosError(
                    "conflict",
                    f"Delivery '{request.id}' is pending already; it is retried on its own schedule.",
                    {"id": request.id, "status": delivery.status},
                )
            await session.refresh(delivery)
        self.runtime.webhooks.dispatcher.wake()
        return webhooks_pb2.RedeliverWebhookDeliveryResponse(delivery=_delivery(delivery))

    async def TestWebhook(
        self, request: webhooks_pb2.TestWebhookRequest, context: Any
    ) -> webhooks_pb2.TestWebhookResponse:
        """Send a signed ``ping`` event now, outside the outbox (nothing is stored or retried), and
        report the receiver's answer. The same sender as every delivery: address checks, signature."""
        hook = await self._own_webhook(request.id)
        now = utcnow()
        ping = Claimed(
            id=new_id("msg"),
            webhook_id=hook.id,
            payload=payload(PING, {"webhookId": hook.id, "url": hook.url}, now),
            attempt=1,
            url=hook.url,
            secret=hook.secret,
        )
        started = time.perf_counter()
        outcome = await self.runtime.webhooks.dispatcher.send(ping)
        reply = webhooks_pb2.TestWebhookResponse(
            delivered=outcome.delivered,
            duration=int((time.perf_counter() - started) * 1000),
            delivery_id=ping.id,
        )
        if outcome.status_code is not None:
            reply.status_code = outcome.status_code
        if outcome.error is not None:
            reply.error = outcome.error
        return reply
