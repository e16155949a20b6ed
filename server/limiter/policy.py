"""What each call is held to: which windows and concurrency limits, which scope, how many tokens.

Subjects: the plan's limits apply to the **account** (all its keys share them); a key's own,
lower limits apply to that key alone. Subject names carry the account id as a Redis hash tag.
A limit of 0 (or less) in a plan or key means "no limit of that kind".
"""

from __future__ import annotations

from typing import Any

from server.call_state import Caller
from server.config import Settings
from server.limiter.base import Concurrency, Window
from server.options import DEFAULT_MAX_TOKENS, prompt_token_bound

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


def concurrency_for(who: Caller, method_name: str) -> list[Concurrency]:
    return generating_concurrency(who) if method_name in GENERATING else []


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


def token_reservation(settings: Settings, method_name: str, request: Any) -> int:
    """An upper bound on the tokens a generating call can use: per input, the prompt's UTF-8 bytes
    (a byte-level tokenizer never makes more tokens than bytes) plus the template allowance,
    capped at the model's context, plus maxTokens (default 1000, capped at the model's limit)."""
    spec = settings.model(getattr(request, "model", ""))
    if spec is None:
        return 0  # the handler answers invalid_model; nothing runs
    options = request.options
    if options.HasField("max_tokens"):
        max_tokens = min(max(options.max_tokens, 1), spec.max_tokens)
    else:
        max_tokens = min(DEFAULT_MAX_TOKENS, spec.max_tokens)
    system = options.system_prompt if options.HasField("system_prompt") else None
    inputs = list(request.inputs) if method_name.endswith("/Batch") else [request.input]
    return sum(prompt_token_bound(text, system, spec.max_tokens) + max_tokens for text in inputs)
