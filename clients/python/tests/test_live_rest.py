"""Live tests of the REST client against a running gateway.

Run only when PLUTOS_TEST_BASE_URL (e.g. http://localhost:3000/v1) and PLUTOS_TEST_API_KEY are set;
PLUTOS_TEST_MODEL picks the model (default: the first one listed).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from plutos_ai import (
    AsyncPlutosAI,
    AuthenticationError,
    InputTooLongError,
    InvalidModelError,
    InvalidParametersError,
    NotFoundError,
    PlutosAI,
    StreamChunk,
    StreamComplete,
)
from plutos_testing import LIVE_API_KEY, LIVE_BASE_URL, LIVE_MAX_TOKENS, LIVE_MODEL

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(
        not (LIVE_BASE_URL and LIVE_API_KEY), reason="set PLUTOS_TEST_BASE_URL and PLUTOS_TEST_API_KEY"
    ),
]

OPTIONS = {"max_tokens": LIVE_MAX_TOKENS, "temperature": 0.2}


@pytest.fixture(scope="module")
def client() -> Iterator[PlutosAI]:
    with PlutosAI(api_key=LIVE_API_KEY, base_url=LIVE_BASE_URL, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def model(client: PlutosAI) -> str:
    return LIVE_MODEL or client.list_models()[0].id


@pytest.fixture
async def aclient() -> AsyncIterator[AsyncPlutosAI]:
    async with AsyncPlutosAI(api_key=LIVE_API_KEY, base_url=LIVE_BASE_URL, timeout=120) as c:
        yield c


def assert_usage_adds_up(prompt: int, completion: int, total: int) -> None:
    assert prompt > 0
    assert completion >= 0
    assert total == prompt + completion


def assert_recent(when: dt.datetime | None) -> None:
    assert when is not None and when.tzinfo is not None
    assert abs(dt.datetime.now(dt.timezone.utc) - when) < dt.timedelta(hours=1)


# -- every method ------------------------------------------------------------------------------------


def test_list_models(client: PlutosAI, model: str) -> None:
    models = client.list_models()
    assert model in [m.id for m in models]
    for m in models:
        assert m.id and m.name
        assert m.max_tokens > 0
        assert m.pricing.input_tokens >= 0 and m.pricing.output_tokens >= 0


def test_process_data_then_get_process(client: PlutosAI, model: str) -> None:
    result = client.process_data(input="What is the capital of France?", model=model, options=OPTIONS)
    assert result.id.startswith("proc_")
    assert result.model == model
    assert isinstance(result.output, str)
    assert_usage_adds_up(
        result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens
    )
    assert result.usage.completion_tokens <= LIVE_MAX_TOKENS
    assert_recent(result.created_at)
    assert result.processing_time >= 0

    record = client.get_process(result.id)
    assert record.id == result.id
    assert record.input == "What is the capital of France?"
    assert record.output == result.output
    assert record.model == model
    assert record.status == "completed"
    assert record.usage == result.usage
    assert record.options.max_tokens == LIVE_MAX_TOKENS
    assert record.options.temperature == pytest.approx(0.2)


@pytest.mark.parametrize("options", [{"maxTokens": 4}, {"max_tokens": 4}], ids=["camelCase", "snake_case"])
def test_both_option_spellings_reach_the_server(
    client: PlutosAI, model: str, options: dict[str, int]
) -> None:
    result = client.process_data(input="Count to ten.", model=model, options=options)
    assert result.usage.completion_tokens <= 4
    assert client.get_process(result.id).options.max_tokens == 4


def test_batch(client: PlutosAI, model: str) -> None:
    inputs = ["What is the capital of France?", "What is the capital of Germany?"]
    result = client.batch(inputs=inputs, model=model, options=OPTIONS)
    assert result.id.startswith("batch_")
    assert [item.input for item in result.results] == inputs
    assert all(item.ok for item in result.results)
    for item in result.results:
        assert_usage_adds_up(item.usage.prompt_tokens, item.usage.completion_tokens, item.usage.total_tokens)
    assert result.total_usage.total_tokens == sum(item.usage.total_tokens for item in result.results)
    assert_recent(result.created_at)


def test_stream(client: PlutosAI, model: str) -> None:
    with client.stream(input="Write a short story about a robot.", model=model, options=OPTIONS) as stream:
        events = list(stream)
    chunks, final = events[:-1], events[-1]
    assert all(isinstance(e, StreamChunk) and e.chunk == "partial" for e in chunks)
    assert isinstance(final, StreamComplete) and final.chunk == "final"
    assert final.output == "".join(c.output for c in chunks)
    assert_usage_adds_up(final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens)
    assert final.model == model
    assert final.id.startswith("proc_")
    record = client.get_process(final.id)
    assert record.output == final.output
    assert record.status == "completed"


def test_leaving_a_stream_early_is_clean(client: PlutosAI, model: str) -> None:
    with client.stream(input="Tell me a long story.", model=model, options={"max_tokens": 200}) as stream:
        first = next(stream)
    assert isinstance(first, StreamChunk)
    # The client stays usable after the abandoned connection.
    assert client.list_models()


def test_get_usage(client: PlutosAI) -> None:
    report = client.get_usage()
    assert report.limits.requests_per_minute > 0
    assert report.usage.total_requests >= 0
    today = dt.datetime.now(dt.timezone.utc).date()
    ranged = client.get_usage(start_date=today - dt.timedelta(days=1), end_date=today)
    assert ranged.period.start is not None and ranged.period.start.date() == today - dt.timedelta(days=1)
    assert ranged.period.end is not None and ranged.period.end.date() in (today, today + dt.timedelta(days=1))
    as_strings = client.get_usage(start_date=str(today), end_date=str(today))
    assert as_strings.period.start is not None and as_strings.period.start.date() == today


def test_webhooks(client: PlutosAI) -> None:
    url = f"https://example.com/plutos-sdk-test/{uuid.uuid4().hex}"
    signed = client.create_webhook(
        url=url, events=["processing.completed", "processing.failed"], secret="s3cret"
    )
    generated = client.create_webhook(url=url + "/generated", events=["usage.threshold"])
    try:
        assert signed.id.startswith("wh_") and signed.url == url
        assert signed.events == ["processing.completed", "processing.failed"]
        assert signed.has_secret and signed.secret is None  # the caller's own secret is not echoed
        assert generated.has_secret and generated.secret and generated.secret.startswith("whsec_")
        assert_recent(signed.created_at)
        listed = {h.id: h for h in client.list_webhooks()}
        assert listed[signed.id] == signed
        assert listed[generated.id].secret is None  # shown once, on creation
    finally:
        deletion = client.delete_webhook(signed.id)
        client.delete_webhook(generated.id)
    assert deletion.id == signed.id and deletion.deleted
    assert signed.id not in {h.id for h in client.list_webhooks()}
    with pytest.raises(NotFoundError):
        client.delete_webhook(signed.id)


# -- errors ------------------------------------------------------------------------------------------


def test_bad_key_is_an_authentication_error(model: str) -> None:
    with (
        PlutosAI(api_key="sk-not-a-real-key", base_url=LIVE_BASE_URL) as bad,
        pytest.raises(AuthenticationError) as info,
    ):
        bad.process_data(input="hi", model=model)
    assert info.value.status_code == 401
    assert info.value.code == "invalid_api_key"


def test_unknown_model_is_an_invalid_model_error(client: PlutosAI) -> None:
    with pytest.raises(InvalidModelError) as info:
        client.process_data(input="hi", model="no-such-model-xyz")
    assert info.value.status_code in (400, 404)
    assert info.value.code == "invalid_model"


def test_unknown_model_when_streaming(client: PlutosAI) -> None:
    with pytest.raises(InvalidModelError), client.stream(input="hi", model="no-such-model-xyz"):
        pass


def test_unknown_model_in_batch(client: PlutosAI) -> None:
    with pytest.raises(InvalidModelError):
        client.batch(inputs=["hi"], model="no-such-model-xyz")


def test_bad_temperature_is_an_invalid_parameters_error(client: PlutosAI, model: str) -> None:
    with pytest.raises(InvalidParametersError) as info:
        client.process_data(input="hi", model=model, options={"temperature": 5.0})
    assert info.value.status_code == 400
    assert info.value.code == "invalid_parameters"


def test_unknown_process_id_is_not_found(client: PlutosAI) -> None:
    with pytest.raises(NotFoundError) as info:
        client.get_process("proc_0000000000000000")
    assert info.value.status_code == 404


def test_unknown_webhook_event_is_an_invalid_parameters_error(client: PlutosAI) -> None:
    with pytest.raises(InvalidParametersError):
        client.create_webhook(url="https://example.com/hook", events=["no.such.event"])


def test_overlong_input_is_input_too_long(client: PlutosAI, model: str) -> None:
    with pytest.raises(InputTooLongError) as info:
        client.process_data(input="hello " * 50_000, model=model, options=OPTIONS)
    assert info.value.status_code == 400


# -- async -------------------------------------------------------------------------------------------


async def test_async_client(aclient: AsyncPlutosAI, model: str) -> None:
    result = await aclient.process_data(input="Say hi.", model=model, options=OPTIONS)
    assert (await aclient.get_process(result.id)).output == result.output
    batch = await aclient.batch(inputs=["a", "b"], model=model, options=OPTIONS)
    assert len(batch.results) == 2
    assert model in [m.id for m in await aclient.list_models()]
    assert (await aclient.get_usage()).limits.requests_per_minute > 0
    with pytest.raises(InvalidModelError):
        await aclient.process_data(input="hi", model="no-such-model-xyz")


async def test_async_stream(aclient: AsyncPlutosAI, model: str) -> None:
    pieces: list[str] = []
    async with aclient.stream(input="Write a haiku.", model=model, options=OPTIONS) as stream:
        async for event in stream:
            if isinstance(event, StreamChunk):
                pieces.append(event.output)
    assert stream.final is not None
    assert stream.final.output == "".join(pieces)


# -- the API reference's Python example ------------------------------------------------------------

#: Copied verbatim from the API reference's "SDK Examples / Python" section.
REFERENCE_EXAMPLE = (Path(__file__).parent / "data" / "reference_python_example.txt").read_text(
    encoding="utf-8"
)


def test_reference_python_example_runs(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Verbatim, with only the key, the model and the base URL swapped for the test server's.
    code = (
        REFERENCE_EXAMPLE.replace('"your-api-key"', repr(LIVE_API_KEY))
        .replace('"gpt-4"', repr(model))
        .replace('environment="production"', f'environment="production",\n    base_url={LIVE_BASE_URL!r}')
    )
    namespace: dict[str, Any] = {}
    exec(compile(code, "api-reference-python-example", "exec"), namespace)
    namespace["client"].close()  # the snippet leaves its client open
    printed = capsys.readouterr().out
    assert not printed.startswith("Error:"), printed
