"""Webhooks: the outbox (events written with their records) and the dispatcher that delivers them.

See docs/usage-and-webhooks.md for the payload, headers, signatures, retries and SSRF policy.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.config import Settings
from server.store.writer import RecordWriter
from server.webhook_delivery.dispatcher import Dispatcher
from server.webhook_delivery.outbox import Outbox
from server.webhook_delivery.settings import WebhookSettings

__all__ = ["WebhookSettings", "Webhooks"]


class Webhooks:
    """Wires the outbox into the RecordWriter's transactions and runs the dispatcher."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession], writer: RecordWriter) -> None:
        self.config = WebhookSettings.from_settings(settings)
        self.outbox = Outbox(settings.plans, self.config)
        self.dispatcher = Dispatcher(sessions, self.config)
        writer.add_hook(self.outbox.write_events)
        writer.add_commit_listener(self._committed)

    def _committed(self) -> None:
        if self.outbox.added:
            self.outbox.added = False
            self.dispatcher.wake()

    def subscriptions_changed(self, account_id: str) -> None:
        """A webhook was created or deleted: this process sees it from the next write on."""
        self.outbox.cache.invalidate(account_id)

    def start(self) -> None:
        self.dispatcher.start()

    async def close(self) -> None:
        await self.dispatcher.close()
