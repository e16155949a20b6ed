"""Webhook helpers shared by the webhook tests: a signing secret and creating a webhook over REST."""

from __future__ import annotations

import base64
from typing import Any

import httpx

SECRET = "whsec_" + base64.b64encode(b"a-32-byte-secret-for-the-tests!!").decode()


async def create_webhook(client: httpx.AsyncClient, url: str, events: list[str], secret: str | None = None) -> Any:
    body: dict[str, Any] = {"url": url, "events": events}
    if secret is not None:
        body["secret"] = secret
    r = await client.post("/webhooks", json=body)
    assert r.status_code == 200, r.text
    return r.json()
