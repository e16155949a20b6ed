"""Cursor pagination for the list RPCs: newest first on ``(created_at, id)``, ``limit`` rows per
page, ``after`` = the last id of the previous page (as OpenAI's list endpoints). Each page is one
index range scan (the table's index on its scope columns + ``created_at, id``) plus a primary-key
lookup of the cursor row."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from plutos.v1 import processing_pb2
from sqlalchemy import ColumnElement, Select, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from core.errors import invalid_parameter
from core.field_ranges import message_field_range

DEFAULT_LIMIT = 20
# Every list request's ``limit`` declares these bounds in protos/ ((plutos.v1.int_range): 1 to 100;
# tests/test_list_params.py holds every list to the same ones).
MIN_LIMIT, MAX_LIMIT = message_field_range(processing_pb2.ListProcessesRequest, "limit")

T = TypeVar("T")


def limit_of(request: Any) -> int | None:
    """A list request's ``optional int32 limit``: None when unset (``?limit=0`` is set, to 0)."""
    return int(request.limit) if request.HasField("limit") else None


def page_limit(limit: int | None) -> int:
    """``limit`` of a list request: None (unset) → 20; else 1..100 or 400 ``invalid_parameters``
    (field ``limit``; 0 is out of range like 101, never read as "the default")."""
    if limit is None:
        return DEFAULT_LIMIT
    if not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise invalid_parameter("limit", f"'limit' must be between {MIN_LIMIT} and {MAX_LIMIT} (got {limit}).")
    return limit


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    rows: list[T]
    has_more: bool

    def ids(self) -> dict[str, Any]:
        """``has_more``, ``first_id`` and ``last_id`` for the response."""
        return {
            "has_more": self.has_more,
            "first_id": getattr(self.rows[0], "id", "") if self.rows else "",
            "last_id": getattr(self.rows[-1], "id", "") if self.rows else "",
        }


async def newest_first(
    session: AsyncSession,
    model: Any,
    scope: Sequence[ColumnElement[bool]],
    *,
    limit: int | None,
    after: str,
    filters: Sequence[ColumnElement[bool]] = (),
    query: Select[Any] | None = None,
) -> Page[Any]:
    """One page of ``model`` rows matching ``scope`` (who may see them) and ``filters``.

    ``query`` selects columns instead of whole ORM rows (cheaper: rows come back as ``Row`` tuples
    with attribute access). ``after`` must name a row within ``scope`` (else 400
    ``invalid_parameters`` on ``after``)."""
    size = page_limit(limit)
    stmt = (query if query is not None else select(model)).where(*scope, *filters)
    if after:
        cursor = (await session.execute(select(model.created_at, model.id).where(model.id == after, *scope))).first()
        if cursor is None:
            raise invalid_parameter("after", f"'after' must be the id of an item of this list (got '{after}').")
        stmt = stmt.where(tuple_(model.created_at, model.id) < tuple_(cursor[0], cursor[1]))
    stmt = stmt.order_by(model.created_at.desc(), model.id.desc()).limit(size + 1)
    result = await session.execute(stmt)
    rows = list(result.all() if query is not None else result.scalars())
    return Page(rows[:size], len(rows) > size)
