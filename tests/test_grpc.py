"""The same endpoints over gRPC with the generated stubs, and via server reflection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from plutos.v1 import processing_pb2

from tests.conftest import MODEL, GrpcClients, rich_status

Md = tuple[tuple[str, str], ...]


async def test_process_and_get_process_over_grpc(grpc_clients: GrpcClients, auth_md: Md) -> None:
    reply = await grpc_clients.processing.Process(
        processing_pb2.ProcessRequest(
            input="What is the capital of France?",
            model=MODEL,
            options=processing_pb2.ProcessOptions(temperature=0.7, max_tokens=20, system_prompt="Be brief."),
        ),
        metadata=auth_md,
    )
    assert reply.id.startswith("proc_") and reply.output
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    got = await grpc_clients.processing.GetProcess(processing_pb2.GetProcessRequest(id=reply.id), metadata=auth_md)
    assert got.output == reply.output and got.options.system_prompt == "Be brief."


async def test_request_id_is_returned_as_metadata(grpc_clients: GrpcClients, auth_md: Md) -> None:
    call = grpc_clients.processing.Process(
        processing_pb2.ProcessRequest(input="Hi", model=MODEL, options=processing_pb2.ProcessOptions(max_tokens=1)),
        metadata=(*auth_md, ("x-request-id", "trace-7")),
    )
    await call
    assert ("x-request-id", "trace-7") in list(await call.trailing_metadata())


@pytest.mark.parametrize(
    ("request_", "code", "reason"),
    [
        (processing_pb2.ProcessRequest(input="hi", model="nope"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_model"),
        (processing_pb2.ProcessRequest(model=MODEL), grpc.StatusCode.INVALID_ARGUMENT, "invalid_parameters"),
        (
            processing_pb2.ProcessRequest(input="hi", model=MODEL, options=processing_pb2.ProcessOptions(top_p=0)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "invalid_parameters",
        ),
    ],
)
async def test_errors_carry_error_info(
    grpc_clients: GrpcClients, auth_md: Md, request_: processing_pb2.ProcessRequest, code: grpc.StatusCode, reason: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.processing.Process(request_, metadata=auth_md)
    assert caught.value.code() == code
    status = rich_status(caught.value)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    assert info.reason == reason


async def test_get_process_not_found_over_grpc(grpc_clients: GrpcClients, auth_md: Md) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await grpc_clients.processing.GetProcess(processing_pb2.GetProcessRequest(id="proc_x"), metadata=auth_md)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(grpc_clients: GrpcClients) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_clients.channel)

    async def requests() -> AsyncIterator[Any]:  # reflection_pb2 is untyped
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for reply in stub.ServerReflectionInfo(requests()):
        names |= {s.name for s in reply.list_services_response.service}
    assert {"plutos.v1.ProcessingService", "plutos.v1.ModelsService", "grpc.health.v1.Health"} <= names
