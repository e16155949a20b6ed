"""Generate Python code (messages, gRPC stubs, mypy stubs) from protos/ into gen/python/.

Deterministic: the output depends only on protos/ and the pinned grpcio-tools / mypy-protobuf
versions, so CI can regenerate and `git diff --exit-code` to catch stale generated code.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "gen" / "python"
DESCRIPTOR_SET = "descriptors.binpb"  # read by bridge/openapi.py


def googleapis_include() -> Path:
    """The folder holding google/api/*.proto, shipped in the googleapis-common-protos wheel."""
    import google.api

    return Path(next(iter(google.api.__path__))).parent.parent


def main() -> int:
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    target = OUT / "plutos"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True, exist_ok=True)
    bindir = Path(sys.executable).parent
    well_known = Path(next(iter(grpc_tools.__path__))) / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTOS}",
        f"-I{googleapis_include()}",
        f"-I{well_known}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={OUT}",
        f"--grpc_python_out={OUT}",
        f"--mypy_out={OUT}",
        f"--mypy_grpc_out={OUT}",
        # The descriptors with their comments (source_code_info), which the generated *_pb2 modules
        # leave out: the OpenAPI document takes its descriptions from here.
        f"--descriptor_set_out={target / DESCRIPTOR_SET}",
        "--include_source_info",
        *files,
    ]
    print(f"protoc: generating Python for {len(files)} proto files -> {OUT.relative_to(ROOT)}")
    rc = protoc.main(args)
    if rc != 0:
        return int(rc)
    # Make every generated folder a regular package.
    for folder in [target, *[p for p in target.rglob("*") if p.is_dir()]]:
        (folder / "__init__.py").touch()
    (target / "py.typed").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
