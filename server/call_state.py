"""Per-call state shared by the interceptors and the services (a ``ContextVar``).

The interceptor chain and the RPC handler run in the same task, so what an interceptor sets here
(request id, the authenticated caller, rate-limit figures) the handler reads without plumbing.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import grpc

from server.config import Plan
from server.keys import DEFAULT_SCOPES


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated account and key behind a call."""

    account_id: str
    key_id: str
    plan: Plan
    scopes: frozenset[str] | None  # None: every scope
    models: frozenset[str] | None  # None: every model
    limits: dict[str, int] = field(default_factory=dict)  # per-key overrides, lower than the plan's
    key_prefix: str = ""  # the key's visible prefix (for logs; never the key)
    suspended: bool = False  # the account is suspended: every call gets 403 account_suspended
    cache_default: str | None = None  # options.cache when a call does not set it (the key's)

    def has_scope(self, scope: str) -> bool:
        return scope in (DEFAULT_SCOPES if self.scopes is None else self.scopes)

    def allows_model(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models


# Response metadata that describe the answer itself rather than this one call (the request id,
# rate-limit figures and Retry-After are the call's own): kept with an idempotent answer and sent
# again with its replays, so a replay carries the headers of the first answer.
ANSWER_METADATA = frozenset({"x-process-id", "x-cache"})


@dataclass(slots=True)
class CallState:
    request_id: str
    method: str
    caller: Caller | None = None
    authorization: str | None = None  # the incoming ``authorization`` metadata, read once
    idempotency_key: str | None = None  # the incoming ``idempotency-key`` metadata, if any
    # Sent to the client on every outcome: initial metadata for streams, trailing otherwise.
    response_metadata: dict[str, str] = field(default_factory=dict)
    initial_metadata_sent: bool = False
    # Tokens billed to the ledger by this call so far; the quota interceptor settles with it.
    tokens_used: int = 0
    # For the request log line: what the call billed, its error code, its upstream time (seconds),
    # its output (kept only when log_bodies is on), and a cache / idempotency outcome if any.
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_units: int = 0
    error_code: str | None = None
    upstream_seconds: float = 0.0
    output: str | None = None
    cache_outcome: str | None = None
    # The answer's record was stored as completed: a streaming client that leaves after that (an
    # SDK closing the connection on the final event) ended a whole call, not a cancelled one.
    completed: bool = False

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return tuple(self.response_metadata.items())

    def answer_metadata(self) -> dict[str, str]:
        """The response metadata that belong to the answer (:data:`ANSWER_METADATA`) set so far."""
        return {k: v for k, v in self.response_metadata.items() if k in ANSWER_METADATA}

    async def send_initial_metadata(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Accept a streaming call: headers go out now, so the bridge can start the SSE response."""
        if not self.initial_metadata_sent:
            self.initial_metadata_sent = True
            await context.send_initial_metadata(self.metadata())


current_call: ContextVar[CallState] = ContextVar("current_call")


def call_state() -> CallState:
    return current_call.get()


def caller() -> Caller:
    """The authenticated caller of the current RPC (set by the auth interceptor)."""
    c = current_call.get().caller
    if c is None:  # pragma: no cover - the auth interceptor guarantees it
        raise RuntimeError("no authenticated caller in this context")
    return c
