"""Clients built for OpenAI, pointed at a platform's /openai/v1: the official ``openai`` npm package
under Node (tests/js/openai, installed by ``make sdk-deps``) and LangChain's ``ChatOpenAI``. The same
checks run on the local model (tests/test_openai_clients.py) and through an OpenAI-compatible
upstream (tests/test_upstream.py)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from tests.subprocess_support import run

ROOT = Path(__file__).resolve().parent.parent
NODE_SDK = ROOT / "tests" / "js" / "openai"


def openai_base_url(platform: RunningPlatform) -> str:
    return f"http://127.0.0.1:{platform.http_port}/openai/v1"


async def node_sdk_results(platform: RunningPlatform, key: CreatedKey, model: str) -> dict[str, Any]:
    """Run tests/js/openai/sdk.mjs against ``platform`` and check what it saw."""
    if shutil.which("node") is None or not (NODE_SDK / "node_modules" / "openai").exists():
        message = "node or tests/js/openai/node_modules missing: run `make sdk-deps`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    code, out, err = await run(
        "node",
        str(NODE_SDK / "sdk.mjs"),
        env={"PLUTOS_OPENAI_BASE_URL": openai_base_url(platform), "PLUTOS_API_KEY": key.secret, "PLUTOS_MODEL": model},
        timeout=600,
    )
    assert code == 0, out + err
    got: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    assert got["chat"]["id"].startswith("chatcmpl-") and got["chat"]["content"]
    assert got["chat"]["usage"]["total_tokens"] > 0
    assert got["headers"]["limit"].isdigit() and got["headers"]["requestId"].startswith("req_")
    assert got["stream"]["text"] and got["stream"]["finish"] in ("stop", "length")
    assert got["stream"]["usage"]["completion_tokens"] > 0
    assert got["completion"]["id"].startswith("cmpl-")
    assert model in got["models"]
    errors = got["errors"]
    assert errors["badKey"] == {"class": "AuthenticationError", "status": 401, "code": "invalid_api_key", "param": None}
    not_found = {"class": "NotFoundError", "status": 404, "code": "model_not_found", "param": "model"}
    assert errors["unknownModel"] == not_found
    assert errors["missingModel"] == not_found
    return got


async def langchain_checks(platform: RunningPlatform, key: CreatedKey, model: str) -> None:
    """ChatOpenAI's invoke and stream (async: the platform serves on this loop)."""
    # The constructor's names (pydantic aliases): max_completion_tokens is the max_tokens field.
    chat = ChatOpenAI(
        model=model,
        base_url=openai_base_url(platform),
        api_key=SecretStr(key.secret),
        max_completion_tokens=8,
        max_retries=0,
        timeout=300,
    )
    reply = await chat.ainvoke([("system", "Be brief."), ("human", "Say hi.")])
    assert isinstance(reply.content, str) and reply.content
    assert reply.response_metadata["finish_reason"] in ("stop", "length")
    assert reply.usage_metadata is not None and reply.usage_metadata["total_tokens"] > 0
    chunks = [chunk async for chunk in chat.astream("Count to three.")]
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(str(c.content) for c in chunks)
