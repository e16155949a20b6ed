"""Unit tests run without the developer's PLUTOS_* settings; live tests read theirs at import."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests must not see the developer's PLUTOS_* settings (live tests read theirs at import)."""
    for name in ("PLUTOS_API_KEY", "PLUTOS_BASE_URL", "PLUTOS_GRPC_TARGET"):
        monkeypatch.delenv(name, raising=False)
