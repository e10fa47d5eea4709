"""Chromium: bind WeCom, DingTalk or Feishu on 我的账号, log out, log back in with its button.

The platforms are the stand-in of tests/sso_stand_ins.py, a real HTTP server the browser visits
between our pages, as it would visit the platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.browser import DESKTOP, PHONE, LiveWorld, login, logout, shot
from tests.sso_stand_ins import SsoServer, sso_server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

LABEL = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
#: A different account per platform: the live world lives for the whole module.
MEMBER = {"wecom": "sec_s1", "dingtalk": "sec_s2", "feishu": "com_g1"}


@pytest.fixture(scope="module")
def stand_in() -> Iterator[SsoServer]:
    with sso_server() as sso:
        for p in LABEL:
            sso.add_user(p, f"{p}-member", "张支书")
            sso.add_user(p, f"{p}-stranger", "未绑定的人")
        yield sso


@pytest.fixture
def sso(stand_in: SsoServer, monkeypatch: pytest.MonkeyPatch) -> SsoServer:
    for key, value in stand_in.env().items():
        monkeypatch.setenv(key, value)
    return stand_in


def _confirm_on_platform(page: Page, sso: SsoServer, subject: str) -> None:
    page.wait_for_url(sso.base_url + "/**")
    page.click(f"a.confirm[data-subject='{subject}']")


@pytest.mark.parametrize("provider", list(LABEL))
def test_bind_log_out_and_log_in_with_the_platform(
    live_world: LiveWorld, browser: Browser, sso: SsoServer, provider: str
) -> None:
    base, label = live_world.base_url, LABEL[provider]
    context = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    context.set_default_timeout(20_000)  # a busy CI machine, not a timing goal
    page = context.new_page()
    try:
        login(page, base, MEMBER[provider])
        page.click("header a[href='/account']")
        page.wait_for_url(base + "/account")
        bind = page.locator(f"li[data-provider='{provider}'] button")
        assert bind.inner_text() == f"绑定{label}"
        bind.click()
        _confirm_on_platform(page, sso, f"{provider}-member")
        page.wait_for_url(base + "/account")
        row = page.locator(f"li[data-provider='{provider}']")
        assert "已绑定" in row.inner_text()
        assert f"已绑定{label}" in page.locator(".flash").inner_text()
        logout(page)
        page.click(f"text=使用{label}登录")
        _confirm_on_platform(page, sso, f"{provider}-member")
        page.wait_for_url(base + "/")
        assert page.locator("form[action='/logout'] button").is_visible()
        assert page.locator(".user-name").inner_text().startswith(MEMBER[provider])
    finally:
        context.close()


@pytest.mark.parametrize("provider", list(LABEL))
def test_an_unbound_platform_user_sees_how_to_bind(
    live_world: LiveWorld, browser: Browser, sso: SsoServer, provider: str
) -> None:
    base, label = live_world.base_url, LABEL[provider]
    context = browser.new_context(viewport=PHONE, locale="zh-CN")
    context.set_default_timeout(20_000)  # a busy CI machine, not a timing goal
    page = context.new_page()
    try:
        page.goto(base + "/login")
        page.click(f"text=使用{label}登录")
        _confirm_on_platform(page, sso, f"{provider}-stranger")
        page.wait_for_url(base + f"/sso/{provider}/callback**")
        heading = page.locator("h1").inner_text()
        assert heading == f"这个{label}账号还没有绑定"
        steps = page.locator("ol.steps").inner_text()
        assert "用户名和密码" in steps and "我的账号" in steps and f"绑定{label}" in steps
        assert page.locator("form[action='/logout']").count() == 0  # not logged in
        page.click("text=用用户名和密码登录")
        page.wait_for_url(base + "/login")
    finally:
        context.close()


def _fits(page: Page) -> None:
    """Nothing is wider than the viewport, and every platform button is a finger's height."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, overflow
    for box in page.locator(".sso-buttons .btn, .platform-row .btn").all():
        bounds = box.bounding_box()
        assert bounds is not None and bounds["height"] >= 44, bounds


@pytest.mark.parametrize(("width", "viewport"), [("375", PHONE), ("1280", DESKTOP)])
def test_the_pages_fit_a_phone_and_a_desktop(
    live_world: LiveWorld, browser: Browser, sso: SsoServer, width: str, viewport: dict[str, int]
) -> None:
    base = live_world.base_url
    context = browser.new_context(viewport=viewport, locale="zh-CN")
    context.set_default_timeout(20_000)  # a busy CI machine, not a timing goal
    page = context.new_page()
    try:
        page.goto(base + "/login")
        assert page.locator(".sso-buttons .btn").count() == 3
        _fits(page)
        shot(page, f"sso-login-{width}")
        login(page, base, "dual")  # two roles: the longest name in the top bar
        page.goto(base + "/account")
        assert page.locator(".platform-row").count() == 3
        _fits(page)
        shot(page, f"sso-account-{width}")
        logout(page)
        page.click("text=使用钉钉登录")
        _confirm_on_platform(page, sso, "dingtalk-stranger")
        page.wait_for_url(base + "/sso/dingtalk/callback**")
        _fits(page)
        shot(page, f"sso-unbound-{width}")
    finally:
        context.close()
