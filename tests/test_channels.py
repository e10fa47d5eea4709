"""Delivery channels against real stand-in servers (tests/stand_ins.py); no database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from notifications import channels
from notifications.channels import (
    MAX_MARKDOWN,
    Message,
    Result,
    robot_base,
    robot_url,
    send_dingtalk,
    send_feishu,
    send_webhook,
    send_wecom,
    truncate,
)
from notifications.mail import SmtpSettings, send_email
from tests.stand_ins import RobotServer, closed_port, make_cert, read_mail, smtp_server

LINK = "https://dangjian.example.org/runs/42"
SUFFIX = "……（内容过长，已截断）查看全文：" + LINK


def make_msg(**changes: object) -> Message:
    fields: dict[str, object] = {
        "id": "dj-3f2a9c01",
        "event_kind": "request_submitted",
        "title": "第三支部提交了“三会一课”审批申请",
        "text": "第三支部提交了审批申请。\n请在三个工作日内处理。",
        "html": "<p>第三支部提交了审批申请。</p><p>请在<b>三个工作日</b>内处理。</p>",
        "markdown": "**第三支部**提交了审批申请。\n\n请在三个工作日内处理。",
        "link": LINK,
    }
    fields.update(changes)
    return Message(**fields)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def short_http_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "HTTP_TIMEOUT", httpx.Timeout(2.0, connect=1.0))


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_cert(tmp_path_factory.mktemp("cert"))


def smtp(port: int, tls: str = "none", **changes: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "user": None,
        "password": None,
        "sender": "党建流程 <noreply@dangjian.example.org>",
        "tls": tls,
        "timeout": 3.0,
    }
    values.update(changes)
    return SmtpSettings(**values)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# E-mail


def test_email_arrives_with_both_parts_and_chinese_subject(tmp_path: Path) -> None:
    msg = make_msg()
    with smtp_server(tmp_path) as (host, port, maildir):
        result = send_email(msg, "张书记 <zhang@example.org>", smtp(port, host=host))
        assert result.ok, result
        mails = read_mail(maildir)
    assert len(mails) == 1
    mail = mails[0]
    assert mail["Subject"] == msg.title
    assert mail["Message-ID"] == "<dj-3f2a9c01@dangjian-flow>"
    assert mail["X-Dangjian-Message-Id"] == msg.id
    assert mail["X-RcptTo"] == "zhang@example.org"
    assert mail["X-MailFrom"] == "noreply@dangjian.example.org"
    assert str(mail["From"]) == "党建流程 <noreply@dangjian.example.org>"
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().rstrip("\n") == msg.text
    assert html.get_content().rstrip("\n") == msg.html
    assert plain.get_content_charset() == "utf-8"


def test_email_subject_is_encoded_on_the_wire(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as (_host, port, maildir):
        assert send_email(make_msg(), "a@example.org", smtp(port)).ok
        raw = next((maildir / "new").iterdir()).read_bytes()
    subject_line = next(line for line in raw.splitlines() if line.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject_line.lower()  # RFC 2047, not raw UTF-8 bytes
    raw.decode("ascii")  # the whole message is 7-bit


def test_email_starttls_with_trusted_certificate(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    with smtp_server(tmp_path, tls="starttls", cert=cert) as (_h, port, maildir):
        result = send_email(
            make_msg(), "a@example.org", smtp(port, "starttls", ca_file=str(cert[0]))
        )
        assert result.ok, result
        assert len(read_mail(maildir)) == 1


def test_email_ssl_with_trusted_certificate(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    with smtp_server(tmp_path, tls="ssl", cert=cert) as (_h, port, maildir):
        result = send_email(make_msg(), "a@example.org", smtp(port, "ssl", ca_file=str(cert[0])))
        assert result.ok, result
        assert len(read_mail(maildir)) == 1


def test_email_starttls_against_server_without_starttls(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as (_h, port, maildir):
        result = send_email(make_msg(), "a@example.org", smtp(port, "starttls"))
        assert read_mail(maildir) == []
    assert not result.ok and result.permanent
    assert "STARTTLS" in result.detail


def test_email_ssl_against_plain_server(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as (_h, port, _m):
        result = send_email(make_msg(), "a@example.org", smtp(port, "ssl"))
    assert not result.ok and result.permanent
    assert "TLS" in result.detail


def test_email_untrusted_certificate_is_permanent(tmp_path: Path, cert: tuple[Path, Path]) -> None:
    with smtp_server(tmp_path, tls="starttls", cert=cert) as (_h, port, maildir):
        result = send_email(make_msg(), "a@example.org", smtp(port, "starttls"))
        assert read_mail(maildir) == []
    assert not result.ok and result.permanent
    assert "certificate" in result.detail


def test_email_plain_against_server_requiring_starttls(
    tmp_path: Path, cert: tuple[Path, Path]
) -> None:
    with smtp_server(tmp_path, tls="starttls", cert=cert) as (_h, port, _m):
        result = send_email(make_msg(), "a@example.org", smtp(port))
    assert not result.ok and result.permanent
    assert "530" in result.detail


def test_email_login_without_auth_support_is_permanent(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as (_h, port, _m):
        result = send_email(make_msg(), "a@example.org", smtp(port, user="u", password="p"))
    assert not result.ok and result.permanent
    assert "AUTH" in result.detail


def test_email_missing_ca_file_is_permanent() -> None:
    settings = smtp(closed_port(), "starttls", ca_file="/nonexistent/ca.pem")
    result = send_email(make_msg(), "a@example.org", settings)
    assert not result.ok and result.permanent and "CA file" in result.detail


def test_email_server_down_is_transient() -> None:
    result = send_email(make_msg(), "a@example.org", smtp(closed_port()))
    assert not result.ok and not result.permanent
    assert "refused" in result.detail.lower()


def test_email_server_that_never_greets_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog) but never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        started = time.monotonic()
        result = send_email(make_msg(), "a@example.org", smtp(port, timeout=0.3))
    assert time.monotonic() - started < 2
    assert not result.ok and not result.permanent
    assert "timed out" in result.detail


def test_email_rejected_recipient_is_permanent(tmp_path: Path) -> None:
    with smtp_server(tmp_path, handler="tests.stand_ins.RejectingHandler") as (_h, port, _m):
        result = send_email(make_msg(), "nobody@example.org", smtp(port))
    assert not result.ok and result.permanent
    assert "550" in result.detail and "RCPT" in result.detail


def test_email_greylisted_recipient_is_transient(tmp_path: Path) -> None:
    args = ["451", "4.7.1", "Greylisted,", "try", "again", "later"]
    with smtp_server(tmp_path, handler="tests.stand_ins.RejectingHandler", handler_args=args) as (
        _h,
        port,
        _m,
    ):
        result = send_email(make_msg(), "later@example.org", smtp(port))
    assert not result.ok and not result.permanent
    assert "451" in result.detail


@pytest.mark.parametrize("to", ["", "not-an-address", "a@example.org\nBcc: x@example.org"])
def test_email_bad_recipient_is_permanent_without_network(to: str) -> None:
    result = send_email(make_msg(), to, smtp(closed_port()))
    assert not result.ok and result.permanent


def test_smtp_settings_from_env() -> None:
    assert SmtpSettings.from_env({}) is None
    assert SmtpSettings.from_env({"SMTP_HOST": "  "}) is None
    plain = SmtpSettings.from_env({"SMTP_HOST": "mail.example.org"})
    assert plain == SmtpSettings(
        "mail.example.org", 25, None, None, "dangjian-flow <noreply@localhost>", "none"
    )
    full = SmtpSettings.from_env(
        {
            "SMTP_HOST": "mail.example.org",
            "SMTP_TLS": "STARTTLS",
            "SMTP_USER": "bot",
            "SMTP_PASSWORD": "s3cret",
            "SMTP_FROM": "党建 <dj@example.org>",
        }
    )
    assert full is not None
    assert (full.port, full.tls, full.user, full.password) == (587, "starttls", "bot", "s3cret")
    assert "s3cret" not in repr(full)
    ssl_env = {"SMTP_HOST": "h", "SMTP_TLS": "ssl"}
    assert SmtpSettings.from_env(ssl_env).port == 465  # type: ignore[union-attr]
    assert SmtpSettings.from_env({**ssl_env, "SMTP_PORT": "2465"}).port == 2465  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="SMTP_TLS must be one of none, starttls, ssl; got 'tls'"):
        SmtpSettings.from_env({"SMTP_HOST": "h", "SMTP_TLS": "tls"})
    with pytest.raises(ValueError, match="SMTP_PORT"):
        SmtpSettings.from_env({"SMTP_HOST": "h", "SMTP_PORT": "twenty-five"})


# ---------------------------------------------------------------------------------------------
# truncate


def test_truncate_leaves_short_text_alone() -> None:
    assert truncate("短消息", 9, LINK) == "短消息"
    assert truncate("", 0, None) == ""


@pytest.mark.parametrize("limit", [*range(120, 400, 7), 4096])
def test_truncate_cuts_on_character_boundary_within_limit(limit: int) -> None:
    text = "党员大会记录。" * 300 + "tail"
    out = truncate(text, limit, LINK)
    assert len(out.encode("utf-8")) <= limit
    assert out.endswith(SUFFIX)
    assert text.startswith(out.removesuffix("\n\n" + SUFFIX))


def test_truncate_without_link_and_with_huge_link() -> None:
    text = "x" * 500
    assert truncate(text, 100, None).endswith("……（内容过长，已截断）")
    huge = "https://example.org/" + "a" * 300
    out = truncate(text, 100, huge)
    assert len(out.encode()) <= 100 and out.endswith("……（内容过长，已截断）")
    assert len(truncate(text, 5, LINK).encode()) <= 5


def test_truncate_prefers_a_line_break_near_the_end() -> None:
    text = "\n".join(f"- 第{i}项：已完成" for i in range(400))
    out = truncate(text, 1000, LINK)
    body = out.removesuffix("\n\n" + SUFFIX)
    assert body.endswith("已完成")  # no half line before the note


# ---------------------------------------------------------------------------------------------
# robot_url / robot_base


def test_robot_url_composition_and_env_bases() -> None:
    assert robot_base("wecom", {}) == "https://qyapi.weixin.qq.com"
    assert (
        robot_url("wecom", "k-1", {}) == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k-1"
    )
    assert (
        robot_url("dingtalk", "tok", {}) == "https://oapi.dingtalk.com/robot/send?access_token=tok"
    )
    assert robot_url("feishu", "hook", {}) == "https://open.feishu.cn/open-apis/bot/v2/hook/hook"
    env = {
        "DANGJIAN_WECOM_BASE": "http://wecom.internal:8080/",
        "DANGJIAN_DINGTALK_BASE": "http://ding.internal",
        "DANGJIAN_FEISHU_BASE": "https://feishu.internal/proxy",
    }
    assert (
        robot_url("wecom", " k-1 ", env)
        == "http://wecom.internal:8080/cgi-bin/webhook/send?key=k-1"
    )
    assert robot_url("dingtalk", "tok", env) == "http://ding.internal/robot/send?access_token=tok"
    assert robot_url("feishu", "h", env) == "https://feishu.internal/proxy/open-apis/bot/v2/hook/h"
    full = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abc"
    assert robot_url("wecom", full, env) == full  # a full URL wins over the base
    assert robot_url("feishu", "a/b?c", {}).endswith("/hook/a%2Fb%3Fc")
    with pytest.raises(ValueError, match="unknown robot kind"):
        robot_base("slack", {})
    with pytest.raises(ValueError, match="empty"):
        robot_url("wecom", "  ", {})


# ---------------------------------------------------------------------------------------------
# Webhook


@pytest.fixture
def hook() -> Iterator[RobotServer]:
    with RobotServer("webhook", secret="hook-secret") as server:
        yield server


def test_webhook_signed_and_verifiable(hook: RobotServer) -> None:
    msg = make_msg()
    result = send_webhook(msg, hook.url, "hook-secret")
    assert result.ok, result
    (rec,) = hook.received
    assert rec.status == 200
    ts = rec.headers["x-dangjian-timestamp"]
    expected = hmac.new(b"hook-secret", ts.encode() + b"." + rec.body, hashlib.sha256).hexdigest()
    assert rec.headers["x-dangjian-signature"] == "sha256=" + expected
    assert rec.headers["x-dangjian-message-id"] == msg.id
    assert rec.json["id"] == msg.id and rec.json["title"] == msg.title
    assert set(rec.json) == {"id", "event_kind", "title", "text", "markdown", "link", "sent_at"}
    assert rec.json["sent_at"].endswith("Z")


def test_webhook_without_secret_has_no_signature() -> None:
    with RobotServer("webhook") as server:
        assert send_webhook(make_msg(), server.url, None, now=1_700_000_000).ok
        (rec,) = server.received
    assert "x-dangjian-signature" not in rec.headers
    assert rec.headers["x-dangjian-timestamp"] == "1700000000"
    assert rec.json["sent_at"] == "2023-11-14T22:13:20Z"


def test_webhook_wrong_secret_is_permanent(hook: RobotServer) -> None:
    result = send_webhook(make_msg(), hook.url, "other-secret")
    assert not result.ok and result.permanent and "401" in result.detail


def test_webhook_500_is_transient(hook: RobotServer) -> None:
    hook.fail_next(status=500)
    result = send_webhook(make_msg(), hook.url, "hook-secret")
    assert not result.ok and not result.permanent and "500" in result.detail
    assert send_webhook(make_msg(), hook.url, "hook-secret").ok  # only the next one failed


def test_webhook_429_carries_retry_after(hook: RobotServer) -> None:
    hook.throttle_next()
    result = send_webhook(make_msg(), hook.url, "hook-secret")
    assert not result.ok and not result.permanent
    assert result.retry_after == 30.0


def test_webhook_503_with_http_date_retry_after(hook: RobotServer) -> None:
    when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    hook.fail_next(status=503, headers={"Retry-After": when})
    result = send_webhook(make_msg(), hook.url, "hook-secret")
    assert not result.ok and not result.permanent
    assert result.retry_after is not None and 100 <= result.retry_after <= 121


def test_webhook_404_is_permanent(hook: RobotServer) -> None:
    hook.fail_next(status=404, payload={"error": "no such hook"})
    result = send_webhook(make_msg(), hook.url, "hook-secret")
    assert not result.ok and result.permanent and "404" in result.detail


def test_webhook_timeout_is_transient(hook: RobotServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "HTTP_TIMEOUT", httpx.Timeout(0.3, connect=1.0))
    hook.sleep_next(seconds=3)
    started = time.monotonic()
    result = send_webhook(make_msg(), hook.url, "hook-secret")
    assert time.monotonic() - started < 2
    assert not result.ok and not result.permanent and "请求超时" in result.detail


def test_webhook_server_down_and_bad_url() -> None:
    down = send_webhook(make_msg(), f"http://127.0.0.1:{closed_port()}/hook", None)
    assert not down.ok and not down.permanent and "ConnectError" in down.detail
    bad = send_webhook(make_msg(), "ftp://example.org/hook", None)
    assert not bad.ok and bad.permanent


def test_stand_in_survives_client_that_disappears(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "HTTP_TIMEOUT", httpx.Timeout(0.2, connect=1.0))
    release = threading.Event()
    seen: list[str] = []

    def hold_first(rec: object) -> None:
        seen.append("request")
        if len(seen) == 1:
            release.wait(2)  # answer only after the client has given up

    with RobotServer("webhook", on_request=hold_first) as server:
        gone = send_webhook(make_msg(), server.url, None)
        release.set()
        assert not gone.ok and not gone.permanent
        deadline = time.monotonic() + 2
        while server.received[0].status == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert send_webhook(make_msg(), server.url, None).ok  # still serving
        assert [r.status for r in server.received][1] == 200


# ---------------------------------------------------------------------------------------------
# WeCom


@pytest.fixture
def wecom() -> Iterator[RobotServer]:
    with RobotServer("wecom", key="wk-1") as server:
        yield server


def test_wecom_success_by_key_and_env_base(wecom: RobotServer) -> None:
    msg = make_msg()
    result = send_wecom(msg, "wk-1", env=wecom.env)
    assert result.ok, result
    (rec,) = wecom.received
    assert rec.path == "/cgi-bin/webhook/send" and rec.query == {"key": "wk-1"}
    content = rec.json["markdown"]["content"]
    assert rec.json["msgtype"] == "markdown"
    assert content.startswith(f"### {msg.title}\n")
    assert msg.markdown in content
    assert content.rstrip().endswith(f"消息编号 {msg.id}</font>")


def test_wecom_full_url_and_existing_heading(wecom: RobotServer) -> None:
    msg = make_msg(markdown="## 第三支部提交了“三会一课”审批申请\n正文")
    assert send_wecom(msg, wecom.url).ok
    assert wecom.received[0].json["markdown"]["content"].startswith("## 第三支部")


def test_wecom_bad_key_is_permanent(wecom: RobotServer) -> None:
    result = send_wecom(make_msg(), "wrong-key", env=wecom.env)
    assert not result.ok and result.permanent
    assert result.detail == "企业微信返回错误码 93000（key 无效，机器人可能已被移除）"


def test_wecom_throttle(wecom: RobotServer) -> None:
    wecom.throttle_next()
    result = send_wecom(make_msg(), wecom.url)
    assert result == Result(
        ok=False,
        permanent=False,
        retry_after=60.0,
        robot_pause=60.0,
        detail="企业微信返回错误码 45009（发送过于频繁）",
    )


def test_wecom_real_per_minute_limit() -> None:
    with RobotServer("wecom", key="k", limit=(20, 60.0)) as server:
        results = [send_wecom(make_msg(id=f"dj-{i}"), server.url) for i in range(21)]
    assert all(r.ok for r in results[:20])
    assert results[20].robot_pause == 60.0 and "45009" in results[20].detail


def test_wecom_long_markdown_is_truncated(wecom: RobotServer) -> None:
    msg = make_msg(markdown="支部活动记录：" + "学习贯彻会议精神。" * 400)  # ~10.8 KB
    assert len(msg.markdown.encode()) > 10_000
    result = send_wecom(msg, wecom.url)
    assert result.ok, result  # the stand-in refuses content over 4096 bytes (40058)
    content = wecom.received[0].json["markdown"]["content"]
    assert len(content.encode()) <= MAX_MARKDOWN["wecom"] == 4096
    body, footer = content.rsplit("\n\n", 1)
    assert body.endswith(SUFFIX) and footer.endswith(f"消息编号 {msg.id}</font>")


@pytest.mark.parametrize(
    ("status", "payload", "permanent"),
    [
        (200, {"errcode": -1, "errmsg": "system busy"}, False),
        (200, {"errcode": 40008, "errmsg": "invalid message type"}, True),
        (200, {"errcode": 12345, "errmsg": "something new"}, True),
        (200, "<html>portal</html>", False),
        (502, "<html>bad gateway</html>", False),
        (403, "forbidden", True),
    ],
)
def test_wecom_other_answers(
    wecom: RobotServer, status: int, payload: object, permanent: bool
) -> None:
    wecom.respond_next(status=status, payload=payload)
    result = send_wecom(make_msg(), wecom.url)
    assert not result.ok and result.permanent is permanent and result.robot_pause is None
    assert result.detail


# ---------------------------------------------------------------------------------------------
# DingTalk

DING_SECRET = "SEC0123456789abcdef"


@pytest.fixture
def ding() -> Iterator[RobotServer]:
    with RobotServer("dingtalk", key="dt-1", secret=DING_SECRET) as server:
        yield server


def test_dingtalk_signed_success(ding: RobotServer) -> None:
    msg = make_msg()
    result = send_dingtalk(msg, "dt-1", DING_SECRET, env=ding.env)
    assert result.ok, result
    (rec,) = ding.received
    assert set(rec.query) == {"access_token", "timestamp", "sign"}
    assert abs(int(rec.query["timestamp"]) - time.time() * 1000) < 5000
    assert rec.json["msgtype"] == "markdown"
    assert rec.json["markdown"]["title"] == msg.title
    assert rec.json["markdown"]["text"].endswith(f"###### 消息编号 {msg.id}")


def test_dingtalk_sign_is_url_encoded(ding: RobotServer) -> None:
    # Pick a timestamp whose signature has '+', '/' or '=' to catch double or missing encoding.
    now_ms = int(time.time() * 1000)
    while not any(c in channels.dingtalk_sign(DING_SECRET, now_ms) for c in "+/"):
        now_ms += 1
    result = send_dingtalk(make_msg(), ding.url, DING_SECRET, now_ms=now_ms)
    assert result.ok, result
    sign = channels.dingtalk_sign(DING_SECRET, now_ms)
    digest = hmac.new(DING_SECRET.encode(), f"{now_ms}\n{DING_SECRET}".encode(), hashlib.sha256)
    assert sign == base64.b64encode(digest.digest()).decode()
    assert ding.received[0].query["sign"] == sign


def test_dingtalk_bad_secret_is_permanent(ding: RobotServer) -> None:
    result = send_dingtalk(make_msg(), ding.url, "SECwrong")
    assert not result.ok and result.permanent
    assert result.detail == "钉钉返回错误码 310000（签名不匹配）"


def test_dingtalk_missing_secret_and_bad_token_are_permanent(ding: RobotServer) -> None:
    unsigned = send_dingtalk(make_msg(), ding.url, None)
    assert unsigned.permanent and "310000" in unsigned.detail
    bad_token = send_dingtalk(make_msg(), "nope", DING_SECRET, env=ding.env)
    assert bad_token.permanent and "300005（access_token 不存在）" in bad_token.detail


def test_dingtalk_stale_timestamp_is_transient(ding: RobotServer) -> None:
    two_hours_ago = int((time.time() - 7200) * 1000)
    result = send_dingtalk(make_msg(), ding.url, DING_SECRET, now_ms=two_hours_ago)
    assert not result.ok and not result.permanent
    assert result.detail == "钉钉返回错误码 310000（时间戳无效，请检查本机时钟）"
    assert result.retry_after == 300.0 and result.robot_pause is None


def test_dingtalk_throttle(ding: RobotServer) -> None:
    ding.throttle_next()
    result = send_dingtalk(make_msg(), ding.url, DING_SECRET)
    assert not result.ok and not result.permanent
    assert (result.retry_after, result.robot_pause) == (600.0, 600.0)
    assert "错误码 130101" in result.detail


def test_dingtalk_limit_blocks_for_ten_minutes() -> None:
    now = [1_000_000.0]
    with RobotServer(
        "dingtalk", key="t", limit=(20, 60.0), penalty=600.0, clock=lambda: now[0]
    ) as server:
        assert all(send_dingtalk(make_msg(), server.url, None).ok for _ in range(20))
        assert send_dingtalk(make_msg(), server.url, None).robot_pause == 600.0
        now[0] += 120  # the minute is over, but the penalty is not
        assert "130101" in send_dingtalk(make_msg(), server.url, None).detail
        now[0] += 600
        assert send_dingtalk(make_msg(), server.url, None).ok


def test_dingtalk_keyword_security_is_permanent() -> None:
    with RobotServer("dingtalk", key="t", keywords=["告警"]) as server:
        result = send_dingtalk(make_msg(), server.url, None)
    assert result.permanent and "310000（消息未包含机器人设置的关键词）" in result.detail


def test_dingtalk_10kb_fits_and_30kb_is_truncated(ding: RobotServer) -> None:
    ten = make_msg(markdown="学习记录。" * 680)
    assert 10_000 < len(ten.markdown.encode()) < MAX_MARKDOWN["dingtalk"]
    assert send_dingtalk(ten, ding.url, DING_SECRET).ok
    assert ten.markdown in ding.received[0].json["markdown"]["text"]

    long = make_msg(markdown="学习记录。" * 2000)  # 30 KB
    assert send_dingtalk(long, ding.url, DING_SECRET).ok  # the stand-in refuses > 20000 bytes
    rec = ding.received[1]
    text = rec.json["markdown"]["text"]
    assert len(rec.body) <= 20000 and len(text.encode()) <= MAX_MARKDOWN["dingtalk"]
    assert text.rsplit("\n\n", 1)[0].endswith(SUFFIX)


def test_dingtalk_body_stays_within_20000_bytes_despite_json_escapes(ding: RobotServer) -> None:
    msg = make_msg(markdown='"\\\n' * 6000)  # every character doubles when escaped
    assert send_dingtalk(msg, ding.url, DING_SECRET).ok
    assert len(ding.received[0].body) <= 20000


def test_dingtalk_system_busy_is_transient(ding: RobotServer) -> None:
    ding.respond_next(payload={"errcode": -1, "errmsg": "系统繁忙"})
    result = send_dingtalk(make_msg(), ding.url, DING_SECRET)
    assert not result.ok and not result.permanent and result.robot_pause is None


# ---------------------------------------------------------------------------------------------
# Feishu

FEISHU_SECRET = "fs-secret-42"


@pytest.fixture
def feishu() -> Iterator[RobotServer]:
    with RobotServer("feishu", key="hook-1", secret=FEISHU_SECRET) as server:
        yield server


def test_feishu_signed_post_success(feishu: RobotServer) -> None:
    msg = make_msg()
    result = send_feishu(msg, "hook-1", FEISHU_SECRET, env=feishu.env)
    assert result.ok, result
    (rec,) = feishu.received
    assert rec.path == "/open-apis/bot/v2/hook/hook-1"
    body = rec.json
    assert body["msg_type"] == "post" and abs(int(body["timestamp"]) - time.time()) < 5
    key = f"{body['timestamp']}\n{FEISHU_SECRET}".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    post = body["content"]["post"]["zh_cn"]
    assert post["title"] == msg.title
    texts = [el.get("text") for line in post["content"] for el in line]
    assert texts[:2] == msg.text.split("\n")
    assert {"tag": "a", "text": "查看详情", "href": LINK} in [
        el for line in post["content"] for el in line
    ]
    assert texts[-1] == f"消息编号 {msg.id}"


def test_feishu_bad_secret_is_permanent(feishu: RobotServer) -> None:
    result = send_feishu(make_msg(), feishu.url, "wrong")
    assert not result.ok and result.permanent and "错误码 19021" in result.detail


def test_feishu_stale_timestamp_is_permanent(feishu: RobotServer) -> None:
    # Feishu answers 19021 for a bad signature and for a stale timestamp alike: the client
    # cannot tell a clock problem from a wrong secret, so it treats both as permanent.
    result = send_feishu(make_msg(), feishu.url, FEISHU_SECRET, now_s=int(time.time()) - 7200)
    assert not result.ok and result.permanent and "19021" in result.detail


@pytest.mark.parametrize("code", [11232, 9499])
def test_feishu_throttle(feishu: RobotServer, code: int) -> None:
    feishu.throttle_next(code=code)
    result = send_feishu(make_msg(), feishu.url, FEISHU_SECRET)
    assert not result.ok and not result.permanent
    assert (result.retry_after, result.robot_pause) == (60.0, 60.0)
    assert f"飞书返回错误码 {code}" in result.detail


def test_feishu_http_429_is_throttle(feishu: RobotServer) -> None:
    feishu.respond_next(status=429, payload="Too Many Requests", headers={"Retry-After": "7"})
    result = send_feishu(make_msg(), feishu.url, FEISHU_SECRET)
    assert not result.ok and not result.permanent and result.retry_after == 7.0


def test_feishu_bad_request_is_permanent(feishu: RobotServer) -> None:
    feishu.respond_next(status=400, payload={"code": 9499, "data": {}, "msg": "Bad Request"})
    result = send_feishu(make_msg(), feishu.url, FEISHU_SECRET)
    assert not result.ok and result.permanent and result.robot_pause is None


def test_feishu_burst_limit() -> None:
    now = [1_000.0]
    with RobotServer(
        "feishu", key="h", limit=(100, 60.0), burst=(5, 1.0), clock=lambda: now[0]
    ) as server:
        assert all(send_feishu(make_msg(), server.url, None).ok for _ in range(5))
        assert send_feishu(make_msg(), server.url, None).robot_pause == 60.0
        now[0] += 1.5
        assert send_feishu(make_msg(), server.url, None).ok


def test_feishu_wrong_hook_and_keyword_are_permanent() -> None:
    with RobotServer("feishu", key="h", keywords=["告警"]) as server:
        wrong = send_feishu(make_msg(), "other", None, env=server.env)
        keyword = send_feishu(make_msg(), server.url, None)
    assert wrong.permanent and "19001" in wrong.detail
    assert keyword.permanent and "19024（消息未包含机器人设置的关键词）" in keyword.detail


def test_feishu_legacy_status_code_answer(feishu: RobotServer) -> None:
    feishu.respond_next(payload={"Extra": None, "StatusCode": 0, "StatusMessage": "success"})
    assert send_feishu(make_msg(), feishu.url, FEISHU_SECRET).ok
    feishu.respond_next(payload={"StatusCode": 19021, "StatusMessage": "sign match fail"})
    assert send_feishu(make_msg(), feishu.url, FEISHU_SECRET).permanent


def test_feishu_long_text_keeps_body_within_20kb(feishu: RobotServer) -> None:
    msg = make_msg(text="\n".join(f"第{i}条：按期召开组织生活会。" for i in range(1500)))  # ~50 KB
    result = send_feishu(msg, feishu.url, FEISHU_SECRET)
    assert result.ok, result  # the stand-in refuses bodies over 20 KB
    rec = feishu.received[0]
    assert len(rec.body) <= 20000
    lines = rec.json["content"]["post"]["zh_cn"]["content"]
    assert lines[-3][0]["text"] == SUFFIX  # then the link and the id


def test_feishu_unexpected_answers(feishu: RobotServer) -> None:
    feishu.respond_next(status=200, payload="<html>gateway</html>")
    assert not send_feishu(make_msg(), feishu.url, FEISHU_SECRET).permanent
    feishu.respond_next(status=500, payload={"code": 19021, "msg": "?"})
    assert not send_feishu(make_msg(), feishu.url, FEISHU_SECRET).permanent
    feishu.respond_next(status=400, payload="bad")
    assert send_feishu(make_msg(), feishu.url, FEISHU_SECRET).permanent


def test_results_are_json_friendly() -> None:
    # The relay stores Result.detail; it must be plain text.
    result = send_wecom(make_msg(), f"http://127.0.0.1:{closed_port()}/x")
    json.dumps(result.__dict__)
    assert not result.ok and not result.permanent
