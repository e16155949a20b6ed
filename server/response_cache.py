"""The response cache behind ``options.cache`` ("use" / "refresh" / "bypass", default "bypass"), or
the key's ``cacheDefault`` (the only setting on /openai/v1, whose requests have no ``options``).

An entry is the answer a model gave: its output, its token counts and, for a stream, its pieces.
The key is a SHA-256 of the account, the model, the normalized input (Unicode NFC, surrounding
whitespace removed) and every option that changes the output (the effective options, defaults
filled in, as stored with the record; an OpenAI chat's whole messages, tools, tool_choice and
response format: :func:`cache_key`): an entry is never shared across accounts.

Where entries live: in Redis when ``redis_url`` is set, so every replica shares them; otherwise in
this process (a ``cachetools.TTLCache``: the TTL plus a least-recently-used size bound). Not in the
database: a cache is worth having only if a hit costs less than a model run, and an entry lost on a
restart costs just one model run, while writing every miss's answer to the store would put load on
the database the hot path avoids.

Expiry reads ``clock`` (injectable, for tests) in both stores; Redis's own expiry only frees memory.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import re
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from cachetools import TTLCache

from core.errors import invalid_parameter
from server.backends.base import GenerationParams
from server.options import options_to_record

log = logging.getLogger("plutos.cache")

Clock = Callable[[], float]
CACHE_MODES = ("use", "refresh", "bypass")
_PIECES = re.compile(r"\s*\S+|\s+")


def cache_mode(value: str | None) -> str:
    """``options.cache`` checked; ``invalid_parameters`` (field ``options.cache``) otherwise."""
    if value is None:
        return "bypass"
    if value not in CACHE_MODES:
        raise invalid_parameter("options.cache", '\'cache\' must be one of "use", "refresh" or "bypass".')
    return value


def cache_key(account_id: str, model: str, text: str, params: GenerationParams) -> str:
    """The entry's key (64 hex digits): a SHA-256 of the account, the model, the normalized input
    and every parameter that changes the output — the effective options as stored with the record
    (sampling options, stop, seed, JSON output, a chat's roles and contents) and, for an OpenAI
    chat, each message whole (``name``, ``tool_calls``, ``tool_call_id``) and every field an
    upstream gets as it is (``tools``, ``tool_choice``, ``parallel_tool_calls``, a ``json_schema``
    response format, ``user``). A call without the latter two keys as it always did."""
    normalized = unicodedata.normalize("NFC", text).strip()
    material: list[object] = [account_id, model, normalized, options_to_record(params)]
    if params.messages or params.upstream_extra:
        material += [list(params.messages), [list(field) for field in params.upstream_extra]]
    return hashlib.sha256(orjson.dumps(material, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    output: str
    prompt_tokens: int
    completion_tokens: int
    pieces: tuple[str, ...] = ()  # a stream's chunks; empty for an answer of /process
    finish_reason: str = "stop"  # "stop" or "length" (answers with tool calls are not kept)

    def chunks(self) -> tuple[str, ...]:
        """The pieces to stream: the original ones, or the output cut before each word."""
        return self.pieces or tuple(_PIECES.findall(self.output)) or (self.output,)


class ResponseCache(abc.ABC):
    def __init__(self, ttl: float, max_entry_bytes: int, clock: Clock = time.time) -> None:
        self.ttl = ttl
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock

    async def close(self) -> None:
        return None

    @abc.abstractmethod
    async def get(self, account_id: str, key: str) -> CachedAnswer | None: ...

    @abc.abstractmethod
    async def put(self, account_id: str, key: str, answer: CachedAnswer) -> None: ...

    def fits(self, answer: CachedAnswer) -> bool:
        return len(answer.output.encode()) <= self.max_entry_bytes


class MemoryResponseCache(ResponseCache):
    """In this process: at most ``max_entries``, each for ``ttl`` seconds of ``clock``."""

    def __init__(self, ttl: float, max_entries: int, max_entry_bytes: int, clock: Clock = time.time) -> None:
        super().__init__(ttl, max_entry_bytes, clock)
        self._entries: TTLCache[tuple[str, str], CachedAnswer] = TTLCache(max_entries, ttl, timer=self._now)

    def _now(self) -> float:
        return self.clock()

    async def get(self, account_id: str, key: str) -> CachedAnswer | None:
        return self._entries.get((account_id, key))

    async def put(self, account_id: str, key: str, answer: CachedAnswer) -> None:
        if self.fits(answer):
            self._entries[(account_id, key)] = answer


class RedisResponseCache(ResponseCache):
    """In Redis, shared by every replica: one string per entry, expiring with it."""

    def __init__(self, url: str, ttl: float, max_entry_bytes: int, clock: Clock = time.time, prefix: str = "plutos:"):
        super().__init__(ttl, max_entry_bytes, clock)
        import redis.asyncio as aioredis

        self.client = aioredis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.prefix = prefix

    async def close(self) -> None:
        await self.client.aclose()

    def _name(self, account_id: str, key: str) -> str:
        return f"{self.prefix}cache:{{{account_id}}}:{key}"

    async def get(self, account_id: str, key: str) -> CachedAnswer | None:
        try:
            raw = await self.client.get(self._name(account_id, key))
        except Exception:  # a cache that cannot answer is a miss, not a failed call
            log.warning("response cache unavailable (get)", exc_info=True)
            return None
        if raw is None:
            return None
        entry = orjson.loads(raw)
        if entry["x"] <= self.clock():
            return None
        return CachedAnswer(entry["o"], entry["p"], entry["c"], tuple(entry["k"]), entry.get("f", "stop"))

    async def put(self, account_id: str, key: str, answer: CachedAnswer) -> None:
        if not self.fits(answer):
            return
        entry = {
            "o": answer.output,
            "p": answer.prompt_tokens,
            "c": answer.completion_tokens,
            "k": list(answer.pieces),
            "f": answer.finish_reason,
            "x": self.clock() + self.ttl,
        }
        try:
            await self.client.set(self._name(account_id, key), orjson.dumps(entry), px=int(self.ttl * 1000))
        except Exception:
            log.warning("response cache unavailable (put)", exc_info=True)


def create_response_cache(
    redis_url: str, ttl: float, max_entries: int, max_entry_bytes: int, clock: Clock = time.time
) -> ResponseCache:
    """Redis when ``redis_url`` is set (shared by the replicas), else in process."""
    if redis_url:
        return RedisResponseCache(redis_url, ttl, max_entry_bytes, clock)
    return MemoryResponseCache(ttl, max_entries, max_entry_bytes, clock)
