"""Identifiers: a type prefix and 16 random hex digits (``proc_1234567890abcdef``)."""

from __future__ import annotations

import secrets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def new_request_id() -> str:
    return new_id("req")
