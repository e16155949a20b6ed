"""A Server-Sent Events parser (the WHATWG HTML standard's event-stream format).

:class:`SSEParser` takes the response's bytes as they arrive: lines end in CRLF, LF or CR (a CRLF
may be split across reads), a byte order mark at the start is skipped, characters are decoded as
UTF-8 once their line is whole. :class:`SSEDecoder` turns lines into events: ``data:`` lines join
with LF, an event without data is not dispatched, and an event the stream ends before its blank
line is discarded. The shared corpus ``clients/sse_corpus.json`` (also used by the gateway and the
TypeScript and Go SDKs) is the test."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SSEDecoder", "SSEParser", "ServerSentEvent"]

_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Turns lines (without their line terminator) into events; an empty line ends an event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._retry: int | None = None

    def decode(self, line: str) -> ServerSentEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):  # comment / keep-alive
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id":
            if "\0" not in value:
                self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._data:  # no data: nothing is dispatched, the event type is reset
            self._event, self._retry = "", None
            return None
        sse = ServerSentEvent(
            event=self._event or "message", data="\n".join(self._data), id=self._id, retry=self._retry
        )
        self._event, self._data, self._retry = "", [], None
        return sse


class SSEParser:
    """Bytes → events, one network read at a time (``feed``). What is left when the stream ends
    (an event without its closing blank line) is discarded, as the standard says."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False
        self._decoder = SSEDecoder()

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        buffer = self._buffer + chunk
        if not self._started:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            self._started = True
            buffer = buffer.removeprefix(_BOM)
        hold = b""
        if b"\r" in buffer:
            if buffer.endswith(b"\r"):  # maybe the first half of a CRLF
                buffer, hold = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buffer.split(b"\n")
        self._buffer = rest + hold
        events = []
        for line in lines:
            event = self._decoder.decode(line.decode("utf-8", "replace"))
            if event is not None:
                events.append(event)
        return events

    def end(self) -> list[ServerSentEvent]:
        """The stream is over: a CR held back (it might have begun a CRLF) ends its line."""
        if not self._buffer.endswith(b"\r"):
            return []
        return self.feed(b"\n")
