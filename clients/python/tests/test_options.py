"""Generation options are sent in the wire's camelCase whatever spelling the caller used."""

from __future__ import annotations

import datetime as dt

import pytest

from plutos_ai import ProcessOptions
from plutos_ai._options import format_date, normalize_options, to_camel_case


@pytest.mark.parametrize(
    ("key", "wire"),
    [
        ("max_tokens", "maxTokens"),
        ("top_p", "topP"),
        ("frequency_penalty", "frequencyPenalty"),
        ("presence_penalty", "presencePenalty"),
        ("system_prompt", "systemPrompt"),
        ("temperature", "temperature"),
        ("maxTokens", "maxTokens"),
        ("systemPrompt", "systemPrompt"),
    ],
)
def test_to_camel_case(key: str, wire: str) -> None:
    assert to_camel_case(key) == wire


def test_snake_case_options_from_the_reference_python_example_become_camel_case() -> None:
    assert normalize_options({"temperature": 0.7, "max_tokens": 100}) == {
        "temperature": 0.7,
        "maxTokens": 100,
    }


def test_camel_case_options_pass_through() -> None:
    opts = {"temperature": 0.3, "maxTokens": 50, "topP": 0.9, "systemPrompt": "Be brief."}
    assert normalize_options(opts) == opts


def test_mixed_spellings_are_accepted() -> None:
    assert normalize_options({"max_tokens": 5, "topP": 0.5, "presence_penalty": 1}) == {
        "maxTokens": 5,
        "topP": 0.5,
        "presencePenalty": 1,
    }


def test_same_option_in_both_spellings_is_an_error() -> None:
    with pytest.raises(ValueError, match="maxTokens"):
        normalize_options({"max_tokens": 5, "maxTokens": 6})


def test_none_values_are_dropped() -> None:
    assert normalize_options({"temperature": None, "max_tokens": 3}) == {"maxTokens": 3}


def test_a_single_stop_string_becomes_a_list() -> None:
    assert normalize_options({"stop": "\n"}) == {"stop": ["\n"]}
    assert normalize_options({"stop": ("a", "b")}) == {"stop": ["a", "b"]}


def test_process_options_dataclass_is_accepted() -> None:
    assert normalize_options(ProcessOptions(max_tokens=10, system_prompt="x")) == {
        "maxTokens": 10,
        "systemPrompt": "x",
    }


def test_no_options_means_none() -> None:
    assert normalize_options(None) is None


def test_options_must_be_a_mapping() -> None:
    with pytest.raises(TypeError):
        normalize_options([("temperature", 1)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.date(2024, 1, 31), "2024-01-31"),
        (dt.datetime(2024, 2, 1, 23, 59), "2024-02-01"),
        ("2024-03-01", "2024-03-01"),
        (None, None),
    ],
)
def test_format_date(value: str | dt.date | None, expected: str | None) -> None:
    assert format_date(value) == expected
