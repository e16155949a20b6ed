"""Property-based: generated JSON bodies, headers and query strings at every REST endpoint of the
live bridge (issue 15). Whatever arrives, the answer is never a 5xx, every 4xx is the error envelope
with the request id of its X-Request-Id header, and the server is healthy afterwards.

Schema-unaware on purpose (tests/test_schemathesis.py covers what the OpenAPI document says):
bodies mix the endpoints' real field names with any JSON value — huge and non-finite-looking
numbers, NUL and other control characters, deep nesting, lists where objects go — and
path variables and query values are arbitrary text. Bounded: ``EXAMPLES`` per endpoint, fixed
seed. Hypothesis runs in a worker thread with a blocking client, so the platform keeps serving
on the test's event loop. Model ids are never generated: nothing here runs a model."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import Any

import httpx
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bridge.app import _default_modules
from bridge.routes import HttpBinding, bindings_for_modules
from bridge.surface import surface_of
from gateway.app import RunningPlatform
from tests.conftest import new_key

EXAMPLES = 25  # per endpoint
BINDINGS = [b for b in bindings_for_modules(_default_modules())]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["", "\u0000", "a\u0000b", "\ud7ff\ue000", "1e999", "-1", "2147483648", "[]", "{}"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)


def field_names(binding: HttpBinding) -> list[str]:
    names = []
    for field in binding.request_type.DESCRIPTOR.fields:
        names += [field.json_name, field.name]
        if field.message_type is not None:
            names += [f.json_name for f in field.message_type.fields]
    return names or ["x"]


def bodies(binding: HttpBinding) -> st.SearchStrategy[Any]:
    known = st.dictionaries(st.sampled_from(field_names(binding)), json_values, max_size=5)
    return st.one_of(known, json_values, st.just({"options": {"maxTokens": 2**31}, "input": "x"}))


header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60).map(str.strip)
headers = st.fixed_dictionaries(
    {},
    optional={
        "X-Request-Id": header_values,
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
        "Accept": header_values,
    },
)
queries = st.dictionaries(
    st.one_of(
        st.sampled_from(["start_date", "end_date", "startDate", "limit", "status", "cursor"]), st.text(max_size=8)
    ),
    st.text(max_size=20),
    max_size=3,
)
path_values = st.text(min_size=1, max_size=30)


def check(r: httpx.Response, where: str, openai_errors: bool = False) -> None:
    """No 5xx; every 4xx is the surface's error envelope (the reference's, or OpenAI's on a service
    whose ``http_surface`` option says so) with the response's request id."""
    assert r.status_code < 500, f"{where}: {r.status_code} {r.text[:500]}"
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str), where
        if openai_errors:
            assert isinstance(error["type"], str) and "param" in error and "code" in error, where
            assert r.headers["x-request-id"], where
        else:
            assert isinstance(error["code"], str), where
            assert error["requestId"] == r.headers["x-request-id"], where
        assert "Traceback" not in r.text, where


def fuzz_endpoint(base: str, secret: str, binding: HttpBinding) -> None:
    @seed(15)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(body=bodies(binding), extra=headers, query=queries, var=path_values)
    def one(body: Any, extra: dict[str, str], query: dict[str, str], var: str) -> None:
        path = binding.path
        for name in binding.path_fields:
            path = path.replace("{" + name + "}", urllib.parse.quote(var, safe=""))
        with httpx.Client(base_url=base, timeout=60) as client:
            request_headers = {"Authorization": f"Bearer {secret}", **extra}
            kwargs: dict[str, Any] = {"params": query, "headers": request_headers}
            if binding.body:
                kwargs["content"] = httpx.Request("POST", "/", json=body).content
            r = client.request(binding.http_method, path, **kwargs)
            where = f"{binding.http_method} {path} {body!r} {query!r} {extra!r}"
            check(r, where, surface_of(binding.method.containing_service).openai_errors)

    one()


async def test_every_endpoint_survives_generated_input(platform: RunningPlatform) -> None:
    key = await new_key(platform, name="fuzz")  # its own account: nothing else is touched
    base = f"http://127.0.0.1:{platform.http_port}"
    for binding in BINDINGS:
        await asyncio.to_thread(fuzz_endpoint, base, key.secret, binding)
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key.secret}"}) as c:
        assert (await c.get("/v1/models")).status_code == 200  # healthy afterwards
