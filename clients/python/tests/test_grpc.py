"""plutos_ai.grpc against a real in-process gRPC server built from the same generated stubs."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import pytest

pytest.importorskip("grpc")

import grpc
from google.protobuf import any_pb2, duration_pb2, struct_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from plutos_ai import (
    APIConnectionError,
    AuthenticationError,
    InvalidModelError,
    InvalidParametersError,
    NotFoundError,
    RateLimitError,
    UpstreamError,
)
from plutos_ai._gen.plutos.v1 import (
    models_pb2,
    models_pb2_grpc,
    processing_pb2,
    processing_pb2_grpc,
    usage_pb2,
    usage_pb2_grpc,
)
from plutos_ai.grpc import AsyncPlutosGrpcClient, PlutosGrpcClient, process_options

KEY = "sk-grpc"


def abort(
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str | None = None,
    retry_seconds: int | None = None,
    metadata: dict[str, str] | None = None,
    struct_details: dict[str, Any] | None = None,
) -> None:
    details = []
    if reason:
        packed = any_pb2.Any()
        packed.Pack(
            error_details_pb2.ErrorInfo(reason=reason, domain="plutos-ai.com", metadata=metadata or {})
        )
        details.append(packed)
    if struct_details:
        packed = any_pb2.Any()
        struct = struct_pb2.Struct()
        struct.update(struct_details)
        packed.Pack(struct)
        details.append(packed)
    if retry_seconds is not None:
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=retry_seconds)))
        details.append(packed)
    status = status_pb2.Status(code=code.value[0], message=message, details=details)
    context.abort_with_status(rpc_status.to_status(status))


class Processing(processing_pb2_grpc.ProcessingServiceServicer):
    def ListProcesses(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise NotImplementedError

    def __init__(self) -> None:
        self.metadata: list[dict[str, Any]] = []
        self.requests: list[Any] = []
        self.rate_limited = 0
        self.cancelled = threading.Event()

    def _auth(self, context: grpc.ServicerContext) -> None:
        md = dict(context.invocation_metadata())
        self.metadata.append(md)
        if md.get("authorization") != f"Bearer {KEY}":
            abort(context, grpc.StatusCode.UNAUTHENTICATED, "Invalid API key", reason="invalid_api_key")

    def Process(self, request: processing_pb2.ProcessRequest, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        self.requests.append(request)
        if request.model == "nope":
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "Model 'nope' not found",
                reason="invalid_model",
                metadata={"requestId": "req_g"},
            )
        if request.options.temperature > 2:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "temperature must be in [0, 2]",
                reason="invalid_parameters",
                struct_details={"field": "options.temperature", "max": 2},
            )
        if request.input == "rate-limit-once" and self.rate_limited == 0:
            self.rate_limited += 1
            abort(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "slow down",
                reason="rate_limit_exceeded",
                retry_seconds=2,
            )
        return processing_pb2.ProcessResponse(
            id="proc_0000000000000001",
            output=request.input.upper(),
            model=request.model,
            usage=processing_pb2.Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3),
        )

    def Batch(self, request: processing_pb2.BatchRequest, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this test server")

    def GetProcess(self, request: processing_pb2.GetProcessRequest, context: grpc.ServicerContext) -> Any:
        self._auth(context)
        context.abort(grpc.StatusCode.NOT_FOUND, f"{request.id} not found")

    def Stream(self, request: processing_pb2.StreamRequest, context: grpc.ServicerContext) -> Iterator[Any]:
        self._auth(context)
        if request.input == "forever":
            # The RPC only ends early when the client cancels it.
            context.add_callback(self.cancelled.set)
            for _ in range(1000):
                yield processing_pb2.StreamResponse(
                    chunk=processing_pb2.StreamChunk(chunk="partial", output=".")
                )
                time.sleep(0.01)
            return
        yield processing_pb2.StreamResponse(chunk=processing_pb2.StreamChunk(chunk="partial", output="He"))
        yield processing_pb2.StreamResponse(chunk=processing_pb2.StreamChunk(chunk="partial", output="llo"))
        if request.input == "fail":
            abort(context, grpc.StatusCode.UNAVAILABLE, "backend died", reason="upstream_error")
        yield processing_pb2.StreamResponse(
            complete=processing_pb2.StreamComplete(chunk="final", output="Hello", id="proc_0000000000000002")
        )


class Models(models_pb2_grpc.ModelsServiceServicer):
    def ListModels(self, request: models_pb2.ListModelsRequest, context: grpc.ServicerContext) -> Any:
        return models_pb2.ListModelsResponse(models=[models_pb2.Model(id="m", max_tokens=2048)])


class Usage(usage_pb2_grpc.UsageServiceServicer):
    def __init__(self) -> None:
        self.requests: list[Any] = []

    def GetDailyUsage(self, request: Any, context: grpc.ServicerContext) -> Any:
        raise NotImplementedError

    def GetUsage(self, request: usage_pb2.GetUsageRequest, context: grpc.ServicerContext) -> Any:
        self.requests.append(request)
        return usage_pb2.GetUsageResponse(limits=usage_pb2.UsageLimits(requests_per_minute=60))


class Server:
    def __init__(self) -> None:
        self.processing = Processing()
        self.usage = Usage()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        processing_pb2_grpc.add_ProcessingServiceServicer_to_server(self.processing, self.server)
        models_pb2_grpc.add_ModelsServiceServicer_to_server(Models(), self.server)
        usage_pb2_grpc.add_UsageServiceServicer_to_server(self.usage, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    srv.server.start()
    yield srv
    srv.server.stop(grace=None)


@pytest.fixture
def client(server: Server) -> Iterator[PlutosGrpcClient]:
    with PlutosGrpcClient(server.target, api_key=KEY, timeout=10) as c:
        c._sleep = lambda seconds: None
        yield c


def test_process_sends_bearer_metadata_and_converts_options(server: Server, client: PlutosGrpcClient) -> None:
    response = client.process(input="hi", model="m", options={"max_tokens": 7, "topP": 0.5, "stop": "\n"})
    assert response.output == "HI"
    assert response.usage.total_tokens == 3
    assert server.processing.metadata[-1]["authorization"] == f"Bearer {KEY}"
    options = server.processing.requests[-1].options
    assert options.max_tokens == 7 and options.top_p == 0.5 and list(options.stop) == ["\n"]
    assert not options.HasField("temperature")


def test_error_info_reason_decides_the_class(client: PlutosGrpcClient) -> None:
    with pytest.raises(InvalidModelError) as info:
        client.process(input="hi", model="nope")
    err = info.value
    assert (err.code, err.status_code, err.grpc_status) == ("invalid_model", 400, "INVALID_ARGUMENT")
    assert err.request_id == "req_g"
    assert "nope" in err.message


def test_struct_details_become_the_error_details(client: PlutosGrpcClient) -> None:
    with pytest.raises(InvalidParametersError) as info:
        client.process(input="hi", model="m", options={"temperature": 5})
    assert info.value.details == {"field": "options.temperature", "max": 2}


def test_bad_key_is_an_authentication_error(server: Server) -> None:
    with PlutosGrpcClient(server.target, api_key="wrong") as c, pytest.raises(AuthenticationError):
        c.process(input="hi", model="m")


def test_status_without_details_maps_by_status_code(client: PlutosGrpcClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_process("proc_ffffffffffffffff")
    assert info.value.status_code == 404 and info.value.code == "not_found"


def test_rate_limit_is_retried_after_retry_info(server: Server) -> None:
    sleeps: list[float] = []
    with PlutosGrpcClient(server.target, api_key=KEY) as c:
        c._sleep = sleeps.append
        assert c.process(input="rate-limit-once", model="m").output == "RATE-LIMIT-ONCE"
    assert sleeps == [2.0]


def test_rate_limit_retry_after_is_exposed(server: Server) -> None:
    server.processing.rate_limited = 0
    with (
        PlutosGrpcClient(server.target, api_key=KEY, max_retries=0) as c,
        pytest.raises(RateLimitError) as info,
    ):
        c.process(input="rate-limit-once", model="m")
    assert info.value.retry_after == 2.0


def test_stream_yields_chunks_then_complete(client: PlutosGrpcClient) -> None:
    with client.stream(input="hi", model="m") as stream:
        messages = list(stream)
    assert [m.WhichOneof("event") for m in messages] == ["chunk", "chunk", "complete"]
    assert "".join(m.chunk.output for m in messages[:-1]) == messages[-1].complete.output


def test_stream_error_after_chunks(client: PlutosGrpcClient) -> None:
    stream = client.stream(input="fail", model="m")
    assert next(stream).chunk.output == "He"
    assert next(stream).chunk.output == "llo"
    with pytest.raises(UpstreamError):
        next(stream)


def test_leaving_a_stream_cancels_the_rpc(server: Server, client: PlutosGrpcClient) -> None:
    with client.stream(input="forever", model="m") as stream:
        next(stream)
    assert server.processing.cancelled.wait(5)


def test_models_and_usage(server: Server, client: PlutosGrpcClient) -> None:
    assert client.list_models().models[0].max_tokens == 2048
    usage = client.get_usage(start_date=dt.date(2024, 1, 1), end_date="2024-01-31")
    assert usage.limits.requests_per_minute == 60
    assert (server.usage.requests[-1].start_date, server.usage.requests[-1].end_date) == (
        "2024-01-01",
        "2024-01-31",
    )


def test_unreachable_server_is_a_connection_error() -> None:
    with (
        PlutosGrpcClient("127.0.0.1:1", api_key=KEY, max_retries=0, timeout=5) as c,
        pytest.raises(APIConnectionError),
    ):
        c.list_models()


def test_process_options_conversion() -> None:
    assert process_options(None) is None
    opts = process_options({"temperature": 0.2, "systemPrompt": "s", "max_tokens": 3})
    assert opts is not None and (opts.temperature, opts.system_prompt, opts.max_tokens) == (0.2, "s", 3)
    with pytest.raises(ValueError):
        process_options({"not_an_option": 1})


async def test_async_client(server: Server) -> None:
    async with AsyncPlutosGrpcClient(server.target, api_key=KEY, timeout=10) as c:
        assert (await c.process(input="hi", model="m")).output == "HI"
        with pytest.raises(InvalidModelError) as info:
            await c.process(input="hi", model="nope")
        assert info.value.request_id == "req_g"
        messages = [m async for m in c.stream(input="hi", model="m")]
        assert messages[-1].complete.output == "Hello"
        with pytest.raises(UpstreamError):
            async with c.stream(input="fail", model="m") as stream:
                async for _ in stream:
                    pass
        assert (await c.list_models()).models[0].id == "m"
