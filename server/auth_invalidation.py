"""Auth cache invalidation across replicas: Redis pub/sub on one channel.

Every process caches key lookups for ``auth_cache_ttl`` seconds (server/authenticator.py), which alone bounds
how long a revoked, rotated-out or narrowed key keeps working anywhere: at most the TTL. With
``redis_url`` set, the process that changes a key also publishes the key's hash (or ``*`` for every
entry: an account's plan or suspension changed) on :data:`CHANNEL`; every replica's subscriber drops
those entries at once. Pub/sub is at-most-once: a replica that was disconnected may miss a message,
so after every (re)connect it drops its whole cache, and the TTL still bounds anything missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("plutos.auth")

CHANNEL = "plutos:auth:forget"
EVERY_KEY = "*"
PUBLISH_TIMEOUT = 1.0  # seconds; past it the TTL is the bound


class RedisInvalidation:
    """Publishes and receives "forget these key hashes" messages."""

    def __init__(self, url: str, forget: Callable[[list[str]], None], forget_all: Callable[[], None]) -> None:
        self._client = aioredis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=None)
        self._forget = forget
        self._forget_all = forget_all
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="auth-invalidation")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()

    async def publish(self, key_hashes: list[str]) -> None:
        """Announce ``key_hashes`` (or ``["*"]``); failures are logged (the TTL still bounds them)."""
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await self._client.publish(CHANNEL, orjson.dumps(key_hashes))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not publish an auth cache invalidation: %r", exc)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._forget_all()  # messages sent while we were not listening are lost
                    self.subscribed.set()
                    async for message in pubsub.listen():
                        self._received(message.get("data"))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: retry; the TTL bounds what is missed meanwhile
                self.subscribed.clear()
                log.warning("auth invalidation subscriber: %r; retrying in 1 s", exc)
                await asyncio.sleep(1.0)

    def _received(self, data: object) -> None:
        try:
            hashes = orjson.loads(data) if isinstance(data, bytes | str) else None
        except orjson.JSONDecodeError:
            hashes = None
        if not isinstance(hashes, list):
            return
        if EVERY_KEY in hashes:
            self._forget_all()
        else:
            self._forget([h for h in hashes if isinstance(h, str)])
