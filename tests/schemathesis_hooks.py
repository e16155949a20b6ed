"""Schemathesis hooks for tests/test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

``map_case`` keeps generation bounded: a valid ``maxTokens`` (``max_tokens`` on /openai/v1) is capped,
one is added where absent,
batches keep at most a few inputs, and a string ``model`` names the catalogue's model (so valid
bodies reach the model instead of stopping at ``invalid_model``). Each change keeps a valid case valid
and an invalid one invalid. ``error_envelope`` checks every 4xx/5xx answer against the error table.
"""

from __future__ import annotations

import json
from typing import Any

import schemathesis

from core.errors import ERRORS

MODEL = "smollm2-135m-instruct"
MAX_TOKENS = 4
MAX_BATCH = 2


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    body = case.body
    if isinstance(body, dict):
        if isinstance(body.get("model"), str):
            body["model"] = MODEL
        inputs = body.get("inputs")
        if isinstance(inputs, list) and len(inputs) > MAX_BATCH:
            body["inputs"] = inputs[:MAX_BATCH]
        if "messages" in body or "prompt" in body:  # the OpenAI-compatible API: its own names
            for name in ("max_tokens", "max_completion_tokens"):
                tokens = body.get(name)
                if type(tokens) is int and tokens > MAX_TOKENS:
                    body[name] = MAX_TOKENS
            if "max_tokens" not in body and "max_completion_tokens" not in body:
                body["max_tokens"] = MAX_TOKENS
        options = body.setdefault("options", {}) if "input" in body or "inputs" in body else body.get("options")
        if isinstance(options, dict):
            tokens = options.get("maxTokens")
            if tokens is None or (type(tokens) is int and tokens > MAX_TOKENS):
                options["maxTokens"] = MAX_TOKENS
    return case


@schemathesis.check
def error_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 4xx/5xx answer is the envelope, with a code of the table whose HTTP status is the response's
    and the request id of the X-Request-Id header."""
    if response.status_code < 400:
        return None
    try:
        body = json.loads(response.content)
    except ValueError as err:
        raise AssertionError(f"{response.status_code} without a JSON body: {response.content[:200]!r}") from err
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(body) != {"error"}:
        raise AssertionError(f"{response.status_code} without the error envelope: {body!r}")
    kind = ERRORS.get(error.get("code", ""))
    if kind is None or kind.http_status != response.status_code:
        raise AssertionError(f"{response.status_code} with code {error.get('code')!r}")
    if not isinstance(error.get("message"), str) or not error["message"]:
        raise AssertionError("error without a message")
    if case.path.startswith("/openai/"):  # OpenAI's error body, from the same table
        if set(error) != {"message", "type", "param", "code"} or error["type"] != kind.openai_type:
            raise AssertionError(f"not OpenAI's error body: {error!r}")
        return None
    request_id = response.headers.get("x-request-id")
    request_id = request_id[0] if isinstance(request_id, list) else request_id
    if error.get("requestId") != request_id:
        raise AssertionError(f"requestId {error.get('requestId')!r} is not X-Request-Id {request_id!r}")
    return None
