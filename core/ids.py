"""Identifiers: a type prefix and 16 random hex digits (``proc_1234567890abcdef``).

Every call makes two (its request id and its result id). ``os.urandom`` is one ``getrandom``
system call per id, which costs ~30 µs on some virtual machines; so random bytes are taken from
the kernel 4 KiB at a time and handed out 8 at a time. Still the kernel's CSPRNG (ids stay
unguessable), one system call per 512 ids. The buffer is per process: a forked worker starts
with an empty one (``os.register_at_fork``), so workers never share ids.
"""

from __future__ import annotations

import os
import re
import threading

_CHUNK = 4096
_lock = threading.Lock()
_buffer = b""
_offset = 0


def _reset_after_fork() -> None:
    global _buffer, _offset, _lock
    _buffer, _offset, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def random_hex(nbytes: int = 8) -> str:
    """``nbytes`` random bytes from the kernel's CSPRNG, as hex."""
    global _buffer, _offset
    with _lock:
        if _offset + nbytes > len(_buffer):
            _buffer, _offset = os.urandom(max(_CHUNK, nbytes)), 0
        start = _offset
        _offset += nbytes
        return _buffer[start : start + nbytes].hex()


def new_id(prefix: str) -> str:
    return f"{prefix}_{random_hex(8)}"


def new_request_id() -> str:
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
