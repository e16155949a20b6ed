"""GET /docs in a real browser (Playwright driving Debian's chromium, as tests/test_dashboard.py does):
the page renders the generated document under its strict CSP, and a user authorizes with a key and
tries an endpoint."""

from __future__ import annotations

from pathlib import Path

from server.keys import CreatedKey
from tests.browser_support import Page, expect  # the fixtures (browser, page, origin) come from that plugin
from tests.conftest import MODEL

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "docs"


async def test_docs_page_tries_an_endpoint(page: Page, origin: str, key: CreatedKey) -> None:
    await page.goto(f"{origin}/docs")
    await expect(page.locator(".information-container .title")).to_contain_text("PlutosAI API")
    # Every tag of the document is there, with its proto comment.
    for tag in ("ProcessingService", "ModelsService", "UsageService", "WebhooksService"):
        await expect(page.locator(f"#operations-tag-{tag}")).to_be_visible()
    await page.locator("button.authorize").first.click()
    await page.locator(".modal-ux input[type=text]").first.fill(key.secret)
    await page.locator(".modal-ux .auth-btn-wrapper button.authorize").click()
    await page.locator(".modal-ux button.btn-done").click()
    # Swagger UI's id is operations-<tag>-<operationId>; the operation id is the method's name, or
    # prefixed with its service where two services share it (OpenAIService has a ListModels too).
    operation = page.locator('[id^="operations-ModelsService-"][id$="ListModels"]')
    await operation.locator(".opblock-summary").click()
    await operation.locator("button.try-out__btn").click()
    await operation.locator("button.execute").click()
    live = operation.locator(".live-responses-table")
    await expect(live.locator("tr.response td.response-col_status").first).to_have_text("200")
    await expect(live.locator("tr.response td.response-col_description pre").first).to_contain_text(MODEL)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "try-list-models.png"), full_page=True)
