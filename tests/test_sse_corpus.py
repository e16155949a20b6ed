"""The gateway's upstream SSE reader against the shared corpus (clients/sse_corpus.json), which the
three SDKs' parsers are tested against too: all four parse every stream the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

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
