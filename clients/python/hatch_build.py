"""Hatch build hook: the SDK's gRPC stubs (src/plutos_ai/_gen) come from the repository's gen/python.

From a checkout (``pip install ./clients/python``, ``pip install -e``, ``python -m build``) the hook
derives them with scripts/gen.py; an sdist carries them (an artifact), so a wheel built from the sdist
needs no checkout. Nothing here is committed twice: gen/python is the one copy in git.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GeneratedStubsHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        spec = importlib.util.spec_from_file_location("_plutos_ai_gen", root / "scripts" / "gen.py")
        assert spec is not None and spec.loader is not None
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        if gen.available():
            if gen.main([]) != 0:
                raise RuntimeError("deriving src/plutos_ai/_gen from gen/python failed")
        elif not (root / "src" / "plutos_ai" / "_gen" / "plutos" / "v1").is_dir():
            raise RuntimeError(
                "src/plutos_ai/_gen is missing and ../../gen/python is not here: build from a repository "
                "checkout or from the sdist"
            )
