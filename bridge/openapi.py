"""The OpenAPI 3.1 document of the REST surface, derived from what the bridge serves.

Its input is the bridge's own :class:`~bridge.routes.HttpBinding` list (read from the
``google.api.http`` annotations), the descriptors' comments (``gen/python/plutos/descriptors.binpb``,
written by ``scripts/gen_protos.py`` with ``--include_source_info``) and the error table of
``core/errors.py``. An RPC added to ``protos/`` appears here with no code, like its route.

Schemas follow :mod:`bridge.json_codec`: lowerCamelCase names, RFC 3339 timestamps, 64-bit integers
as JSON numbers. Fields marked ``(google.api.field_behavior) = REQUIRED`` are required: in a request
the caller must send them, in a response the server always sends them. A response schema also
requires every field the bridge always prints (fields without presence: scalars, repeated fields,
maps); an input schema refuses unknown properties, as the bridge does. A
message used both ways gets two schemas (``Name`` for responses, ``NameInput`` for requests).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import FieldDescriptor
from plutos.v1 import options_pb2

from bridge.routes import HttpBinding
from bridge.surface import surface_of
from core.errors import ERRORS
from core.field_ranges import declared_range

_F = FieldDescriptor
# upb and pure-Python descriptors differ in type; both quack the same (as in bridge/json_codec.py).
Descriptor = Any
Field = Any
OPENAPI_VERSION = "3.1.0"
DESCRIPTOR_SET = "descriptors.binpb"
ERROR_SCHEMA = "Error"
OPENAI_ERROR_SCHEMA = "OpenAIError"  # the error body of services whose surface says ERROR_FORMAT_OPENAI
# A path variable is one segment without a custom verb (bridge/routes.py's "segment" convertor).
PATH_SEGMENT = "^[^/:]+$"
_HTTP_METHODS = {"GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE"}
# Statuses a caller never sees on an operation's own path: 405 is about other methods, 499 means the
# client went away before the answer.
_NOT_PER_OPERATION = {405, 499}
_INT_RANGES = {
    _F.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    _F.TYPE_SINT32: ("int32", -(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: ("int32", -(2**31), 2**31 - 1),
    _F.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    _F.TYPE_FIXED32: ("uint32", 0, 2**32 - 1),
    _F.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    _F.TYPE_SINT64: ("int64", -(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: ("int64", -(2**63), 2**63 - 1),
    _F.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    _F.TYPE_FIXED64: ("uint64", 0, 2**64 - 1),
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Value": {},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {"type": "object", "properties": {"@type": {"type": "string"}}, "required": ["@type"]},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double"},
    "google.protobuf.FloatValue": {"type": "number", "format": "float"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "format": "uint32", "minimum": 0},
    "google.protobuf.Int64Value": {"type": "integer", "format": "int64"},
    "google.protobuf.UInt64Value": {"type": "integer", "format": "uint64", "minimum": 0},
}
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "The request's id: the caller's `X-Request-Id` if it sent a usable one, else a new one.",
        "schema": {"type": "string"},
        "required": True,
    },
    "X-RateLimit-Limit": {"description": "Requests allowed in the current window.", "schema": {"type": "integer"}},
    "X-RateLimit-Remaining": {"description": "Requests left in the current window.", "schema": {"type": "integer"}},
    "X-RateLimit-Reset": {
        "description": "When the current window ends, in Unix seconds.",
        "schema": {"type": "integer"},
    },
}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}
# On RPCs marked ``option (plutos.v1.idempotent) = true`` (docs/idempotency-and-cache.md).
IDEMPOTENCY_KEY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Repeating the request with the same key replays the first answer (`Idempotent-Replayed: true`) "
    "instead of running it again; the key with another request is `idempotency_key_reused`, and while the first "
    "still runs `idempotency_in_progress`.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"},
}


# ---------------------------------------------------------------------------------------------
# Comments


def load_comments(data: bytes | None = None) -> dict[str, str]:
    """Leading (else trailing) comments by the element's full name: ``plutos.v1.Usage``,
    ``plutos.v1.Usage.total_tokens``, ``plutos.v1.ProcessingService.Process``. ``data`` is a
    serialized ``FileDescriptorSet`` with source info (default: the one generated beside the stubs)."""
    if data is None:
        data = _generated_descriptor_set()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    comments: dict[str, str] = {}
    for file in files.file:
        names = _element_names(file)
        for location in file.source_code_info.location:
            name = names.get(tuple(location.path))
            text = (location.leading_comments or location.trailing_comments).strip()
            if name is not None and text:
                comments[name] = "\n".join(line.strip() for line in text.splitlines())
    return comments


@cache
def _generated_descriptor_set() -> bytes:
    try:
        return (resources.files("plutos") / DESCRIPTOR_SET).read_bytes()
    except FileNotFoundError:  # stubs generated without it: no descriptions, same document otherwise
        return b""


def _element_names(file: descriptor_pb2.FileDescriptorProto) -> dict[tuple[int, ...], str]:
    """source_code_info paths → full names (4 = message_type, 2 = field, 3 = nested_type,
    4 = enum_type (in a message: 4), 6 = service, 2 = method, 5 = enum_type, 2 = value)."""
    prefix = f"{file.package}." if file.package else ""
    names: dict[tuple[int, ...], str] = {}

    def enum(path: tuple[int, ...], full: str, proto: descriptor_pb2.EnumDescriptorProto) -> None:
        names[path] = full
        for i, value in enumerate(proto.value):
            names[(*path, 2, i)] = f"{full}.{value.name}"

    def message(path: tuple[int, ...], full: str, proto: descriptor_pb2.DescriptorProto) -> None:
        names[path] = full
        for i, field in enumerate(proto.field):
            names[(*path, 2, i)] = f"{full}.{field.name}"
        for i, nested in enumerate(proto.nested_type):
            message((*path, 3, i), f"{full}.{nested.name}", nested)
        for i, nested_enum in enumerate(proto.enum_type):
            enum((*path, 4, i), f"{full}.{nested_enum.name}", nested_enum)

    for i, msg in enumerate(file.message_type):
        message((4, i), prefix + msg.name, msg)
    for i, top_enum in enumerate(file.enum_type):
        enum((5, i), prefix + top_enum.name, top_enum)
    for i, service in enumerate(file.service):
        names[(6, i)] = prefix + service.name
        for j, method in enumerate(service.method):
            names[(6, i, 2, j)] = f"{prefix}{service.name}.{method.name}"
    return names


# ---------------------------------------------------------------------------------------------
# Schemas


def _required_on_input(field: Field) -> bool:
    """``(google.api.field_behavior) = REQUIRED``: the caller must send it (in a request) or the server
    always sends it (in a response)."""
    behaviors = field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    return field_behavior_pb2.REQUIRED in behaviors


def _is_map(field: Field) -> bool:
    message_type: Any = field.message_type
    return field.type == _F.TYPE_MESSAGE and bool(message_type.GetOptions().map_entry)


class _Schemas:
    """``components.schemas``, filled as operations refer to messages."""

    def __init__(
        self,
        comments: dict[str, str],
        messages: Iterable[tuple[Descriptor, str]],
        proto_named: Iterable[Descriptor] = (),
    ) -> None:
        self.comments = comments
        self.components: dict[str, Any] = {}
        uses: dict[str, set[str]] = {}
        by_name: dict[str, Descriptor] = {}
        for desc, direction in messages:
            self._collect(desc, direction, uses, by_name)
        # Messages of services whose JSON uses proto field names (http_surface json_names).
        self.proto_named: set[str] = set()
        for desc in proto_named:
            named: dict[str, set[str]] = {}
            self._collect(desc, "out", named, {})
            self.proto_named.update(named)
        short: dict[str, list[str]] = {}
        for full in by_name:
            short.setdefault(_short_name(by_name[full]), []).append(full)
        self.names: dict[tuple[str, str], str] = {}
        for full, directions in uses.items():
            base = _short_name(by_name[full]) if len(short[_short_name(by_name[full])]) == 1 else full
            for direction in directions:
                both = len(directions) == 2
                self.names[(full, direction)] = base + ("Input" if both and direction == "in" else "")

    def _collect(self, desc: Descriptor, direction: str, uses: dict[str, set[str]], by_name: dict[str, Any]) -> None:
        if desc.full_name in _WELL_KNOWN or direction in uses.get(desc.full_name, ()):
            return
        uses.setdefault(desc.full_name, set()).add(direction)
        by_name[desc.full_name] = desc
        for field in desc.fields:
            if field.type == _F.TYPE_MESSAGE:
                target: Any = field.message_type
                if _is_map(field):
                    target = target.fields_by_name["value"].message_type
                if target is not None:
                    self._collect(target, direction, uses, by_name)

    def ref(self, desc: Descriptor, direction: str) -> dict[str, Any]:
        """``{"$ref": ...}`` to the message's schema for ``direction`` ("in" or "out")."""
        if desc.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[desc.full_name])
        name = self.names[(desc.full_name, direction)]
        if name not in self.components:
            self.components[name] = {}  # placeholder: recursive messages refer to themselves
            self.components[name] = self.message(desc, direction)
        return {"$ref": f"#/components/schemas/{name}"}

    def message(self, desc: Descriptor, direction: str, skip: Sequence[str] = ()) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for field in desc.fields:
            if field.name in skip:
                continue
            name = field.name if desc.full_name in self.proto_named else field.json_name
            properties[name] = self.field(field, direction)
            if (direction == "out" and not field.has_presence) or _required_on_input(field):
                required.append(name)
        schema: dict[str, Any] = {"type": "object"}
        if desc.full_name in self.comments:
            schema["description"] = self.comments[desc.full_name]
        schema["properties"] = properties
        if required:
            schema["required"] = required
        if direction == "in":
            schema["additionalProperties"] = False
        return schema

    def field(self, field: Field, direction: str) -> dict[str, Any]:
        if _is_map(field):
            entry: Any = field.message_type
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self.scalar(entry.fields_by_name["value"], direction),
            }
        elif field.is_repeated:
            schema = {"type": "array", "items": self.scalar(field, direction)}
        else:
            schema = self.scalar(field, direction)
        description = self.comments.get(field.full_name)
        if description:
            schema["description"] = description
        return schema

    def scalar(self, field: Field, direction: str) -> dict[str, Any]:
        t = field.type
        if t == _F.TYPE_MESSAGE:
            return self.ref(field.message_type, direction)
        if t == _F.TYPE_ENUM:
            enum: Any = field.enum_type
            return {"type": "string", "enum": [v.name for v in enum.values]}
        if t == _F.TYPE_STRING:
            return {"type": "string"}
        if t == _F.TYPE_BYTES:
            return {"type": "string", "contentEncoding": "base64"}
        if t == _F.TYPE_BOOL:
            return {"type": "boolean"}
        if t == _F.TYPE_DOUBLE:
            return {"type": "number", "format": "double"}
        if t == _F.TYPE_FLOAT:
            return {"type": "number", "format": "float"}
        fmt, low, high = _INT_RANGES[t]
        # The documented bounds where the field declares them ((plutos.v1.int_range): `limit` is
        # 1 to 100), else the type's. 64-bit integers too: the bridge prints every integer as a JSON number.
        low, high = declared_range(field) or (low, high)
        return {"type": "integer", "format": fmt, "minimum": low, "maximum": high}


def _short_name(desc: Descriptor) -> str:
    package: str = desc.file.package
    full: str = desc.full_name
    return full[len(package) + 1 :] if package else full


# ---------------------------------------------------------------------------------------------
# The document


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "The error envelope of every failed call (and the data of an SSE `event: error`).",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "string", "enum": list(ERRORS), "description": "A code of the error table."},
                    "message": {"type": "string", "description": "A human-readable explanation."},
                    "details": {
                        "type": "object",
                        "description": "Facts about the error, e.g. `field` (the offending parameter), "
                        "`retryAfter` (seconds), `allow` (the methods a path takes).",
                    },
                    "requestId": {"type": "string", "description": "The request's id, as in `X-Request-Id`."},
                },
                "required": ["code", "message", "requestId"],
            }
        },
        "required": ["error"],
    }


def _openai_error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "OpenAI's error body, on the OpenAI-compatible API (/openai/v1): `code` is a code of the "
        "error table, `type` OpenAI's error type for it, `param` the offending field or null.",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": "string", "enum": sorted({k.openai_type for k in ERRORS.values()})},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": "string", "enum": list(ERRORS)},
                },
                "required": ["message", "type", "param", "code"],
            }
        },
        "required": ["error"],
    }


def _error_responses(prefix: str = "Error", schema: str = ERROR_SCHEMA) -> dict[str, Any]:
    """One response per HTTP status of the error table, listing the codes it carries."""
    by_status: dict[int, list[str]] = {}
    for kind in ERRORS.values():
        by_status.setdefault(kind.http_status, []).append(kind.code)
    responses: dict[str, Any] = {}
    for status, codes in sorted(by_status.items()):
        headers: dict[str, Any] = {"X-Request-Id": {"$ref": "#/components/headers/X-Request-Id"}}
        if status == 429:
            headers["Retry-After"] = RETRY_AFTER
        if status == 405:
            headers["Allow"] = {"description": "The methods this path takes.", "schema": {"type": "string"}}
        responses[f"{prefix}{status}"] = {
            "description": "Error: " + ", ".join(f"`{c}`" for c in codes) + ".",
            "headers": headers,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}},
        }
    return responses


def _describe(comment: str | None) -> dict[str, str]:
    if not comment:
        return {}
    first = comment.split("\n\n", 1)[0].replace("\n", " ")
    summary = first.split(". ", 1)[0].rstrip(".")
    out = {"summary": summary}
    if comment.replace("\n", " ").rstrip(".") != summary:
        out["description"] = comment
    return out


def _openapi_path(binding: HttpBinding) -> str:
    path = binding.path
    for field in binding.path_fields:
        path = path.replace("{" + field.replace(".", "__") + "}", "{" + field + "}")
    return path


def _field_by_path(desc: Descriptor, dotted: str) -> Field | None:
    field: Field | None = None
    current: Any = desc
    for part in dotted.split("."):
        if current is None:
            return None
        field = current.fields_by_name.get(part)
        if field is None:
            return None
        current = field.message_type
    return field


def build_openapi(
    bindings: Sequence[HttpBinding], *, comments: dict[str, str] | None = None, version: str = "1.0.0"
) -> dict[str, Any]:
    """The OpenAPI 3.1 document (a JSON-ready dict) for ``bindings``."""
    if comments is None:
        comments = load_comments()
    wanted = [b for b in bindings if b.http_method in _HTTP_METHODS]
    surfaces = {b.grpc_path: surface_of(b.method.containing_service) for b in wanted}
    uses: list[tuple[Descriptor, str]] = []
    proto_named: list[Descriptor] = []
    for b in wanted:
        types = [b.request_type.DESCRIPTOR, b.response_type.DESCRIPTOR]
        uses.append((types[0], "in"))
        uses.append((types[1], "out"))
        if b.stream_twin is not None:
            types.append(b.stream_twin.response_type.DESCRIPTOR)
            uses.append((types[2], "out"))
        if surfaces[b.grpc_path].proto_names:
            proto_named.extend(types)
    schemas = _Schemas(comments, uses, proto_named)
    method_names = [b.method.name for b in wanted]
    paths: dict[str, Any] = {}
    tags: dict[str, dict[str, str]] = {}
    op_ids: set[str] = set()
    error_responses = _error_responses()
    openai_error_responses = _error_responses("OpenAIError", OPENAI_ERROR_SCHEMA)
    for b in wanted:
        surface = surfaces[b.grpc_path]
        service = b.method.containing_service
        tag = service.name
        if tag not in tags:
            tags[tag] = {"name": tag}
            if service.full_name in comments:
                tags[tag]["description"] = comments[service.full_name]
        op_id = b.method.name if method_names.count(b.method.name) == 1 else f"{service.name}_{b.method.name}"
        n = 1
        while op_id + (f"_{n}" if n > 1 else "") in op_ids:  # additional_bindings of one RPC
            n += 1
        op_id += f"_{n}" if n > 1 else ""
        op_ids.add(op_id)
        operation: dict[str, Any] = {"operationId": op_id, "tags": [tag]}
        operation.update(_describe(comments.get(f"{service.full_name}.{b.method.name}")))
        request_desc = b.request_type.DESCRIPTOR
        parameters: list[dict[str, Any]] = []
        for dotted in b.path_fields:
            field = _field_by_path(request_desc, dotted)
            path_schema: dict[str, Any] = schemas.scalar(field, "in") if field is not None else {"type": "string"}
            if path_schema.get("type") == "string":
                path_schema["pattern"] = PATH_SEGMENT  # what the bridge's route variables match
            parameters.append(
                {
                    "name": dotted,
                    "in": "path",
                    "required": True,
                    "schema": path_schema,
                    **({"description": comments[field.full_name]} if field and field.full_name in comments else {}),
                }
            )
        if b.body != "*":
            top_path = {p.split(".")[0] for p in b.path_fields}
            for field in request_desc.fields:
                if field.name in top_path or field.name == b.body or _is_map(field):
                    continue
                schema = schemas.field(field, "in")
                item = schema.get("items", schema)
                if "$ref" in item or item.get("type") == "object":
                    continue  # messages are not query parameters
                description = schema.pop("description", "")
                if field.json_name != field.name:
                    description = f"{description} Also accepted as `{field.json_name}`.".strip()
                param: dict[str, Any] = {"name": field.name, "in": "query", "schema": schema}
                if field.is_repeated:
                    param.update(style="form", explode=True)
                if description:
                    param["description"] = description
                parameters.append(param)
        if b.method.GetOptions().Extensions[options_pb2.idempotent]:
            parameters.append(IDEMPOTENCY_KEY_PARAMETER)
        if parameters:
            operation["parameters"] = parameters
        if b.body:
            if b.body == "*":
                if b.path_fields:
                    body_schema = schemas.message(request_desc, "in", skip=[p.split(".")[0] for p in b.path_fields])
                else:
                    body_schema = schemas.ref(request_desc, "in")
                required_body = any(_required_on_input(f) for f in request_desc.fields)
            else:
                body_field = request_desc.fields_by_name[b.body]
                body_schema = schemas.field(body_field, "in")
                required_body = _required_on_input(body_field)
            operation["requestBody"] = {
                "required": required_body,
                "content": {"application/json": {"schema": body_schema}},
            }
        ok_headers = {name: {"$ref": f"#/components/headers/{name}"} for name in RESPONSE_HEADERS}
        if b.server_streaming:
            ok: dict[str, Any] = {
                "description": "A stream of server-sent events.",
                "headers": ok_headers,
                "content": {"text/event-stream": _sse_media(b, schemas)},
            }
        else:
            response_desc = b.response_type.DESCRIPTOR
            ok = {
                "description": comments.get(response_desc.full_name, "OK").split("\n\n")[0],
                "headers": ok_headers,
                "content": {"application/json": {"schema": schemas.ref(response_desc, "out")}},
            }
            if b.stream_twin is not None:
                twin = b.stream_twin
                ok["description"] += f" With `{twin.field}: true`, server-sent events instead."
                ok["content"]["text/event-stream"] = _data_only_sse_media(twin.response_type.DESCRIPTOR, schemas)
        responses: dict[str, Any] = {"200": ok}
        prefix = "OpenAIError" if surface.openai_errors else "Error"
        for name in openai_error_responses if surface.openai_errors else error_responses:
            status = int(name.removeprefix(prefix))
            if status in _NOT_PER_OPERATION or (status == 404 and not b.path_fields):
                continue
            responses[str(status)] = {"$ref": f"#/components/responses/{name}"}
        operation["responses"] = responses
        operation["x-grpc-method"] = b.grpc_path
        paths.setdefault(_openapi_path(b), {})[b.http_method.lower()] = operation
    schemas.components[ERROR_SCHEMA] = _error_schema()
    if any(s.openai_errors for s in surfaces.values()):
        schemas.components[OPENAI_ERROR_SCHEMA] = _openai_error_schema()
        error_responses = {**error_responses, **openai_error_responses}
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "PlutosAI API", "version": version, "description": _info_description()},
        "tags": list(tags.values()),
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "responses": error_responses,
            "headers": RESPONSE_HEADERS,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key: `Authorization: Bearer YOUR_API_KEY`.",
                }
            },
        },
    }


def _sse_media(binding: HttpBinding, schemas: _Schemas) -> dict[str, Any]:
    """``text/event-stream``: one ``event: <name>`` / ``data: <json>`` frame per message, named after
    the set case of the response's oneof (``message`` without one); ``event: error`` if the call fails
    mid-stream; ``: keep-alive`` comments during silence. The schema describes one event, as OpenAPI
    3.2's ``itemSchema`` does (and tools read a 3.1 event stream's ``schema``): ``event`` is the name,
    ``data`` a JSON text whose ``contentSchema`` is the message's."""
    desc = binding.response_type.DESCRIPTOR
    events: dict[str, Any] = {}
    if desc.oneofs:
        for field in desc.oneofs[0].fields:
            events[field.name] = schemas.scalar(field, "out")
    else:
        events["message"] = schemas.ref(desc, "out")
    events["error"] = {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"}
    lines = "\n".join(f"- `event: {name}`: `data:` is {_schema_label(s)}" for name, s in events.items())
    variants = [
        {
            "properties": {
                "event": {"const": name},
                "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": schema},
            }
        }
        for name, schema in events.items()
    ]
    return {
        "schema": {
            "type": "object",
            "description": "One server-sent event, `event: <name>\\ndata: <json>\\n\\n`:\n"
            + lines
            + "\n\nComments (`: keep-alive`) keep an idle connection open.",
            "required": ["event", "data"],
            "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
            "oneOf": variants,
        }
    }


def _data_only_sse_media(desc: Descriptor, schemas: _Schemas) -> dict[str, Any]:
    """``text/event-stream`` as OpenAI streams: ``data: <json>`` per message, then ``data: [DONE]``
    (a surface with SSE_FORMAT_DATA_ONLY); a failure mid-stream is ``data: <the error body>``."""
    message = schemas.ref(desc, "out")
    return {
        "schema": {
            "type": "object",
            "description": f"One server-sent event, `data: <json>\\n\\n`: `data:` is {_schema_label(message)}, "
            "or OpenAI's error body if the call fails mid-stream; the stream ends with `data: [DONE]`.",
            "required": ["data"],
            "properties": {"data": {"type": "string"}},
        }
    }


def _schema_label(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    return f"`{ref.rsplit('/', 1)[-1]}`" if ref else "JSON"


def _info_description() -> str:
    rows = "\n".join(f"| `{kind.code}` | {kind.http_status} | {kind.grpc_status.name} |" for kind in ERRORS.values())
    return (
        "The REST form of the PlutosAI gRPC services, generated from their `google.api.http` annotations.\n\n"
        "Every request carries `Authorization: Bearer YOUR_API_KEY`. Field names are lowerCamelCase; "
        "timestamps are RFC 3339; 64-bit integers are JSON numbers. Every failure answers with the "
        'error envelope `{"error": {"code", "message", "details", "requestId"}}`:\n\n'
        "| code | HTTP | gRPC |\n|---|---|---|\n" + rows
    )
