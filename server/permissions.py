"""Key scopes: every RPC needs one (``server.limits.policy.required_scope``); a key created with
``--scopes`` that lacks it gets 403 ``permission_denied``. Model allow-lists are checked where the
model is resolved (``ProcessingService._resolve``)."""

from __future__ import annotations

from server.context import Caller
from server.errors import PlutosError
from server.keys import DEFAULT_SCOPES
from server.limits.policy import required_scope


def require_scope(who: Caller, method_name: str) -> None:
    """A key without an explicit list holds ``server.keys.DEFAULT_SCOPES`` (not ``keys``/``admin``)."""
    scope = required_scope(method_name)
    if scope not in (DEFAULT_SCOPES if who.scopes is None else who.scopes):
        raise PlutosError(
            "permission_denied", f"This API key does not have the '{scope}' permission.", {"scope": scope}
        )
