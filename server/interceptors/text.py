"""Text the store can keep: every string field of every request, on every RPC (REST or gRPC).

The API accepts any Unicode text except U+0000 (NUL): PostgreSQL's ``text`` and ``jsonb`` cannot
hold it, so a NUL anywhere in a request is refused up front with ``400 invalid_parameters`` whose
``details.field`` names the field by its JSON path (``input``, ``inputs[2]``, ``options.stop[0]``),
before anything runs or is billed — the same answer on SQLite and PostgreSQL. Model output is
cleaned where it is produced (the backends drop NUL characters), so what is streamed, answered
and stored is the same text.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_interceptor.server import AsyncServerInterceptor

from core.errors import invalid_parameter
from server.interceptors.base import Handler, call_next, is_api_method

NUL = "\x00"
_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def field_with_nul(message: Message, prefix: str = "") -> str | None:
    """The JSON path of the first string in ``message`` (nested messages, lists and maps included)
    that contains U+0000, or None."""
    for field, value in message.ListFields():
        name = prefix + field.json_name
        if field.type == _STRING:
            if field.is_repeated:
                for i, item in enumerate(value):
                    if NUL in item:
                        return f"{name}[{i}]"
            elif NUL in value:
                return name
        elif field.type == _MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                found = _in_map(value, name)
            elif field.is_repeated:
                found = next((f for i, item in enumerate(value) if (f := field_with_nul(item, f"{name}[{i}]."))), None)
            else:
                found = field_with_nul(value, name + ".")
            if found:
                return found
    return None


def _in_map(value: Any, name: str) -> str | None:
    for key, item in value.items():
        if isinstance(key, str) and NUL in key:
            return name
        if isinstance(item, str):
            if NUL in item:
                return f"{name}.{key}"
        elif isinstance(item, Message) and (found := field_with_nul(item, f"{name}.{key}.")):
            return found
    return None


class TextInterceptor(AsyncServerInterceptor):
    """Refuses a request holding U+0000 in any string field (see the module docstring)."""

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        if is_api_method(method_name) and isinstance(request, Message):
            field = field_with_nul(request)
            if field is not None:
                raise invalid_parameter(
                    field, f"'{field}' contains a NUL character (U+0000), which is not accepted in text."
                )
        return await call_next(method, request, context)
