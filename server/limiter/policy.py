"""What each call is held to: which windows and concurrency limits, which scope, how many tokens.

Subjects: the plan's limits apply to the **account** (all its keys share them); a key's own,
lower limits apply to that key alone. Subject names carry the account id as a Redis hash tag.
A limit of 0 (or less) in a plan or key means "no limit of that kind".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import json_format

from server.call_state import Caller
from server.config import Settings
from server.limiter.base import Concurrency, Window
from server.options import (
    DEFAULT_MAX_TOKENS,
    OPENAI_COMPLETION_MAX_TOKENS,
    messages_token_bound,
    prompt_token_bound,
)

WINDOWS = (
    ("minute", "requests_per_minute", 60),
    ("hour", "requests_per_hour", 3600),
    ("day", "requests_per_day", 86400),
)

_SERVICE = "/plutos.v1."
# Calls that run a model: they hold a concurrency slot and reserve monthly tokens. Cheap reads
# (models, usage, a stored result, webhook settings) count against the request windows only.
GENERATING = {
    f"{_SERVICE}ProcessingService/Process",
    f"{_SERVICE}ProcessingService/Batch",
    f"{_SERVICE}ProcessingService/Stream",
    f"{_SERVICE}OpenAIService/CreateChatCompletion",
    f"{_SERVICE}OpenAIService/StreamChatCompletion",
    f"{_SERVICE}OpenAIService/CreateCompletion",
    f"{_SERVICE}OpenAIService/StreamCompletion",
}


def account_subject(account_id: str) -> str:
    return f"{{{account_id}}}"


def key_subject(account_id: str, key_id: str) -> str:
    return f"{{{account_id}}}:key:{key_id}"


def windows_for(who: Caller) -> list[Window]:
    """The plan's windows for the account, plus the key's own where it is stricter."""
    rules = []
    for name, attr, seconds in WINDOWS:
        plan_limit = int(getattr(who.plan, attr))
        if plan_limit > 0:
            rules.append(Window(account_subject(who.account_id), name, seconds, plan_limit))
        own = who.limits.get(attr)
        if own is not None and own > 0 and (plan_limit <= 0 or own < plan_limit):
            rules.append(Window(key_subject(who.account_id, who.key_id), name, seconds, own))
    return rules


def generating_concurrency(who: Caller) -> list[Concurrency]:
    """The concurrency limits a generating call of ``who`` counts against."""
    rules = []
    plan_limit = who.plan.concurrent_requests
    if plan_limit > 0:
        rules.append(Concurrency(account_subject(who.account_id), plan_limit))
    own = who.limits.get("concurrent_requests")
    if own is not None and own > 0 and (plan_limit <= 0 or own < plan_limit):
        rules.append(Concurrency(key_subject(who.account_id, who.key_id), own))
    return rules


# A generating request → (the most prompt tokens of each of its inputs, capped at the model's
# context; the maxTokens it asks for, or None; the default when it asks for none). The bounds are
# those billing holds usage to (server.services.generation.Generation.prompt_bound).
_PromptBound = tuple[list[int], int | None, int]


def _reference_prompts(method_name: str, request: Any, context: int) -> _PromptBound:
    options = request.options
    max_tokens = options.max_tokens if options.HasField("max_tokens") else None
    system = options.system_prompt if options.HasField("system_prompt") else None
    inputs = list(request.inputs) if method_name.endswith("/Batch") else [request.input]
    return [prompt_token_bound(text, system, context) for text in inputs], max_tokens, DEFAULT_MAX_TOKENS


def _chat_prompts(method_name: str, request: Any, context: int) -> _PromptBound:
    # The messages as sent: their JSON is at least that of the messages the chat is billed for.
    messages = [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in request.messages]
    if request.HasField("max_completion_tokens"):
        max_tokens: int | None = request.max_completion_tokens
    else:
        max_tokens = request.max_tokens if request.HasField("max_tokens") else None
    return [messages_token_bound(messages, context)], max_tokens, DEFAULT_MAX_TOKENS


def _completion_prompts(method_name: str, request: Any, context: int) -> _PromptBound:
    max_tokens = request.max_tokens if request.HasField("max_tokens") else None
    prompt = json_format.MessageToJson(request.prompt)  # at least the prompt's text
    return [prompt_token_bound(prompt, None, context)], max_tokens, OPENAI_COMPLETION_MAX_TOKENS


PROMPT_BOUNDS: dict[str, Callable[[str, Any, int], _PromptBound]] = {
    f"{_SERVICE}ProcessingService/Process": _reference_prompts,
    f"{_SERVICE}ProcessingService/Batch": _reference_prompts,
    f"{_SERVICE}ProcessingService/Stream": _reference_prompts,
    f"{_SERVICE}OpenAIService/CreateChatCompletion": _chat_prompts,
    f"{_SERVICE}OpenAIService/StreamChatCompletion": _chat_prompts,
    f"{_SERVICE}OpenAIService/CreateCompletion": _completion_prompts,
    f"{_SERVICE}OpenAIService/StreamCompletion": _completion_prompts,
}


def token_reservation(settings: Settings, method_name: str, request: Any) -> int:
    """An upper bound on the tokens a generating call can use: per input, the prompt's UTF-8 bytes
    (a byte-level tokenizer never makes more tokens than bytes) plus the template allowance,
    capped at the model's context, plus maxTokens (default 1000, capped at the model's limit)."""
    spec = settings.model(getattr(request, "model", ""))
    if spec is None:
        return 0  # the handler answers invalid_model; nothing runs
    bound, asked, default = PROMPT_BOUNDS[method_name](method_name, request, spec.max_tokens)
    max_tokens = min(max(asked, 1), spec.max_tokens) if asked is not None else min(default, spec.max_tokens)
    return sum(prompt + max_tokens for prompt in bound)
