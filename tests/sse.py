"""A strict SSE reader for tests: frames exactly as the bytes arrived."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class Frame:
    event: str | None
    data: str | None
    comment: str | None
    raw: bytes

    def json(self) -> Any:
        assert self.data is not None
        return json.loads(self.data)


def parse_frame(raw: bytes) -> Frame:
    event = data = comment = None
    for line in raw.decode().split("\n"):
        if line.startswith(":"):
            comment = line[1:].strip()
        elif line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
    return Frame(event, data, comment, raw)


async def frames(response: httpx.Response) -> AsyncIterator[Frame]:
    buffer = b""
    async for chunk in response.aiter_raw():
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            yield parse_frame(raw + b"\n\n")
    assert buffer == b"", f"stream ended mid-frame: {buffer!r}"
