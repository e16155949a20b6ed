"""Each SDK's own test suite, run against this session's real server (model, store, bridge).

The suites live with their SDKs (clients/python, clients/typescript, clients/go); here they get
PLUTOS_TEST_BASE_URL / PLUTOS_TEST_API_KEY / PLUTOS_TEST_GRPC_TARGET / PLUTOS_TEST_MODEL, which turn
on their live tests (the reference's example for that language among them)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from gateway.app import RunningPlatform
from server.keys import ADMIN_SCOPES, CreatedKey, create_key
from tests.conftest import MODEL
from tests.subprocess_support import run

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.sqlite_only  # the SDKs do not see the store: once is enough


@pytest.fixture(scope="module")
async def admin_key(platform: RunningPlatform) -> CreatedKey:
    """An operator key for the SDKs' management tests."""
    return await create_key(platform.runtime.sessions, plan="enterprise", name="sdk-admin", scopes=list(ADMIN_SCOPES))


def live_env(base_url: str, platform: RunningPlatform, key: CreatedKey, admin: CreatedKey) -> dict[str, str]:
    return {
        "PLUTOS_TEST_BASE_URL": base_url,
        "PLUTOS_TEST_API_KEY": key.secret,
        "PLUTOS_TEST_ADMIN_KEY": admin.secret,
        "PLUTOS_TEST_GRPC_TARGET": f"127.0.0.1:{platform.grpc_port}",
        "PLUTOS_TEST_MODEL": MODEL,
        "PLUTOS_BASE_URL": "",
        "PLUTOS_API_KEY": "",
    }


def tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


async def test_python_sdk_suite(
    base_url: str, platform: RunningPlatform, key: CreatedKey, admin_key: CreatedKey
) -> None:
    code, out, err = await run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(ROOT / "clients" / "python"),
        env=live_env(base_url, platform, key, admin_key),
        timeout=900,
    )
    assert code == 0, tail(out + err)
    assert " passed" in out
    if os.environ.get("CI", "").lower() in ("true", "1"):
        assert " skipped" not in out, "the SDK suite skipped tests under CI=true:\n" + tail(out)


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
async def test_typescript_sdk_suite(
    base_url: str, platform: RunningPlatform, key: CreatedKey, admin_key: CreatedKey
) -> None:
    if not (ROOT / "clients" / "typescript" / "node_modules").exists():
        pytest.fail("clients/typescript/node_modules missing: run `make sdk-deps`")
    code, out, err = await run(
        "npm",
        "test",
        "--prefix",
        str(ROOT / "clients" / "typescript"),
        env={**live_env(base_url, platform, key, admin_key), "PYTHON": sys.executable},
        timeout=900,
    )
    assert code == 0, tail(out + err)


@pytest.mark.skipif(shutil.which("go") is None, reason="go is not installed")
async def test_go_sdk_suite(base_url: str, platform: RunningPlatform, key: CreatedKey, admin_key: CreatedKey) -> None:
    env = {**live_env(base_url, platform, key, admin_key), "PYTHON": sys.executable}
    proc_env = {**os.environ, **env}
    code, out, err = await run(
        "bash", "-c", f"cd {ROOT / 'clients' / 'go'} && go test -count=1 ./...", env=proc_env, timeout=900
    )
    assert code == 0, tail(out + err)
