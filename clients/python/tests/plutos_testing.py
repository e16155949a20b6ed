"""Test helpers: clients wired to an in-process httpx.MockTransport that record requests and sleeps."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from plutos_ai import AsyncPlutosAI, PlutosAI

BASE_URL = "http://gateway.test/v1"
API_KEY = "sk-test"

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Recorder:
    """Records requests and the sleeps the client's retry loop asked for."""

    requests: list[httpx.Request] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)

    def json(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)


def make_client(handler: Handler, recorder: Recorder | None = None, **kwargs: Any) -> PlutosAI:
    rec = recorder if recorder is not None else Recorder()

    def recording(request: httpx.Request) -> httpx.Response:
        rec.requests.append(request)
        return handler(request)

    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE_URL)
    client = PlutosAI(http_client=httpx.Client(transport=httpx.MockTransport(recording)), **kwargs)
    client._sleep = rec.sleeps.append
    return client


def make_async_client(handler: Handler, recorder: Recorder | None = None, **kwargs: Any) -> AsyncPlutosAI:
    rec = recorder if recorder is not None else Recorder()

    def recording(request: httpx.Request) -> httpx.Response:
        rec.requests.append(request)
        return handler(request)

    async def no_sleep(seconds: float) -> None:
        rec.sleeps.append(seconds)

    kwargs.setdefault("api_key", API_KEY)
    kwargs.setdefault("base_url", BASE_URL)
    client = AsyncPlutosAI(http_client=httpx.AsyncClient(transport=httpx.MockTransport(recording)), **kwargs)
    client._sleep = no_sleep
    return client


def error_response(
    status: int, code: str, message: str = "nope", *, headers: dict[str, str] | None = None, **details: Any
) -> httpx.Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "requestId": "req_1"}}
    if details:
        body["error"]["details"] = details
    return httpx.Response(status, json=body, headers=headers)


def sequence(*responses: httpx.Response) -> Handler:
    """A handler answering each request with the next response."""
    queue: Iterator[httpx.Response] = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        return next(queue)

    return handler


PROCESS_JSON = {
    "id": "proc_1234567890abcdef",
    "output": "The capital of France is Paris.",
    "model": "gpt-4",
    "usage": {"promptTokens": 15, "completionTokens": 8, "totalTokens": 23},
    "createdAt": "2024-01-01T12:00:00Z",
    "processingTime": 1250,
}


# -- live tests ----------------------------------------------------------------------------------------
# Read at import, before the autouse fixture in conftest.py hides PLUTOS_* variables from unit tests.

LIVE_BASE_URL = os.environ.get("PLUTOS_TEST_BASE_URL", "")
LIVE_API_KEY = os.environ.get("PLUTOS_TEST_API_KEY", "")
LIVE_MODEL = os.environ.get("PLUTOS_TEST_MODEL", "")
LIVE_GRPC_TARGET = os.environ.get("PLUTOS_TEST_GRPC_TARGET", "")
#: Small, so that live tests against a CPU model stay quick.
LIVE_MAX_TOKENS = 16

# An operator key (scope admin) of the live gateway, for the management tests.
LIVE_ADMIN_KEY = os.environ.get("PLUTOS_TEST_ADMIN_KEY", "")
