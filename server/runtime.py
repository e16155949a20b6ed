"""Everything a service needs, built once per process: settings, store, catalogue, writers."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.authenticator import Authenticator
from server.catalogue import Catalogue
from server.config import Settings
from server.idempotency import IdempotencyStore, create_idempotency_store
from server.limiter import Limiter, create_limiter
from server.memory_release import IdleRelease
from server.response_cache import ResponseCache, create_response_cache
from server.store.database import create_engine, session_factory
from server.store.migrate import upgrade
from server.store.models import ProcessRecord, salvaged_record
from server.store.usage_rollup import roll_up_usage
from server.store.writer import RecordWriter
from server.webhook_delivery import Webhooks


@dataclass
class Runtime:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    catalogue: Catalogue
    writer: RecordWriter
    authenticator: Authenticator
    limiter: Limiter
    webhooks: Webhooks
    idempotency: IdempotencyStore
    response_cache: ResponseCache
    # Calls in progress (counted by the error interceptor); freed memory goes back to the OS when idle.
    idle_release: IdleRelease

    @classmethod
    def create(cls, settings: Settings) -> Runtime:
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        writer = RecordWriter(sessions)
        writer.add_hook(roll_up_usage)  # usage_daily, in the ledger's transaction (before webhooks)
        writer.add_salvage(ProcessRecord, salvaged_record)
        return cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            catalogue=Catalogue(settings),
            writer=writer,
            authenticator=Authenticator(sessions, settings),
            limiter=create_limiter(settings),
            webhooks=Webhooks(settings, sessions, writer),
            idempotency=create_idempotency_store(
                settings.redis_url,
                writer,
                sessions,
                settings.config.idempotency.ttl_seconds,
                settings.config.idempotency.lease_seconds,
            ),
            response_cache=create_response_cache(
                settings.redis_url,
                settings.config.cache.ttl_seconds,
                settings.config.cache.max_entries,
                settings.config.cache.max_entry_bytes,
            ),
            idle_release=IdleRelease.for_this_process(),
        )

    async def start(self, *, migrate: bool = True, load_models: bool = True) -> None:
        if migrate:
            await upgrade(self.engine)
        if load_models:
            await self.catalogue.start()
        self.writer.start()
        await self.limiter.start()
        self.authenticator.start()
        self.webhooks.start()

    async def close(self) -> None:
        self.idle_release.close()
        await self.webhooks.close()
        await self.idempotency.close()
        await self.response_cache.close()
        await self.authenticator.close()
        await self.limiter.close()
        await self.writer.close()
        await self.catalogue.close()
        await self.engine.dispose()
