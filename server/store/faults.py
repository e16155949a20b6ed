"""Which database errors are worth retrying, and what a caller is told when the store cannot help.

A *transient* error is one the same statement may not meet again a moment later: SQLite's lock
errors (``database is locked``: another connection holds the write lock longer than we waited),
PostgreSQL's serialization failures and deadlocks, a dropped or refused connection. Anything else
(a constraint, a value the column cannot take) fails the same way every time: retrying it only
delays the other rows of its transaction.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from core.errors import PlutosError

# SQLSTATEs of PostgreSQL errors that a retry of the whole transaction can get past.
_PG_RETRYABLE = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "08000", "08003", "08006", "08001"})
_SQLITE_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (extended codes: & 0xFF)


def sqlite_busy(exc: BaseException) -> bool:
    """``exc`` is SQLite saying another connection holds the lock (``database is locked``)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _SQLITE_BUSY_CODES
    text = str(exc)
    return "locked" in text or "busy" in text


def is_transient(exc: BaseException) -> bool:
    """Whether running the same transaction again may succeed (see the module's docstring)."""
    if sqlite_busy(exc):
        return True
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, InterfaceError):
            return True
        orig = exc.orig
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        if isinstance(state, str) and state in _PG_RETRYABLE:
            return True
        return isinstance(exc, OperationalError) and not exc.__class__.__name__.startswith("Integrity")
    return False


def store_unavailable() -> PlutosError:
    """What a caller gets when the store stayed busy or unreachable for the whole retry budget:
    a 503 to retry, never the database's own words."""
    return PlutosError(
        "service_unavailable", "The store is busy; please retry shortly.", {"reason": "store_busy"}, retry_after=1
    )
