"""Webhook signatures against the ``standardwebhooks`` package as the oracle (issue 15, item 15):
secrets in the form the Standard Webhooks specification defines (``whsec_`` + base64 of 24-64
bytes, padded or not), plain secrets (the package takes them as bytes) and the secrets the server
generates verify."""

from __future__ import annotations

import base64
import json
import os
import time

import pytest
import standardwebhooks

from server.webhook_delivery.signing import (
    body_signature_valid,
    header_signature,
    new_secret,
    secret_problem,
    signed_body,
)


def whsec(n: int, padded: bool = True) -> str:
    text = base64.b64encode(os.urandom(n)).decode()
    return "whsec_" + (text if padded else text.rstrip("="))


SECRETS = [whsec(24), whsec(32), whsec(64), whsec(25, padded=False), whsec(31, padded=False)]


@pytest.mark.parametrize("secret", SECRETS)
def test_spec_secrets_verify_with_standardwebhooks(secret: str) -> None:
    assert secret_problem(secret) is None
    payload = json.dumps({"event": "processing.completed", "timestamp": "2026-01-01T00:00:00Z", "data": {}}).encode()
    body = signed_body(payload, secret)
    ts = int(time.time())
    headers = {"webhook-id": "evt_1", "webhook-timestamp": str(ts), "webhook-signature": ""}
    headers["webhook-signature"] = header_signature(secret, "evt_1", ts, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers)["event"] == "processing.completed"
    assert body_signature_valid(body, secret)
    tampered = body.replace(b"completed", b"failed")
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(tampered, headers)


def test_a_plain_secret_verifies_as_bytes() -> None:
    secret, ts = "plain-secret", int(time.time())
    body = signed_body(b'{"event":"x"}', secret)
    headers = {"webhook-id": "evt_2", "webhook-timestamp": str(ts)}
    headers["webhook-signature"] = header_signature(secret, "evt_2", ts, body)
    standardwebhooks.Webhook(secret.encode()).verify(body, headers)


@pytest.mark.parametrize("secret", ["whsec_!!", "whsec_", "whsec_a"])
def test_a_whsec_secret_that_is_not_base64_is_refused(secret: str) -> None:
    assert secret_problem(secret) is not None


def test_generated_secrets_are_spec_secrets_that_verify() -> None:
    secret, ts = new_secret(), int(time.time())
    assert secret.startswith("whsec_") and secret_problem(secret) is None
    assert len(base64.b64decode(secret[len("whsec_") :])) == 32
    assert new_secret() != secret
    body = signed_body(b'{"event":"ping"}', secret)
    headers = {"webhook-id": "evt_3", "webhook-timestamp": str(ts)}
    headers["webhook-signature"] = header_signature(secret, "evt_3", ts, body)
    assert standardwebhooks.Webhook(secret).verify(body, headers)["event"] == "ping"
