"""bridge/json_codec.py against google.protobuf.json_format, on random messages of every type in the
plutos.v1 protos (property-based, with Hypothesis).

The codec is the bridge's own protobuf ⇄ JSON conversion (a hot path). It must print what
``json_format.MessageToDict(..., always_print_fields_with_no_presence=True)`` prints, except for its one
documented rule: 64-bit integers are JSON numbers, not strings. And what it prints must parse back into
the same message. New protos are covered as soon as they are generated: the message types are read
from the generated modules.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import struct
from typing import Any

import plutos.v1
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.json_codec import message_to_obj, parse_into
from bridge.surface import REFERENCE, json_text

_F = FieldDescriptor
_INT64 = {_F.TYPE_INT64, _F.TYPE_SINT64, _F.TYPE_SFIXED64, _F.TYPE_UINT64, _F.TYPE_FIXED64}
_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
_MAX_DEPTH = 3


def _message_types() -> list[Descriptor]:
    found: dict[str, Descriptor] = {}

    def visit(desc: Descriptor) -> None:
        if desc.GetOptions().map_entry or desc.full_name in found:
            return
        found[desc.full_name] = desc
        for nested in desc.nested_types:
            visit(nested)

    for info in pkgutil.iter_modules(plutos.v1.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"plutos.v1.{info.name}")
            for desc in module.DESCRIPTOR.message_types_by_name.values():
                visit(desc)
    return sorted(found.values(), key=lambda d: d.full_name)


MESSAGE_TYPES = _message_types()

_json_scalar = st.one_of(
    st.none(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8)
)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)


def _message_type(field: FieldDescriptor) -> Descriptor:
    """A TYPE_MESSAGE field's message type (types-protobuf types it Optional: None for other types)."""
    assert field.message_type is not None, field.full_name
    return field.message_type


def _enum_type(field: FieldDescriptor) -> EnumDescriptor:
    """A TYPE_ENUM field's enum type (types-protobuf types it Optional: None for other types)."""
    assert field.enum_type is not None, field.full_name
    return field.enum_type


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _RANGES:
        low, high = _RANGES[t]
        return st.integers(low, high)
    if t == _F.TYPE_BOOL:
        return st.booleans()
    if t == _F.TYPE_STRING:
        return st.text(max_size=20)
    if t == _F.TYPE_BYTES:
        return st.binary(max_size=20)
    if t == _F.TYPE_DOUBLE:
        return st.floats(allow_nan=False)
    if t == _F.TYPE_FLOAT:
        return st.floats(allow_nan=False, width=32)
    if t == _F.TYPE_ENUM:
        return st.sampled_from([v.number for v in _enum_type(field).values])
    raise AssertionError(f"no strategy for {field.full_name}")


def _well_known(desc: Descriptor) -> st.SearchStrategy[Message] | None:
    cls = GetMessageClass(desc)
    name = desc.full_name
    if name == "google.protobuf.Timestamp":
        return st.builds(
            lambda s, n: cls(seconds=s, nanos=n),
            st.integers(-62135596800, 253402300799),
            st.one_of(st.just(0), st.integers(0, 999_999_999)),
        )
    if name == "google.protobuf.Duration":
        return st.builds(lambda s: cls(seconds=s), st.integers(-315576000000, 315576000000))
    if name in ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"):

        def build(value: Any) -> Message:
            msg = cls()
            json_format.ParseDict(value, msg)
            return msg

        if name == "google.protobuf.Struct":
            return st.dictionaries(st.text(max_size=5), _json_value, max_size=3).map(build)
        if name == "google.protobuf.ListValue":
            return st.lists(_json_value, max_size=3).map(build)
        return _json_value.map(build)
    if name.startswith("google.protobuf."):
        return st.just(cls())  # other well-known types: present but empty
    return None


def messages(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Random instances of ``desc``: every field set or not, one member of each oneof at most."""
    known = _well_known(desc)
    if known is not None:
        return known
    cls = GetMessageClass(desc)
    if depth >= _MAX_DEPTH:
        return st.just(cls())
    strategies: dict[str, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        if field.type == _F.TYPE_MESSAGE and _message_type(field).GetOptions().map_entry:
            key_field = _message_type(field).fields_by_name["key"]
            value_field = _message_type(field).fields_by_name["value"]
            values = (
                messages(_message_type(value_field), depth + 1)
                if value_field.type == _F.TYPE_MESSAGE
                else _scalar(value_field)
            )
            strategies[field.name] = st.dictionaries(_scalar(key_field), values, max_size=3)
            continue
        one = messages(_message_type(field), depth + 1) if field.type == _F.TYPE_MESSAGE else _scalar(field)
        strategies[field.name] = st.lists(one, max_size=3) if field.is_repeated else one

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = cls()
        chosen_oneofs: set[str] = set()
        for field in desc.fields:
            oneof = field.containing_oneof
            if oneof is not None:
                if oneof.name in chosen_oneofs or not draw(st.booleans()):
                    continue
                chosen_oneofs.add(oneof.name)
            elif not draw(st.booleans()):
                continue
            value = draw(strategies[field.name])
            target = getattr(msg, field.name)
            if field.type == _F.TYPE_MESSAGE and _message_type(field).GetOptions().map_entry:
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                if field.type == _F.TYPE_MESSAGE:
                    for item in value:
                        target.add().CopyFrom(item)
                else:
                    target.extend(value)
            elif field.type == _F.TYPE_MESSAGE:
                target.CopyFrom(value)
            else:
                setattr(msg, field.name, value)
        return msg

    return build()


def _as_float32(value: Any) -> Any:
    if isinstance(value, float):
        return struct.unpack("f", struct.pack("f", value))[0]
    return value


def expected(value: Any, desc: Descriptor) -> Any:
    """``json_format``'s output with the codec's rule applied: 64-bit integers as numbers."""
    if desc.full_name.startswith("google.protobuf.") or not isinstance(value, dict):
        return value
    out = dict(value)
    for field in desc.fields:
        if field.json_name not in out:
            continue
        item = out[field.json_name]
        if field.type == _F.TYPE_MESSAGE and _message_type(field).GetOptions().map_entry:
            value_field = _message_type(field).fields_by_name["value"]
            out[field.json_name] = {k: _convert(v, value_field) for k, v in item.items()}
        elif field.is_repeated:
            out[field.json_name] = [_convert(v, field) for v in item]
        else:
            out[field.json_name] = _convert(item, field)
    return out


def _convert(value: Any, field: FieldDescriptor) -> Any:
    if field.type == _F.TYPE_MESSAGE:
        return expected(value, _message_type(field))
    if field.type in _INT64:
        return int(value)
    if field.type == _F.TYPE_FLOAT:
        return _as_float32(value) if not isinstance(value, str) else value
    return value


def _float32_everywhere(obj: Any, desc: Descriptor) -> Any:
    """The codec prints a float32 field's double value; json_format its shortest float32 form."""
    if not isinstance(obj, dict) or desc.full_name.startswith("google.protobuf."):
        return obj
    out = dict(obj)
    for field in desc.fields:
        if field.json_name not in out:
            continue
        if field.type == _F.TYPE_MESSAGE and not _message_type(field).GetOptions().map_entry:
            item = out[field.json_name]
            out[field.json_name] = (
                [_float32_everywhere(v, _message_type(field)) for v in item]
                if field.is_repeated
                else _float32_everywhere(item, _message_type(field))
            )
        elif field.type == _F.TYPE_FLOAT:
            item = out[field.json_name]
            out[field.json_name] = [_as_float32(v) for v in item] if field.is_repeated else _as_float32(item)
    return out


@pytest.mark.parametrize("desc", MESSAGE_TYPES, ids=[d.full_name for d in MESSAGE_TYPES])
def test_codec_prints_what_json_format_prints_and_parses_it_back(desc: Descriptor) -> None:
    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages(desc))
    def check(msg: Message) -> None:
        reference = json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)
        ours = message_to_obj(msg)
        assert _float32_everywhere(ours, desc) == expected(reference, desc)
        back = GetMessageClass(desc)()
        parse_into(ours, back)
        assert back == msg

    check()


def test_every_generated_message_type_is_covered() -> None:
    assert {d.full_name for d in MESSAGE_TYPES} >= {
        "plutos.v1.ProcessRequest",
        "plutos.v1.ProcessResponse",
        "plutos.v1.GetUsageResponse",
        "plutos.v1.ListModelsResponse",
    }


CHAT = {"model": "m", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}


@pytest.mark.parametrize(
    "body",
    [
        CHAT,
        {**CHAT, "max_tokens": 16, "stop": "x", "stream_options": {"include_usage": True}, "temperature": 0.5},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]},
        {"model": "m", "messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
        {"model": "m", "messages": [{"role": "user", "name": "bob", "content": "Hi"}], "stop": ["a", "b"]},
        {"model": "m", "messages": []},
    ],
)
def test_chat_bodies_parse_as_json_format_parses_them(body: dict[str, Any]) -> None:
    """Repeated messages and string Values take the fast path; the rest falls back; same result."""
    from plutos.v1 import openai_pb2

    ours, reference = openai_pb2.CreateChatCompletionRequest(), openai_pb2.CreateChatCompletionRequest()
    parse_into(body, ours)
    json_format.ParseDict(body, reference)
    assert ours == reference


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": "m", "messages": "Hi"}, "messages"),
        ({"model": "m", "messages": [1]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": 1, "content": "Hi"}]}, "messages[0].role"),
    ],
)
def test_bad_chat_bodies_still_name_the_field(body: dict[str, Any], field: str) -> None:
    from plutos.v1 import openai_pb2

    from bridge.json_codec import JsonInputError

    with pytest.raises(JsonInputError) as caught:
        parse_into(body, openai_pb2.CreateChatCompletionRequest())
    assert caught.value.field == field


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_JSON)
def test_sse_frames_hold_exactly_what_json_dumps_writes(value: Any) -> None:
    """The SSE framing's JSON (bridge/surface.py, its C encoder made once) is ``json.dumps``'s
    text byte for byte: ASCII-only, the same separators, NaN and Infinity as json writes them."""
    assert json_text(value) == json.dumps(value)
    assert REFERENCE.frame("chunk", value) == f"event: chunk\ndata: {json.dumps(value)}\n\n".encode()


@pytest.mark.parametrize("name", ["plutos.v1.StreamResponse", "plutos.v1.ChatCompletionChunk"])
def test_sse_frames_of_stream_messages_are_json_dumps_text(name: str) -> None:
    desc = next(d for d in MESSAGE_TYPES if d.full_name == name)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages(desc))
    def check(msg: Message) -> None:
        obj = message_to_obj(msg)
        assert json_text(obj) == json.dumps(obj)

    check()


# -- errors: named in the caller's terms ----------------------------------------------------------

_WRONG_VALUES: list[Any] = ["x", "", 1, 1.5, -1, 2**70, True, None, [], [1], ["x"], [{}], [None], {}, {"zz": 1}]
# What protobuf knows and a caller of the REST API does not: type names, well-known types' inner
# fields, the library's phrases, Python reprs.
_INTERNALS = re.compile(
    r"stringValue|numberValue|structValue|listValue|boolValue|nullValue|_value\b|int32|int64|uint|float\b|double"
    r"|google\.protobuf|protobuf|plutos\.v1|Failed to parse|Message type|ParseError|\bat [A-Z]|<class|NoneType"
)


def _wrong_bodies(desc: Descriptor, proto_names: bool, depth: int = 0) -> Any:
    """(JSON path as the caller's dialect writes it, a body with one wrong value there) for each
    field of ``desc`` and of its nested messages (list fields: in their second item)."""
    for field in desc.fields:
        name = field.name if proto_names else field.json_name
        for value in _WRONG_VALUES:
            yield name, {name: value}
        message_type: Any = field.message_type
        nested = (
            field.type == FieldDescriptor.TYPE_MESSAGE
            and not message_type.GetOptions().map_entry
            and not message_type.full_name.startswith("google.protobuf.")
        )
        if nested and depth < 2:
            for inner, body in _wrong_bodies(message_type, proto_names, depth + 1):
                if field.is_repeated:
                    yield f"{name}[1].{inner}", {name: [{}, body]}
                else:
                    yield f"{name}.{inner}", {name: body}


def _request_surfaces() -> list[tuple[Descriptor, bool]]:
    from bridge.app import _default_modules
    from bridge.routes import bindings_for_modules
    from bridge.surface import surface_of

    seen: dict[str, tuple[Descriptor, bool]] = {}
    for b in bindings_for_modules(_default_modules()):
        proto_names = surface_of(b.method.containing_service).proto_names
        desc = b.request_type.DESCRIPTOR
        assert isinstance(desc, Descriptor)  # types-protobuf: Descriptor | the upb class (an instance of it)
        seen[desc.full_name] = (desc, proto_names)
    return list(seen.values())


@pytest.mark.parametrize(("desc", "proto_names"), _request_surfaces(), ids=lambda v: getattr(v, "name", str(v)))
def test_a_wrong_value_is_named_in_the_callers_terms(desc: Descriptor, proto_names: bool) -> None:
    """Every request of every route, a wrong value in each field (nested ones too): the error names
    the field by the path the caller wrote, in its surface's dialect (``options.maxTokens``;
    ``messages[1].tool_calls`` on /openai/v1), with list indices, and never repeats protobuf's
    internals (``stringValue``, ``int32``, …). Integer fields name their documented bounds."""
    from bridge.json_codec import JsonInputError

    refused = 0
    for path, body in _wrong_bodies(desc, proto_names):
        try:
            parse_into(body, GetMessageClass(desc)(), proto_names=proto_names)
        except JsonInputError as err:
            refused += 1
            message, field = str(err), err.field or ""
            assert not _INTERNALS.search(message) and not _INTERNALS.search(field), (path, body, message, field)
            # The culprit is the path sent, or inside it (a list's item, an unknown key).
            assert field == path or field.startswith((path + ".", path + "[")), (path, body, message, field)
    assert refused or not desc.fields


def test_a_wrong_item_of_a_list_is_named_by_its_index() -> None:
    from plutos.v1 import openai_pb2, processing_pb2

    from bridge.json_codec import JsonInputError

    cases: list[tuple[Message, dict[str, Any], bool, str, str]] = [
        (processing_pb2.BatchRequest(), {"inputs": ["a", 1]}, False, "inputs[1]", "expected a string"),
        (
            openai_pb2.CreateChatCompletionRequest(),
            {"messages": [{"role": "user"}, {"role": "user", "tool_calls": "x"}]},
            True,
            "messages[1].tool_calls",
            "expected a list of objects",
        ),
        (openai_pb2.CreateChatCompletionRequest(), {"maxTokens": "x"}, True, "max_tokens", "must be an integer"),
        (openai_pb2.CreateChatCompletionRequest(), {"messages": [{}, {"zz": 1}]}, True, "messages[1].zz", "Unknown"),
    ]
    for message, body, proto_names, field, says in cases:
        with pytest.raises(JsonInputError) as caught:
            parse_into(body, message, proto_names=proto_names)
        assert caught.value.field == field and says in str(caught.value), (body, str(caught.value))
