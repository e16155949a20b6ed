"""Key scopes: every RPC needs one (``required_scope``); a key created with
``--scopes`` that lacks it gets 403 ``permission_denied``. Model allow-lists are checked where the
model is resolved (``ProcessingService._resolve``)."""

from __future__ import annotations

from core.errors import PlutosError
from server.call_state import Caller
from server.keys import DEFAULT_SCOPES

_SERVICE = "/plutos.v1."
# RPC → the key scope it needs (server.keys.SCOPES). Per method first, then per service.
SCOPE_BY_METHOD = {
    f"{_SERVICE}ProcessingService/Process": "process",
    f"{_SERVICE}ProcessingService/GetProcess": "process",
    f"{_SERVICE}ProcessingService/ListProcesses": "process",
    f"{_SERVICE}ProcessingService/Batch": "batch",
    f"{_SERVICE}ProcessingService/Stream": "stream",
    # The OpenAI-compatible API needs the scopes of its reference counterparts.
    f"{_SERVICE}OpenAIService/CreateChatCompletion": "process",
    f"{_SERVICE}OpenAIService/StreamChatCompletion": "stream",
    f"{_SERVICE}OpenAIService/CreateCompletion": "process",
    f"{_SERVICE}OpenAIService/StreamCompletion": "stream",
    f"{_SERVICE}OpenAIService/ListModels": "models",
    f"{_SERVICE}OpenAIService/RetrieveModel": "models",
}
SCOPE_BY_SERVICE = {
    f"{_SERVICE}ModelsService": "models",
    f"{_SERVICE}UsageService": "usage",
    f"{_SERVICE}WebhooksService": "webhooks",
    f"{_SERVICE}KeysService": "keys",
    f"{_SERVICE}AdminService": "admin",
}


def required_scope(method_name: str) -> str:
    """The scope an RPC needs; unknown RPCs need a scope no key has, so they fail closed."""
    scope = SCOPE_BY_METHOD.get(method_name)
    if scope is None:
        scope = SCOPE_BY_SERVICE.get(method_name.rsplit("/", 1)[0], "unmapped")
    return scope


def has_scope(who: Caller, method_name: str) -> bool:
    """A key without an explicit list holds ``server.keys.DEFAULT_SCOPES`` (not ``keys``/``admin``)."""
    return required_scope(method_name) in (DEFAULT_SCOPES if who.scopes is None else who.scopes)


def require_scope(who: Caller, method_name: str) -> None:
    """Raise ``permission_denied`` unless the key holds the RPC's scope (see :func:`has_scope`)."""
    if not has_scope(who, method_name):
        scope = required_scope(method_name)
        raise PlutosError(
            "permission_denied", f"This API key does not have the '{scope}' permission.", {"scope": scope}
        )
