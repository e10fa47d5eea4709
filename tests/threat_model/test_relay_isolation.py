"""Threat model, findings 2 and 8: one organiser must not stop or hijack everyone's notices.

Finding 2: the save-time check rendered an override with sample data only, so
`{% if org_code != 'H1-G1-S1' %}{{ 1 // 0 }}{% endif %}` passed, then raised at send time, failed
the whole relay batch and left every row of it, other subtrees' included, in "sending", retried
forever. Now a failing override falls back to the built-in wording, is recorded on the wording
and told to whoever saved it (once a day); a batch that cannot be planned is planned row by row;
and no claimed row is left "sending", whatever escapes a pass.

Finding 8: an organisation name or a comment like `[点此](http://evil)` became a live link in
the robots' markdown. Now user-written values are made inert in the markdown variant only.

Robots here are loopback stand-ins (tests/stand_ins.py); nothing leaves this machine.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import Session, col, func, select

from notifications import relay
from notifications.relay import MAX_ATTEMPTS, drain, run_once
from states import runs
from states.db import unit_of_work
from states.models import InboxItem, NoticeTemplate, Organisation, OutboxMessage, User
from states.notice_settings import TEMPLATE_FAILED, ChannelSpec, add_channel
from states.timeutil import utcnow
from tests.api_world import MEETING, World
from tests.stand_ins import RobotServer

POISON = (
    "{% block title %}H1 的措辞：{{ org_name }}{% endblock %}{% block body %}\n"
    "请审批。\n"
    "{% if org_code != 'H1-G1-S1' %}{{ 1 // 0 }}{% endif %}\n"
    "{% endblock %}"
)


def _quiet_world(w: World) -> None:
    """The world's launch queued a notice; mark it done so a test sees only its own."""
    with Session(w.engine) as s:
        s.execute(update(OutboxMessage).values(status="done"))
        s.commit()


def _request(w: World, code: str, who: str, comment: str | None = None) -> None:
    with unit_of_work(w.engine) as s:
        actor = w.actors[who]
        runs.record_evidence(s, run_id=w.runs[code], actor=actor, kind="meeting", data=MEETING)
        runs.request_advance(s, run_id=w.runs[code], actor=actor, comment=comment)


def _inbox(w: World, username: str, kind: str | None = None) -> list[InboxItem]:
    with Session(w.engine) as s:
        uid = s.execute(select(User.id).where(User.username == username)).scalar_one()
        stmt = select(InboxItem).where(InboxItem.user_id == uid)
        if kind:
            stmt = stmt.where(InboxItem.kind == kind)
        return list(s.execute(stmt).scalars())


def _statuses(w: World) -> dict[str, int]:
    with Session(w.engine) as s:
        rows = s.execute(
            select(OutboxMessage.status, func.count()).group_by(col(OutboxMessage.status))
        ).all()
    return {str(k): int(n) for k, n in rows}


def _save_poison(w: World) -> None:
    """Saved through the API by H1's organiser: the sample data (H1-G1-S1) passes."""
    url = f"/api/v1/orgs/{w.orgs['H1'].id}/notice-templates/request_submitted"
    r = w.client.put(url, json={"source": POISON}, headers=w.as_("org_h1"))
    assert r.status_code == 200, r.text
    assert r.json()["preview_title"] == "H1 的措辞：内科第一党支部"


def test_a_poisoned_override_neither_blocks_nor_stalls_other_notices(world: World) -> None:
    w = world
    _quiet_world(w)
    _save_poison(w)
    _request(w, "S1", "sec_s1")  # H1's subtree: its override fails (S1 is not H1-G1-S1)
    _request(w, "S4", "sec_s4")  # H2's subtree: no override

    report = drain(w.engine, env={})
    assert report.claimed == 2 and report.done == 2, report.summary()
    assert _statuses(w) == {"done": 3}  # the launch notice and both requests; none "sending"
    # Both delivered in-app; the poisoned one in the built-in wording.
    g1 = [i.title for i in _inbox(w, "com_g1")]
    h2 = [i.title for i in _inbox(w, "admin_h2")]
    assert g1 and all(t.startswith("【待审批】") for t in g1), g1
    assert h2 and all(t.startswith("【待审批】") for t in h2), h2
    # The wording shows why, and its saver was told, once.
    with Session(w.engine) as s:
        tpl = s.execute(select(NoticeTemplate)).scalar_one()
    assert tpl.failures == 1 and tpl.last_error_at is not None
    assert tpl.last_error and "除数为零" in tpl.last_error and "第 3 行" in tpl.last_error
    told = _inbox(w, "org_h1", TEMPLATE_FAILED)
    assert len(told) == 1 and "待审批的推进申请" in told[0].title and "除数为零" in told[0].body
    got = w.get("org_h1", f"/api/v1/orgs/{w.orgs['H1'].id}/notice-templates/request_submitted")
    assert got.status_code == 200 and "除数为零" in got.json()["last_error"]
    assert got.json()["failures"] == 1 and got.json()["last_error_at"]

    # More failures the same day: counted, not told again; saving a new wording clears them.
    _request(w, "S2", "sec_s2")
    drain(w.engine, env={})
    assert len(_inbox(w, "org_h1", TEMPLATE_FAILED)) == 1
    with Session(w.engine) as s:
        assert s.execute(select(NoticeTemplate.failures)).scalar_one() == 2
    good = POISON.replace("{{ 1 // 0 }}", "")
    url = f"/api/v1/orgs/{w.orgs['H1'].id}/notice-templates/request_submitted"
    r = w.client.put(url, json={"source": good}, headers=w.as_("org_h1"))
    assert r.status_code == 200 and r.json()["failures"] == 0 and r.json()["last_error"] is None


def test_a_row_that_cannot_be_planned_is_the_only_one_held_back(world: World) -> None:
    w = world
    _quiet_world(w)
    _request(w, "S1", "sec_s1")
    with unit_of_work(w.engine) as s:  # a notice whose payload is not an object
        s.add(
            OutboxMessage(
                dedupe_key="broken", event_kind="request_submitted", payload=["not", "an", "object"]
            )
        )
    _request(w, "S4", "sec_s4")

    now = utcnow()
    report = run_once(w.engine, env={}, now=now)
    assert report.claimed == 3 and report.done == 2, report.summary()
    assert _inbox(w, "com_g1") and _inbox(w, "admin_h2")
    with Session(w.engine) as s:
        bad = s.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == "broken")).one()[0]
    assert bad.status == "retry" and bad.locked_until is None and bad.attempts == 1
    assert bad.last_error and "准备通知时出错" in bad.last_error
    # It keeps failing: retried with backoff, then failed for good with the reason.
    for _ in range(MAX_ATTEMPTS + 2):
        now += timedelta(hours=2)
        run_once(w.engine, env={}, now=now)
    with Session(w.engine) as s:
        bad = s.execute(select(OutboxMessage).where(OutboxMessage.dedupe_key == "broken")).one()[0]
    assert bad.status == "failed" and bad.attempts == MAX_ATTEMPTS and bad.done_at is not None
    assert "sending" not in _statuses(w)


def test_whatever_escapes_a_pass_releases_its_rows(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Failure injection: the last step of a pass raises (as a lost database would)."""
    w = world
    _quiet_world(w)
    _request(w, "S1", "sec_s1")

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(relay, "finish", broken)
    with pytest.raises(RuntimeError):
        run_once(w.engine, env={})
    with Session(w.engine) as s:
        row = s.execute(select(OutboxMessage).where(OutboxMessage.status != "done")).one()[0]
    assert row.status == "retry" and row.locked_until is None and row.attempts == 1
    assert row.last_error and "中继出错" in row.last_error
    monkeypatch.undo()
    assert drain(w.engine, env={}, now=row.next_attempt_at).done == 1
    assert _statuses(w) == {"done": 2}


def test_a_channel_that_raises_fails_only_its_own_delivery(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    _quiet_world(w)
    with RobotServer("webhook") as hook, RobotServer("wecom", key="h2-wecom-key") as wecom:
        with unit_of_work(w.engine) as s:
            g1 = s.execute(select(Organisation).where(Organisation.code == "G1")).scalar_one()
            h2 = s.execute(select(Organisation).where(Organisation.code == "H2")).scalar_one()
            add_channel(s, g1, ChannelSpec(kind="webhook", url=hook.url))
            add_channel(s, h2, ChannelSpec(kind="wecom", url=wecom.url))

        def explode(*_: Any, **__: Any) -> Any:
            raise RuntimeError("a bug in one channel")

        monkeypatch.setattr(relay.channels, "send_webhook", explode)
        _request(w, "S1", "sec_s1")
        _request(w, "S4", "sec_s4")
        report = run_once(w.engine, env=wecom.env)
    assert report.sent["wecom"] == 1 and report.retried["webhook"] == 1, report.summary()
    assert len(wecom.accepted()) == 1 and not hook.received
    assert "sending" not in _statuses(w)


def test_robot_markdown_shows_what_people_typed_as_text(world: World) -> None:
    w = world
    _quiet_world(w)
    evil_name = "内科[点此](http://evil.example/a)第一党支部"
    evil_comment = "材料见 ![x](http://evil.example/p.png) 和 <@all> **紧急**"
    with unit_of_work(w.engine) as s:
        s.execute(update(Organisation).where(col(Organisation.code) == "S1").values(name=evil_name))
    with (
        RobotServer("wecom", key="g1-wecom-key") as wecom,
        RobotServer("dingtalk", key="g1-ding-token") as ding,
    ):
        with unit_of_work(w.engine) as s:
            g1 = s.execute(select(Organisation).where(Organisation.code == "G1")).scalar_one()
            add_channel(s, g1, ChannelSpec(kind="wecom", url="g1-wecom-key"))
            add_channel(s, g1, ChannelSpec(kind="dingtalk", url=ding.url))
        _request(w, "S1", "sec_s1", comment=evil_comment)
        report = run_once(w.engine, env={**wecom.env, "DANGJIAN_BASE_URL": "https://dj.example"})
        assert report.sent["wecom"] == 1 and report.sent["dingtalk"] == 1, report.summary()
        texts = [
            wecom.accepted()[0].json["markdown"]["content"],
            ding.accepted()[0].json["markdown"]["text"],
        ]
    for md in texts:
        for live in ("](http://evil", "![", "<@all>", "**紧急**"):
            assert live not in md, md
        assert "点此" in md and "evil.example" in md and "紧急" in md  # still readable
        assert "[查看详情](https://dj.example/approvals)" in md  # our own link stays live
    # The plain-text variant (in-app, e-mail) keeps the words exactly as typed.
    body = _inbox(w, "com_g1")[0].body
    assert evil_name in body and evil_comment in body
