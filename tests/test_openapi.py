"""GET /v1/openapi.json (derived from the bridge's bindings and the proto comments) and GET /docs."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from openapi_spec_validator import validate
from starlette.routing import Route

from bridge.app import _default_modules
from bridge.front import FastRoutes
from bridge.openapi import build_openapi, load_comments
from bridge.routes import bindings_for_modules, bindings_for_service
from bridge.surfaces import CONTENT_SECURITY_POLICY
from core.errors import ERRORS
from gateway.app import RunningPlatform


@pytest.fixture(scope="module")
async def document(platform: RunningPlatform, anon: httpx.AsyncClient) -> dict[str, Any]:
    r = await anon.get("/openapi.json")  # no key needed
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    return doc


def _ref(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    assert isinstance(node, dict)
    return node


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document)  # openapi-spec-validator: raises on any violation


def test_every_route_the_bridge_serves_is_described(platform: RunningPlatform, document: dict[str, Any]) -> None:
    front = platform.http_server.config.app
    assert isinstance(front, FastRoutes)
    app = front.app  # FastRoutes → Starlette
    served = {
        (method.lower(), re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: "{" + m.group(1).replace("__", ".") + "}", route.path))
        for route in app.state.bindings
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }
    described = {(method, path) for path, ops in document["paths"].items() for method in ops}
    assert served == described
    grpc_methods = {op["x-grpc-method"] for ops in document["paths"].values() for op in ops.values()}
    assert grpc_methods == {b.grpc_path for b in app.state.http_bindings}


def test_names_types_and_descriptions_follow_the_bridge(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    process = document["paths"]["/v1/process"]["post"]
    assert process["summary"] == "Process a single input with a model"
    assert process["requestBody"]["required"] is True
    request = _ref(document, process["requestBody"]["content"]["application/json"]["schema"]["$ref"])
    assert request["required"] == ["input", "model"]
    assert request["additionalProperties"] is False
    options = _ref(document, request["properties"]["options"]["$ref"])
    assert options["properties"]["maxTokens"]["type"] == "integer"
    assert "default 0.7" in options["properties"]["temperature"]["description"]
    response = schemas["ProcessResponse"]
    assert {"processingTime", "createdAt", "usage"} <= set(response["properties"])
    assert (
        response["properties"]["createdAt"] == {"$ref": "#/components/schemas/Timestamp"}
        or response["properties"]["createdAt"]["format"] == "date-time"
    )
    assert "processingTime" in response["required"]  # no presence: always printed
    assert "createdAt" in response["required"]  # a message field marked REQUIRED: always sent
    assert "error" not in schemas["BatchResult"]["required"]  # a message field: printed only when set
    # int64 counters are JSON numbers, as the bridge prints them.
    totals = schemas["UsageTotals"]["properties"]
    assert totals["totalRequests"]["type"] == "integer" and totals["totalRequests"]["format"] == "int64"
    assert totals["requestsByModel"]["additionalProperties"]["type"] == "integer"
    usage_params = {p["name"]: p for p in document["paths"]["/v1/usage"]["get"]["parameters"]}
    assert set(usage_params) == {"start_date", "end_date"} and usage_params["start_date"]["in"] == "query"
    get_process = document["paths"]["/v1/process/{id}"]["get"]
    assert get_process["parameters"][0] == {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[^/:]+$"},
    }
    tags = {t["name"]: t.get("description", "") for t in document["tags"]}
    assert tags["ModelsService"] == "ModelsService lists the model catalogue."


def test_errors_security_and_stream(document: dict[str, Any]) -> None:
    assert document["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "An API key: `Authorization: Bearer YOUR_API_KEY`.",
    }
    envelope = document["components"]["schemas"]["Error"]
    assert envelope["properties"]["error"]["properties"]["code"]["enum"] == list(ERRORS)
    responses = document["components"]["responses"]
    for kind in ERRORS.values():
        assert f"`{kind.code}`" in responses[f"Error{kind.http_status}"]["description"]
    process = document["paths"]["/v1/process"]["post"]["responses"]
    assert {"400", "401", "429", "500", "503"} <= set(process)
    assert "404" not in process and "404" in document["paths"]["/v1/process/{id}"]["get"]["responses"]
    stream = document["paths"]["/v1/stream"]["post"]["responses"]["200"]["content"]
    assert list(stream) == ["text/event-stream"]
    event = stream["text/event-stream"]["schema"]  # one event, as Schemathesis reads a 3.1 stream
    assert event["required"] == ["event", "data"]
    variants = {v["properties"]["event"]["const"]: v["properties"]["data"] for v in event["oneOf"]}
    assert {name: data["contentSchema"] for name, data in variants.items()} == {
        "chunk": {"$ref": "#/components/schemas/StreamChunk"},
        "complete": {"$ref": "#/components/schemas/StreamComplete"},
        "error": {"$ref": "#/components/schemas/Error"},
    }
    assert all(data["contentMediaType"] == "application/json" for data in variants.values())


def test_comments_come_from_the_generated_descriptor_set() -> None:
    comments = load_comments()
    assert comments["plutos.v1.ProcessingService.Stream"].startswith("Stream the output as it is generated")
    assert comments["plutos.v1.ProcessResponse.id"] == '"proc_" followed by 16 hex digits.'


def _extra_module() -> Any:
    """A service the bridge has never seen, built at run time: an RPC with a path parameter, a body
    field, a query parameter and a message used both ways."""
    pool = descriptor_pool.Default()  # holds google/api/annotations.proto and Timestamp already
    try:
        return pool.FindServiceByName("extra.v1.KeysService")
    except KeyError:
        pass
    f = descriptor_pb2.FileDescriptorProto(name="extra/v1/keys.proto", package="extra.v1", syntax="proto3")
    f.dependency.extend(["google/api/annotations.proto", "google/protobuf/timestamp.proto"])
    key = f.message_type.add(name="Key")
    key.field.add(name="key_id", number=1, type=9, label=1)
    key.field.add(name="request_count", number=2, type=3, label=1)  # int64
    key.field.add(name="created_at", number=3, type=11, label=1, type_name=".google.protobuf.Timestamp")
    req = f.message_type.add(name="UpdateKeyRequest")
    req.field.add(name="key_id", number=1, type=9, label=1)
    req.field.add(name="key", number=2, type=11, label=1, type_name=".extra.v1.Key")
    req.field.add(name="dry_run", number=3, type=8, label=1)
    service = f.service.add(name="KeysService")
    method = service.method.add(name="UpdateKey", input_type=".extra.v1.UpdateKeyRequest", output_type=".extra.v1.Key")
    rule = method.options.Extensions[annotations_pb2.http]
    rule.patch = "/v1/keys/{key_id}"
    rule.body = "key"
    pool.Add(f)
    return pool.FindServiceByName("extra.v1.KeysService")


def test_an_rpc_added_to_the_protos_is_described_with_no_code() -> None:
    bindings = [*bindings_for_modules(_default_modules()), *bindings_for_service(_extra_module())]
    doc = build_openapi(bindings, comments={})
    validate(doc)
    op = doc["paths"]["/v1/keys/{key_id}"]["patch"]
    assert [(p["name"], p["in"]) for p in op["parameters"]] == [("key_id", "path"), ("dry_run", "query")]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/KeyInput"}
    key = doc["components"]["schemas"]["Key"]
    assert key["properties"]["requestCount"]["type"] == "integer"
    assert key["required"] == ["keyId", "requestCount"]
    assert doc["components"]["schemas"]["KeyInput"]["additionalProperties"] is False


async def test_docs_page_is_served_offline_under_a_strict_csp(anon: httpx.AsyncClient, base_url: str) -> None:
    root = base_url.removesuffix("/v1")
    r = await anon.get(f"{root}/docs")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY and "'unsafe-eval'" not in CONTENT_SECURITY_POLICY
    page = r.text
    assert "<script>" not in page and "style=" not in page
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(u.startswith("/") for u in urls), urls  # nothing from another host
    for url in urls:
        asset = await anon.get(f"{root}{url}")
        assert asset.status_code == 200, url
    licence = await anon.get(f"{root}/docs/LICENSE")
    assert "Apache License" in licence.text
    assert (await anon.get(f"{root}/docs/../server/keys.py")).status_code == 404
    assert (await anon.get(f"{root}/docs/swagger-editor.js")).status_code == 404
