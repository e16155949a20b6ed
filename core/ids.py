"""Identifiers: a type prefix and 16 random hex digits (``proc_1234567890abcdef``), from the
kernel's CSPRNG (:func:`secrets.token_hex`), so ids are unguessable and never shared between
processes. (A buffer of random bytes, one system call per 512 ids, was measured against it on this
machine and saves under half a microsecond per id: bench/id_generation.py, bench/ID_RESULTS.md.)
"""

from __future__ import annotations

import re
import secrets


def new_id(prefix: str) -> str:
    """``{prefix}_`` and 16 lower-case hex digits (64 random bits)."""
    return f"{prefix}_{secrets.token_hex(8)}"


def new_request_id() -> str:
    """A new request id: ``req_`` and 16 lower-case hex digits."""
    return new_id("req")


# A client's request id is kept when it is 1-128 characters of letters, digits and ``._:-``
# (UUIDs, ULIDs, ``req_…``, W3C trace ids); anything else is replaced by a new ``req_…`` id.
# The one rule for the REST bridge and the gRPC interceptor: header, body, metadata, logs and
# webhooks carry the same id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def valid_request_id(value: object) -> bool:
    """Whether a client-supplied request id is kept as is."""
    return isinstance(value, str) and _REQUEST_ID.fullmatch(value) is not None


def request_id_from(value: object) -> str:
    """The client's request id when :func:`valid_request_id`, else a new one."""
    return value if isinstance(value, str) and _REQUEST_ID.fullmatch(value) else new_request_id()
