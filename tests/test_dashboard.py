"""The dashboard in a real browser: Playwright for Python driving Debian's chromium (by its
executable path; nothing is downloaded) against the session's real platform.

Screenshots of every page go to ``test-artifacts/dashboard/`` (git-ignored) for a reviewer. Under
CI=true a missing chromium or Playwright fails these tests instead of skipping them."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from core.ids import new_id
from gateway.app import RunningPlatform
from server.keys import ADMIN_SCOPES, DEFAULT_SCOPES, CreatedKey
from server.store.models import ProcessRecord
from tests.browser_support import DESKTOP, MODEL_WAIT, PHONE, Browser, Page, expect
from tests.conftest import MODEL, new_key
from tests.webhook_receiver import Receiver

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
XSS = "<img src=x onerror=alert(1)>"


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, origin: str, secret: str) -> None:
    await page.goto(f"{origin}/")
    await page.get_by_label("API key").fill(secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()


async def go(page: Page, name: str) -> None:
    await page.get_by_role("navigation", name="Dashboard sections").get_by_role("link", name=name).click()
    await expect(page.locator("#page-title")).to_contain_text(name if name != "Keys" else "API keys")


@pytest.fixture
async def user(platform: RunningPlatform) -> CreatedKey:
    """A key of its own account (its usage and records are only this test's) that may manage keys."""
    return await new_key(platform, name="dashboard", scopes=[*DEFAULT_SCOPES, "keys"])


# --- served by the bridge ------------------------------------------------------------------------


async def test_root_redirects_and_pages_carry_strict_headers(origin: str) -> None:
    async with httpx.AsyncClient(base_url=origin) as client:
        root = await client.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/dashboard/"
        bare = await client.get("/dashboard")  # typed without the slash (a new user's 404)
        assert bare.status_code == 307 and bare.headers["location"] == "/dashboard/"
        index = await client.get("/dashboard/")
        assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
        csp = index.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp
        assert index.headers["x-frame-options"] == "DENY"
        assert index.headers["x-content-type-options"] == "nosniff"
        # Everything the page loads is served here: no other origin in any src or href.
        assert not re.search(r'(src|href)="(https?:)?//', index.text)
        script = await client.get("/dashboard/js/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        assert script.headers["x-frame-options"] == "DENY"
        chart = await client.get("/dashboard/vendor/chart.umd.min.js")
        assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
        licence = await client.get("/dashboard/vendor/chart.js-LICENSE.md")
        assert licence.status_code == 200 and "MIT" in licence.text
        missing = await client.get("/dashboard/no-such-file.js")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        escape = await client.get("/dashboard/../gateway/app.py")
        assert escape.status_code == 404


# --- in the browser --------------------------------------------------------------------------------


async def test_sign_in_rejects_a_bad_key_then_signs_in_and_out(page: Page, origin: str, user: CreatedKey) -> None:
    await page.goto(f"{origin}/")
    await expect(page).to_have_url(re.compile(r"/dashboard/"))
    await shot(page, "sign-in")
    await page.get_by_label("API key").fill("pk_not_a_real_key")
    await page.get_by_role("button", name="Sign in").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Could not sign in")
    await expect(alert.locator(".request-id")).to_have_text(re.compile(r"^req_"))  # the envelope's request id
    await shot(page, "sign-in-error")

    # By keyboard alone: type the key, Enter; Tab to a section's link, Enter.
    await page.get_by_label("API key").fill(user.secret)
    await page.get_by_label("API key").press("Enter")
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    models_link = page.get_by_role("navigation", name="Dashboard sections").get_by_role("link", name="Models")
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await models_link.evaluate("link => link === document.activeElement"):
            break
    await page.keyboard.press("Enter")
    await expect(page.locator("#page-title")).to_have_text("Models")
    await expect(models_link).to_have_attribute("aria-current", "page")
    await page.goto(f"{origin}/dashboard/#/overview")
    assert await page.evaluate("document.cookie") == ""
    assert await page.evaluate("sessionStorage.getItem('plutos.apiKey')") == user.secret
    await expect(page.locator(".card-value").first).to_have_text("0")
    quota = page.get_by_role("meter", name="Monthly token quota used")
    await expect(quota).to_have_attribute("aria-valuenow", "0.0")
    await expect(page.get_by_text("0 of 1,000,000,000 tokens used")).to_be_visible()
    await shot(page, "overview")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0
    await expect(page.locator("#main")).to_be_empty()


async def test_dashboard_typed_without_the_slash_lands_on_a_working_page(
    page: Page, origin: str, user: CreatedKey
) -> None:
    """``/dashboard`` redirects to ``/dashboard/``, so the page's relative stylesheet, scripts and icon
    resolve under it: every one loads and the sign-in form signs in."""
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    await page.goto(f"{origin}/dashboard")
    await expect(page).to_have_url(f"{origin}/dashboard/")
    await page.get_by_label("API key").fill(user.secret)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview", level=1)).to_be_visible()
    assert failed == []


async def test_models_page_lists_the_catalogue(page: Page, origin: str, user: CreatedKey) -> None:
    await sign_in(page, origin, user.secret)
    await go(page, "Models")
    row = page.get_by_role("row").filter(has_text=MODEL)
    await expect(row).to_contain_text("$0.0001")
    await expect(row).to_contain_text("Yes")
    await shot(page, "models")


async def test_playground_streams_stops_and_its_run_shows_in_usage(page: Page, origin: str, user: CreatedKey) -> None:
    await sign_in(page, origin, user.secret)
    await go(page, "Usage")
    summary = page.locator("#usage-summary")
    await expect(summary).to_contain_text("0 requests")
    canvas = page.locator(".chart-wrap canvas")
    await expect(canvas).to_have_attribute("data-total", "0")
    await go(page, "Requests")
    await expect(page.get_by_text("No requests match.")).to_be_visible()

    await go(page, "Playground")
    await page.get_by_label("Model").select_option(MODEL)
    await page.get_by_label("Input").fill("Write a very long story about a robot who learns to paint. " + XSS)
    await page.get_by_label("Max tokens").fill("600")
    snippet = page.locator("#snippet-panel")
    await expect(snippet).to_contain_text('"maxTokens":600')
    await expect(snippet).to_contain_text(XSS)  # the input, as text, inside the curl command
    for tab, text in (("Python", "client.stream("), ("TypeScript", "for await"), ("Go", "client.Stream(")):
        await page.get_by_role("tab", name=tab).click()
        await expect(snippet).to_contain_text(text)
    await page.get_by_role("button", name="Run").click()

    output = page.locator("#playground-output")
    await expect(output).to_have_attribute("data-chunks", re.compile(r"^[1-9]"), timeout=MODEL_WAIT)
    first = len(await output.text_content() or "")
    chunks = int(await output.get_attribute("data-chunks") or "0")
    await page.wait_for_function(  # it grows: more chunks than when the text was first read
        "n => Number(document.querySelector('#playground-output').dataset.chunks) > n", arg=chunks, timeout=MODEL_WAIT
    )
    assert len(await output.text_content() or "") > first
    await shot(page, "playground-streaming")
    await page.get_by_role("button", name="Stop").click()
    await expect(page.locator(".run-status")).to_contain_text("Stopped")
    await expect(page.get_by_role("button", name="Run")).to_be_enabled()
    stopped_at = await output.text_content()
    await page.wait_for_timeout(300)
    assert await output.text_content() == stopped_at  # nothing more arrives after Stop

    # A short run to its end: usage and a link to the stored record.
    await page.get_by_label("Max tokens").fill("12")
    await page.get_by_role("button", name="Run").click()
    await expect(page.locator(".run-status")).to_contain_text("Completed", timeout=MODEL_WAIT)
    link = page.locator("a.record-link")
    await expect(link).to_have_text(re.compile(r"^proc_"))
    await shot(page, "playground-complete")
    record_id = await link.text_content()
    await link.click()
    await expect(page.locator("#page-title")).to_contain_text(record_id or "")
    await expect(page.locator("#record-input")).to_contain_text(XSS)
    await shot(page, "request-record")

    await go(page, "Requests")
    rows = page.locator("tbody tr")
    await expect(rows).to_have_count(2)  # newest first: the complete run, then the stopped one
    await expect(rows.nth(0)).to_contain_text(record_id or "")
    await expect(rows.nth(0)).to_contain_text("completed")
    await expect(rows.nth(1)).to_contain_text("cancelled")
    await shot(page, "requests")
    await page.get_by_label("Status").select_option("cancelled")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await rows.nth(0).click()
    await expect(page.locator("#page-title")).to_contain_text("proc_")
    await expect(page.locator(".badge")).to_have_text("cancelled")

    await go(page, "Overview")
    await expect(page.locator(".card-value").first).to_have_text("2")  # the stopped run and the complete one
    await go(page, "Usage")
    await expect(summary).to_contain_text("2 requests")
    await expect(canvas).to_have_attribute("data-total", "2")  # the chart changed
    await expect(page.locator("tbody tr").filter(has_text=MODEL)).to_contain_text("2")
    await shot(page, "usage")
    await page.get_by_label("Chart").select_option("tokens")
    await expect(page.locator(".chart-wrap canvas")).to_have_attribute("data-metric", "tokens")
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Download CSV").click()
    csv = await asyncio.to_thread(Path(await (await download.value).path()).read_text)
    assert csv.splitlines()[0] == "date,model,requests,prompt_tokens,completion_tokens,cost_usd"
    assert f'"{MODEL}","2"' in csv


async def test_untrusted_text_is_shown_as_text(page: Page, origin: str, platform: RunningPlatform) -> None:
    """A model output, an input and a key name of ``<img src=x onerror=alert(1)>`` show as those
    characters (the page fixture fails the test on any alert)."""
    owner = await new_key(platform, name=XSS)
    record_id = new_id("proc")
    async with platform.runtime.sessions.begin() as session:
        session.add(
            ProcessRecord(
                id=record_id,
                account_id=owner.account_id,
                key_id=owner.id,
                kind="process",
                model=MODEL,
                input=XSS,
                options={},
                output=XSS,
                prompt_tokens=3,
                completion_tokens=4,
                status="completed",
                created_at=datetime.now(UTC).replace(microsecond=0),
                processing_time_ms=5,
                cached=True,
            )
        )
    await sign_in(page, origin, owner.secret)
    await page.goto(f"{origin}/dashboard/#/requests/{record_id}")
    await expect(page.locator("#record-output")).to_have_text(XSS)
    await expect(page.locator("#record-cached")).to_contain_text("response cache")
    await expect(page.locator("#record-input")).to_have_text(XSS)
    assert await page.locator("main img").count() == 0
    await shot(page, "xss-record")


async def test_webhooks_create_and_delete(page: Page, origin: str, user: CreatedKey) -> None:
    await sign_in(page, origin, user.secret)
    await go(page, "Webhooks")
    await expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
    url = "http://127.0.0.1:9/hooks/dashboard"
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_label("processing.failed").check()
    await page.get_by_label("Signing secret").fill("dashboard-signing-secret")
    await page.get_by_role("button", name="Add endpoint").click()
    row = page.get_by_role("row").filter(has_text=url)
    await expect(row).to_contain_text("processing.completed, processing.failed")
    await expect(row).to_contain_text("Yes")
    await shot(page, "webhooks")
    await row.get_by_role("button", name=re.compile("^Delete")).click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()
    # Without a secret, the server generates one and the page shows it this once.
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_role("button", name="Add endpoint").click()
    await expect(page.locator("code.secret")).to_have_text(re.compile(r"^whsec_[A-Za-z0-9+/]{43}=$"))
    row = page.get_by_role("row").filter(has_text=url)
    await expect(row).to_contain_text("Yes")
    await row.get_by_role("button", name=re.compile("^Delete")).click()
    await page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    await expect(page.get_by_text("No webhook endpoints yet.")).to_be_visible()


async def test_phone_layout(browser: Browser, origin: str, user: CreatedKey) -> None:
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = await context.new_page()
    try:
        await sign_in(page, origin, user.secret)
        # Nothing wider than the screen: the page never scrolls sideways.
        for name in ("Overview", "Usage", "Requests", "Keys", "Webhooks", "Playground", "Models", "Operator"):
            await go(page, name)
            await page.wait_for_load_state("networkidle")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], (name, width)
            await shot(page, f"phone-{name.lower()}")
    finally:
        await context.close()


async def test_keys_create_shown_once_rename_rotate_revoke(
    page: Page, origin: str, platform: RunningPlatform, user: CreatedKey
) -> None:
    await sign_in(page, origin, user.secret)
    await go(page, "Keys")
    await expect(page.get_by_role("row").filter(has_text=user.secret[:10])).to_contain_text("this session")
    await page.get_by_role("textbox", name="Name").fill(XSS)
    await page.get_by_role("checkbox", name="process").check()
    await page.get_by_role("button", name="Create key").click()
    secret_box = page.locator(".secret-box")
    await expect(secret_box).to_contain_text("shown only this once")
    secret = await page.get_by_label("New API key").input_value()
    assert secret.startswith("pk_") and secret != user.secret
    row = page.get_by_role("row").filter(has_text=secret[:10])
    await expect(row.locator(".key-name")).to_have_text(XSS)  # a key name is text
    await expect(row).to_contain_text("process")
    last_used = row.locator('td[data-label="Last used"]')
    await expect(last_used).to_have_text("never")
    await shot(page, "keys-created")
    async with httpx.AsyncClient(base_url=origin) as client:  # the new key works
        r = await client.get("/v1/process?limit=1", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200
    await platform.runtime.authenticator.flush_last_used()  # what the periodic flush does

    # Shown once: after leaving the page the secret is nowhere on it.
    await go(page, "Models")
    await go(page, "Keys")
    await expect(row).to_be_visible()
    await expect(last_used).to_have_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$"))
    assert secret not in (await page.content())
    await expect(page.locator(".secret-box")).to_have_count(0)

    await row.get_by_role("button", name=re.compile("^Rename")).click()
    dialog = page.get_by_role("dialog")
    await dialog.get_by_label("New name").fill("renamed-key")
    await dialog.get_by_role("button", name="Rename").click()
    await expect(row.locator(".key-name")).to_have_text("renamed-key")

    await row.get_by_role("button", name=re.compile("^Rotate")).click()
    await dialog.get_by_label("Grace period in seconds").fill("60")
    await dialog.get_by_role("button", name="Rotate").click()
    await expect(page.locator(".secret-box")).to_contain_text("works until")
    rotated = await page.get_by_label("New API key").input_value()
    assert rotated.startswith("pk_") and rotated != secret
    await expect(row).to_contain_text("rotated")
    successor = page.get_by_role("row").filter(has_text=rotated[:10])
    await expect(successor).to_contain_text("active")

    await successor.get_by_role("button", name=re.compile("^Revoke")).click()
    await dialog.get_by_role("button", name="Cancel").click()  # a confirmation first
    await expect(successor).to_contain_text("active")
    await successor.get_by_role("button", name=re.compile("^Revoke")).click()
    await dialog.get_by_role("button", name="Revoke").click()
    await expect(successor).to_contain_text("revoked")
    await shot(page, "keys")


async def test_webhook_deliveries_test_event_and_redeliver(
    page: Page, origin: str, user: CreatedKey, receiver: Receiver
) -> None:
    path = receiver.new_path()
    url = receiver.url(path)
    await sign_in(page, origin, user.secret)
    await go(page, "Webhooks")
    await page.get_by_label("Endpoint URL").fill(url)
    await page.get_by_role("button", name="Add endpoint").click()
    row = page.get_by_role("row").filter(has_text=url)
    await row.get_by_role("link", name=re.compile("^Deliveries")).click()
    await expect(page.locator("#page-title")).to_have_text("Deliveries")
    await expect(page.get_by_text("No deliveries yet.")).to_be_visible()

    await page.get_by_role("button", name="Send test event").click()
    await expect(page.locator(".test-result")).to_contain_text("HTTP 200")
    assert len(receiver.at(path)) == 1 and receiver.at(path)[0].json()["event"] == "ping"

    # A real event: a request with this key sends processing.completed.
    async with httpx.AsyncClient(base_url=origin, timeout=300) as client:
        r = await client.post(
            "/v1/process",
            headers={"Authorization": f"Bearer {user.secret}"},
            json={"input": "Hi", "model": MODEL, "options": {"maxTokens": 2}},
        )
        assert r.status_code == 200
    delivered = await receiver.wait_for(path, 2)
    assert len(delivered) == 2
    await page.reload()
    completed = page.locator("tbody tr").filter(has_text="processing.completed")
    await expect(completed).to_contain_text("delivered")
    await expect(completed).to_contain_text("HTTP 200")
    await shot(page, "webhook-deliveries")
    await completed.get_by_role("button", name=re.compile("^Redeliver")).click()
    await expect(page.get_by_role("status").filter(has_text="queued again")).to_be_visible()
    for _ in range(200):  # the redelivery reaches the receiver (same webhook-id, another request)
        if len(receiver.at(path)) >= 3:
            break
        await page.wait_for_timeout(100)
    ids = [got.id for got in receiver.at(path)]
    assert len(ids) == 3 and ids[2] == ids[1], ids


async def test_operator_creates_an_account_changes_its_plan_and_suspends_it(
    page: Page, origin: str, platform: RunningPlatform, user: CreatedKey
) -> None:
    # An ordinary key sees that the page needs an admin key.
    await sign_in(page, origin, user.secret)
    await go(page, "Operator")
    await expect(page.get_by_role("alert")).to_contain_text("need an admin key")
    await page.get_by_role("button", name="Sign out").click()

    operator = await new_key(platform, plan="enterprise", name="operator", scopes=list(ADMIN_SCOPES))
    await sign_in(page, origin, operator.secret)
    await go(page, "Operator")
    name = f"Acme {new_id('t')}"
    await page.get_by_role("textbox", name="Name").fill(name)
    await page.get_by_label("Plan", exact=True).fill("free")
    await page.get_by_role("button", name="Create account").click()
    row = page.get_by_role("row").filter(has_text=name)
    await expect(row).to_contain_text("active")
    await row.get_by_label(re.compile("^Plan of")).select_option("pro")
    await expect(page.get_by_role("status").filter(has_text="Plan changed to pro")).to_be_visible()
    await expect(row.get_by_label(re.compile("^Plan of"))).to_have_value("pro")
    await row.get_by_role("button", name="Suspend").click()
    await page.get_by_role("dialog").get_by_role("button", name="Suspend").click()
    await expect(row).to_contain_text("suspended")
    await expect(page.get_by_role("row").filter(has_text="account.updated").first).to_be_visible()
    await shot(page, "operator")
    await row.get_by_role("button", name="Resume").click()
    await expect(row).to_contain_text("active")
    # Its keys, managed with the admin key.
    await row.get_by_role("link", name=re.compile("^Keys of")).click()
    await expect(page.locator("#page-title")).to_contain_text("Keys of")
    await page.get_by_role("textbox", name="Name").fill("owner")
    await page.get_by_role("checkbox", name="keys").check()
    await page.get_by_role("button", name="Create key").click()
    await expect(page.get_by_label("New API key")).to_have_value(re.compile("^pk_"))


async def test_desktop_layout_never_scrolls_sideways(page: Page, origin: str, platform: RunningPlatform) -> None:
    """At 1280x800 no page's document is wider than the viewport, the operator's included (wide
    tables scroll inside their own container)."""
    operator = await new_key(platform, plan="enterprise", name="wide operator", scopes=list(ADMIN_SCOPES))
    async with httpx.AsyncClient(base_url=f"{origin}/v1", headers={"Authorization": f"Bearer {operator.secret}"}) as c:
        r = await c.post("/admin/accounts", json={"name": f"A long account name {'x' * 60}", "plan": "enterprise"})
        assert r.status_code == 200, r.text
    await sign_in(page, origin, operator.secret)
    for name in ("Overview", "Usage", "Requests", "Keys", "Webhooks", "Playground", "Models", "Operator"):
        await go(page, name)
        await page.wait_for_load_state("networkidle")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= DESKTOP["width"], (name, width)
        await shot(page, f"desktop-{name.lower()}")
    # The accounts table fits its container at this width: its actions need no sideways scroll.
    wrap = page.locator(".table-wrap").filter(has=page.locator("table.accounts"))
    sizes = await wrap.evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert sizes[0] <= sizes[1], sizes
    await expect(page.get_by_role("button", name="Suspend").first).to_be_in_viewport()
    await go(page, "Keys")  # the keys table, with its "Last used" column, fits too
    sizes = await page.locator(".table-wrap").first.evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert sizes[0] <= sizes[1], ("keys", sizes)
