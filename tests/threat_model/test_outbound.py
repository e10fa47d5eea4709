"""Threat model, finding 1 and the channel 500s of finding 7: outbound requests (SSRF).

An organiser saves a robot or webhook URL and the server POSTs to it, retrying, and used to
store the first 200 bytes of the answer where the organiser reads them back. So a URL at
127.0.0.1, 169.254.169.254 or the database port turned the relay into a reader of this machine
and its network. Now every outbound request goes through states/outbound.py, which refuses
such addresses after resolving the name and connects to the very address it checked; settings
refuse them when saved (422); delivery records carry our own words only.

Every packet here goes to a loopback listener. Link-local and private URLs are only saved, to
see them refused; the policy itself is tested as a function, without sending anything.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import Session, col, select

from notifications import channels
from notifications.relay import drain
from states import outbound, runs
from states.db import unit_of_work
from states.models import Delivery, OrgChannel, OutboxMessage
from tests.api_world import MEETING, World
from tests.stand_ins import RobotServer

SECRET = "s3cr3t-db-password-4f1d"


@pytest.fixture
def default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped default: no allow-list (tests/conftest.py allows 127.0.0.1 otherwise)."""
    monkeypatch.delenv(outbound.ALLOW_ENV, raising=False)


@pytest.fixture
def hook() -> Iterator[RobotServer]:
    with RobotServer("webhook") as server:
        yield server


def _put(w: World, channels_: list[dict[str, Any]], who: str = "org_h1") -> Any:
    url = f"/api/v1/orgs/{w.orgs['G1'].id}/channels"
    return w.client.put(url, json={"channels": channels_}, headers=w.as_(who))


def _stored(w: World) -> list[tuple[str, str]]:
    with Session(w.engine) as s:
        rows = s.execute(select(OrgChannel).order_by(col(OrgChannel.id))).scalars()
        return [(c.kind, c.url) for c in rows]


def _plant(w: World, kind: str, url: str) -> None:
    """Write a channel straight into the database, past the save-time check (old rows)."""
    with Session(w.engine) as s:
        s.add(OrgChannel(org_id=w.orgs["G1"].id or 0, kind=kind, url=url))
        s.commit()


def _notice(w: World) -> None:
    """One advance request from S1: a notice to its approver G1, whose channels get it."""
    with Session(w.engine) as s:
        s.execute(update(OutboxMessage).values(status="done"))  # the launch notice: not ours
        s.commit()
    with unit_of_work(w.engine) as s:
        actor = w.actors["sec_s1"]
        runs.record_evidence(s, run_id=w.runs["S1"], actor=actor, kind="meeting", data=MEETING)
        runs.request_advance(s, run_id=w.runs["S1"], actor=actor)


def _deliveries(w: World, kind: str) -> list[Delivery]:
    with Session(w.engine) as s:
        return list(s.execute(select(Delivery).where(Delivery.channel == kind)).scalars())


# ---------------------------------------------------------------------------------------------
# The policy, as a table (no packet sent)

POLICY = [
    ("127.0.0.1", False),
    ("127.255.0.9", False),
    ("0.0.0.0", False),
    ("10.1.2.3", False),
    ("172.16.0.1", False),
    ("172.31.255.254", False),
    ("192.168.1.1", False),
    ("100.64.0.1", False),  # carrier-grade NAT
    ("169.254.169.254", False),  # cloud metadata
    ("224.0.0.251", False),
    ("239.255.255.250", False),
    ("240.0.0.1", False),
    ("255.255.255.255", False),
    ("192.0.2.1", False),  # documentation
    ("198.18.0.1", False),  # benchmarking
    ("::1", False),
    ("::", False),
    ("fe80::1", False),
    ("fc00::1", False),
    ("fd12:3456::1", False),
    ("fec0::1", False),  # site-local (deprecated)
    ("ff02::1", False),
    ("ff0e::1", False),
    ("::ffff:127.0.0.1", False),  # IPv4-mapped
    ("::ffff:169.254.169.254", False),
    ("::ffff:10.0.0.1", False),
    ("::127.0.0.1", False),  # IPv4-compatible
    ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
    ("64:ff9b::7f00:1", False),  # NAT64 of 127.0.0.1
    ("64:ff9b::a00:1", False),  # NAT64 of 10.0.0.1
    ("2001:db8::1", False),  # documentation
    ("2001::1", False),  # Teredo
    ("8.8.8.8", True),
    ("1.1.1.1", True),
    ("140.205.0.1", True),
    ("::ffff:8.8.8.8", True),
    ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
    ("2400:3200::1", True),
    ("2001:4860:4860::8888", True),
]


@pytest.mark.parametrize(("address", "allowed"), POLICY)
def test_address_policy(address: str, allowed: bool) -> None:
    assert (outbound.address_refusal(address) is None) is allowed


def test_allow_list_opens_only_what_it_names() -> None:
    allow = outbound.AllowList.parse(" 10.8.0.0/16, 127.0.0.1 ,Proxy.Corp., not a host!, ")
    assert outbound.address_refusal("10.8.3.4", allow) is None
    assert outbound.address_refusal("127.0.0.1", allow) is None
    assert outbound.address_refusal("10.9.0.1", allow) == "内网地址"
    assert outbound.address_refusal("127.0.0.2", allow) == "回环地址"
    assert allow.hosts == frozenset({"proxy.corp"})
    # An allowed name is not resolved to be judged (it may be internal), so saving it asks no DNS.
    assert outbound.url_refusal("https://proxy.corp/robot/send?access_token=x", allow) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/",
        "http://LOCALHOST./x",
        "http://db.localhost:5432/",
        "http://127.1/",
        "http://0x7f.1/",
        "http://2130706433/",
        "http://0/",
        "http://[::ffff:7f00:1]/",
    ],
)
def test_spellings_of_this_machine(url: str, default_policy: None) -> None:
    assert outbound.url_refusal(url) in ("回环地址", "未指定地址")


def test_urls_that_are_not_plain_addresses(default_policy: None) -> None:
    assert outbound.url_refusal("http://8.8.8.8@127.0.0.1/") == "地址中不能含用户名或密码（@）"
    assert outbound.url_refusal("http://user:pw@8.8.8.8/") == "地址中不能含用户名或密码（@）"
    assert outbound.url_refusal("file:///etc/passwd") == "只支持 http:// 或 https:// 地址"
    assert outbound.url_refusal("gopher://127.0.0.1:5432/") == "只支持 http:// 或 https:// 地址"
    assert outbound.url_refusal("http://0177.0.0.1/") == "地址格式无效"
    assert outbound.url_refusal("https://8.8.8.8:5432/hook") is None  # any port of a public host
    # A name that does not resolve now is kept: the connection is checked when it is made.
    assert outbound.url_refusal("https://robot.example/hook") is None


# ---------------------------------------------------------------------------------------------
# Saving a URL

LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/hook",
    "http://127.1:{port}/hook",
    "http://0x7f.1:{port}/hook",
    "http://2130706433:{port}/hook",
    "http://[::ffff:127.0.0.1]:{port}/hook",
    "http://0.0.0.0:{port}/hook",
    "http://localhost.:{port}/hook",
    "http://[::1]:{port}/hook",
    "HTTP://127.0.0.1:{port}/hook",
    "http://127.0.0.1:5432/",
]
NEVER_CONTACTED = [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://10.0.0.5:8080/hook",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://[fd00::5]/",
    "http://[64:ff9b::a9fe:a9fe]/",
]


def test_saving_a_url_at_this_machine_or_its_network_is_refused(
    world: World, hook: RobotServer, default_policy: None
) -> None:
    w = world
    urls = [u.format(port=hook.port) for u in LOOPBACK_SPELLINGS] + NEVER_CONTACTED
    for kind in ("webhook", "wecom"):
        for url in urls:
            r = _put(w, [{"kind": "feishu", "url": "feishu-hook-1234"}, {"kind": kind, "url": url}])
            assert r.status_code == 422, (url, r.text)
            assert r.json()["details"][0]["field"] == "channels.1.url", url
            assert r.json()["message"].startswith("地址被拒绝："), r.text
    r = _put(w, [{"kind": "webhook", "url": "http://ops@robot.example/hook"}])
    assert r.status_code == 422 and "用户名" in r.json()["message"]
    assert _stored(w) == [] and hook.received == []
    # Robot keys are not URLs and still save; the robot's base is the operator's setting.
    r = _put(w, [{"kind": "wecom", "url": "0123456789abcdef-key"}])
    assert r.status_code == 200, r.text


def test_the_allow_list_lets_a_private_deployment_save_its_own_address(
    world: World, hook: RobotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(outbound.ALLOW_ENV, "127.0.0.0/8")
    r = _put(world, [{"kind": "webhook", "url": hook.url}])
    assert r.status_code == 200, r.text
    monkeypatch.setenv(outbound.ALLOW_ENV, "10.0.0.0/8")
    r = _put(world, [{"kind": "webhook", "url": f"http://127.0.0.1:{hook.port}/other"}])
    assert r.status_code == 422


# ---------------------------------------------------------------------------------------------
# Sending


def test_the_relay_sends_nothing_to_a_loopback_url_saved_before(
    world: World, hook: RobotServer, default_policy: None
) -> None:
    w = world
    _plant(w, "webhook", hook.url)
    _plant(w, "wecom", f"http://127.1:{hook.port}/cgi-bin/webhook/send?key=k")
    _plant(w, "dingtalk", f"http://[::ffff:127.0.0.1]:{hook.port}/robot/send?access_token=t")
    _plant(w, "feishu", "hook-id-123456")  # a key, joined to the operator's base (below)
    _notice(w)
    report = drain(w.engine, env={"DANGJIAN_FEISHU_BASE": hook.base})
    assert hook.received == []
    assert report.failed == {"webhook": 1, "wecom": 1, "dingtalk": 1, "feishu": 1}
    for kind, name in channels.NAMES.items():
        (d,) = _deliveries(w, kind)
        assert d.status == "failed" and d.attempts == 1, kind  # refused once, never retried
        assert d.last_error == f"{name}：地址被拒绝：回环地址", d.last_error


def test_with_the_allow_list_the_same_url_is_reached(
    world: World, hook: RobotServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard refuses by policy, not because loopback is broken here."""
    monkeypatch.setenv(outbound.ALLOW_ENV, "127.0.0.1")
    _plant(world, "webhook", hook.url)
    _notice(world)
    assert drain(world.engine, env={}).sent["webhook"] == 1
    assert len(hook.received) == 1


def test_the_address_checked_is_the_address_connected_to(
    world: World, hook: RobotServer, monkeypatch: pytest.MonkeyPatch, default_policy: None
) -> None:
    """DNS rebinding: the name answers a public address when the URL is saved, then 127.0.0.1.
    The connection resolves once, checks that answer and connects to it (no second lookup)."""
    answers = ["93.184.216.34"]  # only ever used by the save-time check, which does not connect
    lookups: list[str] = []

    def dns(host: str, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            raise socket.gaierror(socket.EAI_NONAME, host)
        lookups.append(host)
        address = answers.pop(0) if answers else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(outbound, "getaddrinfo", dns)
    url = f"http://rebind.test:{hook.port}/hook"
    r = _put(world, [{"kind": "webhook", "url": url}])
    assert r.status_code == 200, r.text
    _notice(world)
    drain(world.engine, env={})
    assert hook.received == [] and len(lookups) == 2
    (d,) = _deliveries(world, "webhook")
    assert d.status == "failed" and d.last_error == "Webhook：地址被拒绝：回环地址"
    # Allowed, the same name reaches the listener, looked up once, Host header kept.
    monkeypatch.setenv(outbound.ALLOW_ENV, "127.0.0.1")
    result = channels.send_webhook(_message(), url, None)
    assert result.ok and len(lookups) == 3
    assert hook.received[0].headers["host"] == f"rebind.test:{hook.port}"


def _message() -> channels.Message:
    return channels.Message("dj-1", "test", "标题", "正文", "", "正文", None)


def test_no_redirect_is_followed(hook: RobotServer) -> None:
    with RobotServer("webhook") as target:
        hook.respond_next(status=302, payload=b"", headers={"Location": target.url})
        result = channels.send_webhook(_message(), hook.url, None)
    assert result.permanent and "HTTP 302" in result.detail
    assert len(hook.received) == 1 and target.received == []


def test_proxies_from_the_environment_are_not_used(
    hook: RobotServer, monkeypatch: pytest.MonkeyPatch, default_policy: None
) -> None:
    """A proxy resolves the name itself, past the guard; the guarded client ignores them."""
    with RobotServer("webhook") as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.base)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        result = channels.send_webhook(_message(), hook.url, None)
    assert result.permanent and result.detail == "Webhook：地址被拒绝：回环地址"
    assert proxy.received == [] and hook.received == []


def test_a_unix_socket_is_refused() -> None:
    with pytest.raises(outbound.OutboundRefused):
        outbound.GuardedBackend().connect_unix_socket("/var/run/postgresql/.s.PGSQL.5432")


# ---------------------------------------------------------------------------------------------
# What the organiser reads back


def test_the_remote_answer_never_reaches_the_delivery_list(world: World) -> None:
    w = world
    with (
        RobotServer("webhook") as hook,
        RobotServer("wecom", key="wk-1") as wecom,
        RobotServer("dingtalk", key="dt-1") as ding,
    ):
        _plant(w, "webhook", hook.url)
        _plant(w, "wecom", wecom.url)
        _plant(w, "dingtalk", ding.url)
        hook.fail_next(status=500, payload=f"FATAL: password={SECRET}".encode())
        wecom.respond_next(payload={"errcode": 93000, "errmsg": f"root:{SECRET}"})
        ding.respond_next(payload={"errcode": SECRET, "errmsg": SECRET})
        _notice(w)
        drain(w.engine, env={})
        assert hook.received and wecom.received and ding.received
    r = w.get("org_b", f"/api/v1/orgs/{w.orgs['B'].id}/deliveries")
    assert r.status_code == 200 and SECRET not in r.text
    errors = {d["channel"]: d["last_error"] for d in r.json()["items"]}
    assert errors["webhook"] == "Webhook：对方返回 HTTP 500"
    assert errors["wecom"] == "企业微信返回错误码 93000（key 无效，机器人可能已被移除）"
    assert errors["dingtalk"] == "钉钉返回了无法识别的应答（HTTP 200）"
    with Session(w.engine) as s:
        stored = [d.last_error or "" for d in s.execute(select(Delivery)).scalars()]
        stored += [m.last_error or "" for m in s.execute(select(OutboxMessage)).scalars()]
    assert not any(SECRET in e for e in stored)


def test_network_errors_are_described_in_our_words(default_policy: None) -> None:
    result = channels.send_webhook(_message(), "http://no-such-host.invalid/hook", None)
    assert not result.permanent and result.detail == "Webhook：网络错误（ConnectError）"
    timeout = httpx.Timeout(1.0)
    with outbound.client(timeout) as http, pytest.raises(outbound.OutboundRefused) as err:
        http.get("http://[::1]:9/")
    assert err.value.reason == "回环地址"


# ---------------------------------------------------------------------------------------------
# PUT …/channels with repeated URLs (finding 7: 500 before)


def test_repeating_a_stored_url_without_its_id_is_that_channel(world: World) -> None:
    w = world
    url = "https://oapi.dingtalk.com/robot/send?access_token=abcdef123456"
    first = _put(w, [{"kind": "dingtalk", "url": url, "secret": "SECold"}])
    assert first.status_code == 200, first.text
    again = _put(w, [{"kind": "dingtalk", "url": url, "enabled": False}])
    assert again.status_code == 200, again.text
    (ch,) = again.json()
    assert ch["id"] == first.json()[0]["id"] and ch["enabled"] is False and ch["has_secret"]


def test_one_url_twice_is_422_naming_both(world: World) -> None:
    w = world
    hook = {"kind": "webhook", "url": "https://hooks.example/a"}
    r = _put(w, [{"kind": "wecom", "url": "key-0123456789"}, hook, dict(hook)])
    assert r.status_code == 422, r.text
    fields = [d["field"] for d in r.json()["details"]]
    assert fields == ["channels.1.url", "channels.2.url"]
    saved = _put(w, [hook]).json()
    # The stored channel by id, and again by its URL without id: the same channel twice.
    r = _put(w, [{"id": saved[0]["id"], "kind": "webhook"}, hook])
    assert r.status_code == 422 and [d["field"] for d in r.json()["details"]] == [
        "channels.0.url",
        "channels.1.url",
    ]
    r = _put(w, [{"id": saved[0]["id"], "kind": "webhook"}] * 2)
    assert r.status_code == 422
    assert _stored(w) == [("webhook", "https://hooks.example/a")]


def test_two_channels_may_swap_urls(world: World) -> None:
    w = world
    a, b = "https://hooks.example/a", "https://hooks.example/b"
    saved = _put(w, [{"kind": "webhook", "url": a}, {"kind": "webhook", "url": b}]).json()
    r = _put(
        w,
        [
            {"id": saved[0]["id"], "kind": "webhook", "url": b},
            {"id": saved[1]["id"], "kind": "webhook", "url": a},
        ],
    )
    assert r.status_code == 200, r.text
    assert _stored(w) == [("webhook", b), ("webhook", a)]


def test_the_cli_refuses_the_same_urls(
    world: World, db_url: str, monkeypatch: pytest.MonkeyPatch, default_policy: None
) -> None:
    """`dangjian notify channel add` saves through the same check: exit 2 with the reason."""
    from click.testing import CliRunner

    from api.cli import main

    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    add = ["notify", "channel", "add", "--org", "G1", "--kind", "webhook", "--url"]
    r = runner.invoke(main, [*add, "http://169.254.169.254/latest/meta-data/"])
    assert r.exit_code == 2 and "地址被拒绝：链路本地地址" in r.output, r.output
    r = runner.invoke(main, [*add, "http://0x7f.1:5432/"])
    assert r.exit_code == 2 and "地址被拒绝：回环地址" in r.output, r.output
    assert _stored(world) == []
