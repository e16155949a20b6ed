"""The Redis limiter: N replicas sharing one Redis enforce one limit.

Each decision is one Lua script, so check-and-count is atomic across replicas:

* windows are ``INCR`` counters whose key names the window (``…:w60:<start>``) and that expire
  shortly after it ends;
* concurrency slots are members of a sorted set scored by a lease expiry. A replica renews the
  leases of its calls in flight every ``lease / 3`` seconds, so slots of a replica that crashed
  fall out within one lease instead of leaking forever;
* the monthly quota is a hash (``used``, ``reserved``) plus reservations that carry the same kind
  of lease. The first call of a month seeds ``used`` from the usage ledger.

Every key of an account carries the account id as a hash tag (``{acct_…}``), so one script only
touches keys of one cluster slot. Connection problems raise :class:`LimiterUnavailable`; after one,
calls fail fast for ``cooldown`` seconds instead of each waiting on a dead connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.limiter.base import (
    Admission,
    Concurrency,
    Limiter,
    LimiterUnavailable,
    QuotaCheck,
    Reservation,
    SeedTokens,
    Slot,
    Window,
    WindowCount,
    month_of,
    new_slot_id,
)

log = logging.getLogger("plutos.limits.redis")

# KEYS: nw window counters, then nc concurrency sets.
# ARGV: nw, nc, now_ms, slot_id, lease_expiry_ms, key_ttl_ms, then (limit, ttl_s) per window,
#       then limit per concurrency set.
# Returns {allowed, count per window..., in-flight per set...} (counts include this call if allowed).
ACQUIRE = """
local nw = tonumber(ARGV[1])
local nc = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local allowed = 1
local out = {0}
for i = 1, nw do
  local c = tonumber(redis.call('GET', KEYS[i]) or '0')
  out[1 + i] = c
  if c >= tonumber(ARGV[5 + 2 * i]) then allowed = 0 end
end
local base = 6 + 2 * nw
for j = 1, nc do
  local k = KEYS[nw + j]
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  local n = redis.call('ZCARD', k)
  out[1 + nw + j] = n
  if n >= tonumber(ARGV[base + j]) then allowed = 0 end
end
if allowed == 1 then
  for i = 1, nw do
    local c = redis.call('INCR', KEYS[i])
    if c == 1 then redis.call('EXPIRE', KEYS[i], ARGV[6 + 2 * i]) end
    out[1 + i] = c
  end
  for j = 1, nc do
    local k = KEYS[nw + j]
    redis.call('ZADD', k, ARGV[5], ARGV[4])
    redis.call('PEXPIRE', k, ARGV[6])
    out[1 + nw + j] = out[1 + nw + j] + 1
  end
end
out[1] = allowed
return out
"""

# KEYS: month hash (used, reserved), reservation leases (zset id -> expiry), amounts (hash id -> n).
# ARGV: amount, quota, now_ms, reservation_id, lease_expiry_ms, seed ('' if unknown), ttl_s.
# Returns {status, used, reserved}: status -1 = no counter yet (call again with a seed), 0 = refused.
RESERVE = """
local used = redis.call('HGET', KEYS[1], 'used')
if not used then
  if ARGV[6] == '' then return {-1, 0, 0} end
  redis.call('HSETNX', KEYS[1], 'used', ARGV[6])
  redis.call('HSETNX', KEYS[1], 'reserved', 0)
  redis.call('EXPIRE', KEYS[1], ARGV[7])
  used = redis.call('HGET', KEYS[1], 'used')
end
used = tonumber(used)
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3])
for _, id in ipairs(expired) do
  local amount = tonumber(redis.call('HGET', KEYS[3], id) or '0')
  redis.call('HINCRBY', KEYS[1], 'reserved', 0 - amount)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
end
local reserved = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local amount = tonumber(ARGV[1])
if amount > 0 and used + reserved >= tonumber(ARGV[2]) then return {0, used, reserved} end
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
redis.call('HSET', KEYS[3], ARGV[4], amount)
redis.call('EXPIRE', KEYS[2], ARGV[7])
redis.call('EXPIRE', KEYS[3], ARGV[7])
return {1, used, reserved + amount}
"""

# KEYS as RESERVE. ARGV: reservation_id, tokens used.
SETTLE = """
local amount = redis.call('HGET', KEYS[3], ARGV[1])
if not amount then return 0 end
redis.call('HINCRBY', KEYS[1], 'reserved', 0 - tonumber(amount))
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HEXISTS', KEYS[1], 'used') == 1 then
  redis.call('HINCRBY', KEYS[1], 'used', ARGV[2])
end
return 1
"""

# Months are kept a little past their end, then expire.
MONTH_TTL_SLACK = 7 * 86400
RELEASE_RETRY_SECONDS = 1.0  # a slot Redis could not take back is tried again this often


class RedisLimiter(Limiter):
    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "plutos:",
        lease: float = 60.0,
        timeout: float = 1.0,
        cooldown: float = 0.5,
        # Calls in flight to Redis at once (connections open on demand): a burst of thousands of streams
        # opening on a busy event loop ran 64 dry and was refused 503 ("No connection available").
        max_connections: int = 512,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self.lease = lease
        self.cooldown = cooldown
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            # One immediate retry: the first command on a connection broken by a Redis restart
            # fails, the retry reconnects. No backoff: a limiter must answer quickly or not at all.
            retry=Retry(NoBackoff(), 1),
        )
        self.client = aioredis.Redis(connection_pool=pool)
        self._acquire = self.client.register_script(ACQUIRE)
        self._reserve = self.client.register_script(RESERVE)
        self._settle = self.client.register_script(SETTLE)
        self._down_until = 0.0
        # Leases this process renews: slot id -> concurrency keys; reservation id -> lease key.
        self._slots: dict[str, tuple[str, ...]] = {}
        self._reservations: dict[str, str] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._releasing: set[asyncio.Task[None]] = set()  # slots being given back once Redis answers

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="limiter-lease-renewal")

    async def close(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        for task in list(self._releasing):
            task.cancel()
        await self.client.aclose(close_connection_pool=True)

    # -- keys -----------------------------------------------------------------------------------

    def _window_key(self, w: Window, now: float) -> str:
        return f"{self.prefix}rl:{w.storage_key(now)}"

    def _slot_key(self, subject: str) -> str:
        return f"{self.prefix}cc:{subject}"

    def _month_keys(self, account_id: str, period: str) -> list[str]:
        tag = f"{{{account_id}}}:{period}"
        return [f"{self.prefix}q:{tag}", f"{self.prefix}qr:{tag}", f"{self.prefix}qa:{tag}"]

    # -- calls ----------------------------------------------------------------------------------

    async def _call(self, work: Callable[[], Awaitable[Any]]) -> Any:
        """Run one Redis call. Connection trouble becomes LimiterUnavailable and starts a cool-down
        during which calls fail at once; any other Redis error becomes LimiterUnavailable too."""
        if time.monotonic() < self._down_until:
            raise LimiterUnavailable("Redis is unreachable")
        try:
            return await work()
        except (RedisConnectionError, RedisTimeoutError, OSError) as err:
            self._down_until = time.monotonic() + self.cooldown
            log.warning("redis limiter unavailable: %s", err)
            raise LimiterUnavailable(str(err)) from err
        except RedisError as err:
            log.error("redis limiter error: %r", err)
            raise LimiterUnavailable(str(err)) from err

    async def acquire(
        self, windows: Sequence[Window], concurrency: Sequence[Concurrency], *, now: float | None = None
    ) -> Admission:
        now = self.now(now)
        now_ms = int(now * 1000)
        lease_ms = int(self.lease * 1000)
        slot_id = new_slot_id()
        keys = [self._window_key(w, now) for w in windows] + [self._slot_key(c.subject) for c in concurrency]
        args: list[Any] = [len(windows), len(concurrency), now_ms, slot_id, now_ms + lease_ms, 2 * lease_ms]
        for w in windows:
            args += [w.limit, math.ceil(w.start(now) + w.seconds - now) + 60]
        args += [c.limit for c in concurrency]
        if concurrency:
            # Renew from now on: if this call is cancelled mid-flight the script may still have run.
            self._slots[slot_id] = tuple(keys[len(windows) :])
        try:
            reply = await self._call(partial(self._acquire, keys=keys, args=args))
        except BaseException:
            if concurrency:
                self._forget_slot_later(slot_id)
            raise
        allowed = int(reply[0]) == 1
        counts = [int(x) for x in reply[1:]]
        slot = None
        if concurrency:
            if allowed:
                slot = Slot(slot_id, tuple(c.subject for c in concurrency))
            else:
                self._slots.pop(slot_id, None)
        return Admission(
            allowed=allowed,
            windows=tuple(WindowCount(w, counts[i], w.start(now) + w.seconds) for i, w in enumerate(windows)),
            in_flight=tuple((c, counts[len(windows) + j]) for j, c in enumerate(concurrency)),
            slot=slot,
            now=now,
        )

    def _forget_slot_later(self, slot_id: str) -> None:
        """The acquire call failed or was cancelled: remove the slot if the script took it."""
        keys = self._slots.get(slot_id)
        if keys is None:
            return

        async def remove() -> None:
            try:
                await self._remove_slot(slot_id, keys)
            except LimiterUnavailable:
                pass  # the lease runs out on its own once we stop renewing it
            finally:
                self._slots.pop(slot_id, None)

        asyncio.get_running_loop().create_task(remove())

    async def _remove_slot(self, slot_id: str, keys: tuple[str, ...]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrem(key, slot_id)
            await self._call(pipe.execute)

    async def release(self, slot: Slot) -> None:
        keys = self._slots.pop(slot.id, None)
        if keys is None:
            return
        try:
            await self._remove_slot(slot.id, keys)
        except LimiterUnavailable:
            # Not renewed any more, so its lease would free it; until then it counts against the
            # limit, so it is given back as soon as Redis answers again (a burst that ran the pool
            # dry, a restart), in the background: the call that held it is over.
            task = asyncio.create_task(self._release_later(slot.id, keys))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_later(self, slot_id: str, keys: tuple[str, ...]) -> None:
        give_up = time.monotonic() + self.lease
        while time.monotonic() < give_up:
            await asyncio.sleep(max(self.cooldown, RELEASE_RETRY_SECONDS))
            try:
                await self._remove_slot(slot_id, keys)
                return
            except LimiterUnavailable:
                continue
        log.warning("could not release slot %s; its lease has run out", slot_id)

    async def reserve_tokens(
        self, account_id: str, amount: int, quota: int, seed: SeedTokens, *, now: float | None = None
    ) -> QuotaCheck:
        now = self.now(now)
        period, start, end = month_of(now)
        keys = self._month_keys(account_id, period)
        reservation_id = new_slot_id()
        now_ms = int(now * 1000)
        ttl = int(end.timestamp() - now) + MONTH_TTL_SLACK
        lease_expiry = now_ms + int(self.lease * 1000)
        seed_value = ""
        for _ in range(2):
            args: list[int | str] = [amount, quota, now_ms, reservation_id, lease_expiry, seed_value, ttl]
            self._reservations[reservation_id] = keys[1]
            try:
                reply = await self._call(partial(self._reserve, keys=keys, args=args))
                status, used, reserved = (int(x) for x in reply)
            except BaseException:
                self._reservations.pop(reservation_id, None)
                raise
            if status != -1:
                break
            self._reservations.pop(reservation_id, None)
            seed_value = str(await seed(account_id, start))
        else:  # pragma: no cover - the second call always carries a seed
            raise LimiterUnavailable("quota counter could not be seeded")
        if status == 0:
            self._reservations.pop(reservation_id, None)
            return QuotaCheck(False, used, reserved, quota, None)
        return QuotaCheck(True, used, reserved, quota, Reservation(reservation_id, account_id, period, amount))

    async def settle_tokens(self, reservation: Reservation, used: int) -> None:
        if self._reservations.pop(reservation.id, None) is None:
            return
        keys = self._month_keys(reservation.account_id, reservation.period)
        try:
            await self._call(partial(self._settle, keys=keys, args=[reservation.id, used]))
        except LimiterUnavailable:
            log.warning("could not settle reservation %s (%d tokens used)", reservation.id, used)

    async def in_flight(self, subject: str) -> int:
        key = self._slot_key(subject)
        now_ms = int(time.time() * 1000)
        return int(await self._call(partial(self.client.zcount, key, f"({now_ms}", "+inf")))

    async def tokens(self, account_id: str, *, now: float | None = None) -> tuple[int, int] | None:
        keys = self._month_keys(account_id, month_of(self.now(now))[0])
        read = cast(Callable[[], Awaitable[list[Any]]], partial(self.client.hmget, keys[0], ["used", "reserved"]))
        used, reserved = await self._call(read)
        return None if used is None else (int(used), int(reserved or 0))

    # -- leases ---------------------------------------------------------------------------------

    async def renew_leases(self) -> None:
        """Push the lease expiry of every slot and reservation this process holds."""
        if not self._slots and not self._reservations:
            return
        now_ms = int(time.time() * 1000)
        expiry = now_ms + int(self.lease * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            for slot_id, keys in list(self._slots.items()):
                for key in keys:
                    pipe.zadd(key, {slot_id: expiry}, xx=True)
                    pipe.pexpire(key, 2 * int(self.lease * 1000))
            for reservation_id, key in list(self._reservations.items()):
                pipe.zadd(key, {reservation_id: expiry}, xx=True)
            await self._call(pipe.execute)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.renew_leases()
            except LimiterUnavailable:
                pass
            except Exception:  # pragma: no cover - keep renewing whatever happens
                log.exception("lease renewal failed")
