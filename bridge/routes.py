"""Routes read from the ``google.api.http`` annotations of every RPC in the descriptors.

Adding an annotated RPC to ``protos/`` adds its REST route here with no bridge code.

Path templates follow ``google.api.http``: a variable (``{id}``) matches one path segment, and a
template may end in a custom verb (AIP-136: ``/v1/keys/{id}:rotate``). Variables therefore match
neither ``/`` nor ``:`` (the Starlette convertor ``segment``), so ``POST /v1/keys/k1:rotate``
reaches RotateKey with ``id = "k1"`` and ``GET /v1/keys/k1:rotate`` is a 405, not GetKey of
``"k1:rotate"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from plutos.v1 import http_options_pb2
from starlette.convertors import Convertor, register_url_convertor

_VARIABLE = re.compile(r"\{([A-Za-z_][\w.]*)(?:=[^}]*)?\}")


class SegmentConvertor(Convertor[str]):
    """One path segment without a custom verb: no ``/``, no ``:``."""

    regex = "[^/:]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", SegmentConvertor())
_ROUTE_VARIABLE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class StreamTwin:
    """A server-streaming RPC that the route serves instead when the request's bool ``field`` is
    true (the ``(plutos.v1.stream_variant)`` method option)."""

    field: str
    grpc_path: str
    response_type: type[Message]
    method: MethodDescriptor


@dataclass(frozen=True, slots=True)
class HttpBinding:
    http_method: str  # GET, POST, ...
    path: str  # Starlette path, "/v1/process/{id}"
    body: str  # "" (no body), "*" (whole body), or a field name
    path_fields: tuple[str, ...]
    grpc_path: str  # "/plutos.v1.ProcessingService/Process"
    request_type: type[Message]
    response_type: type[Message]
    server_streaming: bool
    method: MethodDescriptor
    stream_twin: StreamTwin | None = None

    @property
    def route_path(self) -> str:
        """``path`` for Starlette's router: every variable one segment without a verb."""
        return _ROUTE_VARIABLE.sub(r"{\1:segment}", self.path)


def _rule_pattern(rule: http_pb2.HttpRule) -> tuple[str, str] | None:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        return None
    if kind == "custom":
        return rule.custom.kind.upper(), rule.custom.path
    return kind.upper(), getattr(rule, kind)


def _stream_twin(service: ServiceDescriptor, method: MethodDescriptor) -> StreamTwin | None:
    options = method.GetOptions()
    if not options.HasExtension(http_options_pb2.stream_variant):
        return None
    variant: http_options_pb2.StreamVariant = options.Extensions[http_options_pb2.stream_variant]
    twin = service.methods_by_name.get(variant.method)
    where = f"{service.full_name}/{method.name}: (plutos.v1.stream_variant)"
    if twin is None or not twin.server_streaming or twin.input_type.full_name != method.input_type.full_name:
        raise ValueError(f"{where} must name a server-streaming RPC of the service taking the same request")
    field = method.input_type.fields_by_name.get(variant.field)
    if field is None or field.type != field.TYPE_BOOL or field.is_repeated:
        raise ValueError(f"{where}: field must name a bool field of {method.input_type.full_name}")
    return StreamTwin(
        field=variant.field,
        grpc_path=f"/{service.full_name}/{twin.name}",
        response_type=GetMessageClass(twin.output_type),
        method=twin,
    )


def bindings_for_service(service: ServiceDescriptor) -> Iterable[HttpBinding]:
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        top: http_pb2.HttpRule = options.Extensions[annotations_pb2.http]
        for rule in [top, *top.additional_bindings]:
            pattern = _rule_pattern(rule)
            if pattern is None:
                continue
            http_method, template = pattern
            path_fields = tuple(_VARIABLE.findall(template))
            yield HttpBinding(
                http_method=http_method,
                path=_VARIABLE.sub(lambda m: "{" + m.group(1).replace(".", "__") + "}", template),
                body=rule.body,
                path_fields=path_fields,
                grpc_path=f"/{service.full_name}/{method.name}",
                request_type=GetMessageClass(method.input_type),
                response_type=GetMessageClass(method.output_type),
                server_streaming=method.server_streaming,
                method=method,
                stream_twin=_stream_twin(service, method),
            )


def bindings_for_modules(modules: Iterable[ModuleType]) -> list[HttpBinding]:
    """Every annotated RPC of every service in the given generated ``*_pb2`` modules."""
    found: list[HttpBinding] = []
    for module in modules:
        for service in module.DESCRIPTOR.services_by_name.values():
            found.extend(bindings_for_service(service))
    return found
