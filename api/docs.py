"""The API documentation pages, served with their scripts and styles from the package itself.

FastAPI's own `/docs` and `/redoc` load Swagger UI and ReDoc from a CDN, which government
intranets cannot reach. These pages load the copies that ship in the `fastapi-offline` package
(mounted at `STATIC`), and nothing else: no web fonts, no remote icon. A Content-Security-Policy
keeps it so: ReDoc's bundle draws its vendor's logo from the vendor's site, and the browser
does not even ask for it.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import Depends, FastAPI
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.security import public

ASSETS = Path(fastapi_offline.__file__).parent / "static"
STATIC = "/static-docs"
DOCS = "/docs"
REDOC = "/redoc"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
FAVICON = "/favicon.ico"
#: Only this site: the bundles' inline start-up scripts, ReDoc's blob: worker, data: images.
POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
    "worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def _local_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = POLICY
    return page


def install(app: FastAPI) -> None:
    """Mount the assets and add `/docs` (Swagger UI) and `/redoc` (ReDoc) to `app`.

    Create the app with `docs_url=None, redoc_url=None` so FastAPI adds no CDN pages.
    """
    app.mount(STATIC, StaticFiles(directory=ASSETS), name="static-docs")
    openapi = app.openapi_url or "/openapi.json"

    @app.get(DOCS, include_in_schema=False, dependencies=[Depends(public)])
    async def swagger_ui() -> HTMLResponse:
        """Swagger UI: try every operation (Authorize with a token first)."""
        return _local_only(
            get_swagger_ui_html(
                openapi_url=openapi,
                title=f"{app.title} · 接口文档",
                oauth2_redirect_url=OAUTH2_REDIRECT,
                swagger_js_url=f"{STATIC}/swagger-ui-bundle.js",
                swagger_css_url=f"{STATIC}/swagger-ui.css",
                swagger_favicon_url=FAVICON,
                # No badge from the online validator: it would call out to swagger.io.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False, dependencies=[Depends(public)])
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC, include_in_schema=False, dependencies=[Depends(public)])
    async def redoc() -> HTMLResponse:
        """ReDoc: the same description, for reading."""
        return _local_only(
            get_redoc_html(
                openapi_url=openapi,
                title=f"{app.title} · 接口说明",
                redoc_js_url=f"{STATIC}/redoc.standalone.js",
                redoc_favicon_url=FAVICON,
                with_google_fonts=False,
            )
        )
