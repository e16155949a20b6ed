"""A real HTTP webhook receiver on loopback (a thread running ``http.server``) for tests.

It records every request per path and answers what each path's script says (by default 200), and
verifies Standard Webhooks signatures independently of the server's code, from the specification:
``v1,base64(HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}"))``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


def hmac_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret[len("whsec_") :])
    return secret.encode("utf-8")


def header_signature_ok(got: Received, secret: str, tolerance: int = 300) -> bool:
    """Standard Webhooks verification by the ``standardwebhooks`` package itself (the oracle): a
    ``whsec_`` secret as the specification writes it, any other secret as its UTF-8 bytes."""
    key: str | bytes = secret if secret.startswith("whsec_") else secret.encode("utf-8")
    try:
        standardwebhooks.Webhook(key).verify(got.body, dict(got.headers))
    except standardwebhooks.WebhookVerificationError:
        return False
    return abs(int(got.headers["webhook-timestamp"]) - time.time()) <= tolerance


def body_signature_ok(got: Received, secret: str) -> bool:
    """The payload's "signature": hex HMAC of the body without it (docs/usage-and-webhooks.md)."""
    body = got.body
    cut = body.rfind(b',"signature":"')
    signed = body[:cut] + b"}"
    expected = hmac.new(hmac_key(secret), signed, hashlib.sha256).hexdigest()
    return hmac.compare_digest(got.json()["signature"], expected)


@dataclass
class Receiver:
    port: int = 0
    received: list[Received] = field(default_factory=list)
    # path -> function(nth request on that path, starting at 1) -> status to answer
    scripts: dict[str, Callable[[int], int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrivals: dict[str, int] = field(default_factory=dict)  # requests begun per path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def new_path(self, script: Callable[[int], int] | None = None) -> str:
        path = f"/hooks/{uuid.uuid4().hex}"
        if script is not None:
            self.scripts[path] = script
        return path

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def delivered(self, path: str) -> dict[str, Received]:
        """Successful deliveries on ``path`` by webhook-id (duplicates collapse, as a receiver dedupes)."""
        return {r.id: r for r in self.at(path) if 200 <= r.status < 300}

    async def wait_for(self, path: str, count: int, timeout: float = 30.0) -> dict[str, Received]:
        """Wait (bounded) until ``count`` distinct events were delivered on ``path``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.delivered(path)
            if len(got) >= count:
                return got
            await asyncio.sleep(0.05)
        return self.delivered(path)


def start_receiver() -> tuple[Receiver, ThreadingHTTPServer]:
    receiver = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length)
            with receiver.lock:
                receiver.arrivals[self.path] = nth = receiver.arrivals.get(self.path, 0) + 1
            script = receiver.scripts.get(self.path)
            status = script(nth) if script else 200  # a script may block (a slow receiver)
            with receiver.lock:
                receiver.received.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, status)
                )
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a sender that went away mid-request (the kill -9 test) is expected

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    receiver.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True).start()
    return receiver, server


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    """A receiver of the test module's own (this is a pytest plugin, registered in tests/conftest.py)."""
    rec, server = start_receiver()
    yield rec
    server.shutdown()
    server.server_close()
