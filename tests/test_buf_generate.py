"""buf.gen.yaml works on a fresh clone: google/api imports resolve offline (googleapis-common-protos),
and stubs come out for languages beyond the SDKs' three (Java, C++, C#)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_buf_generate_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {**os.environ, "PYTHON": sys.executable}  # the clone has no .venv of its own
    buf = ROOT / ".tools" / "node_modules" / ".bin" / "buf"
    if buf.exists():
        env["BUF"] = str(buf)  # else scripts/buf.sh installs it from npm
    run = subprocess.run(
        ["bash", "scripts/buf.sh", "generate"], cwd=clone, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout + run.stderr
    stubs = clone / "build" / "stubs"
    # Java names a file's outer class in CamelCase: http_options.proto -> HttpOptions.java.
    protos = sorted(p.stem.replace("_", "") for p in (ROOT / "protos" / "plutos" / "v1").glob("*.proto"))
    java = stubs / "java" / "plutos" / "v1"
    assert sorted(p.stem.lower() for p in java.glob("*.java")) == protos
    assert "class ProcessRequest" in (java / "Processing.java").read_text()
    assert (stubs / "cpp" / "plutos" / "v1" / "processing.pb.h").exists()
    assert (stubs / "csharp" / "Processing.cs").exists()
