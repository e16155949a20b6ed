"""Live tests of plutos_ai.grpc against a running gateway.

Run only when PLUTOS_TEST_GRPC_TARGET (e.g. localhost:50051) and PLUTOS_TEST_API_KEY are set;
PLUTOS_TEST_MODEL picks the model (default: the first one listed).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest

from plutos_ai import (
    AuthenticationError,
    InvalidModelError,
    InvalidParametersError,
    NotFoundError,
)
from plutos_testing import LIVE_API_KEY, LIVE_GRPC_TARGET, LIVE_MAX_TOKENS, LIVE_MODEL

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE_GRPC_TARGET and LIVE_API_KEY), reason="set PLUTOS_TEST_GRPC_TARGET and PLUTOS_TEST_API_KEY"
    ),
]

pytest.importorskip("grpc")

from plutos_ai.grpc import AsyncPlutosGrpcClient, PlutosGrpcClient  # noqa: E402

OPTIONS = {"max_tokens": LIVE_MAX_TOKENS, "temperature": 0.2}


@pytest.fixture(scope="module")
def client() -> Iterator[PlutosGrpcClient]:
    with PlutosGrpcClient(LIVE_GRPC_TARGET, api_key=LIVE_API_KEY, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def model(client: PlutosGrpcClient) -> str:
    return LIVE_MODEL or client.list_models().models[0].id


def test_list_models(client: PlutosGrpcClient, model: str) -> None:
    models = client.list_models().models
    assert model in [m.id for m in models]
    assert all(m.max_tokens > 0 for m in models)


def test_process_then_get_process(client: PlutosGrpcClient, model: str) -> None:
    response = client.process(input="What is the capital of France?", model=model, options=OPTIONS)
    assert response.id.startswith("proc_")
    assert response.model == model
    usage = response.usage
    assert usage.prompt_tokens > 0 and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens <= LIVE_MAX_TOKENS
    created = response.created_at.ToDatetime(tzinfo=dt.timezone.utc)
    assert abs(dt.datetime.now(dt.timezone.utc) - created) < dt.timedelta(hours=1)

    record = client.get_process(response.id)
    assert (record.id, record.output, record.status) == (response.id, response.output, "completed")
    assert record.options.max_tokens == LIVE_MAX_TOKENS


def test_batch(client: PlutosGrpcClient, model: str) -> None:
    inputs = ["What is the capital of France?", "What is the capital of Germany?"]
    response = client.batch(inputs=inputs, model=model, options=OPTIONS)
    assert response.id.startswith("batch_")
    assert [r.input for r in response.results] == inputs
    assert not any(r.HasField("error") for r in response.results)
    assert response.total_usage.total_tokens == sum(r.usage.total_tokens for r in response.results)


def test_stream(client: PlutosGrpcClient, model: str) -> None:
    with client.stream(input="Write a short story about a robot.", model=model, options=OPTIONS) as stream:
        messages = list(stream)
    kinds = [m.WhichOneof("event") for m in messages]
    assert kinds[-1] == "complete" and set(kinds[:-1]) <= {"chunk"}
    complete = messages[-1].complete
    assert complete.chunk == "final"
    assert complete.output == "".join(m.chunk.output for m in messages[:-1])
    assert complete.usage.total_tokens == complete.usage.prompt_tokens + complete.usage.completion_tokens
    assert client.get_process(complete.id).output == complete.output


def test_leaving_a_stream_early_is_clean(client: PlutosGrpcClient, model: str) -> None:
    with client.stream(input="Tell me a long story.", model=model, options={"max_tokens": 200}) as stream:
        first = next(stream)
    assert first.WhichOneof("event") == "chunk"
    assert client.list_models().models


def test_get_usage(client: PlutosGrpcClient) -> None:
    assert client.get_usage().limits.requests_per_minute > 0
    today = dt.datetime.now(dt.timezone.utc).date()
    ranged = client.get_usage(start_date=today, end_date=str(today))
    assert ranged.period.start.ToDatetime().date() == today


def test_webhooks(client: PlutosGrpcClient) -> None:
    url = f"https://example.com/plutos-sdk-grpc-test/{uuid.uuid4().hex}"
    created = client.create_webhook(url=url, events=["processing.completed"], secret="s3cret")
    try:
        assert created.id.startswith("wh_") and created.has_secret
        assert created.id in [h.id for h in client.list_webhooks().webhooks]
    finally:
        deleted = client.delete_webhook(created.id)
    assert deleted.deleted
    with pytest.raises(NotFoundError):
        client.delete_webhook(created.id)


def test_bad_key_is_an_authentication_error(model: str) -> None:
    with (
        PlutosGrpcClient(LIVE_GRPC_TARGET, api_key="sk-not-a-real-key") as bad,
        pytest.raises(AuthenticationError) as info,
    ):
        bad.process(input="hi", model=model)
    assert info.value.code == "invalid_api_key"
    assert info.value.grpc_status == "UNAUTHENTICATED"


def test_unknown_model_is_an_invalid_model_error(client: PlutosGrpcClient) -> None:
    with pytest.raises(InvalidModelError) as info:
        client.process(input="hi", model="no-such-model-xyz")
    assert info.value.code == "invalid_model"


def test_unknown_model_when_streaming(client: PlutosGrpcClient) -> None:
    with pytest.raises(InvalidModelError), client.stream(input="hi", model="no-such-model-xyz") as stream:
        list(stream)


def test_bad_temperature_is_an_invalid_parameters_error(client: PlutosGrpcClient, model: str) -> None:
    with pytest.raises(InvalidParametersError) as info:
        client.process(input="hi", model=model, options={"temperature": 5.0})
    assert info.value.code == "invalid_parameters"
    assert info.value.grpc_status == "INVALID_ARGUMENT"


def test_unknown_process_id_is_not_found(client: PlutosGrpcClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_process("proc_0000000000000000")
    assert info.value.grpc_status == "NOT_FOUND"


async def test_async_client(model: str) -> None:
    async with AsyncPlutosGrpcClient(LIVE_GRPC_TARGET, api_key=LIVE_API_KEY, timeout=120) as c:
        response = await c.process(input="Say hi.", model=model, options=OPTIONS)
        assert (await c.get_process(response.id)).output == response.output
        messages = [m async for m in c.stream(input="Write a haiku.", model=model, options=OPTIONS)]
        assert messages[-1].WhichOneof("event") == "complete"
        with pytest.raises(InvalidModelError):
            await c.process(input="hi", model="no-such-model-xyz")
