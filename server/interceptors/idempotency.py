"""The interceptor: claims the call's idempotency key, replays a finished answer, stores new ones."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_interceptor.server import AsyncServerInterceptor
from plutos.v1 import options_pb2

from core.errors import PlutosError, invalid_parameter
from core.idempotency_keys import MAX_KEY_LENGTH, valid_key
from server.call_state import CallState, current_call
from server.idempotency.store import CLAIMED, IN_PROGRESS, MISMATCH, Claim, IdempotencyStore, Outcome
from server.interceptors.base import Handler, call_next
from server.interceptors.limits import Finisher, finish_all

log = logging.getLogger("plutos.idempotency")

REPLAYED_METADATA = "idempotent-replayed"
# Failures a retry should run again rather than be told again: the call was cut short (499), a
# conflict or a limit that passes (409, 429), or the server's fault (5xx).
_RETRYABLE_HTTP = frozenset({409, 429, 499})


@dataclass(frozen=True, slots=True)
class IdempotentMethod:
    response_type: type[Message]
    streaming: bool


def idempotent_methods(modules: Iterable[ModuleType]) -> dict[str, IdempotentMethod]:
    """``/package.Service/Method`` → its response type, for each RPC marked
    ``option (plutos.v1.idempotent) = true`` in the generated ``*_pb2`` modules."""
    found: dict[str, IdempotentMethod] = {}
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                if method.GetOptions().Extensions[options_pb2.idempotent]:
                    found[f"/{service.full_name}/{method.name}"] = IdempotentMethod(
                        GetMessageClass(method.output_type), method.server_streaming
                    )
    return found


def fingerprint(method_name: str, request: Message) -> str:
    """The same request (whatever its JSON spelling or field order) gives the same fingerprint."""
    digest = hashlib.sha256(method_name.encode())
    digest.update(b"\0")
    digest.update(request.SerializeToString(deterministic=True))
    return digest.hexdigest()


def _keeps(err: PlutosError) -> bool:
    """Whether ``err`` is the call's answer (replayed to repeats) rather than a reason to run again."""
    status = err.kind.http_status
    return status < 500 and status not in _RETRYABLE_HTTP


def _error_outcome(messages: list[bytes], err: PlutosError, state: CallState) -> Outcome:
    return Outcome(
        messages, {"code": err.code, "message": err.message, "details": err.details}, state.answer_metadata()
    )


def _replayed_error(error: dict[str, Any]) -> PlutosError:
    return PlutosError(error["code"], error["message"], error.get("details") or {})


class IdempotencyInterceptor(AsyncServerInterceptor):
    """After authentication (keys are per account), before the limits: a replay runs nothing, so it
    takes no concurrency slot, reserves no quota and is not counted again.

    A unary call that claimed its key runs in a task of its own: if its client goes away (a timeout
    on the client's side is the usual reason to retry) the call still finishes, is billed once, and
    its answer waits for the retry, which is told ``idempotency_in_progress`` until then. The limits
    inside it settle when the work really ends. A stream whose client leaves is cancelled as usual
    and its key released: a retry runs again."""

    def __init__(self, store: IdempotencyStore, methods: dict[str, IdempotentMethod]) -> None:
        self._store = store
        self._methods = methods

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        spec = self._methods.get(method_name)
        state = current_call.get(None) if spec is not None else None
        if spec is None or state is None or state.idempotency_key is None or state.caller is None:
            return await call_next(method, request, context)
        key = state.idempotency_key
        if not valid_key(key):
            raise invalid_parameter(
                "Idempotency-Key",
                f"An idempotency key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
            )
        call = _KeyedCall(self._store, state.caller.account_id, key, fingerprint(method_name, request))
        if spec.streaming:
            claim = await call.claim()
            if claim.status != CLAIMED:
                return _answer_again(claim, spec, state)
            return self._recorded_stream(method(request, context), call, state)
        task = asyncio.ensure_future(self._unary(call, method, request, context, spec, state))
        task.add_done_callback(_consume)  # its error is the caller's; if the caller left, nobody's
        return await asyncio.shield(task)

    async def _unary(
        self, call: _KeyedCall, method: Handler, request: Any, context: Any, spec: IdempotentMethod, state: CallState
    ) -> Any:
        claim = await call.claim()
        if claim.status != CLAIMED:
            return _answer_again(claim, spec, state)
        # The call's rows (its record and ledger entry) are held and committed in one transaction
        # with its answer, where the store can (the database): no commit of the key's own.
        failure: BaseException | None = None
        outcome: Outcome | None = None
        with self._store.holding() as rows:
            try:
                result = await method(request, context)
                outcome = Outcome([result.SerializeToString()], metadata=state.answer_metadata())
            except PlutosError as err:
                failure, outcome = err, (_error_outcome([], err, state) if _keeps(err) else None)
            except BaseException as exc:
                failure = exc
        if outcome is None:
            await call.release(rows)
        elif (refused := await call.complete(outcome, rows)) and failure is None:
            raise _not_stored(refused)  # the record stored is not this answer (RecordWriter.add_salvage)
        if failure is not None:
            raise failure
        return result

    async def _recorded_stream(
        self, response: AsyncIterator[Any], call: _KeyedCall, state: CallState
    ) -> AsyncIterator[Any]:
        """The handler's stream, each message kept; the whole stream stored once it ended."""
        messages: list[bytes] = []
        try:
            async for message in response:
                messages.append(message.SerializeToString())
                yield message
        except PlutosError as err:
            if _keeps(err):
                await call.complete(_error_outcome(messages, err, state))
            else:
                call.release_soon()
            raise
        except BaseException:  # cancelled, the client left, or a server fault: a retry runs again
            call.release_soon()
            raise
        await call.complete(Outcome(messages, metadata=state.answer_metadata()))


def _consume(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class _KeyedCall:
    """One call's claim on a key, released or completed exactly once."""

    __slots__ = ("_release", "account", "fingerprint", "key", "owner", "store")

    def __init__(self, store: IdempotencyStore, account: str, key: str, fingerprint: str) -> None:
        self.store = store
        self.account = account
        self.key = key
        self.fingerprint = fingerprint
        self.owner = secrets.token_hex(16)
        self._release = Finisher(self._release_claim)

    async def _release_claim(self) -> None:
        await self.store.release(self.account, self.key, self.owner)

    async def claim(self) -> Claim:
        """Claim the key; a caller cancelled meanwhile releases what it may have claimed."""
        task = asyncio.ensure_future(self.store.claim(self.account, self.key, self.fingerprint, self.owner))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(self._release_if_claimed)
            raise

    def _release_if_claimed(self, task: asyncio.Future[Claim]) -> None:
        if not task.cancelled() and task.exception() is None and task.result().status == CLAIMED:
            self._release.start()

    async def release(self, rows: Sequence[Any] = ()) -> None:
        """Let a retry run again. With the call's held ``rows``: they are committed with the
        release, and a failure to store them is raised."""
        if not rows:
            await finish_all(self._release)
            return
        await _shielded(self.store.release(self.account, self.key, self.owner, rows))

    def release_soon(self) -> None:
        self._release.start()

    async def complete(self, outcome: Outcome, rows: Sequence[Any] = ()) -> tuple[Any, ...]:
        """Keep ``outcome`` for repeats; the rows the store refused (see
        :meth:`IdempotencyStore.complete`). Without held rows a failure is logged (the answer
        stands; repeats see "in progress" until the lease ends); with them it is raised (the
        call's record was not stored either) and the key released."""
        try:
            return await _shielded(self.store.complete(self.account, self.key, self.owner, outcome, rows))
        except Exception:
            if rows:
                self.release_soon()
                raise
            log.exception("storing an idempotent answer failed")
            return ()


async def _shielded(work: Awaitable[tuple[Any, ...]]) -> tuple[Any, ...]:
    """``work`` to its end even if the caller is cancelled meanwhile (rows must not be lost)."""
    return await asyncio.shield(asyncio.ensure_future(work))


def _not_stored(refused: tuple[Any, ...]) -> PlutosError:
    ids = [row.id for row in refused if isinstance(getattr(row, "id", None), str)]
    return PlutosError(
        "internal_error",
        "The result could not be stored; it is recorded as failed (its tokens are billed).",
        {"id": ids[0]} if ids else {},
    )


def _answer_again(claim: Claim, spec: IdempotentMethod, state: CallState) -> Any:
    """What a repeat gets: the first call's answer again, or why not."""
    if claim.status == MISMATCH:
        raise PlutosError(
            "idempotency_key_reused",
            "This idempotency key was already used with a different request. Use a new key for a new request.",
            {"field": "Idempotency-Key"},
        )
    if claim.status == IN_PROGRESS or claim.outcome is None:
        state.response_metadata["retry-after"] = str(claim.retry_after)
        raise PlutosError(
            "idempotency_in_progress",
            "A request with this idempotency key is still being processed. Retry shortly.",
            retry_after=claim.retry_after,
        )
    state.response_metadata.update(claim.outcome.metadata)  # the first answer's X-Process-Id, X-Cache
    state.response_metadata[REPLAYED_METADATA] = "true"
    messages = [spec.response_type.FromString(m) for m in claim.outcome.messages]
    if spec.streaming:
        return _replay_stream(messages, claim.outcome.error)
    if claim.outcome.error is not None:
        raise _replayed_error(claim.outcome.error)
    return messages[0]


async def _replay_stream(messages: list[Message], error: dict[str, Any] | None) -> AsyncIterator[Message]:
    for message in messages:
        yield message
    if error is not None:
        raise _replayed_error(error)
