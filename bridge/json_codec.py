"""Protobuf ⇄ JSON with the reference's shapes.

Follows the proto3 JSON mapping (lowerCamelCase names, RFC 3339 timestamps, default values of
fields without presence printed), with one deliberate difference: 64-bit integers are JSON numbers,
as the reference shows every count. The per-message field plan is computed once per type.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

_F = FieldDescriptor
Descriptor = Any  # upb and pure-Python descriptors differ in type; both quack the same
_FieldPlan = tuple[str, str, bool, bool, bool, Callable[[Any], Any]]  # name, json, repeated, map, presence, conv
_plans: dict[str, list[_FieldPlan]] = {}


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _scalar_converter(field: FieldDescriptor) -> Callable[[Any], Any]:
    t = field.type
    if t == _F.TYPE_MESSAGE:
        return message_to_obj
    if t == _F.TYPE_ENUM:
        enum: Any = field.enum_type

        def conv_enum(v: int) -> Any:
            value = enum.values_by_number.get(v)
            return value.name if value is not None else v

        return conv_enum
    if t == _F.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode("ascii")
    if t in (_F.TYPE_FLOAT, _F.TYPE_DOUBLE):
        return _float
    return _identity


def _identity(v: Any) -> Any:
    return v


def _plan(desc: Descriptor) -> list[_FieldPlan]:
    plan = _plans.get(desc.full_name)
    if plan is None:
        plan = []
        for field in desc.fields:
            message_type: Any = field.message_type
            is_map = field.type == _F.TYPE_MESSAGE and message_type.GetOptions().map_entry
            repeated = field.is_repeated
            conv = _scalar_converter(field.message_type.fields_by_name["value"]) if is_map else _scalar_converter(field)
            plan.append((field.name, field.json_name, repeated and not is_map, bool(is_map), field.has_presence, conv))
        _plans[desc.full_name] = plan
    return plan


_WELL_KNOWN = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.FieldMask",
}


def message_to_obj(msg: Message) -> Any:
    """The JSON-ready value of ``msg`` (dict for ordinary messages)."""
    desc = msg.DESCRIPTOR
    if desc.full_name in _WELL_KNOWN:
        return json_format.MessageToDict(msg)
    out: dict[str, Any] = {}
    for name, json_name, repeated, is_map, presence, conv in _plan(desc):
        value = getattr(msg, name)
        if repeated:
            out[json_name] = [conv(v) for v in value]
        elif is_map:
            out[json_name] = {str(k): conv(v) for k, v in value.items()}
        elif presence:
            if msg.HasField(name):
                out[json_name] = conv(value)
        else:
            out[json_name] = conv(value)
    return out


class JsonInputError(ValueError):
    """A JSON body that does not fit the request message; ``field`` names the culprit if known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


_UNKNOWN = re.compile(r'has no field named "([^"]+)" at "\w+((?:\.\w+)*)"')
_AT_PATH = re.compile(r" at \w+((?:\.\w+)+)\.?$")
_TOP_FIELD = re.compile(r"^Failed to parse (\w+) field: ?(.*)$", re.S)


def parse_into(obj: Any, msg: Message) -> None:
    """Merge a decoded JSON object into ``msg`` with the proto3 JSON rules (unknown fields rejected)."""
    if not isinstance(obj, dict):
        raise JsonInputError("The request body must be a JSON object.")
    _check_objects(obj, msg.DESCRIPTOR, "")
    try:
        json_format.ParseDict(obj, msg, ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise _explain(str(err).split("\n")[0]) from None


def _check_objects(obj: dict[str, Any], desc: Descriptor, prefix: str) -> None:
    """Message-typed fields must hold objects (ParseDict would read a string as its characters)."""
    for key, value in obj.items():
        field = desc.fields_by_camelcase_name.get(key) or desc.fields_by_name.get(key)
        if field is None or value is None or field.type != _F.TYPE_MESSAGE or field.is_repeated:
            continue
        message_type: Any = field.message_type
        if message_type.full_name in _WELL_KNOWN:
            continue
        path = f"{prefix}{key}"
        if not isinstance(value, dict):
            raise JsonInputError(f"Invalid value for '{path}': expected an object.", path)
        _check_objects(value, message_type, path + ".")


def _explain(text: str) -> JsonInputError:
    """Turn a ParseError into a message and a JSON field path (``options.temperature``)."""
    unknown = _UNKNOWN.search(text)
    if unknown:
        path = (unknown.group(2).lstrip(".") + "." if unknown.group(2) else "") + unknown.group(1)
        return JsonInputError(f"Unknown field '{path}'.", path)
    at = _AT_PATH.search(text)
    top = _TOP_FIELD.match(text)
    path = at.group(1).lstrip(".") if at else (top.group(1) if top else None)
    reason = top.group(2) if top else text
    reason = _AT_PATH.sub("", reason).rstrip(".")
    if path:
        return JsonInputError(f"Invalid value for '{path}': {reason}.", path)
    return JsonInputError(f"Invalid request body: {reason}.")
