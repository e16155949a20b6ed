"""plutos_ai.webhooks.verify: Standard Webhooks signatures, checked against the specification's vector."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import pytest

from plutos_ai import WebhookVerificationError, webhooks

# The Standard Webhooks specification's published test vector.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = '{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(signature: str = SIGNATURE, timestamp: int = TIMESTAMP, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_reference_vector_signs_as_published() -> None:
    assert webhooks.sign(PAYLOAD, msg_id=MSG_ID, timestamp=TIMESTAMP, secret=SECRET) == SIGNATURE


def test_reference_vector_verifies_and_returns_the_payload() -> None:
    assert webhooks.verify(PAYLOAD.encode(), headers(), SECRET, now=TIMESTAMP + 10) == {"test": 2432232314}


def test_str_payload_and_header_names_in_any_case() -> None:
    upper = {k.title(): v for k, v in headers().items()}
    assert webhooks.verify(PAYLOAD, upper, SECRET, now=TIMESTAMP) == {"test": 2432232314}


def test_one_matching_signature_among_several_is_enough() -> None:
    many = f"v1,Zm9vYmFyYmF6 v2,whatever {SIGNATURE}"
    assert webhooks.verify(PAYLOAD, headers(many), SECRET, now=TIMESTAMP) == {"test": 2432232314}


def test_a_secret_without_whsec_prefix_keys_hmac_with_its_utf8_bytes() -> None:
    secret = "my-plain-sécret"
    body = b'{"event": "processing.completed", "data": {"id": "proc_1"}}'
    digest = hmac.new(
        secret.encode("utf-8"), f"{MSG_ID}.{TIMESTAMP}.".encode() + body, hashlib.sha256
    ).digest()
    signature = "v1," + base64.b64encode(digest).decode()
    assert webhooks.sign(body, msg_id=MSG_ID, timestamp=TIMESTAMP, secret=secret) == signature
    result = webhooks.verify(body, headers(signature), secret, now=TIMESTAMP)
    assert result["event"] == "processing.completed"


def test_fresh_delivery_verifies_with_the_real_clock() -> None:
    now = int(time.time())
    sig = webhooks.sign(PAYLOAD, msg_id="msg_1", timestamp=now, secret=SECRET)
    assert webhooks.verify(PAYLOAD, headers(sig, now, "msg_1"), SECRET) == {"test": 2432232314}


@pytest.mark.parametrize(
    ("payload", "hdrs", "secret", "match"),
    [
        (PAYLOAD + " ", headers(), SECRET, "no matching"),
        (PAYLOAD, headers("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), SECRET, "no matching"),
        (PAYLOAD, headers(SIGNATURE.replace("v1,", "v2,")), SECRET, "no matching"),
        (PAYLOAD, headers(msg_id="msg_other"), SECRET, "no matching"),
        (PAYLOAD, headers(), "whsec_c2VjcmV0LW9mLWEtcm90YXRlZC1lbmRwb2ludA==", "no matching"),
        (PAYLOAD, headers(), "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "no matching"),
        (PAYLOAD, {"webhook-id": MSG_ID, "webhook-timestamp": str(TIMESTAMP)}, SECRET, "webhook-signature"),
        (
            PAYLOAD,
            {"webhook-signature": SIGNATURE, "webhook-timestamp": str(TIMESTAMP)},
            SECRET,
            "webhook-id",
        ),
        (PAYLOAD, {"webhook-id": MSG_ID, "webhook-signature": SIGNATURE}, SECRET, "webhook-timestamp"),
        (PAYLOAD, {**headers(), "webhook-timestamp": "yesterday"}, SECRET, "timestamp"),
        (PAYLOAD, headers(), "whsec_not base64!", "base64"),
        (PAYLOAD, headers(), "", "secret"),
    ],
)
def test_bad_deliveries_are_rejected(payload: str, hdrs: dict[str, str], secret: str, match: str) -> None:
    with pytest.raises(WebhookVerificationError, match=match):
        webhooks.verify(payload, hdrs, secret, now=TIMESTAMP)


def test_stale_and_future_timestamps_are_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="too old"):
        webhooks.verify(PAYLOAD, headers(), SECRET, now=TIMESTAMP + 301)
    with pytest.raises(WebhookVerificationError, match="too new"):
        webhooks.verify(PAYLOAD, headers(), SECRET, now=TIMESTAMP - 301)
    assert webhooks.verify(PAYLOAD, headers(), SECRET, tolerance=1000, now=TIMESTAMP + 999)


def test_signed_but_not_json_is_rejected() -> None:
    sig = webhooks.sign("not json", msg_id=MSG_ID, timestamp=TIMESTAMP, secret=SECRET)
    with pytest.raises(WebhookVerificationError, match="JSON"):
        webhooks.verify("not json", headers(sig), SECRET, now=TIMESTAMP)


def test_verify_uses_a_constant_time_comparison(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    webhooks.verify(PAYLOAD, headers(), SECRET, now=TIMESTAMP)
    assert calls
