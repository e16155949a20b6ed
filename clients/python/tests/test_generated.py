"""The committed gRPC stubs are what scripts/gen.py generates from the repository's protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent.parent
PROTOS = HERE.parent.parent / "protos"


def test_generated_code_is_up_to_date() -> None:
    pytest.importorskip("grpc_tools")
    if not PROTOS.is_dir():
        pytest.skip("protos/ not present (not a repository checkout)")
    if not (Path(sys.executable).parent / "protoc-gen-mypy").exists():
        pytest.skip("mypy-protobuf is not installed")
    result = subprocess.run(
        [sys.executable, str(HERE / "scripts" / "gen.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_imports_stay_inside_the_sdk() -> None:
    # The top-level `plutos` package belongs to the server: the SDK must not import it.
    for path in (HERE / "src" / "plutos_ai" / "_gen").rglob("*.py*"):
        text = path.read_text(encoding="utf-8")
        assert "from plutos.v1 import" not in text, path
        assert "import plutos.v1" not in text, path
