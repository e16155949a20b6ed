"""The browser tests' fixtures (a pytest plugin, registered in tests/conftest.py): Playwright for
Python driving Debian's chromium by its path (``PLUTOS_CHROMIUM``, else ``chromium`` on PATH), one
browser per session, a fresh tab per test that fails the test on a script error, a CSP violation or
an alert(). Without Playwright or chromium the tests skip, and fail under ``CI=true``.

Used by tests/test_dashboard.py and tests/test_docs_browser.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gateway.app import RunningPlatform

if TYPE_CHECKING:
    from playwright.async_api import ViewportSize

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

try:
    # Browser, Page and expect are re-exported for the browser tests (the `as` marks them public).
    from playwright.async_api import Browser as Browser
    from playwright.async_api import Page as Page
    from playwright.async_api import async_playwright
    from playwright.async_api import expect as expect
except ImportError:  # pragma: no cover - playwright is in the dev extra
    async_playwright = None  # type: ignore[assignment]
    Browser = Page = Any  # type: ignore[assignment,misc]
    expect = None  # type: ignore[assignment]
else:
    # The machine is shared and the model runs on CPU: wait generously, never assert timings.
    expect.set_options(timeout=30_000)
MODEL_WAIT = 120_000  # ms, for steps that wait on the model


def chromium_path() -> str:
    path = os.environ.get("PLUTOS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    missing = async_playwright is None or not Path(path).exists()
    if missing:
        why = "Playwright for Python is not installed" if async_playwright is None else f"no chromium at {path}"
        message = f"{why}: run `bash scripts/test-browser.sh` (make test does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = chromium_path()
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=executable,
            # root in containers cannot use chromium's sandbox; /dev/shm is small there
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        yield launched
        await launched.close()


@pytest.fixture(scope="session")
def origin(platform: RunningPlatform) -> str:
    return f"http://127.0.0.1:{platform.http_port}"


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab (own sessionStorage) at 1280x800. Fails the test on a script error, a CSP
    violation or an alert() (none may happen)."""
    context = await browser.new_context(viewport=DESKTOP)
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    tab.on(
        "console",
        lambda msg: (
            problems.append(f"console: {msg.text}")
            if msg.type == "error" and ("Content Security Policy" in msg.text or "Refused" in msg.text)
            else None
        ),
    )

    async def on_dialog(dialog: Any) -> None:
        problems.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    tab.on("dialog", on_dialog)
    yield tab
    await context.close()
    assert not problems, problems
