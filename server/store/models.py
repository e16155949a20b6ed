"""Tables. Timestamps are timezone-aware UTC; money is an exact integer count of 10^-10 USD."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, configure_mappers, mapped_column
from sqlalchemy.orm.instrumentation import manager_of_class
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


# Money is stored as an integer number of 10^-10 USD ("cost units"): SQLite has no exact decimal
# type (NUMERIC columns hold floats there), while 64-bit integers add up exactly on every database.
COST_UNITS_PER_USD = 10**10


def usd_to_units(value: Decimal) -> int:
    """Exact for amounts with at most 10 decimal places; finer amounts round half-even."""
    return int((value * COST_UNITS_PER_USD).to_integral_value(rounding=ROUND_HALF_EVEN))


def units_to_usd(units: int) -> Decimal:
    return Decimal(int(units)).scaleb(-10)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always returns aware datetimes (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    plan: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set while the account is suspended: its keys get 403 account_suspended.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored, with a short visible prefix."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Permission scopes (None = all) and model allow-list (None = all).
    scopes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    models: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    # Per-key limits lower than the plan's (None = the plan's).
    requests_per_minute: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requests_per_hour: Mapped[int | None] = mapped_column(Integer, nullable=True)
    requests_per_day: Mapped[int | None] = mapped_column(Integer, nullable=True)
    concurrent_requests: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # Set on a key that was rotated: the id of the key that replaced it.
    replaced_by: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # When the key last authenticated a call, to within the authenticator's flush interval
    # (server/authenticator.py: noted in memory per call, written in the background).
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # options.cache for the key's calls that do not say ("use", "refresh", "bypass"); None: "bypass".
    cache_default: Mapped[str | None] = mapped_column(String(16), nullable=True)


class ProcessRecord(Base):
    """One processed input: a /process call, a /stream call, or one item of a /batch."""

    __tablename__ = "process_records"
    # Serves GET /v1/process (an account's records, newest first, keyset pagination on
    # (created_at, id)) and every lookup by account.
    __table_args__ = (Index("ix_process_records_account_created_id", "account_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))  # process | stream | batch
    # A foreign key on PostgreSQL (migration c4d1e7a9b2f3); the writer puts batches before records.
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("batches.id", name="fk_process_records_batch_id_batches"), nullable=True, index=True
    )
    batch_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model: Mapped[str] = mapped_column(String(200))
    input: Mapped[str] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    output: Mapped[str] = mapped_column(Text, default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16))  # completed | cancelled | failed
    error_code: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processing_time_ms: Mapped[int] = mapped_column(Integer, default=0)
    # Answered from the response cache: no model ran.
    cached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class Batch(Base):
    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    key_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    item_count: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    processing_time_ms: Mapped[int] = mapped_column(Integer, default=0)


class LedgerEntry(Base):
    """One billable call (a process, a stream, one batch item). Cost in exact integer units."""

    __tablename__ = "usage_ledger"
    __table_args__ = (Index("ix_usage_ledger_account_created", "account_id", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(40))
    record_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(200))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cost_units: Mapped[int] = mapped_column(BigInteger)  # USD * COST_UNITS_PER_USD
    # Whether this entry counts as a request (a batch counts once, on its first billed item).
    counts_as_request: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # 1 for a request answered from the response cache (counted in /v1/usage's cachedRequests).
    cached: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    @property
    def cost(self) -> Decimal:
        """Exact USD."""
        return units_to_usd(self.cost_units)

    @cost.setter
    def cost(self, value: Decimal) -> None:
        self.cost_units = usd_to_units(value)


class UsageDaily(Base):
    """Per account, UTC day and model: the sums of the ledger's entries, kept in the same
    transaction as the entries (see server/store/usage_rollup.py), so /usage reads at most
    (days x models) rows however large the ledger grows."""

    __tablename__ = "usage_daily"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_units: Mapped[int] = mapped_column(BigInteger, default=0)
    cached_requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class IdempotencyKey(Base):
    """A claimed idempotency key and, once its call finished, the answer replayed to repeats
    (server/idempotency). The primary key makes a claim atomic across replicas."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of the method and the request
    owner: Mapped[str] = mapped_column(String(32))  # random per claim
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime())  # a running claim's lease
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class Webhook(Base):
    """A URL that receives an account's events. The secret is kept as given: HMAC needs it."""

    __tablename__ = "webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(String(40), index=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    secret: Mapped[str | None] = mapped_column(String(300), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written in the transaction of the record it describes.

    ``id`` is the ``webhook-id`` header (the same on every attempt, so receivers can dedupe)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # A webhook's deliveries newest first (GET /v1/webhooks/{id}/deliveries, keyset pages).
        Index("ix_webhook_deliveries_webhook_created_id", "webhook_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    webhook_id: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(40))
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, without "signature"
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class WebhookAttempt(Base):
    """Every delivery attempt and its outcome."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    delivery_id: Mapped[str] = mapped_column(String(40), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class UsageThresholdCrossing(Base):
    """Which monthly-quota thresholds fired for which account and month. The primary key makes
    the event fire once per threshold per period, whichever replica sees the crossing first."""

    __tablename__ = "usage_threshold_crossings"

    account_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    period: Mapped[str] = mapped_column(String(7), primary_key=True)  # YYYY-MM (UTC)
    threshold_bp: Mapped[int] = mapped_column(Integer, primary_key=True)  # basis points of the quota
    used_tokens: Mapped[int] = mapped_column(BigInteger)
    crossed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditEvent(Base):
    """A change to a key or an account: who (the acting key, or "cli"), what, when."""

    __tablename__ = "audit_events"
    __table_args__ = (
        Index("ix_audit_events_created_id", "created_at", "id"),
        Index("ix_audit_events_account_created", "account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    actor: Mapped[str] = mapped_column(String(40))
    account_id: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(40))
    target_id: Mapped[str] = mapped_column(String(40))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


_Row = TypeVar("_Row", bound=Base)


def new_row(cls: type[_Row], **values: Any) -> _Row:
    """A new ``cls`` for the group-commit writer, built without attribute events.

    The declarative constructor fires an instrumentation event per attribute (a few µs each, ~20
    per call on the hot path); these objects never join a Session — the writer reads their
    ``__dict__`` and hooks read their attributes — so the values go straight into ``__dict__``.
    Only columns (no properties such as ``LedgerEntry.cost``), exactly as the constructor would
    get them: columns not given still take their defaults on insert."""
    global _configured
    if not _configured:  # the constructor would have configured the mappers on first use
        configure_mappers()
        _configured = True
    instance: _Row = manager_of_class(cls).new_instance()
    instance.__dict__.update(values)
    return instance


_configured = False


def salvaged_record(record: ProcessRecord) -> ProcessRecord:
    """What is stored when the store refuses a record (RecordWriter salvage): the same id, account,
    model and token counts, marked failed with ``internal_error``, without the caller's text. Its
    ledger entry is stored as usual: the tokens were used."""
    values = {k: v for k, v in record.__dict__.items() if not k.startswith("_")}
    values.update(input="", output="", options={}, status="failed", error_code="internal_error")
    return new_row(ProcessRecord, **values)
