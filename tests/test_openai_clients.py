"""Clients built for OpenAI, pointed at /openai/v1 on the local model: the official ``openai`` npm
package under Node and LangChain's ``ChatOpenAI`` (the checks: tests/openai_clients_support.py).
tests/test_upstream.py runs the same checks through an OpenAI-compatible upstream."""

from __future__ import annotations

from gateway.app import RunningPlatform
from server.keys import CreatedKey
from tests.conftest import MODEL
from tests.openai_clients_support import langchain_checks, node_sdk_results


async def test_openai_npm_package_under_node(platform: RunningPlatform, key: CreatedKey) -> None:
    await node_sdk_results(platform, key, MODEL)


async def test_langchain_chat_openai_invoke_and_stream(platform: RunningPlatform, key: CreatedKey) -> None:
    await langchain_checks(platform, key, MODEL)
