"""Identifiers: a type prefix and 16 random hex digits (``proc_1234567890abcdef``), from the
kernel's CSPRNG (:func:`os.urandom`), so ids are unguessable and never shared between processes.

The random bytes are drawn 512 ids at a time. Alone, one ``getrandom`` per id costs only ~0.4 µs
more (bench/id_generation.py), but CPython releases the GIL around it, and in a gateway whose
store, log and SQLite threads wait for the GIL every release can hand it to them: the event loop
then waits for it back. Under load py-spy put ~7% of a worker's samples there with one system call
per id (bench/ID_RESULTS.md has the A/B). A forked child starts with an empty buffer, so parent
and child never hand out the same id.
"""

from __future__ import annotations

import os
import re

_IDS_PER_DRAW = 512
_pool: list[str] = []  # 16-hex-digit suffixes not handed out yet; list.pop is atomic under the GIL


def _draw() -> None:
    digits = os.urandom(8 * _IDS_PER_DRAW).hex()
    _pool[:] = [digits[i : i + 16] for i in range(0, len(digits), 16)]


os.register_at_fork(after_in_child=_pool.clear)


def random_hex16() -> str:
    """16 lower-case hex digits (64 random bits from the kernel's CSPRNG), never handed out twice
    by this process."""
    try:
        return _pool.pop()
    except IndexError:
        _draw()
        return _pool.pop()


def new_id(prefix: str) -> str:
    """``{prefix}_`` and 16 lower-case hex digits (64 random bits)."""
    return f"{prefix}_{random_hex16()}"


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
