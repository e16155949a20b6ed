"""core/errors.py: the one error table. Every code has an HTTP status, a gRPC status, an OpenAI
type and a line in the docs (the module's own table and the README's); the table is used both ways
(gRPC status → kind for statuses that arrive without ErrorInfo); PlutosError only takes its codes.
The SDKs' copies are checked in tests/test_error_tables.py."""

from __future__ import annotations

import re
from http import HTTPStatus
from pathlib import Path

import grpc
import pytest

from core import errors
from core.errors import CODE_FOR_GRPC_STATUS, ERRORS, MAX_ECHO, MAX_MESSAGE, PlutosError, echo, kind_for_grpc_status

README = Path(__file__).resolve().parent.parent / "README.md"
# OpenAI's error ``type`` values (and its 429 ``requests`` / ``insufficient_quota``).
OPENAI_TYPES = {
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "server_error",
    "requests",
    "insufficient_quota",
}


@pytest.mark.parametrize("code", list(ERRORS))
def test_every_code_has_a_status_a_grpc_code_and_an_openai_type(code: str) -> None:
    kind = ERRORS[code]
    assert kind.code == code and re.fullmatch(r"[a-z]+(_[a-z]+)*", code)
    assert 400 <= kind.http_status <= 599
    assert kind.http_status == 499 or kind.http_status in {s.value for s in HTTPStatus}  # 499: nginx's
    assert isinstance(kind.grpc_status, grpc.StatusCode) and kind.grpc_status != grpc.StatusCode.OK
    assert kind.openai_type in OPENAI_TYPES
    assert not kind.retryable or kind.http_status in (409, 429, 502, 503, 504)


def test_the_modules_own_table_lists_every_code_with_its_statuses() -> None:
    doc = errors.__doc__ or ""
    rows = {
        m["code"]: (m["grpc"], int(m["http"]), m["openai"])
        for m in re.finditer(r"^ {4}(?P<code>[a-z_]+) +(?P<grpc>[A-Z_]+) +(?P<http>\d{3}) +(?P<openai>\w+)", doc, re.M)
    }
    assert rows == {k.code: (k.grpc_status.name, k.http_status, k.openai_type) for k in ERRORS.values()}


def test_the_readme_lists_every_code_with_its_http_status() -> None:
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", README.read_text(), re.M))
    assert {code: int(status) for code, status in rows.items()} == {k.code: k.http_status for k in ERRORS.values()}


@pytest.mark.parametrize("status", list(grpc.StatusCode), ids=lambda s: s.name)
def test_a_bare_grpc_status_maps_to_a_kind_of_that_status_or_internal_error(status: grpc.StatusCode) -> None:
    kind = kind_for_grpc_status(status)
    if status in CODE_FOR_GRPC_STATUS:
        assert kind.grpc_status == status
    else:
        assert kind.code == "internal_error"


def test_an_unknown_code_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown error code"):
        PlutosError("no_such_code", "x")


def test_messages_and_details_are_bounded_and_retry_after_is_whole_seconds() -> None:
    err = PlutosError("rate_limit_exceeded", "m" * (MAX_MESSAGE + 100), {"big": "d" * 1000}, retry_after=12.7)
    assert len(err.message) == MAX_MESSAGE + 1 and err.message.endswith("…")
    assert len(err.details["big"]) < 1000
    assert err.retry_after == 12 and err.details["retryAfter"] == 12
    assert PlutosError("timeout", "t", retry_after=float("nan")).retry_after is None
    assert PlutosError("timeout", "t", retry_after=-5).retry_after == 0


def test_echo_bounds_what_it_repeats_and_hides_control_characters() -> None:
    assert echo("a\nb\x00c") == "a?b?c"
    assert echo("x" * 500) == "x" * MAX_ECHO + "…"
    assert echo(42) == "42"
