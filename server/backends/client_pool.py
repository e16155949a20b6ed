"""The upstream connection pools: one :class:`~server.backends.http_client.HttpPool` per upstream
base URL and event loop, shared by every catalogue entry that points there."""

from __future__ import annotations

import asyncio
from typing import Any

from server.backends.http_client import HttpPool
from server.backends.upstream_config import UpstreamConfig


class ClientPool:
    """One :class:`HttpPool` per upstream base URL and event loop, shared by reference count."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str, int], list[Any]] = {}  # key → [pool, users]

    def acquire(self, config: UpstreamConfig) -> HttpPool:
        key = (config.base_url, id(asyncio.get_running_loop()))
        entry = self._clients.get(key)
        if entry is None:
            entry = self._clients[key] = [HttpPool(config.base_url, config.max_connections), 0]
        entry[1] += 1
        client: HttpPool = entry[0]
        return client

    async def release(self, config: UpstreamConfig) -> None:
        key = (config.base_url, id(asyncio.get_running_loop()))
        entry = self._clients.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del self._clients[key]
            await entry[0].close()


CLIENTS = ClientPool()
