"""The API documentation works with no internet: Swagger UI and ReDoc come from the package.

Chromium opens `/docs` and `/redoc` on a live server while every request that does not go to
that server is aborted and recorded; the pages must render and nothing may have been asked of
the outside world.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from api.app import create_app
from tests.browser import LiveWorld, shot

if TYPE_CHECKING:
    from playwright.sync_api import Page

ASSET = re.compile(r'(?:src|href)="([^"]+)"|url: ?["\']([^"\']+)["\']')


def test_the_pages_name_only_local_assets(engine: Engine) -> None:
    client = TestClient(create_app(engine))
    for path in ("/docs", "/redoc"):
        resp = client.get(path)
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
        refs = [a or b for a, b in ASSET.findall(resp.text)]
        assert refs and all(r.startswith("/") for r in refs), refs
        for ref in refs:
            assert client.get(ref).status_code == 200, ref
        assert "cdn.jsdelivr" not in resp.text and "fonts.googleapis" not in resp.text
        # The browser is told to ask nothing of other sites (ReDoc's bundle would fetch a logo).
        policy = resp.headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data: blob:" in policy
    assert client.get("/docs/oauth2-redirect").status_code == 200
    script = client.get("/static-docs/redoc.standalone.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]


def _block_the_outside(page: Page, base_url: str) -> list[str]:
    """Abort (and record) every request that does not go to the live server."""
    own = urlsplit(base_url).netloc
    outside: list[str] = []

    def handle(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).netloc == own:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    page.route("**/*", handle)
    return outside


def test_swagger_ui_renders_with_the_network_blocked(live_world: LiveWorld, page: Page) -> None:
    outside = _block_the_outside(page, live_world.base_url)
    page.goto(live_world.url("/docs"))
    page.wait_for_selector(".opblock-summary", timeout=20_000)
    operations = page.locator(".opblock")
    assert operations.count() >= 25
    assert page.locator(".opblock-summary-path", has_text="/api/v1/me/calendar").count() >= 1
    assert "党建活动流程" in page.locator(".info .title").inner_text()
    shot(page, "docs-offline-swagger")
    assert outside == []


def test_redoc_renders_with_the_network_blocked(live_world: LiveWorld, page: Page) -> None:
    outside = _block_the_outside(page, live_world.base_url)
    page.goto(live_world.url("/redoc"))
    page.wait_for_selector("[data-item-id]", timeout=30_000)
    assert page.locator("[data-item-id]").count() >= 25
    assert "党建活动流程" in page.locator("h1").first.inner_text()
    assert page.get_by_text("我的日历订阅地址").count() >= 1
    assert outside == []
