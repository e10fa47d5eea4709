"""Stage owners and who holds the ball, on SQLite and PostgreSQL.

A stage whose work lies above the branch (领导点评 here: only the committee above may write the
review) is reminded and escalated to the committee that owes it, climbing from that committee;
the branch hears nothing, is not named in the 通报名单, and the committee's desk lists it. The
dashboard says, per branch, who holds it, and splits the overdue count by holder.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlmodel import Session, col

from notifications.recipients import resolve
from notifications.render import render_notice
from states import bulletins, runs
from states.catalog import load_file
from states.errors import InvalidInput
from states.models import OutboxMessage, Request, Run
from states.timeutil import end_of_local_day, local_date, utcnow
from states.workcal import load_calendar
from tests.api_world import MEETING, World
from tests.factories import REVIEW
from workflows import jobs

TPL_HEAD = """
key: t_owner
version: 1
name: 测试
stages:
  - id: first
    name: 第一
  - id: second
    name: 第二
    evidence: [review]
{owner}
approval:
  default:
{chain}
"""


def _template(tmp_path: Path, owner: str = "", chain: str = "    - {parent: 1}") -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(TPL_HEAD.format(owner=owner, chain=chain), encoding="utf-8")
    return path


def test_owner_defaults_to_branch_and_is_read(tmp_path: Path) -> None:
    tpl = load_file(_template(tmp_path, "    owner: approver"))
    assert tpl.owner_of("first") == "branch"
    assert tpl.owner_of("second") == "approver"
    assert tpl.owed_stages == {"second": "approver"}


def test_a_bad_owner_is_refused_with_the_key_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as err:
        load_file(_template(tmp_path, "    owner: secretary"))
    assert "stages.1" in err.value.message and "owner" in err.value.message
    assert "branch、approver、launcher" in err.value.message


def test_an_approver_owner_needs_a_parent_first_in_its_chain(tmp_path: Path) -> None:
    chain = "    - {nearest_kind: 党委}"
    with pytest.raises(InvalidInput) as err:
        load_file(_template(tmp_path, "    owner: approver", chain))
    assert "审批链第一步须为 parent" in err.value.message


def _place(w: World, code: str, stage: str, deadline: datetime, level: int = 0) -> None:
    with Session(w.engine) as s:
        s.execute(
            update(Run)
            .where(col(Run.id) == w.runs[code])
            .values(stage=stage, deadline=deadline, entered_at=deadline - timedelta(days=14))
            .values(escalation_level=level)
        )
        s.commit()


def _notices(w: World, code: str) -> list[OutboxMessage]:
    with Session(w.engine, expire_on_commit=False) as s:
        return list(
            s.execute(
                select(OutboxMessage).where(col(OutboxMessage.run_id) == w.runs[code])
            ).scalars()
        )


def _audience(w: World, msg: OutboxMessage) -> set[str]:
    with Session(w.engine) as s:
        users = resolve(s, [msg])[msg.id or 0].users
    names = {a.user_id: n for n, a in w.actors.items()}
    return {names[u] for u in users if u in names}


def test_an_overdue_review_escalates_the_committee_and_climbs_from_it(world: World) -> None:
    w, now = world, utcnow()
    _place(w, "S1", "review", now - timedelta(days=30))  # level 3 by now
    _place(w, "S2", "review", now - timedelta(hours=30))  # level 1
    _place(w, "S3", "mobilize", now - timedelta(hours=30))  # the branch's own work
    jobs.sweep(w.engine, "deadline_sweep", now)

    (s1,) = _notices(w, "S1")
    assert s1.event_kind == "overdue" and s1.payload["level"] == 3 and s1.payload["owed"]
    assert s1.org_id == w.orgs["G1"].id  # the committee that owes the review
    assert _audience(w, s1) == {"com_g1", "dual", "com_h1", "org_b"}  # climbs G1 → H1 → B
    (s2,) = _notices(w, "S2")
    assert _audience(w, s2) == {"com_g1", "dual"}  # level 1: the owing committee alone
    assert "sec_s1" not in _audience(w, s1) and "sec_s2" not in _audience(w, s2)
    (s3,) = _notices(w, "S3")
    assert not s3.payload.get("owed") and s3.org_id == w.orgs["S3"].id

    notice, _ = render_notice("overdue", s2.payload)
    assert "内科第二党支部的领导点评待第一医院内科党总支点评" in notice.title
    assert "待您完成" in notice.text and "请督促其" not in notice.text
    high, _ = render_notice("overdue", s1.payload)
    assert "第 3 级督办：请第一医院内科党总支尽快完成点评" in high.text
    with Session(w.engine) as s:  # the branch's own ladder level is untouched
        assert s.get(Run, w.runs["S1"]).escalation_level == 0  # type: ignore[union-attr]
        assert s.get(Run, w.runs["S3"]).escalation_level == 1  # type: ignore[union-attr]


def test_a_review_reminder_goes_to_the_committee_and_not_the_branch(world: World) -> None:
    w, now = world, utcnow()
    with Session(w.engine) as s:
        tomorrow = load_calendar(s).add_working_days(local_date(now), 1)
    _place(w, "S1", "review", end_of_local_day(tomorrow))
    jobs.sweep(w.engine, "deadline_sweep", now)
    (msg,) = _notices(w, "S1")
    assert msg.event_kind == "reminder" and msg.payload["owed"]
    assert _audience(w, msg) == {"com_g1", "dual"}
    text, _ = render_notice("reminder", msg.payload)
    assert "内科第一党支部的领导点评待您点评" in text.title


def test_once_the_review_is_written_the_branch_holds_the_ball_again(world: World) -> None:
    w, now = world, utcnow()
    _place(w, "S1", "review", now - timedelta(hours=30))
    with Session(w.engine) as s:
        runs.record_evidence(
            s, run_id=w.runs["S1"], actor=w.actors["com_g1"], kind="review", data=REVIEW
        )
        s.commit()
    jobs.sweep(w.engine, "deadline_sweep", now)
    (msg,) = _notices(w, "S1")
    assert not msg.payload.get("owed") and msg.org_id == w.orgs["S1"].id
    assert "sec_s1" in _audience(w, msg)


def test_the_notice_list_leaves_out_work_owed_above(world: World) -> None:
    w, now = world, utcnow()
    _place(w, "S1", "review", now - timedelta(days=10), level=2)
    _place(w, "S2", "mobilize", now - timedelta(days=10), level=2)
    with Session(w.engine) as s:
        data = bulletins.tally(s, w.campaign_id, now)
    g1 = data[w.orgs["G1"].id or 0]
    assert g1["notice_list"] == ["内科第二党支部"]
    assert g1["owed_list"] == ["第一医院内科党总支：待点评 1 个支部"]
    assert (g1["overdue"], g1["overdue_branch"], g1["overdue_above"]) == (2, 1, 1)
    assert data[w.orgs["B"].id or 0]["owed_list"] == g1["owed_list"]
    text, _ = render_notice("bulletin", g1)
    assert "待上级完成" in text.text and "通报名单：内科第二党支部" in text.text


def _owed(w: World, user: str) -> dict[str, object]:
    r = w.get(user, "/api/v1/me/owed")
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def test_the_owed_list_is_the_owing_committees_alone(world: World) -> None:
    w, now = world, utcnow()
    _place(w, "S2", "review", now + timedelta(days=3))
    _place(w, "S1", "review", now + timedelta(days=5))  # entered later: listed second
    _place(w, "S3", "commend", now + timedelta(days=5))  # owed by the launcher (B)
    body = _owed(w, "com_g1")
    assert body["total"] == 2
    assert [i["org"]["code"] for i in body["items"]] == ["S2", "S1"]  # type: ignore[index]
    assert [g["label"] for g in body["groups"]] == ["待点评 2 个支部"]  # type: ignore[attr-defined]
    launcher = _owed(w, "org_b")
    assert [i["org"]["code"] for i in launcher["items"]] == ["S3"]  # type: ignore[index]
    assert launcher["groups"][0]["label"] == "待表彰决定 1 个支部"  # type: ignore[index]
    for outsider in ("admin_h2", "sec_s1", "sec_s4", "com_h1"):
        assert _owed(w, outsider)["total"] == 0, outsider
    with Session(w.engine) as s:
        runs.record_evidence(
            s, run_id=w.runs["S1"], actor=w.actors["com_g1"], kind="review", data=REVIEW
        )
        s.commit()
    assert _owed(w, "com_g1")["total"] == 1


def test_holders_and_overdue_split_by_holder(world: World) -> None:
    w, now = world, utcnow()
    _place(w, "S1", "mobilize", now - timedelta(days=2))
    _place(w, "S2", "mobilize", now - timedelta(days=2))
    _place(w, "S3", "review", now - timedelta(days=2))
    submitted = now - timedelta(days=9)
    with Session(w.engine) as s:
        runs.record_evidence(
            s, run_id=w.runs["S2"], actor=w.actors["sec_s2"], kind="meeting", data=MEETING
        )
        req = runs.request_advance(s, run_id=w.runs["S2"], actor=w.actors["sec_s2"])
        s.execute(update(Request).where(col(Request.id) == req.id).values(submitted_at=submitted))
        s.commit()
        days = load_calendar(s).working_days_between(local_date(submitted), local_date(now))
    camp = w.get("org_b", f"/api/v1/campaigns/{w.campaign_id}").json()
    assert camp["overdue_by_holder"] == {"branch": 1, "approver": 1, "above": 1}
    assert camp["overdue"] == 3
    url = f"/api/v1/campaigns/{w.campaign_id}/runs?overdue=true"
    held = {i["org"]["code"]: i["holder"] for i in w.get("org_b", url).json()["items"]}
    assert held == {
        "S1": "支部办理中",
        "S2": f"待第一医院内科党总支审批 · 已 {days} 个工作日",
        "S3": "待上级点评",
    }
    assert days >= 5
    scoped = w.get("com_g1", f"/api/v1/campaigns/{w.campaign_id}").json()
    assert scoped["overdue_by_holder"] == {"branch": 1, "approver": 1, "above": 0}
    # H2 sees its own part of the campaign (S4, not overdue), nothing of H1's branches.
    assert w.get("admin_h2", url).json()["items"] == []
    other = w.get("admin_h2", f"/api/v1/campaigns/{w.campaign_id}").json()
    assert other["overdue_by_holder"] == {"branch": 0, "approver": 0, "above": 0}
