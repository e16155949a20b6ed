"""The PlutosAI Dashboard: a browser app served by the bridge at ``/dashboard``.

It is static files (``static/``: HTML, CSS, ES modules and the vendored Chart.js build) that call the
same public REST API as any client, with the key the person signs in with (kept in the tab's
``sessionStorage``, sent as ``Authorization: Bearer``). The server side is only this: the files, a
strict Content-Security-Policy and frame/sniffing headers on every answer, and ``/`` redirecting to
the dashboard. Unknown files under ``/dashboard`` get the API's 404 envelope."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).parent / "static"
PATH = "/dashboard"

# Scripts, styles, images and fonts come only from this origin (no inline script or style, no eval),
# API calls go only to this origin, and no other site may frame the dashboard.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    # Files change with the server's version: revalidate (ETag) rather than serve a stale app.
    (b"cache-control", b"no-cache"),
]


class _SecurityHeaders:
    """ASGI wrapper adding :data:`SECURITY_HEADERS` to every response of the wrapped app."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse(f"{PATH}/", status_code=307)


def dashboard_routes() -> list[BaseRoute]:
    """``/dashboard/…`` (the static app, ``index.html`` for the folder); ``/`` and ``/dashboard``
    (typed without the slash) → ``/dashboard/`` (307, a relative ``Location``, never built from
    ``Host``; the API's own paths keep their 404 for a wrong slash)."""
    files = StaticFiles(directory=STATIC_DIR, html=True)
    return [
        Route("/", _to_dashboard, methods=["GET", "HEAD"]),
        Route(PATH, _to_dashboard, methods=["GET", "HEAD"]),
        Mount(PATH, app=_SecurityHeaders(files), name="dashboard"),
    ]
