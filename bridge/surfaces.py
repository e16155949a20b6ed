"""Non-API HTTP surfaces derived from the bridge's own routes: the OpenAPI document and the docs page.

Both are mounted by ``gateway/app.py``'s ``non_api_routes()`` (through ``create_app(extra_routes=...)``)
and need no key. The page is Swagger UI (Apache-2.0, from the ``swagger-ui-py`` wheel, whose
``LICENSE`` is served beside it) with a local start-up script: no CDN, no inline script or style,
a strict Content-Security-Policy.
"""

from __future__ import annotations

import mimetypes
from importlib import metadata, resources
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bridge.openapi import build_openapi

OPENAPI_PATH = "/v1/openapi.json"
DOCS_PATH = "/docs"
# Swagger UI's files the page uses, and this package's own.
_SWAGGER_ASSETS = {"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png", "LICENSE"}
_OWN_ASSETS = {"index.html", "docs.js", "docs.css"}
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _version() -> str:
    try:
        return metadata.version("plutos")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def openapi_route() -> Route:
    """``GET /v1/openapi.json``: the document of the routes the app serving it mounted from RPCs,
    built on the first request and kept."""

    async def openapi(request: Request) -> Response:
        state = request.app.state
        body: bytes | None = getattr(state, "openapi_json", None)
        if body is None:
            body = orjson.dumps(build_openapi(state.http_bindings, version=_version()))
            state.openapi_json = body
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    return Route(OPENAPI_PATH, openapi, methods=["GET"], name="openapi")


def _swagger_ui_dir() -> Path:
    import swagger_ui  # type: ignore[import-untyped]  # swagger-ui-py: Swagger UI's distribution files

    return Path(swagger_ui.__file__).parent / "static"


def docs_route() -> Route:
    """``GET /docs``: the API reference page; ``GET /docs/<file>``: its assets."""
    own = resources.files("bridge") / "docs_page"
    swagger = _swagger_ui_dir()
    cache: dict[str, bytes] = {}

    def read(name: str) -> bytes:
        if name not in cache:
            cache[name] = (own / name).read_bytes() if name in _OWN_ASSETS else (swagger / name).read_bytes()
        return cache[name]

    async def docs(request: Request) -> Response:
        name = request.path_params["asset"].lstrip("/") or "index.html"
        if name not in _OWN_ASSETS and name not in _SWAGGER_ASSETS:
            return Response(b"Not found", 404, media_type="text/plain")
        media = "text/plain" if name == "LICENSE" else mimetypes.guess_type(name)[0] or "application/octet-stream"
        if media.startswith("text/") or media.endswith("javascript"):
            media += "; charset=utf-8"
        headers = {
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache" if name == "index.html" else "public, max-age=3600",
        }
        return Response(read(name), headers=headers, media_type=media)

    return Route(DOCS_PATH + "{asset:path}", docs, methods=["GET"], name="docs")
