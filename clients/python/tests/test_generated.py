"""The SDK's gRPC stubs are the repository's gen/python (one generation, `make protos`), derived by
scripts/gen.py at package build time with the imports moved under plutos_ai._gen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent.parent
SOURCE = HERE.parent.parent / "gen" / "python" / "plutos"


def test_derived_stubs_are_up_to_date() -> None:
    if not SOURCE.is_dir():
        pytest.skip("gen/python not present (not a repository checkout)")
    result = subprocess.run(
        [sys.executable, str(HERE / "scripts" / "gen.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_result_types_are_generated_from_the_protos() -> None:
    # src/plutos_ai/_types_gen.py (committed) is what scripts/gen_types.py makes of the descriptors.
    if not (SOURCE / "descriptors.binpb").is_file():
        pytest.skip("gen/python not present (not a repository checkout)")
    result = subprocess.run(
        [sys.executable, str(HERE / "scripts" / "gen_types.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generated_imports_stay_inside_the_sdk() -> None:
    # The top-level `plutos` package belongs to the server: the SDK must not import it.
    files = list((HERE / "src" / "plutos_ai" / "_gen").rglob("*.py*"))
    assert files, "src/plutos_ai/_gen is empty: install the package (pip install -e .) or run scripts/gen.py"
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "from plutos.v1 import" not in text, path
        assert "import plutos.v1" not in text, path
