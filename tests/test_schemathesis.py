"""Schemathesis against the live bridge, driven by GET /v1/openapi.json.

It runs as the ``schemathesis`` CLI in a subprocess (the platform shares this test's event loop, so
the fuzzer must not block it), with its own key and account, a fixed number of examples per operation,
a fixed seed and a time cap, the checks in CHECKS (not ``positive_data_acceptance``: the document
states the types, not the ranges the services enforce, so a schema-valid ``topP: 0`` is rightly a
400), and the ``error_envelope`` check of tests/schemathesis_hooks.py. What it found is kept below as regression
tests."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
import pytest

from gateway.app import RunningPlatform
from tests.conftest import new_key

ROOT = Path(__file__).resolve().parent.parent
MAX_EXAMPLES = 8  # per operation and phase
TIME_CAP = 420  # seconds for the whole run
# Every built-in check but positive_data_acceptance (see above), object_level_authorization (needs
# a second account's data) and max_response_time (tests assert no timings); error_envelope is ours.
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
    "use_after_free",
    "ensure_resource_availability",
    "ignored_auth",
    "error_envelope",
]


@pytest.mark.timeout(TIME_CAP + 60)
async def test_schemathesis_finds_nothing(platform: RunningPlatform, tmp_path: Path) -> None:
    key = await new_key(platform, name="schemathesis")
    root = f"http://127.0.0.1:{platform.http_port}"
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks", "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    args = [
        *("run", f"{root}/v1/openapi.json"),
        *("--header", f"Authorization: Bearer {key.secret}"),
        *("--checks", ",".join(CHECKS)),
        *("--max-examples", str(MAX_EXAMPLES), "--seed", "21", "--workers", "1"),
        *("--request-timeout", "60", "--max-failures", "20"),
        *("--report", "junit", "--report-dir", str(tmp_path)),
    ]
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"),
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), TIME_CAP)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "Operations:       " in text and " 0 total" not in text


# Regression tests: what Schemathesis found, fixed at the root.


async def test_405_allow_lists_every_method_of_the_path(http: httpx.AsyncClient) -> None:
    """OPTIONS /v1/webhooks answered ``Allow: POST``: Starlette names only the first route that
    matched the path, and GET /v1/webhooks is another RPC's route (found by ``allow_header_conformance``)."""
    for method in ("OPTIONS", "PUT"):
        r = await http.request(method, "/webhooks")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, HEAD, POST"
        assert r.json()["error"]["details"] == {"allow": "GET, HEAD, POST"}
    r = await http.request("POST", "/process/proc_0123456789abcdef")
    assert r.headers["allow"] == "GET, HEAD"
