"""Protobuf ⇄ JSON with the reference's shapes.

Follows the proto3 JSON mapping (lowerCamelCase names, RFC 3339 timestamps, default values of
fields without presence printed), with one deliberate difference: 64-bit integers are JSON numbers,
as the reference shows every count. The per-message field plan is computed once per type.
"""

from __future__ import annotations

import base64
import math
import re
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from core.errors import echo
from core.field_ranges import TYPE_RANGES, declared_range, int_bounds

_F = FieldDescriptor
Descriptor = Any  # upb and pure-Python descriptors differ in type; both quack the same
_FieldPlan = tuple[str, str, bool, bool, bool, Callable[[Any], Any]]  # name, json, repeated, map, presence, conv


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _identity(v: Any) -> Any:
    return v


_WELL_KNOWN = {
    "google.protobuf.Timestamp",
    "google.protobuf.Duration",
    "google.protobuf.Struct",
    "google.protobuf.Value",
    "google.protobuf.ListValue",
    "google.protobuf.FieldMask",
}


def _printer(proto_names: bool) -> Callable[[Message], Any]:
    """A message → JSON-ready value function, naming fields by their JSON names (lowerCamelCase)
    or, with ``proto_names``, by their proto names (``snake_case``). Each keeps its own per-type
    field plans."""
    plans: dict[str, list[_FieldPlan]] = {}

    def scalar_converter(field: FieldDescriptor) -> Callable[[Any], Any]:
        t = field.type
        if t == _F.TYPE_MESSAGE:
            return to_obj
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

    def plan_of(desc: Descriptor) -> list[_FieldPlan]:
        plan = plans.get(desc.full_name)
        if plan is None:
            plan = []
            for field in desc.fields:
                message_type: Any = field.message_type
                is_map = field.type == _F.TYPE_MESSAGE and message_type.GetOptions().map_entry
                repeated = field.is_repeated
                conv = (
                    scalar_converter(field.message_type.fields_by_name["value"]) if is_map else scalar_converter(field)
                )
                name = field.name if proto_names else field.json_name
                plan.append((field.name, name, repeated and not is_map, bool(is_map), field.has_presence, conv))
            plans[desc.full_name] = plan
        return plan

    def to_obj(msg: Message) -> Any:
        desc = msg.DESCRIPTOR
        if desc.full_name in _WELL_KNOWN:
            if desc.full_name == "google.protobuf.Timestamp" and msg.nanos == 0:  # type: ignore[attr-defined]
                t = time.gmtime(msg.seconds)  # type: ignore[attr-defined]
                if 1 <= t.tm_year <= 9999:  # as MessageToDict prints it: RFC 3339, whole seconds, Z
                    return (
                        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"
                    )
            return json_format.MessageToDict(msg, preserving_proto_field_name=proto_names)
        out: dict[str, Any] = {}
        for name, json_name, repeated, is_map, presence, conv in plan_of(desc):
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

    return to_obj


message_to_obj = _printer(proto_names=False)
message_to_obj.__doc__ = "The JSON-ready value of ``msg`` (dict for ordinary messages), lowerCamelCase names."
message_to_proto_obj = _printer(proto_names=True)
message_to_proto_obj.__doc__ = "The JSON-ready value of ``msg`` with proto field names (``max_tokens``)."


class JsonInputError(ValueError):
    """A JSON body that does not fit the request message; ``field`` names the culprit if known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# Protobuf's ParseError text: only the field path is read from it (indices included, when given).
_UNKNOWN = re.compile(r'has no field named "([^"]*)" at "\w+((?:\.\w+(?:\[\d+\])*)*)"')
_AT_PATH = re.compile(r" at \w+((?:\.\w+(?:\[\d+\])*)+)\.?$")
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")
_TOP_FIELD = re.compile(r"^Failed to parse (\w+) field: ?(.*)$", re.S)

Step = str | int  # a field name, or a list index
_MISSING = object()


def parse_into(obj: Any, msg: Message, *, proto_names: bool = False) -> None:
    """Merge a decoded JSON object into ``msg`` with the proto3 JSON rules (unknown fields rejected).

    Raises :class:`JsonInputError` naming the culprit's path in the caller's dialect: JSON names
    (``options.maxTokens``), or with ``proto_names`` the proto's (``max_tokens``, the OpenAI
    surface's), with list indices (``messages[1].tool_calls``)."""
    if not isinstance(obj, dict):
        raise JsonInputError("The request body must be a JSON object.")
    if not msg.ListFields():  # a fresh message (a body): try the fast path first
        try:
            if _fast_set(obj, msg):
                return
        except (TypeError, ValueError):  # a value protobuf refuses: ParseDict says why
            pass
        msg.Clear()
    _check_objects(obj, msg.DESCRIPTOR, "")
    try:
        json_format.ParseDict(obj, msg, ignore_unknown_fields=False)
    except json_format.ParseError as err:
        raise _explain(str(err).split("\n")[0], msg.DESCRIPTOR, obj, proto_names) from None
    except Exception:  # anything else protobuf raises on odd input: the same kind of answer
        raise JsonInputError("The request body does not match this endpoint's fields.") from None


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
            raise JsonInputError(f"Invalid value for '{echo(path)}': expected an object.", echo(path))
        _check_objects(value, message_type, path + ".")


def _explain(text: str, desc: Descriptor, obj: dict[str, Any], proto_names: bool) -> JsonInputError:
    """A ParseError → a message for the API's users and the field's path in their dialect
    (``options.temperature``, ``messages[1].tool_calls``). Only the path is read from protobuf's
    text: the message says what the field expects, in the API's terms, never the library's words
    (Python error text, type names, a well-known type's inner fields such as ``stringValue``,
    reprs of the caller's data). An integer field's message names its documented bounds
    (:mod:`core.field_ranges`: ``'limit' must be an integer between 1 and 100 (got 'abc').``, the
    wording of the server's own range checks), never the wire type's int32 range."""
    unknown = _UNKNOWN.search(text)
    if unknown:
        if not unknown.group(1):
            return JsonInputError("Field names must not be empty.", None)
        parent = _spell(_steps(unknown.group(2)), desc, proto_names)
        path = echo((parent + "." if parent else "") + unknown.group(1))
        return JsonInputError(f"Unknown field '{path}'.", path)
    at = _AT_PATH.search(text)
    # "Failed to parse options field: Failed to parse stop field: …" names the field from the
    # outside in; the " at Message.path" suffix, when there, may stop short of it. The deeper wins.
    chain: list[str] = []
    rest = text
    while top := _TOP_FIELD.match(rest):
        chain.append(top.group(1))
        rest = top.group(2)
    at_names = [s for s in _steps(at.group(1)) if isinstance(s, str)] if at else []
    names = chain if len(chain) > len(at_names) or not at_names else at_names
    if not names:
        return JsonInputError("The request body does not match this endpoint's fields.")
    steps, field, value = _locate(names, desc, obj)
    path = echo(_spell(steps, desc, proto_names))
    if field is None:
        return JsonInputError(f"Invalid value for '{path}'.", path)
    if field.type in TYPE_RANGES and not field.is_repeated:
        got = _shown(value)
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        if declared_range(field) is None and not is_integer:
            # No documented bounds, and not an integer at all: the wire type's range is no help.
            return JsonInputError(f"'{path}' must be an integer{got}.", path)
        low, high = int_bounds(field)
        return JsonInputError(f"'{path}' must be an integer between {low} and {high}{got}.", path)
    expected = _expected(field, item=bool(steps) and isinstance(steps[-1], int) and field.is_repeated)
    return JsonInputError(f"Invalid value for '{path}': expected {expected}.", path)


def _steps(dotted: str) -> list[Step]:
    """``.messages[1].tool_calls`` → ``["messages", 1, "tool_calls"]``."""
    return [m.group(1) if m.group(1) else int(m.group(2)) for m in _STEP.finditer(dotted)]


def _field_of(desc: Descriptor, name: str) -> Any:
    if desc is None:
        return None
    return desc.fields_by_name.get(name) or desc.fields_by_camelcase_name.get(name)


def _locate(names: list[str], desc: Descriptor, obj: Any) -> tuple[list[Step], Any, Any]:
    """The culprit along ``names`` (field names, outside in) in the caller's ``obj``: its steps
    with the index of the failing item of each list of objects on the way, the last field (None if
    a name is not a field), and the caller's value there (``_MISSING`` if not found)."""
    steps: list[Step] = []
    field: Any = None
    node: Any = obj
    for n, name in enumerate(names):
        field = _field_of(desc, name)
        if field is None:
            return [*steps, *names[n:]], None, _MISSING
        steps.append(field.name)
        node = node.get(field.json_name, node.get(field.name, _MISSING)) if isinstance(node, dict) else _MISSING
        desc = field.message_type
        inner = n < len(names) - 1
        if inner and field.is_repeated and desc is not None and isinstance(node, list) and node:
            index = _failing_item(node, GetMessageClass(desc), None) or 0
            steps.append(index)
            node = node[index]
        elif not inner and field.is_repeated and not _is_map(field) and isinstance(node, list) and node:
            # The list's first refused item: ``inputs[1]``, as the NUL check names it.
            found = _failing_item(node, GetMessageClass(field.containing_type), field.name)
            if found is not None:
                steps.append(found)
                node = node[found]
    return steps, field, node


def _is_map(field: Any) -> bool:
    message_type: Any = field.message_type
    return field.type == _F.TYPE_MESSAGE and bool(message_type.GetOptions().map_entry)


def _failing_item(items: list[Any], message_class: type[Message], field_name: str | None) -> int | None:
    """The index of the first item protobuf refuses, or None: each item parsed as a
    ``message_class`` (a list of objects), or as the one item of its list field ``field_name``."""
    for i, item in enumerate(items):
        try:
            value = item if field_name is None else {field_name: [item]}
            json_format.ParseDict(value, message_class(), ignore_unknown_fields=False)
        except Exception:
            return i
    return None


def _spell(steps: list[Step], desc: Descriptor, proto_names: bool) -> str:
    """``steps`` as the caller's dialect names them: ``options.maxTokens`` (JSON names) or
    ``messages[1].tool_calls`` (proto names); a name that is no field is kept as it is."""
    out = ""
    for step in steps:
        if isinstance(step, int):
            out += f"[{step}]"
            continue
        field = _field_of(desc, step)
        name = step if field is None else (field.name if proto_names else field.json_name)
        out += ("." if out else "") + name
        desc = field.message_type if field is not None else None
    return out


def _shown(value: Any) -> str:
    """`` (got …)`` repeating a scalar the caller sent (echoed: bounded, printable), else ""."""
    if isinstance(value, bool):
        return f" (got {'true' if value else 'false'})"
    if isinstance(value, str):
        return f" (got '{echo(value)}')"
    if isinstance(value, int | float):
        return f" (got {echo(repr(value))})"
    return ""


_EXPECTED = {
    _F.TYPE_STRING: "a string",
    _F.TYPE_BOOL: "true or false",
    _F.TYPE_FLOAT: "a number",
    _F.TYPE_DOUBLE: "a number",
    _F.TYPE_BYTES: "base64 text",
    _F.TYPE_ENUM: "one of the documented values",
}


def _expected(field: Any, item: bool = False) -> str:
    """What a field takes (with ``item``, one item of a list field), in the API's terms."""
    if field.type == _F.TYPE_MESSAGE:
        message_type: Any = field.message_type
        if message_type.GetOptions().map_entry:
            return "an object"
        kind = {
            "google.protobuf.Timestamp": "an RFC 3339 timestamp such as 2024-01-01T00:00:00Z",
            "google.protobuf.Duration": "a duration such as 1.5s",
            "google.protobuf.FieldMask": "a comma-separated list of field names such as name,scopes",
            "google.protobuf.ListValue": "a list",
            "google.protobuf.Value": "a JSON value",
        }.get(message_type.full_name, "an object")
    elif field.type in TYPE_RANGES:
        low, high = int_bounds(field)
        kind = f"an integer from {low} to {high}"
    else:
        kind = _EXPECTED.get(field.type, "a value of the documented type")
    return f"a list of {kind.removeprefix('a ').removeprefix('an ')}s" if field.is_repeated and not item else kind


# -- fast path for request bodies ----------------------------------------------------------------
#
# ``json_format.ParseDict`` is general and slow (~40 µs for a /process body). Request bodies are
# almost always plain: strings, numbers, booleans, nested objects, lists of strings or of objects
# (an OpenAI request's messages), a string where a google.protobuf.Value goes (a message's
# content). Those are set directly here, with the same checks ParseDict makes; anything else (a null, an enum, a
# number as a string, a oneof, an unknown or repeated key, a value of the wrong type) leaves the
# message as it was and ParseDict parses the whole body, errors and all.

_INT_RANGES = TYPE_RANGES  # what the wire type holds (the fast path sets only what fits)
_FLOAT_MAX = 3.4028234663852886e38
# JSON key -> (field name, kind, limits or nested descriptor)
_FastPlan = dict[str, tuple[str, str, Any]]
_fast_plans: dict[str, _FastPlan] = {}


def _fast_plan(desc: Descriptor) -> _FastPlan:
    plan = _fast_plans.get(desc.full_name)
    if plan is not None:
        return plan
    plan = {}
    for field in desc.fields:
        oneof: Any = field.containing_oneof
        if oneof is not None and oneof.name != "_" + field.name:
            continue  # a real oneof: ParseDict checks that only one member is set
        t, repeated = field.type, field.is_repeated
        message_type: Any = field.message_type
        entry: tuple[str, str, Any] | None = None
        is_plain_message = (
            t == _F.TYPE_MESSAGE
            and message_type.full_name not in _WELL_KNOWN
            and not message_type.GetOptions().map_entry
        )
        if t == _F.TYPE_STRING:
            entry = (field.name, "strs" if repeated else "str", None)
        elif repeated:
            entry = (field.name, "msgs", message_type) if is_plain_message else None
        elif t == _F.TYPE_MESSAGE and message_type.full_name == "google.protobuf.Value":
            entry = (field.name, "value", None)  # a JSON string only (an OpenAI message's content)
        elif t in _INT_RANGES:
            entry = (field.name, "int", _INT_RANGES[t])
        elif t == _F.TYPE_FLOAT:
            entry = (field.name, "float", _FLOAT_MAX)
        elif t == _F.TYPE_DOUBLE:
            entry = (field.name, "float", math.inf)
        elif t == _F.TYPE_BOOL:
            entry = (field.name, "bool", None)
        elif is_plain_message:
            entry = (field.name, "msg", message_type)
        if entry is not None:
            plan[field.json_name] = entry
            plan[field.name] = entry
    _fast_plans[desc.full_name] = plan
    return plan


def _fast_set(obj: dict[str, Any], msg: Any) -> bool:
    """Set ``obj`` into ``msg`` if every value is plain (see above); False as soon as one is not."""
    plan = _fast_plan(msg.DESCRIPTOR)
    seen: set[str] = set()
    for key, value in obj.items():
        entry = plan.get(key)
        if entry is None:
            return False
        name, kind, extra = entry
        if name in seen:
            return False  # the same field under both its names: ParseDict refuses it
        seen.add(name)
        kind_of = type(value)
        if kind == "str":
            if kind_of is not str:
                return False
            setattr(msg, name, value)
        elif kind == "int":
            if kind_of is not int or not extra[0] <= value <= extra[1]:
                return False
            setattr(msg, name, value)
        elif kind == "float":
            if (kind_of is not float and kind_of is not int) or not abs(value) <= extra:
                return False
            setattr(msg, name, value)
        elif kind == "bool":
            if kind_of is not bool:
                return False
            setattr(msg, name, value)
        elif kind == "strs":
            if kind_of is not list or not all(type(v) is str for v in value):
                return False
            getattr(msg, name).extend(value)
        elif kind == "msgs":
            if kind_of is not list:
                return False
            items = getattr(msg, name)
            for item in value:
                if type(item) is not dict or not _fast_set(item, items.add()):
                    return False
        elif kind == "value":
            if kind_of is not str:
                return False
            getattr(msg, name).string_value = value
        else:  # a nested message
            if kind_of is not dict:
                return False
            sub = getattr(msg, name)
            sub.SetInParent()
            if not _fast_set(value, sub):
                return False
    return True
