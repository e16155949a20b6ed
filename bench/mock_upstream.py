"""A fast mock OpenAI-compatible upstream for benchmarks: a raw asyncio HTTP/1.1 server (keep-alive,
uvloop when installed) answering every ``POST .../chat/completions`` at once with a fixed completion,
as server-sent events when the request asks to stream, as one JSON object otherwise.

It does as little as possible so that what a benchmark measures is the gateway, not the mock.

    python -m bench.mock_upstream --port 18080
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from typing import Any

WORDS = ["The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", "."]
USAGE = {"prompt_tokens": 12, "completion_tokens": len(WORDS), "total_tokens": 12 + len(WORDS)}


def _sse_body() -> bytes:
    def event(obj: object) -> bytes:
        return b"data: " + json.dumps(obj).encode() + b"\n\n"

    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "model": "bench"}
    parts = [event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})]
    parts += [event({**base, "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]}) for w in WORDS]
    parts.append(event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    parts.append(event({**base, "choices": [], "usage": USAGE}))
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _json_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "model": "bench",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "".join(WORDS)}, "finish_reason": "stop"}
            ],
            "usage": USAGE,
        }
    ).encode()


def _response(body: bytes, content_type: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: "
        + content_type
        + b"\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\nx-request-id: mock-bench\r\n\r\n"
        + body
    )


SSE_RESPONSE = _response(_sse_body(), b"text/event-stream")
JSON_RESPONSE = _response(_json_body(), b"application/json")
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class MockProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buffer = b""
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport  # uvloop's transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + 4 : total]
            self.buffer = self.buffer[total:]
            if not head.startswith(b"post ") or b"/chat/completions" not in head.split(b"\r\n", 1)[0]:
                self.transport.write(NOT_FOUND)
            elif b'"stream":true' in body.replace(b" ", b""):
                self.transport.write(SSE_RESPONSE)
            else:
                self.transport.write(JSON_RESPONSE)


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(MockProtocol, host, port, backlog=2048, reuse_address=True)
    print(f"mock upstream on http://{host}:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
