"""GET /v1/models and ListModels: the catalogue."""

from __future__ import annotations

import httpx

from tests.conftest import MODEL, GrpcClients


async def test_models_lists_the_catalogue_with_reference_fields(http: httpx.AsyncClient) -> None:
    r = await http.get("/models")
    assert r.status_code == 200
    models = r.json()["models"]
    assert [m["id"] for m in models] == [MODEL]
    m = models[0]
    assert list(m) == ["id", "name", "description", "maxTokens", "supportsStreaming", "pricing"]
    assert m["maxTokens"] == 8192
    assert m["supportsStreaming"] is True
    assert m["pricing"] == {"inputTokens": 0.0001, "outputTokens": 0.0002}


async def test_false_and_zero_defaults_are_printed() -> None:
    from plutos.v1 import models_pb2

    from bridge.json_codec import message_to_obj

    obj = message_to_obj(models_pb2.Model(id="x", pricing=models_pb2.Pricing()))
    assert obj["supportsStreaming"] is False
    assert obj["maxTokens"] == 0
    assert obj["pricing"] == {"inputTokens": 0.0, "outputTokens": 0.0}


async def test_list_models_over_grpc(grpc_clients: GrpcClients, auth_md: tuple[tuple[str, str], ...]) -> None:
    from plutos.v1 import models_pb2

    reply = await grpc_clients.models.ListModels(models_pb2.ListModelsRequest(), metadata=auth_md)
    assert [m.id for m in reply.models] == [MODEL]
    assert reply.models[0].supports_streaming
