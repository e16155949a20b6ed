"""The dispatcher: sends due outbox rows, records every attempt, retries on a bounded schedule.

Claiming is one statement, ``UPDATE webhook_deliveries SET attempts = attempts + 1,
next_attempt_at = now + lease WHERE id IN (SELECT ... WHERE status = 'pending' AND
next_attempt_at <= now ... FOR UPDATE SKIP LOCKED) RETURNING ...`` (``SKIP LOCKED`` on PostgreSQL;
SQLite runs one writer at a time), so several processes or replicas never send the same delivery
at the same time. A claim is a lease, renewed while this process still holds it (sending, or
recording its outcome): if the process dies mid-send (``kill -9``), the row is still ``pending``
and goes out again once the lease ends — at-least-once delivery; receivers dedupe by
``webhook-id``. Results are written only if the row is still the claim we made
(``attempts`` unchanged), so a stale sender never overwrites a newer claim.

Claims and results are batched: a claim takes as many due rows as there are free send slots (and
waits for half of the slots to be free while sends are in flight), and a recorder task writes
the outcomes that piled up — attempt rows and delivery updates — in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.observability.metrics import WEBHOOK_DELIVERIES
from server.store.faults import is_transient
from server.store.models import UTCDateTime, Webhook, WebhookAttempt, WebhookDelivery, utcnow
from server.webhook_delivery.destinations import DestinationRefused, check_destination, parse_webhook_url
from server.webhook_delivery.settings import WebhookSettings
from server.webhook_delivery.signing import header_signature, signed_body

log = logging.getLogger("plutos.webhooks")

USER_AGENT = "PlutosAI-Webhooks/1.0"
MAX_RESPONSE_BYTES = 64 * 1024  # read at most this much of a receiver's answer
MAX_ERROR_CHARS = 500
MAX_RECORD_BATCH = 500
RECORD_RETRY_SECONDS = 30.0

_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[assignment]
_ATTEMPTS: Table = WebhookAttempt.__table__  # type: ignore[assignment]
# One statement for every outcome, run as executemany; fenced on the claim (attempts) we made.
_RECORD_OUTCOME = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("b_id"),
        _DELIVERIES.c.attempts == bindparam("b_attempt"),
        _DELIVERIES.c.status == "pending",
    )
    .values(
        status=bindparam("b_status"),
        next_attempt_at=bindparam("b_next", type_=UTCDateTime()),
        last_status_code=bindparam("b_code"),
        last_error=bindparam("b_error"),
        delivered_at=bindparam("b_delivered", type_=UTCDateTime()),
    )
)


_RENEW_LEASE = (
    update(_DELIVERIES)
    .where(
        _DELIVERIES.c.id == bindparam("b_id"),
        _DELIVERIES.c.attempts == bindparam("b_attempt"),
        _DELIVERIES.c.status == "pending",
    )
    .values(next_attempt_at=bindparam("b_until", type_=UTCDateTime()))
)


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    webhook_id: str
    payload: str
    attempt: int  # the attempt number this claim makes (1 = first)
    url: str | None  # None: the webhook was deleted
    secret: str | None


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None
    error: str | None
    permanent: bool = False  # no point retrying (webhook deleted)


@dataclass(frozen=True, slots=True)
class Attempted:
    delivery: Claimed
    outcome: Outcome
    started_at: datetime
    duration_ms: int


class Dispatcher:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], config: WebhookSettings) -> None:
        self._sessions = sessions
        self.config = config
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._outcomes: asyncio.Queue[Attempted | None] = asyncio.Queue()
        self._recorder: asyncio.Task[None] | None = None
        self._claim_batch = max(1, config.concurrency // 2)
        # Claims this process holds until their outcome is recorded: delivery id -> attempt number.
        # Their leases are renewed (every lease / 3 seconds), so a slow send or a recording that
        # waits for a busy store never lets another process send the same delivery again.
        self._held: dict[str, int] = {}
        self._renewer: asyncio.Task[None] | None = None

    def open_client(self) -> None:
        """The shared HTTP client (``start`` opens it; call alone to use :meth:`send` by itself)."""
        c = self.config
        self._client = httpx.AsyncClient(
            timeout=c.timeout,
            follow_redirects=False,
            trust_env=False,  # a proxy from the environment would bypass the address checks
            limits=httpx.Limits(max_connections=c.concurrency, max_keepalive_connections=c.concurrency),
        )

    def start(self) -> None:
        self.open_client()
        self._recorder = asyncio.create_task(self._record_loop(), name="webhook-recorder")
        self._renewer = asyncio.create_task(self._renew_loop(), name="webhook-lease-renewer")
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    def wake(self) -> None:
        """New deliveries were committed: look now rather than at the next poll."""
        self._wake.set()

    async def close(self, grace: float = 2.0) -> None:
        """Stop claiming; give in-flight sends ``grace`` seconds, then cancel them (their rows stay
        pending and go out after the lease, from this or another process)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._inflight:
            _, pending = await asyncio.wait(set(self._inflight), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._recorder is not None:
            self._outcomes.put_nowait(None)  # record what finished, then stop
            await self._recorder
            self._recorder = None
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            free = self.config.concurrency - len(self._inflight)
            claimed: list[Claimed] = []
            if free >= self._claim_batch or (free > 0 and not self._inflight):
                try:
                    claimed = await self.claim(free)
                except Exception:  # the database may be briefly unavailable: try again later
                    log.exception("claiming webhook deliveries failed")
            for delivery in claimed:
                task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
                self._inflight.add(task)
                task.add_done_callback(self._finished)
            if claimed and len(claimed) == free:
                continue  # there may be more due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.poll_interval)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._wake.set()  # a slot is free

    async def claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due deliveries to this process."""
        now = utcnow()
        d = WebhookDelivery
        # A read first, so an idle dispatcher never opens a write transaction (SQLite has one writer).
        async with self._sessions() as session:
            anything_due = (
                await session.execute(select(d.id).where(d.status == "pending", d.next_attempt_at <= now).limit(1))
            ).first()
        if anything_due is None:
            return []
        due = (
            select(d.id)
            .where(d.status == "pending", d.next_attempt_at <= now)
            .order_by(d.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        stmt = (
            update(d)
            .where(d.id.in_(due.scalar_subquery()))
            .values(attempts=d.attempts + 1, next_attempt_at=now + timedelta(seconds=self.config.lease))
            .returning(d.id, d.webhook_id, d.payload, d.attempts)
            .execution_options(synchronize_session=False)
        )
        async with self._sessions.begin() as session:
            rows = (await session.execute(stmt)).all()
            if not rows:
                return []
            hooks = {
                h.id: (h.url, h.secret)
                for h in (
                    await session.execute(
                        select(Webhook.id, Webhook.url, Webhook.secret).where(Webhook.id.in_({r[1] for r in rows}))
                    )
                ).all()
            }
        return [
            Claimed(
                id=i,
                webhook_id=w,
                payload=p,
                attempt=a,
                url=hooks.get(w, (None, None))[0],
                secret=hooks.get(w, (None, None))[1],
            )
            for i, w, p, a in rows
        ]

    async def _renew_loop(self) -> None:
        """Extend the leases of the claims this process still holds, every ``lease / 3`` seconds."""
        while True:
            await asyncio.sleep(self.config.lease / 3)
            if not self._held:
                continue
            try:
                await self.renew(dict(self._held))
            except Exception:  # the lease still runs; the next round tries again
                log.warning("renewing %d webhook leases failed", len(self._held), exc_info=True)

    async def renew(self, held: dict[str, int]) -> None:
        """``next_attempt_at = now + lease`` for each held claim still ours (same attempt, pending)."""
        until = utcnow() + timedelta(seconds=self.config.lease)
        async with self._sessions.begin() as session:
            await session.execute(
                _RENEW_LEASE, [{"b_id": i, "b_attempt": a, "b_until": until} for i, a in held.items()]
            )

    async def _deliver(self, delivery: Claimed) -> None:
        self._held[delivery.id] = delivery.attempt
        started = utcnow()
        t0 = time.perf_counter()
        try:
            outcome = await self.send(delivery)
        except Exception as exc:  # never lose the bookkeeping to an unexpected error
            log.exception("webhook delivery %s failed unexpectedly", delivery.id)
            outcome = Outcome(False, None, f"internal error: {type(exc).__name__}")
        self._outcomes.put_nowait(Attempted(delivery, outcome, started, int((time.perf_counter() - t0) * 1000)))

    async def send(self, delivery: Claimed) -> Outcome:
        """One HTTP attempt: resolve, check the address, POST to it, read the status."""
        if delivery.url is None:
            return Outcome(False, None, "webhook deleted", permanent=True)
        assert self._client is not None, "dispatcher not started"
        try:
            url = parse_webhook_url(delivery.url)
            addresses = await check_destination(url, self.config.allow_private_urls)
        except DestinationRefused as exc:
            return Outcome(False, None, f"refused: {exc}")
        except (OSError, TimeoutError, ValueError) as exc:
            return Outcome(False, None, f"cannot resolve: {exc or type(exc).__name__}"[:MAX_ERROR_CHARS])
        body = signed_body(delivery.payload.encode("utf-8"), delivery.secret)
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            # Connect to the checked address; the Host header (and TLS SNI) keep the name.
            "host": url.netloc.decode("ascii"),
        }
        if delivery.secret:
            headers["webhook-signature"] = header_signature(delivery.secret, delivery.id, timestamp, body)
        target = url.copy_with(host=str(addresses[0]))
        extensions = {"sni_hostname": url.host} if url.scheme == "https" else {}
        try:
            request = self._client.build_request("POST", target, content=body, headers=headers, extensions=extensions)
            response = await self._client.send(request, stream=True)
            try:
                received = 0
                async for chunk in response.aiter_raw():
                    received += len(chunk)
                    if received > MAX_RESPONSE_BYTES:
                        break
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            return Outcome(False, None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        if 200 <= response.status_code < 300:
            return Outcome(True, response.status_code, None)
        return Outcome(False, response.status_code, f"HTTP {response.status_code}")

    def retry_delay(self, attempt: int) -> float | None:
        """Seconds before the attempt after ``attempt``; None after the last one."""
        schedule = self.config.retry_schedule
        if attempt > len(schedule):
            return None
        jitter = self.config.retry_jitter
        return schedule[attempt - 1] * random.uniform(1 - jitter, 1 + jitter)

    async def _record_loop(self) -> None:
        """Write outcomes in batches until the ``None`` that :meth:`close` sends."""
        stopping = False
        while not stopping:
            first = await self._outcomes.get()
            batch = [] if first is None else [first]
            stopping = first is None
            while len(batch) < MAX_RECORD_BATCH and not self._outcomes.empty():
                item = self._outcomes.get_nowait()
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                await self._record_retrying(batch)
                for item in batch:  # recorded (or given up on): no longer ours to renew
                    if self._held.get(item.delivery.id) == item.delivery.attempt:
                        del self._held[item.delivery.id]

    async def _record_retrying(self, batch: list[Attempted], budget: float = RECORD_RETRY_SECONDS) -> None:
        """:meth:`record`, again after transient failures (a lock held elsewhere, a dropped
        connection) for up to ``budget`` seconds: an outcome not recorded means the delivery goes
        out again after its lease (a duplicate for the receiver)."""
        deadline = time.monotonic() + budget
        pause = 0.05
        while True:
            try:
                await self.record(batch)
                return
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() + pause > deadline:
                    # The rows stay claimed; they are sent again after their lease.
                    log.exception("recording %d webhook attempts failed", len(batch))
                    return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def record(self, batch: list[Attempted]) -> None:
        """Each attempt's row, and its delivery's new state, in one transaction."""
        now = utcnow()
        attempts: list[dict[str, object]] = []
        updates: list[dict[str, object]] = []
        for item in batch:
            d, o = item.delivery, item.outcome
            attempts.append(
                {
                    "delivery_id": d.id,
                    "attempt": d.attempt,
                    "started_at": item.started_at,
                    "duration_ms": item.duration_ms,
                    "status_code": o.status_code,
                    "error": o.error,
                }
            )
            delay = None if o.permanent or o.delivered else self.retry_delay(d.attempt)
            status = "delivered" if o.delivered else ("failed" if delay is None else "pending")
            WEBHOOK_DELIVERIES.labels("retry" if status == "pending" else status).inc()
            updates.append(
                {
                    "b_id": d.id,
                    "b_attempt": d.attempt,
                    "b_status": status,
                    "b_next": now + timedelta(seconds=delay or 0),
                    "b_code": o.status_code,
                    "b_error": o.error,
                    "b_delivered": now if o.delivered else None,
                }
            )
            if not o.delivered:
                log.info("webhook delivery %s attempt %d: %s (%s)", d.id, d.attempt, o.error, status)
        async with self._sessions.begin() as session:
            await session.execute(insert(_ATTEMPTS), attempts)
            await session.execute(_RECORD_OUTCOME, updates)
