"""The Redis limiter: N replicas sharing one Redis enforce one limit.

Each decision is one Lua script, so check-and-count is atomic across replicas, and a call costs two
round trips: ADMIT (windows, concurrency slot and quota reservation at once) when it starts, FINISH
(settle, release) when it ends. Both scripts are sent by SHA (``EVALSHA``; loaded once, again only
after a Redis restart):

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
import itertools
import logging
import math
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Literal, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.limiter import resp
from server.limiter.base import (
    Admission,
    Concurrency,
    Entry,
    Limiter,
    LimiterUnavailable,
    QuotaAsk,
    QuotaCheck,
    Reservation,
    SeedTokens,
    Slot,
    Window,
    WindowCount,
    month_of,
)

log = logging.getLogger("plutos.limits.redis")

# One script decides whether a call may start, one ends it: a call costs two round trips.
#
# ADMIT — KEYS: nw window counters, nc concurrency sets, then (when a quota is asked for) the
# month's hash (used, reserved), its reservation leases (zset id -> expiry) and amounts (hash id -> n).
# ARGV: nw, nc, now_ms, slot_id, lease_expiry_ms, set_ttl_ms, (limit, ttl_s) per window, limit per
# set, then ask ('1' or '0'), amount, quota, reservation_id, seed ('' if unknown), month_ttl_s.
# Every window and set is checked first; a call any of them refuses counts nowhere. Then the quota:
# a call it refuses is still counted in the windows (as a rate-limited call would have been before
# the quota was looked at) but takes no slot.
# Returns {allowed, quota status, used, reserved, count per window..., in flight per set...}, the
# counts including this call when it counts. Quota status: 2 not asked (or the call was refused
# before the quota), 1 reserved, 0 refused, -1 the month has no counter yet (call the quota alone
# again with a seed; the windows and the slot are taken).
ADMIT = """
local nw = tonumber(ARGV[1])
local nc = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local allowed = 1
local out = {0, 2, 0, 0}
for i = 1, nw do
  local c = tonumber(redis.call('GET', KEYS[i]) or '0')
  out[4 + i] = c
  if c >= tonumber(ARGV[5 + 2 * i]) then allowed = 0 end
end
local base = 6 + 2 * nw
for j = 1, nc do
  local k = KEYS[nw + j]
  local limit = tonumber(ARGV[base + j])
  local n = redis.call('ZCARD', k)
  if n >= limit then  -- full: first drop the slots whose lease ran out (a replica that died)
    redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
    n = redis.call('ZCARD', k)
  end
  out[4 + nw + j] = n
  if n >= limit then allowed = 0 end
end
if allowed == 0 then return out end
out[1] = 1
local q = base + nc
local status = 2
if ARGV[q + 1] == '1' then
  local m = nw + nc
  local used = redis.call('HGET', KEYS[m + 1], 'used')
  if not used and ARGV[q + 5] ~= '' then
    redis.call('HSETNX', KEYS[m + 1], 'used', ARGV[q + 5])
    redis.call('HSETNX', KEYS[m + 1], 'reserved', 0)
    redis.call('EXPIRE', KEYS[m + 1], ARGV[q + 6])
    used = redis.call('HGET', KEYS[m + 1], 'used')
  end
  if not used then
    status = -1
  else
    used = tonumber(used)
    local reserved = tonumber(redis.call('HGET', KEYS[m + 1], 'reserved') or '0')
    local amount = tonumber(ARGV[q + 2])
    local quota = tonumber(ARGV[q + 3])
    if amount > 0 and used + reserved >= quota then  -- first drop reservations whose lease ran out
      local expired = redis.call('ZRANGEBYSCORE', KEYS[m + 2], '-inf', now)
      for _, id in ipairs(expired) do
        local gone = tonumber(redis.call('HGET', KEYS[m + 3], id) or '0')
        redis.call('HINCRBY', KEYS[m + 1], 'reserved', 0 - gone)
        redis.call('HDEL', KEYS[m + 3], id)
        redis.call('ZREM', KEYS[m + 2], id)
        reserved = reserved - gone
      end
    end
    if amount > 0 and used + reserved >= quota then
      status = 0
    else
      redis.call('HINCRBY', KEYS[m + 1], 'reserved', amount)
      redis.call('ZADD', KEYS[m + 2], ARGV[5], ARGV[q + 4])
      redis.call('HSET', KEYS[m + 3], ARGV[q + 4], amount)
      redis.call('EXPIRE', KEYS[m + 2], ARGV[q + 6])
      redis.call('EXPIRE', KEYS[m + 3], ARGV[q + 6])
      reserved = reserved + amount
      status = 1
    end
    out[3] = used
    out[4] = reserved
  end
end
out[2] = status
for i = 1, nw do
  local c = redis.call('INCR', KEYS[i])
  if c == 1 then redis.call('EXPIRE', KEYS[i], ARGV[6 + 2 * i]) end
  out[4 + i] = c
end
if status ~= 0 then
  for j = 1, nc do
    local k = KEYS[nw + j]
    redis.call('ZADD', k, ARGV[5], ARGV[4])
    redis.call('PEXPIRE', k, ARGV[6])
    out[4 + nw + j] = out[4 + nw + j] + 1
  end
end
return out
"""

# FINISH — settle a reservation (replace it by the tokens used), then give a slot back. Idempotent:
# a reservation already settled (or expired) is not counted again, a slot already gone stays gone.
# KEYS: nc concurrency sets, then (when settling) the month's three keys as in ADMIT.
# ARGV: nc, slot_id, reservation_id ('' when none), tokens used. Returns 1 if it settled.
FINISH = """
local nc = tonumber(ARGV[1])
for j = 1, nc do redis.call('ZREM', KEYS[j], ARGV[2]) end
if ARGV[3] == '' then return 0 end
local amount = redis.call('HGET', KEYS[nc + 3], ARGV[3])
if not amount then return 0 end
redis.call('HINCRBY', KEYS[nc + 1], 'reserved', 0 - tonumber(amount))
redis.call('HDEL', KEYS[nc + 3], ARGV[3])
redis.call('ZREM', KEYS[nc + 2], ARGV[3])
if redis.call('HEXISTS', KEYS[nc + 1], 'used') == 1 then
  redis.call('HINCRBY', KEYS[nc + 1], 'used', ARGV[4])
end
return 1
"""

_ID = [secrets.token_hex(6)]
_ID_COUNT = itertools.count(1)
os.register_at_fork(after_in_child=lambda: _ID.__setitem__(0, secrets.token_hex(6)))

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
        # ADMIT and FINISH on one pipelined connection (resp.Pipe); False, or a TLS URL: redis-py.
        pipelined: bool = True,
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
        self._admit_script = self.client.register_script(ADMIT)
        self._finish_script = self.client.register_script(FINISH)
        # The two scripts of every call go through one pipelined connection (redis-py for TLS).
        self._pipe = resp.Pipe(url, timeout=timeout) if pipelined and resp.supports(url) else None
        self._admit_sha = resp.Script(ADMIT)
        self._finish_sha = resp.Script(FINISH)
        self._down_until = 0.0
        # Leases this process renews: slot id -> concurrency keys; reservation id -> lease key.
        self._slots: dict[str, tuple[str, ...]] = {}
        self._reservations: dict[str, str] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()  # ends of calls done once Redis answers again

    def _new_id(self) -> str:
        """A slot or reservation id, unique across processes and replicas: 48 random bits drawn once
        per process (again in a forked child), then a counter — no system call per id."""
        return f"{_ID[0]}{next(_ID_COUNT):x}"

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
        for task in list(self._ending):
            task.cancel()
        if self._pipe is not None:
            self._pipe.close()
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

    def _run(self, which: Literal["admit", "finish"], keys: list[str], args: list[Any]) -> Any:
        """The ``_call`` work of one script: on the pipelined connection when there is one."""
        if self._pipe is not None:
            return partial(self._pipe.evalsha, self._admit_sha if which == "admit" else self._finish_sha, keys, args)
        return partial(self._admit_script if which == "admit" else self._finish_script, keys=keys, args=args)

    async def admit(
        self,
        windows: Sequence[Window],
        concurrency: Sequence[Concurrency],
        quota: QuotaAsk | None,
        *,
        now: float | None = None,
    ) -> Entry:
        """Windows, concurrency and quota in one ADMIT script (a second one, for the quota alone,
        only when the month's counter must first be seeded from the ledger)."""
        now = self.now(now)
        now_ms = int(now * 1000)
        lease_ms = int(self.lease * 1000)
        slot_id = self._new_id() if concurrency else ""
        slot_keys = tuple(self._slot_key(c.subject) for c in concurrency)
        keys = [self._window_key(w, now) for w in windows]
        keys += slot_keys
        args: list[Any] = [len(windows), len(concurrency), now_ms, slot_id, now_ms + lease_ms, 2 * lease_ms]
        for w in windows:
            args += [w.limit, math.ceil(w.start(now) + w.seconds - now) + 60]
        args += [c.limit for c in concurrency]
        reservation_id = ""
        month_keys: list[str] = []
        period = ""
        if quota is None:
            args.append("0")
        else:
            reservation_id = self._new_id()
            period, _, end = month_of(now)
            month_keys = self._month_keys(quota.account_id, period)
            keys += month_keys
            month_ttl = int(end.timestamp() - now) + MONTH_TTL_SLACK
            args += ["1", quota.amount, quota.quota, reservation_id, "", month_ttl]
            # Renewed from now on: if this call is cancelled mid-flight the script may still have run.
            self._reservations[reservation_id] = month_keys[1]
        if concurrency:
            self._slots[slot_id] = slot_keys
        try:
            reply = await self._call(self._run("admit", keys, args))
        except BaseException as err:
            # Cancelled after sending, the script may still run: undo it until Redis answers. Redis
            # unreachable: it most likely did not run; one attempt, else the leases run out.
            cancelled = isinstance(err, asyncio.CancelledError)
            self._end_later(slot_id, slot_keys, reservation_id, month_keys, 0, retry=cancelled)
            raise
        allowed, status, used, reserved = (int(x) for x in reply[:4])
        counts = [int(x) for x in reply[4:]]
        check = None
        if allowed and status == -1 and quota is not None:  # the month's counter must be seeded first
            try:
                seed = str(await quota.seed(quota.account_id, month_of(now)[1]))
                status, used, reserved = await self._reserve_seeded(quota, now, reservation_id, seed)
            except BaseException as err:
                cancelled = isinstance(err, asyncio.CancelledError)
                self._end_later(slot_id, slot_keys, reservation_id, month_keys, 0, retry=cancelled)
                raise
            if status == 0 and concurrency:  # refused: give back the slot the first script took
                counts[len(windows) :] = [n - 1 for n in counts[len(windows) :]]
                await self.finish(Slot(slot_id, tuple(c.subject for c in concurrency)), None, 0)
        if allowed and quota is not None:
            if status == 1:
                reservation = Reservation(reservation_id, quota.account_id, period, quota.amount)
                check = QuotaCheck(True, used, reserved, quota.quota, reservation)
            else:
                check = QuotaCheck(False, used, reserved, quota.quota, None)
        if check is None or check.reservation is None:
            self._reservations.pop(reservation_id, None)
        slot = None
        if concurrency:
            if allowed and status != 0:
                slot = Slot(slot_id, tuple(c.subject for c in concurrency))
            else:
                self._slots.pop(slot_id, None)
        admission = Admission(
            allowed=bool(allowed),
            windows=tuple(WindowCount(w, counts[i], w.start(now) + w.seconds) for i, w in enumerate(windows)),
            in_flight=tuple((c, counts[len(windows) + j]) for j, c in enumerate(concurrency)),
            slot=slot,
            now=now,
        )
        return Entry(admission, check)

    async def _reserve_seeded(
        self, quota: QuotaAsk, now: float, reservation_id: str, seed: str
    ) -> tuple[int, int, int]:
        """ADMIT for the quota alone, seeding the month's counter if it is still missing."""
        now_ms = int(now * 1000)
        period, _, end = month_of(now)
        keys = self._month_keys(quota.account_id, period)
        month_ttl = int(end.timestamp() - now) + MONTH_TTL_SLACK
        args: list[int | str] = [0, 0, now_ms, "", now_ms + int(self.lease * 1000), 0]
        args += ["1", quota.amount, quota.quota, reservation_id, seed, month_ttl]
        reply = await self._call(self._run("admit", keys, args))
        status, used, reserved = (int(x) for x in reply[1:4])
        if status == -1:  # pragma: no cover - a seeded counter always exists
            raise LimiterUnavailable("quota counter could not be seeded")
        return status, used, reserved

    async def acquire(
        self, windows: Sequence[Window], concurrency: Sequence[Concurrency], *, now: float | None = None
    ) -> Admission:
        return (await self.admit(windows, concurrency, None, now=now)).admission

    async def reserve_tokens(
        self, account_id: str, amount: int, quota: int, seed: SeedTokens, *, now: float | None = None
    ) -> QuotaCheck:
        check = (await self.admit((), (), QuotaAsk(account_id, amount, quota, seed), now=now)).quota
        assert check is not None  # no window or slot can refuse
        return check

    async def release(self, slot: Slot) -> None:
        await self.finish(slot, None, 0)

    async def settle_tokens(self, reservation: Reservation, used: int) -> None:
        await self.finish(None, reservation, used)

    async def finish(self, slot: Slot | None, reservation: Reservation | None, used: int) -> None:
        """One FINISH script. What Redis cannot take now is retried in the background (the slot and
        the reservation count against the limits until then) until a lease has passed."""
        slot_id, slot_keys, reservation_id, month_keys = self._claim(slot, reservation)
        if not slot_id and not reservation_id:
            return
        try:
            await self._end(slot_id, slot_keys, reservation_id, month_keys, used)
        except LimiterUnavailable:
            # Until Redis answers again (a burst that ran the pool dry, a restart) the slot and the
            # reservation count against the limits; the call that held them is over.
            self._end_later(slot_id, slot_keys, reservation_id, month_keys, used, retry=True)

    def finish_soon(self, slot: Slot | None, reservation: Reservation | None, used: int) -> asyncio.Future[None] | None:
        """FINISH written to the pipelined connection now (no task, no await before it leaves);
        if it fails, it is retried in the background as :meth:`finish` does."""
        pipe = self._pipe
        if pipe is None or not pipe.connected or time.monotonic() < self._down_until:
            return None
        slot_id, slot_keys, reservation_id, month_keys = self._claim(slot, reservation)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if not slot_id and not reservation_id:
            done.set_result(None)
            return done
        keys = [*slot_keys, *month_keys] if reservation_id else list(slot_keys)
        reply = pipe.send_evalsha(self._finish_sha, keys, [len(slot_keys), slot_id, reservation_id, used])

        def answered(sent: asyncio.Future[Any]) -> None:
            err = asyncio.CancelledError() if sent.cancelled() else sent.exception()
            if err is not None or isinstance(sent.result(), hiredis.ReplyError):
                if isinstance(err, (RedisConnectionError, RedisTimeoutError, OSError)):
                    self._down_until = time.monotonic() + self.cooldown
                    log.warning("redis limiter unavailable: %s", err)
                self._end_later(slot_id, slot_keys, reservation_id, month_keys, used, retry=True)
            if not done.done():
                done.set_result(None)

        reply.add_done_callback(answered)
        return done

    def _claim(self, slot: Slot | None, reservation: Reservation | None) -> tuple[str, tuple[str, ...], str, list[str]]:
        """The ids and keys of what a FINISH must end; those already ended (or never held) are ''."""
        slot_id, slot_keys = "", cast(tuple[str, ...], ())
        if slot is not None and self._slots.pop(slot.id, None) is not None:  # not ended yet
            slot_id, slot_keys = slot.id, tuple(self._slot_key(s) for s in slot.subjects)
        reservation_id, month_keys = "", []
        if reservation is not None and self._reservations.pop(reservation.id, None) is not None:
            reservation_id = reservation.id
            month_keys = self._month_keys(reservation.account_id, reservation.period)
        return slot_id, slot_keys, reservation_id, month_keys

    async def _end(
        self, slot_id: str, slot_keys: tuple[str, ...], reservation_id: str, month_keys: list[str], used: int
    ) -> None:
        keys = [*slot_keys, *month_keys] if reservation_id else list(slot_keys)
        args: list[int | str] = [len(slot_keys), slot_id, reservation_id, used]
        await self._call(self._run("finish", keys, args))

    def _end_later(
        self,
        slot_id: str,
        slot_keys: tuple[str, ...],
        reservation_id: str,
        month_keys: list[str],
        used: int,
        *,
        retry: bool,
    ) -> None:
        """FINISH in the background: at once, then — if ``retry`` — every second until Redis
        answers or a lease has passed (else the leases run out on their own)."""
        if not slot_id and not reservation_id:
            return
        if reservation_id:  # keep the reservation's lease alive until it is settled
            self._reservations[reservation_id] = month_keys[1]
        self._slots.pop(slot_id, None)  # a slot's lease need not outlive the call that held it

        async def end() -> None:
            give_up = time.monotonic() + self.lease
            try:
                while True:
                    try:
                        await self._end(slot_id, slot_keys, reservation_id, month_keys, used)
                        return
                    except LimiterUnavailable:
                        if not retry:
                            return
                        if time.monotonic() >= give_up:
                            log.warning(
                                "could not end slot %s / reservation %s (%d tokens used); their leases run out",
                                slot_id or "-", reservation_id or "-", used,
                            )  # fmt: skip
                            return
                    await asyncio.sleep(max(self.cooldown, RELEASE_RETRY_SECONDS))
            finally:
                self._reservations.pop(reservation_id, None)

        task = asyncio.get_running_loop().create_task(end())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

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
