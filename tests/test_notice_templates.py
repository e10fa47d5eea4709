"""Notice wording: built-in templates for every kind, organisers' sandboxed overrides."""

from __future__ import annotations

import pytest

from notifications.render import EVENT_KINDS, SAMPLE, render, validate_override
from states.errors import InvalidInput
from tests.api_world import World

GOOD = "{% block title %}请注意：{{ org_name }}{% endblock %}{% block body %}{{ stage }} 还有 {{ days_left }} 天{% endblock %}"


@pytest.mark.parametrize("kind", EVENT_KINDS)
def test_every_kind_renders_in_every_variant(kind: str) -> None:
    r = render(kind, SAMPLE)
    assert r.title and r.text and r.html and r.markdown
    assert any("\u4e00" <= ch <= "\u9fff" for ch in r.title)
    assert r.link and r.link.startswith("http")
    assert r.link in r.text and r.link in r.html


def test_missing_optional_fields_do_not_break_a_notice() -> None:
    r = render("request_approved", {"org_name": "某支部", "to_stage": "公开承诺", "run_id": 3})
    assert r.title == "【已通过】某支部进入「公开承诺」"
    assert "审批意见" not in r.text


def test_html_variant_escapes_what_people_typed() -> None:
    r = render("request_returned", {**SAMPLE, "reason": "<script>alert(1)</script>"})
    assert "<script>" not in r.html and "&lt;script&gt;" in r.html
    assert "<script>" in r.text  # plain text stays as typed


def test_override_renders_and_falls_back_when_broken() -> None:
    r = render("reminder", SAMPLE, override=GOOD)
    assert r.title == "请注意：内科第一党支部" and "还有 3 天" in r.text
    broken = "{% block title %}{{ nope }}{% endblock %}{% block body %}x{% endblock %}"
    assert render("reminder", SAMPLE, override=broken).title.startswith("【提醒】")


@pytest.mark.parametrize(
    "source,words",
    [
        (
            "{% block title %}{{ no_such_field }}{% endblock %}{% block body %}x{% endblock %}",
            "no_such_field",
        ),
        ("{% block title %}x{% endblock %}", "block body"),
        (
            "{% block title %}{{ 'x' * 100000000 }}{% endblock %}{% block body %}x{% endblock %}",
            "过长",
        ),
        ("{% block title %}{{ 9 ** 999999 }}{% endblock %}{% block body %}x{% endblock %}", "乘方"),
        (
            "{% block title %}{{ org_name.__class__ }}{% endblock %}{% block body %}x{% endblock %}",
            "不安全",
        ),
        (
            "{% block title %}{% for i in range(10**6) %}x{% endfor %}{% endblock %}{% block body %}x{% endblock %}",
            "乘方",
        ),
        (
            "{% block title %}{% for i in range(100000) %}x{% endfor %}{% endblock %}{% block body %}x{% endblock %}",
            "range",
        ),
        (
            "{% block title %}x{% endblock %}{% block body %}{% for a in stages %}{% for b in stages %}"
            "{% for c in stages %}x{% endfor %}{% endfor %}{% endfor %}{% endblock %}",
            "嵌套",
        ),
        (
            "{% block title %}{{ stages.append(1) }}{% endblock %}{% block body %}x{% endblock %}",
            "不安全",
        ),
        ("{% block title %}{% endblock %", "第 1 行"),
    ],
)
def test_unsafe_or_wrong_overrides_are_refused_in_words(source: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        validate_override("reminder", source)
    assert words in err.value.message, err.value.message


def test_settings_api_masks_secrets_and_validates_overrides(world: World) -> None:
    w = world
    h1 = w.orgs["H1"].id
    url = f"/api/v1/orgs/{h1}/channels"
    body = {
        "channels": [
            {
                "kind": "dingtalk",
                "url": "https://robot.example/robot/send?access_token=abcdef1234567890",
                "secret": "SECabcdefghijklmnop",
            },
            {"kind": "wecom", "url": "0123456789abcdef-key", "quiet_hours": "22:00-07:30"},
        ]
    }
    r = w.client.put(url, json=body, headers=w.as_("org_h1"))
    assert r.status_code == 200, r.text
    chans = r.json()
    assert "abcdef1234567890" not in r.text and "SECabcdefghijklmnop" not in r.text
    assert chans[0]["has_secret"] and chans[0]["secret"].endswith("mnop")
    assert chans[0]["url"].endswith("7890") and "access_token=" in chans[0]["url"]
    # Keep the stored secret by sending the id without url/secret; drop the second channel.
    keep = {"channels": [{"id": chans[0]["id"], "kind": "dingtalk", "enabled": False}]}
    r = w.client.put(url, json=keep, headers=w.as_("org_h1"))
    assert r.status_code == 200 and len(r.json()) == 1
    assert r.json()[0]["has_secret"] and r.json()[0]["enabled"] is False
    bad = {"channels": [{"kind": "wecom", "url": "k" * 20, "quiet_hours": "25:00-07:00"}]}
    r = w.client.put(url, json=bad, headers=w.as_("org_h1"))
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "channels.0.quiet_hours"
    # Committees and secretaries do not manage channels; a sibling organiser cannot see them.
    assert w.get("com_h1", url).status_code == 403
    assert w.get("admin_h2", url).status_code == 404

    turl = f"/api/v1/orgs/{h1}/notice-templates/reminder"
    r = w.client.put(turl, json={"source": GOOD}, headers=w.as_("org_h1"))
    assert r.status_code == 200, r.text
    assert r.json()["preview_title"] == "请注意：内科第一党支部"
    r = w.client.put(
        turl,
        json={
            "source": "{% block title %}{{ x.__class__ }}{% endblock %}{% block body %}{% endblock %}"
        },
        headers=w.as_("org_h1"),
    )
    assert r.status_code == 422
    assert w.get("org_h1", turl).json()["source"] == GOOD
    assert w.get("org_h1", f"/api/v1/orgs/{h1}/notice-templates/nope").status_code == 404


def test_email_opt_out(world: World) -> None:
    w = world
    assert w.get("sec_s1", "/api/v1/me/preferences").json() == {"email": True, "address": None}
    r = w.client.put(
        "/api/v1/me/preferences",
        json={"email": False, "address": "shuji@example.org"},
        headers=w.as_("sec_s1"),
    )
    assert r.status_code == 200
    prefs = w.get("sec_s1", "/api/v1/me/preferences").json()
    assert prefs == {"email": False, "address": "shuji@example.org"}
    r = w.client.put(
        "/api/v1/me/preferences",
        json={"email": True, "address": "not-an-address"},
        headers=w.as_("sec_s1"),
    )
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "address"


def test_markdown_variant_makes_peoples_words_inert_and_keeps_our_link() -> None:
    evil = {
        **SAMPLE,
        "campaign": "[点此](http://evil)",
        "stages": [{"name": "a|b ![x](http://evil/p.png)", "runs": 1}],
        "notice_list": ["<font color=red>张三</font>", "*加粗*_斜体_`代码`"],
    }
    r = render("bulletin", evil)
    for live in ("[点此]", "](http", "![", "<font", "*加粗*", "_斜体_", "`代码`", "a|b"):
        assert live not in r.markdown, (live, r.markdown)
    assert "| 阶段 | 单位数 |" in r.markdown  # the template's own table stays a table
    assert "［点此］（http://evil）" in r.markdown and "＜font color=red＞" in r.markdown
    assert r.markdown_title == "【简报】［点此］（http://evil）：第 48 周进展"
    assert r.title == "【简报】[点此](http://evil)：第 48 周进展"
    # Text and HTML are as before: typed as is, and HTML-escaped.
    assert "<font color=red>张三</font>" in r.text and "&lt;font" in r.html
    plain = render("request_returned", {**SAMPLE, "reason": "见 [链接](http://evil) 内容"})
    assert "[链接](http://evil)" in plain.text and "[链接](http" not in plain.markdown
    assert plain.markdown.endswith(f"[查看详情]({SAMPLE['link']})")


def test_an_override_failing_at_send_time_says_why() -> None:
    from notifications.render import render_notice

    source = (
        "{% block title %}t{% endblock %}{% block body %}\n\n{{ 10 // days_left }}{% endblock %}"
    )
    ok, error = render_notice("reminder", SAMPLE, override=source)
    assert ok.title == "t" and error is None
    fallback, error = render_notice("reminder", {**SAMPLE, "days_left": 0}, override=source)
    assert fallback.title.startswith("【提醒】") and error
    assert "第 3 行" in error and "除数为零" in error


def test_macro_errors_name_the_line_inside_the_macro() -> None:
    source = (
        "{% block title %}t{% endblock %}{% block body %}{% macro f(n) %}\n"
        "{{ n // 0 }}{% endmacro %}\n{{ f(1) }}{% endblock %}"
    )
    with pytest.raises(InvalidInput) as err:
        validate_override("reminder", source)
    assert err.value.details == [{"field": "source", "line": 2}]
