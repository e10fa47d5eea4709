"""Shared browser-test plumbing: a live server, one headless Chromium, log-in and screenshots.

* `live_world` (module scope): the API test world (tests/api_world.py) on a fresh SQLite file,
  served by uvicorn in a thread on a free port; `live_world.base_url` is its address.
* `browser` (session scope): Debian's Chromium (`CHROMIUM`) driven by Playwright; one per test
  session. `page` (function scope) is a fresh context (own cookies) with a desktop viewport.
* `login(page, base_url, username)` logs in through the form; `shot(page, name)` saves a
  full-page screenshot to `artifacts/screenshots/<name>.png` (test artefacts, not committed).
* `web_user(app, username)` is the same log-in without a browser (a TestClient with its own
  cookie jar and the page's CSRF token), for the server-side page tests.

Without `/usr/bin/chromium` or the `playwright` package the browser tests skip, and the test
session ends with a visible line saying so (`pytest_terminal_summary`, registered from
tests/conftest.py). With the environment variable `CI` set, a missing browser fails instead.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient

from states.db import make_engine
from tests.api_world import World, build_world

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

#: Debian's Chromium; `DANGJIAN_CHROMIUM` points elsewhere (e.g. to check the skip path).
CHROMIUM = os.environ.get("DANGJIAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
PASSWORD = "password-123"  # tests/factories.py gives every test user this password
DESKTOP: Any = {"width": 1280, "height": 800}
PHONE: Any = {"width": 375, "height": 740}

#: Why the browser tests were skipped in this session (printed in the terminal summary).
_skipped: list[str] = []


def browser_missing() -> str | None:
    """Return why no browser can run here, or None when Chromium and Playwright are present."""
    if not Path(CHROMIUM).exists():
        return f"未安装 Chromium ({CHROMIUM})"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "未安装 Python 软件包 playwright"
    return None


def require_browser() -> None:
    """Skip (or, under CI, fail) the calling test when no browser can run."""
    reason = browser_missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI 中必须运行浏览器测试，但{reason}", pytrace=False)
    if reason not in _skipped:
        _skipped.append(reason)
    pytest.skip(f"浏览器测试已跳过：{reason}")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say loudly, at the end of the run, that the browser tests did not run."""
    for reason in _skipped:
        terminalreporter.write_sep("=", f"浏览器测试已跳过：{reason}", yellow=True, bold=True)


# --------------------------------------------------------------------------- live server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveWorld:
    world: World
    base_url: str

    def url(self, path: str) -> str:
        return self.base_url + path


@pytest.fixture(scope="module")
def live_world(
    sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveWorld]:
    """The API test world on a fresh SQLite file, served over HTTP by uvicorn in a thread."""
    require_browser()
    import uvicorn

    from api.app import create_app

    target = tmp_path_factory.mktemp("live") / "live.db"
    shutil.copy(sqlite_template, target)
    engine = make_engine(f"sqlite:///{target}")
    world = build_world(engine)
    port = free_port()
    config = uvicorn.Config(
        create_app(engine), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    for _ in range(400):  # wait for the socket to listen (not a timed assertion)
        if server.started:
            break
        time.sleep(0.025)
    if not server.started:
        raise RuntimeError("测试服务器未能启动")
    try:
        yield LiveWorld(world, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the whole session."""
    require_browser()
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (own cookies) and page with a desktop viewport."""
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN", timezone_id="Asia/Shanghai")
    context.set_default_timeout(10_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


@contextmanager
def phone_page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context (own cookies: one device) and page on a 375-px phone."""
    context = browser.new_context(
        viewport=PHONE, locale="zh-CN", timezone_id="Asia/Shanghai", is_mobile=True, has_touch=True
    )
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """`phone_page` as a fixture."""
    with phone_page(browser) as pg:
        yield pg


def no_sideways_scroll(page: Page) -> None:
    """The page is no wider than its window (nothing to scroll sideways)."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.evaluate("window.innerWidth"), (page.url, width)


def login(page: Page, base_url: str, username: str, password: str = PASSWORD) -> None:
    """Log in through the form and land on the desk."""
    page.goto(base_url + "/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(base_url + "/")


def logout(page: Page) -> None:
    page.click("form[action='/logout'] button")
    page.wait_for_url("**/login")


def shot(page: Page, name: str) -> Path:
    """Save a full-page screenshot as artifacts/screenshots/<name>.png and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --------------------------------------------------------------------------- without a browser

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token in a page's forms."""
    found = CSRF_RE.search(html)
    assert found, "no csrf_token field on the page"
    return found.group(1)


@dataclass
class WebUser:
    """A TestClient with its own cookie jar, logged in through the log-in form."""

    client: TestClient
    csrf: str

    def get(self, url: str, **kw: Any) -> Any:
        return self.client.get(url, follow_redirects=False, **kw)

    def post(self, url: str, data: dict[str, str] | None = None, **kw: Any) -> Any:
        """POST a form with the session's CSRF token (unless `data` brings its own)."""
        body = {"csrf_token": self.csrf, **(data or {})}
        return self.client.post(url, data=body, follow_redirects=False, **kw)


def web_user(app: Any, username: str, *, base_url: str = "http://testserver") -> WebUser:
    """Log `username` in through /login and return a client holding the session cookie."""
    client = TestClient(app, base_url=base_url, raise_server_exceptions=False)
    token = csrf_of(client.get("/login").text)
    resp = client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": PASSWORD},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    return WebUser(client, csrf_of(client.get("/").text))
