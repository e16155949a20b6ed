"""The reference's own examples, run as written against the local server: the JavaScript
streaming snippet under Node 20, the curl example, and grpcurl through server reflection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from tests.conftest import MODEL
from tests.subprocess_support import run

ROOT = Path(__file__).resolve().parent.parent
GRPCURL = shutil.which("grpcurl") or str(ROOT / ".tools" / "bin" / "grpcurl")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
async def test_reference_javascript_stream_example_runs_under_node(base_url: str, key: CreatedKey) -> None:
    code, out, err = await run(
        "node",
        str(ROOT / "tests" / "js" / "reference_stream.mjs"),
        env={"PLUTOS_BASE_URL": base_url, "PLUTOS_API_KEY": key.secret, "PLUTOS_MODEL": MODEL},
        # No options in the reference's body: up to 1000 tokens (seconds on an idle machine, minutes
        # on an oversubscribed one).
        timeout=1200,
    )
    assert code == 0, err
    story, _, tail = out.rpartition("\nComplete!")
    assert tail.strip() == ""
    assert len(story.strip()) > 20, out


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_reference_curl_example(base_url: str, key: CreatedKey) -> None:
    body = {
        "input": "What is the capital of France?",
        "model": MODEL,
        "options": {"temperature": 0.7, "maxTokens": 100, "systemPrompt": "You are a helpful assistant."},
    }
    code, out, err = await run(
        "curl",
        "-sS",
        "-X",
        "POST",
        f"{base_url}/process",
        "-H",
        f"Authorization: Bearer {key.secret}",
        "-H",
        "Content-Type: application/json",
        "-d",
        json.dumps(body),
    )
    assert code == 0, err
    reply = json.loads(out)
    assert set(reply) == {"id", "output", "model", "usage", "createdAt", "processingTime"}


@pytest.mark.skipif(not Path(GRPCURL).exists(), reason="grpcurl is not installed (make tools)")
async def test_grpcurl_with_reflection(platform: RunningPlatform, key: CreatedKey) -> None:
    target = f"127.0.0.1:{platform.grpc_port}"
    auth = f"authorization: Bearer {key.secret}"
    code, out, err = await run(GRPCURL, "-plaintext", target, "list")
    assert code == 0, err
    assert "plutos.v1.ProcessingService" in out.split()
    code, out, err = await run(GRPCURL, "-plaintext", "-H", auth, target, "plutos.v1.ModelsService/ListModels")
    assert code == 0, err
    assert json.loads(out)["models"][0]["id"] == MODEL
    request = json.dumps({"input": "Hi", "model": MODEL, "options": {"maxTokens": 5}})
    code, out, err = await run(
        GRPCURL, "-plaintext", "-H", auth, "-d", request, target, "plutos.v1.ProcessingService/Process"
    )
    assert code == 0, err
    created = json.loads(out)
    code, out, err = await run(
        GRPCURL,
        "-plaintext",
        "-H",
        auth,
        "-d",
        json.dumps({"id": created["id"]}),
        target,
        "plutos.v1.ProcessingService/GetProcess",
    )
    assert code == 0, err
    assert json.loads(out)["output"] == created["output"]
