"""Derive the SDK's gRPC stubs (src/plutos_ai/_gen/) from the repository's generated gen/python/plutos/.

    python scripts/gen.py           # (re)write src/plutos_ai/_gen from ../../gen/python
    python scripts/gen.py --check   # exit 1 when src/plutos_ai/_gen differs from a fresh derivation

The stubs are generated once, by the repository's `make protos` (scripts/gen_protos.py, committed in
gen/python and checked by `make check-generated`). The SDK's copy is a build product, never committed:
the package build runs this file (hatch_build.py) from a checkout, and an sdist carries the result.

protoc writes `from plutos.v1 import x_pb2`; the SDK must not claim the top-level `plutos`
package (the server owns it), so the imports are rewritten to `plutos_ai._gen.plutos.v1`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # clients/python
SOURCE = HERE.parent.parent / "gen" / "python" / "plutos"  # the repository's generated stubs
OUT = HERE / "src" / "plutos_ai" / "_gen"
PACKAGE = "plutos_ai._gen"

HEADER = '"""Derived by clients/python/scripts/gen.py from gen/python (protos/). Do not edit."""\n'


def _rewrite(text: str, suffix: str) -> str:
    if suffix == ".py":
        text = re.sub(r"^from plutos\.v1 import ", f"from {PACKAGE}.plutos.v1 import ", text, flags=re.M)
        # The module name message classes report (and pickle by).
        text = re.sub(
            r"(BuildTopDescriptorsAndMessages\(DESCRIPTOR, ')plutos\.v1\.",
            rf"\g<1>{PACKAGE}.plutos.v1.",
            text,
        )
    else:  # .pyi written by mypy-protobuf: `import plutos.v1.x_pb2` and `plutos.v1.x_pb2.Name`
        text = re.sub(r"(?<![\w./'\"])plutos\.v1\.(\w+_pb2)\b", rf"{PACKAGE}.plutos.v1.\1", text)
    return text


def available() -> bool:
    """Whether this is a repository checkout holding gen/python (not an unpacked sdist)."""
    return (SOURCE / "v1").is_dir()


def generate(out: Path) -> None:
    """Write the rewritten stubs into ``out`` (a folder that will hold ``plutos/v1/*_pb2*.py[i]``)."""
    files = sorted(p for p in (SOURCE / "v1").glob("*_pb2*.py*"))
    if not files:
        raise SystemExit(f"no generated stubs under {SOURCE}: run `make protos` at the repository root")
    target = out / "plutos" / "v1"
    target.mkdir(parents=True, exist_ok=True)
    for path in files:
        text = _rewrite(path.read_text(encoding="utf-8"), path.suffix)
        (target / path.name).write_text(text, encoding="utf-8")
    for folder in (out, out / "plutos", target):
        (folder / "__init__.py").write_text(HEADER, encoding="utf-8")


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="verify src/plutos_ai/_gen is current")
    args = parser.parse_args(argv)
    if not available():
        print(f"{SOURCE} not found: not a repository checkout", file=sys.stderr)
        return 1
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            generate(Path(tmp))
            if OUT.exists() and _files(Path(tmp)) == _files(OUT):
                print(f"{OUT.relative_to(HERE)} is up to date")
                return 0
            stale = f"{OUT.relative_to(HERE)} is stale: run python clients/python/scripts/gen.py"
            print(stale, file=sys.stderr)
            return 1
    if OUT.exists():
        shutil.rmtree(OUT)
    generate(OUT)
    print(f"derived {sum(1 for _ in OUT.rglob('*.py*'))} files into {OUT.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
