"""Reading an upstream's server-sent events: the event-stream parser (the WHATWG rules) and the
reader that turns ``/chat/completions`` chunks into content pieces, token counts and tool calls."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from server.backends.base import GenerationState
from server.backends.upstream_errors import UpstreamErrors
from server.backends.upstream_json import FINISH_REASONS, NUL, apply_usage, json_objects

log = logging.getLogger("plutos.backends.openai")

# ``sub in some_bytes`` first tries ``sub`` as an integer (``10 in b"\n"``): for a bytes ``sub``
# that raises and clears a formatted TypeError, ~1,900 instructions — three times per streamed
# chunk here. ``some_bytes.find(sub)`` asks the same without it.
DRAIN_SECONDS = 1.0  # after [DONE], how long to wait for the body's end (to reuse the connection)
JOIN_PARTS = 16  # a stream's pieces are kept joined in runs of this many


def is_event_stream(headers: dict[str, str], asked_to_stream: bool) -> bool:
    """Whether an upstream's 200 answer is read as server-sent events: by its ``Content-Type``
    (``text/event-stream``: events; ``application/json`` or ``…+json``: one completion, as some
    servers and proxies answer a streaming request), else as what was asked for."""
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "text/event-stream":
        return True
    if media == "application/json" or media.endswith("+json"):
        return False
    return asked_to_stream


def sse_data(buffer: bytes, final: bool = False) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The complete events in ``buffer`` as ``(event type, data)`` pairs, and the bytes left over,
    parsed as the WHATWG HTML standard's event-stream rules say: lines end in CRLF, LF or CR;
    ``data:`` lines of one event join with LF; one space after the colon is dropped; lines starting
    with ``:`` are comments; ``event:`` names the event (``message`` when absent); an event with no
    ``data`` is not dispatched; a blank line ends an event. An event not ended when the stream ends
    (``final``) is discarded, as the standard says. The leftover is normalised (LF line ends) and
    may end with a lone CR, which may be the first half of a CRLF."""
    hold = b""
    if buffer.find(b"\r") >= 0:
        if buffer.endswith(b"\r") and not final:
            buffer, hold = buffer[:-1], b"\r"
        buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    end = buffer.rfind(b"\n\n")
    if end < 0:
        if buffer.startswith(b"\n"):  # blank lines between events
            buffer = buffer.lstrip(b"\n")
        return [], buffer + hold
    events: list[tuple[bytes, bytes]] = []
    for block in buffer[:end].split(b"\n\n"):
        if block.startswith(b"data: ") and block.find(b"\n") < 0:  # the usual one-line event
            events.append((b"message", block[6:]))
            continue
        name, data, seen = b"message", [], False
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, colon, value = line.partition(b":")
            if colon and value.startswith(b" "):
                value = value[1:]
            if field == b"data":
                data.append(value)
                seen = True
            elif field == b"event":
                name = value or b"message"
        if seen:
            events.append((name, b"\n".join(data)))
    return events, buffer[end + 2 :].lstrip(b"\n") + hold


class SseParser:
    """Bytes, one network read at a time → complete ``(event type, data)`` events (:func:`sse_data`);
    a UTF-8 byte order mark at the very start is skipped, as the standard says."""

    __slots__ = ("buffer", "started")

    def __init__(self) -> None:
        self.buffer = b""
        self.started = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bytes]]:
        buffer = self.buffer + chunk
        if not self.started:
            if len(buffer) < 3 and b"\xef\xbb\xbf".startswith(buffer):
                self.buffer = buffer
                return []
            self.started = True
            buffer = buffer.removeprefix(b"\xef\xbb\xbf")
        if chunk.find(b"\n") < 0 and chunk.find(b"\r") < 0:
            self.buffer = buffer
            return []
        events, self.buffer = sse_data(buffer)
        return events


class SseReader:
    """Server-sent events → content pieces, one network read at a time; each piece is added to
    ``state.text_parts`` as it is parsed, and the token counts in ``state`` kept current.

    Events are parsed by :func:`sse_data` (the standard's rules: any line ending, data over several
    lines, comments); each event's data is one JSON chunk, ``[DONE]`` ends the answer, and an
    event named ``error`` is the upstream failing."""

    __slots__ = (
        "counted",
        "deadline",
        "done",
        "errors",
        "failure",
        "finish",
        "joined",
        "parser",
        "request_id",
        "state",
        "tools",
        "usage",
    )

    def __init__(self, errors: UpstreamErrors, state: GenerationState, request_id: str | None, deadline: float) -> None:
        self.errors = errors
        self.state = state
        self.request_id = request_id
        self.deadline = deadline
        self.parser = SseParser()
        self.counted = 0
        self.finish: str | None = None
        self.usage: dict[str, Any] | None = None
        self.tools: dict[int, dict[str, Any]] = {}  # tool calls by index, fragments joined
        self.done = False  # [DONE] seen: the rest of the body is only read to reuse the connection
        # The upstream failed in a read that also brought pieces: those go out first, then this.
        self.failure: Exception | None = None
        self.joined = len(state.text_parts)  # text_parts before this index are joined runs of pieces

    def feed(self, chunk: bytes) -> list[str]:
        """The new pieces in ``chunk`` (with what was left of the previous one). A failure in a
        read that also brought pieces is held in :attr:`failure` (see :meth:`raise_failure`), so
        the caller sends the pieces it is billed for before the error."""
        events = self.parser.feed(chunk)
        if not events:
            return []
        parts = self.state.text_parts
        if len(parts) - self.joined >= JOIN_PARTS:
            # A piece is a few characters in a str object of ~50 bytes more: a long stream keeps its
            # text so far (for the record and the final event) as one str per JOIN_PARTS pieces.
            parts[self.joined :] = ["".join(parts[self.joined :])]
            self.joined += 1
        first = len(parts)
        # The payloads of this read's complete events, up to ``[DONE]``.
        datas = []
        failed: bytes | None = None
        for name, data in events:
            if name == b"error":  # counted after the events before it
                failed = data
                break
            if data.strip() == b"[DONE]":
                self.finish = "[DONE]"
                self.done = True
                self.deadline = min(self.deadline, asyncio.get_running_loop().time() + DRAIN_SECONDS)
                break
            datas.append(data)
        try:
            self._take(datas, failed)
        except Exception as exc:
            if len(parts) == first:
                raise
            self.failure = exc
        return parts[first:] if len(parts) > first else []

    def raise_failure(self) -> None:
        """Raise the failure :meth:`feed` held back, if any (once)."""
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def _take(self, datas: list[bytes], failed: bytes | None) -> None:
        """Add the pieces of ``datas`` to ``state``; raise ``upstream_error`` on an error event."""
        state, errors, request_id = self.state, self.errors, self.request_id
        parts = state.text_parts
        for data, event in zip(datas, json_objects(datas, errors, request_id), strict=True):
            if event.get("error"):
                log.warning("upstream %s sent an error event: %s", errors.url, data[:500])
                raise errors.upstream_error("The upstream failed during generation.", 200, request_id)
            choices = event.get("choices") or []
            if not isinstance(choices, list):
                raise errors.upstream_error("The upstream sent an unexpected chunk.", 200, request_id)
            for choice in choices:
                if not isinstance(choice, dict):
                    raise errors.upstream_error("The upstream sent an unexpected chunk.", 200, request_id)
                delta = choice.get("delta")
                content = delta.get("content") if isinstance(delta, dict) else None
                if content and isinstance(content, str) and NUL in content:
                    content = content.replace(NUL, "")
                if content and isinstance(content, str):
                    self.counted += 1
                    if self.usage is None:
                        state.completion_tokens = self.counted
                    parts.append(content)
                calls = delta.get("tool_calls") if isinstance(delta, dict) else None
                if calls and isinstance(calls, list):
                    self._add_tool_calls(calls)
                reason = choice.get("finish_reason")
                if reason:
                    self.finish = reason
                    state.finish_reason = FINISH_REASONS.get(reason, "stop")
            found = event.get("usage")
            if isinstance(found, dict):
                self.usage = found
                apply_usage(found, state)
        if failed is not None:
            log.warning("upstream %s sent an error event: %s", errors.url, failed[:500])
            raise errors.upstream_error("The upstream failed during generation.", 200, request_id)

    def _add_tool_calls(self, calls: list[Any]) -> None:
        """Join streamed tool-call fragments: per ``index``, ``id``/``type`` as given, the
        function's ``name`` and ``arguments`` strings concatenated."""
        for call in calls:
            if not isinstance(call, dict):
                raise self.errors.upstream_error("The upstream sent an unexpected chunk.", 200, self.request_id)
            index = call.get("index", len(self.tools))
            whole = self.tools.setdefault(index if isinstance(index, int) else len(self.tools), {})
            for key, value in call.items():
                if key == "index":
                    continue
                if key == "function" and isinstance(value, dict):
                    function = whole.setdefault("function", {})
                    for name, part in value.items():
                        if isinstance(part, str) and isinstance(function.get(name), str):
                            function[name] += part
                        else:
                            function[name] = part
                else:
                    whole[key] = value
        self.state.tool_calls = [self.tools[i] for i in sorted(self.tools)]

    def end(self) -> None:
        """The body is over: it must have finished the answer."""
        if self.finish is None:
            raise self.errors.upstream_error("The upstream's stream ended before the answer did.", 200, self.request_id)
        if self.state.finish_reason is None:
            self.state.finish_reason = "stop"
