"""Text the store can keep: every string field of every request, on every RPC (REST or gRPC).

The API accepts any Unicode text except U+0000 (NUL): PostgreSQL's ``text`` and ``jsonb`` cannot
hold it, so a NUL anywhere in a request is refused up front with ``400 invalid_parameters`` whose
``details.field`` names the field by its JSON path (``input``, ``inputs[2]``, ``options.stop[0]``),
before anything runs or is billed — the same answer on SQLite and PostgreSQL. Model output is
cleaned where it is produced (the backends drop NUL characters), so what is streamed, answered
and stored is the same text.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc_interceptor.server import AsyncServerInterceptor
from plutos.v1 import http_options_pb2

from core.errors import invalid_parameter
from server.interceptors.base import Handler, call_next, is_api_method

NUL = "\x00"
_STRING = FieldDescriptor.TYPE_STRING
_MESSAGE = FieldDescriptor.TYPE_MESSAGE


# google.protobuf's JSON types: a caller wrote plain JSON (a string, a list, an object) where one
# goes, so a path into it names the JSON (``messages[0].content[1].text``), not the message's
# inner fields (``content.listValue.values[1].structValue.fields.text.stringValue``).
_VALUE, _STRUCT, _LIST = "google.protobuf.Value", "google.protobuf.Struct", "google.protobuf.ListValue"
_JSON_TYPES = frozenset({_VALUE, _STRUCT, _LIST})


def field_with_nul(message: Message, prefix: str = "", proto_names: bool = False) -> str | None:
    """The path of the first string in ``message`` (nested messages, lists and maps included) that
    contains U+0000, or None; fields by JSON name (``options.systemPrompt``), or with
    ``proto_names`` by proto name (``messages[0].tool_call_id``: the OpenAI surface's dialect).
    Inside a ``google.protobuf.Value``, ``Struct`` or ``ListValue`` the path follows the JSON the
    caller sent (``messages[0].content``, ``messages[0].content[1].text``, ``tools[0].function.name``)."""
    for field, value in message.ListFields():
        name = prefix + (field.name if proto_names else field.json_name)
        if field.type == _STRING:
            if field.is_repeated:
                for i, item in enumerate(value):
                    if NUL in item:
                        return f"{name}[{i}]"
            elif NUL in value:
                return name
        elif field.type == _MESSAGE:
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                found = _in_map(value, name, proto_names)
            elif field.is_repeated:
                found = next(
                    (f for i, item in enumerate(value) if (f := _in_message(item, f"{name}[{i}]", proto_names))), None
                )
            else:
                found = _in_message(value, name, proto_names)
            if found:
                return found
    return None


def _in_message(message: Message, name: str, proto_names: bool) -> str | None:
    """:func:`field_with_nul` for a message at path ``name`` (a JSON type followed as JSON)."""
    if message.DESCRIPTOR.full_name in _JSON_TYPES:
        return _in_json(message, name)
    return field_with_nul(message, name + ".", proto_names)


def _in_json(message: Any, name: str) -> str | None:
    """The JSON path of the first string holding U+0000 in a ``Value``, ``Struct`` or ``ListValue``
    at path ``name`` (an object key holding it names the object), or None."""
    kind = message.DESCRIPTOR.full_name
    if kind == _VALUE:
        which = message.WhichOneof("kind")
        if which == "string_value":
            return name if NUL in message.string_value else None
        if which in ("struct_value", "list_value"):
            return _in_json(getattr(message, which), name)
        return None
    if kind == _LIST:
        return next((f for i, item in enumerate(message.values) if (f := _in_json(item, f"{name}[{i}]"))), None)
    for key, item in message.fields.items():
        if NUL in key:
            return name
        if found := _in_json(item, f"{name}.{key}"):
            return found
    return None


def _in_map(value: Any, name: str, proto_names: bool) -> str | None:
    for key, item in value.items():
        if isinstance(key, str) and NUL in key:
            return name
        if isinstance(item, str):
            if NUL in item:
                return f"{name}.{key}"
        elif isinstance(item, Message) and (found := _in_message(item, f"{name}.{key}", proto_names)):
            return found
    return None


@cache
def names_fields_by_proto_name(method_name: str) -> bool:
    """Whether the RPC's service speaks proto field names on REST (``(plutos.v1.http_surface)``
    ``json_names: JSON_NAMES_PROTO``: the OpenAI surface), so ``details.field`` (its ``param``)
    names fields as its callers write them."""
    service_name = method_name.strip("/").split("/", 1)[0]
    try:
        service = descriptor_pool.Default().FindServiceByName(service_name)
    except KeyError:
        return False
    options = service.GetOptions()
    if not options.HasExtension(http_options_pb2.http_surface):
        return False
    return bool(options.Extensions[http_options_pb2.http_surface].json_names == http_options_pb2.JSON_NAMES_PROTO)


class TextInterceptor(AsyncServerInterceptor):
    """Refuses a request holding U+0000 in any string field (see the module docstring)."""

    async def intercept(self, method: Handler, request: Any, context: Any, method_name: str) -> Any:
        if is_api_method(method_name) and isinstance(request, Message):
            field = field_with_nul(request, proto_names=names_fields_by_proto_name(method_name))
            if field is not None:
                raise invalid_parameter(
                    field, f"'{field}' contains a NUL character (U+0000), which is not accepted in text."
                )
        return await call_next(method, request, context)
