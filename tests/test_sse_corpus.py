"""The gateway's upstream SSE reader against the shared corpus (clients/sse_corpus.json), which the
three SDKs' parsers are tested against too: all four parse every stream the same way."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.backends.upstream_sse import SseParser, sse_data

CORPUS = json.loads((Path(__file__).resolve().parent.parent / "clients" / "sse_corpus.json").read_text())["cases"]


def parse(chunks: list[bytes]) -> list[dict[str, str]]:
    parser = SseParser()
    found = [event for chunk in chunks for event in parser.feed(chunk)]
    found += sse_data(parser.buffer, final=True)[0]  # the stream ends: nothing more is dispatched
    return [{"event": name.decode(), "data": data.decode()} for name, data in found]


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_whole_and_split_at_every_byte(case: dict[str, Any]) -> None:
    raw = case["stream"].encode()
    assert parse([raw]) == case["events"]
    for cut in range(1, len(raw)):
        assert parse([raw[:cut], raw[cut:]]) == case["events"], cut
    assert parse([raw[i : i + 1] for i in range(len(raw))]) == case["events"]


def reference(stream: bytes) -> list[dict[str, str]]:
    """The event-stream rules read literally, on a whole stream: split into lines at CRLF, CR or LF
    (what follows the last line end is not a line), a blank line dispatches the event if it had
    ``data``, ``:`` starts a comment, one space after the field's colon is dropped."""
    lines = re.split(rb"\r\n|\r|\n", stream.removeprefix(b"\xef\xbb\xbf"))[:-1]
    events: list[dict[str, str]] = []
    name, data = b"", list[bytes]()
    for line in lines:
        if not line:
            if data:
                events.append({"event": (name or b"message").decode(), "data": b"\n".join(data).decode()})
            name, data = b"", []
        elif not line.startswith(b":"):
            field, colon, value = line.partition(b":")
            value = value[1:] if colon and value.startswith(b" ") else value
            if field == b"data":
                data.append(value)
            elif field == b"event":
                name = value
    return events


PIECES = [b"data: ", b"data:", b"event: ", b"event:", b": ", b"id: 1", b"x", b"{}", b" ", b"\r", b"\n", b"\r\n"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(PIECES), max_size=40).map(b"".join),
    st.lists(st.integers(min_value=0, max_value=200), max_size=6),
)
def test_any_stream_split_anywhere_parses_as_the_rules_say(stream: bytes, cuts: list[int]) -> None:
    """Every line ending, one-line and multi-line events, reads that end mid-line or between a
    CR and its LF: the parser's fast paths (a read with no line end, an event of one ``data:``
    line, a buffer with no CR) give what the rules give."""
    bounds = sorted({min(c, len(stream)) for c in cuts})
    chunks = [stream[a:b] for a, b in zip([0, *bounds], [*bounds, len(stream)], strict=True)]
    assert parse(chunks) == reference(stream)
