"""Integer request fields' bounds: the ``(plutos.v1.int_range)`` field option where a field declares
one (``limit``: 1 to 100), else the range of its wire type (int32: -2**31 to 2**31 - 1).

One fact read by everyone who states it: the server when it checks a value, the REST bridge when a
value is not an integer or does not fit the type (``?limit=abc``), the OpenAPI document's
``minimum``/``maximum``. A caller is told the documented bounds, never the wire type's."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from plutos.v1 import options_pb2

_F = FieldDescriptor
TYPE_RANGES: dict[int, tuple[int, int]] = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}


def declared_range(field: Any) -> tuple[int, int] | None:
    """``(min, max)`` of the field's ``(plutos.v1.int_range)`` option, or None without one."""
    options = field.GetOptions()
    if not options.HasExtension(options_pb2.int_range):
        return None
    bounds: options_pb2.IntRange = options.Extensions[options_pb2.int_range]
    return int(bounds.min), int(bounds.max)


def int_bounds(field: Any) -> tuple[int, int]:
    """The inclusive bounds of an integer field: declared, else its type's (KeyError: not an integer)."""
    return declared_range(field) or TYPE_RANGES[field.type]


def message_field_range(message: Any, name: str) -> tuple[int, int]:
    """:func:`int_bounds` of field ``name`` of a message class (``ListProcessesRequest, "limit"``)."""
    return int_bounds(message.DESCRIPTOR.fields_by_name[name])
