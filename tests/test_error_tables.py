"""One error table: each SDK's copy is generated from core/errors.py and must not drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ERRORS
from scripts import gen_error_tables


@pytest.mark.parametrize("path", list(gen_error_tables.TARGETS), ids=lambda p: p.name)
def test_sdk_error_table_matches_the_server(path: Path) -> None:
    assert path.read_text() == gen_error_tables.TARGETS[path](), (
        f"{path} differs from core/errors.py: run `make clients` (scripts/gen_error_tables.py) and commit"
    )


def test_every_code_is_in_every_sdk_table() -> None:
    for render in gen_error_tables.TARGETS.values():
        text = render()
        for kind in ERRORS.values():
            assert kind.code in text and str(kind.http_status) in text
