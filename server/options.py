"""Request validation: the reference's options, their defaults and their ranges."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from plutos.v1 import processing_pb2

from core.errors import PlutosError, invalid_parameter
from server.backends.base import GenerationParams
from server.config import ModelSpec

DEFAULT_MAX_TOKENS = 1000
OPENAI_COMPLETION_MAX_TOKENS = 16  # OpenAI's default for a legacy completion
# Allowance for the chat template around the input (role markers, a default system prompt).
PROMPT_OVERHEAD_TOKENS = 64


def prompt_token_bound(text: str, system_prompt: str | None, context: int) -> int:
    """The most prompt tokens one input can be: its UTF-8 bytes and the system prompt's (a
    byte-level tokenizer never makes more tokens than bytes) plus the template allowance, capped
    at the model's context. Both the quota reservation and billing use this bound."""
    system = len(system_prompt.encode("utf-8")) if system_prompt else 0
    return min(len(text.encode("utf-8")) + system + PROMPT_OVERHEAD_TOKENS, context)


def messages_token_bound(messages: Sequence[Mapping[str, Any]], context: int) -> int:
    """The most prompt tokens a chat can be: each message's JSON bytes (content, tool calls, names)
    plus the template allowance, capped at the model's context. Billing and the quota reservation
    (``server.limits.policy``, from the request's messages as sent) use this bound."""
    return min(sum(len(orjson.dumps(m)) + PROMPT_OVERHEAD_TOKENS for m in messages), context)


MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 100


def require_text(value: str, field: str) -> None:
    if not value:
        raise invalid_parameter(field, f"'{field}' is required and must be a non-empty string.")


# How the reference's API names each option: (field path for details.field, name in messages).
REFERENCE_NAMES = {
    "temperature": ("options.temperature", "temperature"),
    "top_p": ("options.topP", "topP"),
    "max_tokens": ("options.maxTokens", "maxTokens"),
    "frequency_penalty": ("options.frequencyPenalty", "frequencyPenalty"),
    "presence_penalty": ("options.presencePenalty", "presencePenalty"),
    "stop": ("options.stop", "stop"),
}


def params_from_options(
    options: processing_pb2.ProcessOptions,
    spec: ModelSpec,
    deadline: float | None = None,
    names: dict[str, tuple[str, str]] = REFERENCE_NAMES,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    request_id: str | None = None,
) -> GenerationParams:
    """Apply defaults and check ranges; ``invalid_parameters`` names the offending field as
    ``names`` (option → (field path, name in the message)) calls it."""
    temperature = options.temperature if options.HasField("temperature") else 0.7
    if not 0.0 <= temperature <= 2.0:
        field, name = names["temperature"]
        raise invalid_parameter(field, f"'{name}' must be between 0 and 2.")
    top_p = options.top_p if options.HasField("top_p") else 1.0
    if not 0.0 < top_p <= 1.0:
        field, name = names["top_p"]
        raise invalid_parameter(field, f"'{name}' must be greater than 0 and at most 1.")
    if options.HasField("max_tokens"):
        max_tokens = options.max_tokens
        field, name = names["max_tokens"]
        if max_tokens < 1:
            raise invalid_parameter(field, f"'{name}' must be at least 1.")
        if max_tokens > spec.max_tokens:
            raise invalid_parameter(field, f"'{name}' must be at most {spec.max_tokens} for model '{spec.id}'.")
    else:
        max_tokens = min(default_max_tokens, spec.max_tokens)
    penalties = {}
    for option in ("frequency_penalty", "presence_penalty"):
        value = getattr(options, option) if options.HasField(option) else 0.0
        if not -2.0 <= value <= 2.0:
            field, name = names[option]
            raise invalid_parameter(field, f"'{name}' must be between -2 and 2.")
        penalties[option] = value
    stop = tuple(options.stop)
    if len(stop) > MAX_STOP_SEQUENCES:
        raise invalid_parameter(names["stop"][0], f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences.")
    if stop and any(not s or len(s) > MAX_STOP_LENGTH for s in stop):
        raise invalid_parameter(names["stop"][0], f"each 'stop' sequence must be 1 to {MAX_STOP_LENGTH} characters.")
    return GenerationParams(
        temperature=temperature,
        max_tokens=max_tokens,
        top_p=top_p,
        frequency_penalty=penalties["frequency_penalty"],
        presence_penalty=penalties["presence_penalty"],
        system_prompt=options.system_prompt if options.HasField("system_prompt") else None,
        stop=stop,
        deadline=deadline,
        request_id=request_id,
    )


def options_to_record(params: GenerationParams) -> dict[str, object]:
    """The effective options, stored with the record in the reference's JSON names."""
    record: dict[str, object] = {
        "temperature": params.temperature,
        "maxTokens": params.max_tokens,
        "topP": params.top_p,
        "frequencyPenalty": params.frequency_penalty,
        "presencePenalty": params.presence_penalty,
    }
    if params.system_prompt is not None:
        record["systemPrompt"] = params.system_prompt
    if params.stop:
        record["stop"] = list(params.stop)
    if params.seed is not None:
        record["seed"] = params.seed
    if params.json_output:
        record["responseFormat"] = "json_object"
    if params.messages:  # a chat: the whole conversation (the record's input is its last user message)
        record["messages"] = [{"role": m["role"], "content": m.get("content")} for m in params.messages]
    return record


def options_from_record(record: dict[str, object]) -> processing_pb2.ProcessOptions:
    opts = processing_pb2.ProcessOptions()
    for json_name, field in (
        ("temperature", "temperature"),
        ("maxTokens", "max_tokens"),
        ("topP", "top_p"),
        ("frequencyPenalty", "frequency_penalty"),
        ("presencePenalty", "presence_penalty"),
        ("systemPrompt", "system_prompt"),
    ):
        if json_name in record:
            setattr(opts, field, record[json_name])
    stop = record.get("stop") or []
    assert isinstance(stop, list)
    opts.stop.extend(str(s) for s in stop)
    return opts


__all__ = ["PlutosError", "options_from_record", "options_to_record", "params_from_options", "require_text"]
