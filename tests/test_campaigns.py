"""Launching campaigns: set-wise runs, schedules, frozen template versions, who may launch."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, func, select

from states.campaigns import campaign_status, campaign_template, launch_campaign
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import Organisation, Role, Run, TemplateVersion
from states.workcal import set_override
from tests.factories import make_tree, make_user


def _runs(session: Session, campaign_id: int) -> dict[str, Run]:
    rows = session.exec(
        select(Organisation.code, Run)
        .join(Run, Run.org_id == Organisation.id)
        .where(Run.campaign_id == campaign_id)
    ).all()
    return {code: run for code, run in rows}


def test_launch_over_a_subtree_only(session: Session) -> None:
    make_tree(session)
    c = launch_campaign(session, template_key="chuangxian_zhengyou", root_code="H1")
    session.commit()
    assert sorted(_runs(session, c.id or 0)) == ["S1", "S2", "S3"]
    assert c.run_count == 3 and c.kinds == ["党支部"]
    both = launch_campaign(
        session, template_key="jinwei_shengji", root_code="B", kinds=["党支部", "党总支"]
    )
    assert sorted(_runs(session, both.id or 0)) == ["G1", "S1", "S2", "S3", "S4"]


def test_working_day_deadline_follows_the_official_calendar(session: Session) -> None:
    make_tree(session)
    # Friday 27 Sep 2024, 10:00 Shanghai; National Day 1–7 Oct; 29 Sep and 12 Oct are worked.
    now = datetime(2024, 9, 27, 2, 0, tzinfo=UTC)
    c = launch_campaign(session, template_key="chuangxian_zhengyou", root_code="B", now=now)
    run = _runs(session, c.id or 0)["S1"]
    assert run.deadline == datetime(2024, 10, 16, 15, 59, 59, tzinfo=UTC)
    assert run.entered_at == now


def test_overrides_move_deadlines(session: Session) -> None:
    make_tree(session)
    from datetime import date

    set_override(session, day=date(2024, 10, 16), is_workday=False, note="临时停工")
    now = datetime(2024, 9, 27, 2, 0, tzinfo=UTC)
    c = launch_campaign(session, template_key="chuangxian_zhengyou", root_code="B", now=now)
    assert _runs(session, c.id or 0)["S1"].deadline == datetime(
        2024, 10, 17, 15, 59, 59, tzinfo=UTC
    )


def test_dated_phases_use_the_campaign_year(session: Session) -> None:
    make_tree(session)
    now = datetime(2026, 5, 1, 1, 0, tzinfo=UTC)
    c = launch_campaign(session, template_key="sqsy_fuwuxing", root_code="B", now=now)
    assert c.schedule["consolidate"] == {"date": "2026-12-25"}
    assert _runs(session, c.id or 0)["S1"].deadline == datetime(2026, 5, 16, 15, 59, 59, tzinfo=UTC)


def test_schedule_errors_name_the_field(session: Session) -> None:
    make_tree(session)
    with pytest.raises(InvalidInput) as err:
        launch_campaign(
            session,
            template_key="chuangxian_zhengyou",
            root_code="B",
            schedule={
                "nope": {"days": 3},
                "pledge": {"days": 3, "working_days": 2},
                "strive": {"date": "x"},
            },
        )
    fields = [d["field"] for d in err.value.details]
    assert "schedule.nope" in fields and "schedule.pledge" in fields
    assert any(f.startswith("schedule.strive") for f in fields)
    assert session.exec(select(func.count()).select_from(Run)).one() == 0


def test_custom_schedule_by_date(session: Session) -> None:
    make_tree(session)
    c = launch_campaign(
        session,
        template_key="chuangxian_zhengyou",
        root_code="B",
        schedule={"mobilize": "2026-12-31"},
    )
    assert _runs(session, c.id or 0)["S4"].deadline == datetime(
        2026, 12, 31, 15, 59, 59, tzinfo=UTC
    )


def test_nothing_to_launch_is_a_clear_error(session: Session) -> None:
    make_tree(session)
    with pytest.raises(InvalidInput, match="没有类型为 党小组"):
        launch_campaign(
            session, template_key="chuangxian_zhengyou", root_code="B", kinds=["党小组"]
        )
    with pytest.raises(InvalidInput, match="未知的组织类型"):
        launch_campaign(
            session, template_key="chuangxian_zhengyou", root_code="B", kinds=["团支部"]
        )
    with pytest.raises(NotFound):
        launch_campaign(session, template_key="chuangxian_zhengyou", root_code="NOPE")


def test_who_may_launch(session: Session) -> None:
    make_tree(session)
    organiser = make_user(session, "o", ("H1", Role.ORGANISER))
    secretary = make_user(session, "s", ("S1", Role.SECRETARY))
    committee = make_user(session, "c", ("H1", Role.COMMITTEE))
    launch_campaign(session, template_key="chuangxian_zhengyou", root_code="G1", actor=organiser)
    with pytest.raises(NotFound):  # H2 is outside the organiser's subtree
        launch_campaign(
            session, template_key="chuangxian_zhengyou", root_code="H2", actor=organiser
        )
    with pytest.raises(Forbidden):
        launch_campaign(
            session, template_key="chuangxian_zhengyou", root_code="H1", actor=committee
        )
    with pytest.raises(NotFound):
        launch_campaign(
            session, template_key="chuangxian_zhengyou", root_code="H1", actor=secretary
        )


def test_campaign_keeps_its_template_version(session: Session) -> None:
    make_tree(session)
    first = launch_campaign(session, template_key="chuangxian_zhengyou", root_code="B")
    second = launch_campaign(session, template_key="chuangxian_zhengyou", root_code="H1")
    assert first.template_version_id == second.template_version_id
    stored = session.get_one(TemplateVersion, first.template_version_id)
    assert stored.definition["stages"][0]["name"] == "宣传发动"
    assert campaign_template(session, first).digest() == stored.digest
    # The shipped file changed without a version bump: refuse to launch rather than mix versions.
    stored.digest = "0" * 64
    session.flush()
    with pytest.raises(Conflict, match="版本号未变"):
        launch_campaign(session, template_key="chuangxian_zhengyou", root_code="B")


def test_status_counts(session: Session) -> None:
    make_tree(session)
    c = launch_campaign(
        session,
        template_key="chuangxian_zhengyou",
        root_code="B",
        now=datetime(2024, 9, 27, 2, tzinfo=UTC),
    )
    status = campaign_status(session, c, now=datetime(2024, 10, 20, tzinfo=UTC))
    assert status.total == 4 and status.overdue == 4 and status.waiting == 0
    assert status.stages[0].runs == 4 and status.percent_done == 0.0
    early = campaign_status(session, c, now=datetime(2024, 10, 1, tzinfo=UTC))
    assert early.overdue == 0


def test_a_launch_with_deadlines_already_past_is_refused_with_the_stages(session: Session) -> None:
    make_tree(session)
    # 1 Jun 2026, 10:00 Shanghai: the first two dated phases (16 May, 31 May) are past.
    now = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
    with pytest.raises(InvalidInput) as err:
        launch_campaign(session, template_key="sqsy_fuwuxing", root_code="B", now=now)
    details = err.value.details
    assert [(d["stage"], d["deadline"]) for d in details] == [
        ("plan", "2026-05-16"),
        ("innovate", "2026-05-31"),
        ("exemplar", "2026-05-31"),
    ]
    assert all(d["field"] == f"schedule.{d['stage']}" for d in details)
    assert "制定方案、动员部署（2026-05-16）" in err.value.message
    assert session.exec(select(func.count()).select_from(Run)).one() == 0
    # The last day itself is not past until 23:59:59 Shanghai time.
    on_the_day = datetime(2026, 5, 16, 15, 59, 0, tzinfo=UTC)
    ok = launch_campaign(session, template_key="sqsy_fuwuxing", root_code="B", now=on_the_day)
    assert ok.run_count == 4
    # A schedule moved to future dates is accepted; so is the old one with allow_past.
    later = {"plan": {"date": "2026-06-20"}, "innovate": {"date": "2026-06-30"}}
    later["exemplar"] = {"date": "2026-06-30"}
    moved = launch_campaign(
        session, template_key="sqsy_fuwuxing", root_code="B", now=now, schedule=later
    )
    assert _runs(session, moved.id or 0)["S1"].deadline == datetime(
        2026, 6, 20, 15, 59, 59, tzinfo=UTC
    )
    forced = launch_campaign(
        session, template_key="sqsy_fuwuxing", root_code="B", now=now, allow_past=True
    )
    assert forced.run_count == 4


def test_deadlines_counted_in_days_are_never_past(session: Session) -> None:
    make_tree(session)
    now = datetime(2026, 12, 1, 2, tzinfo=UTC)
    c = launch_campaign(session, template_key="chuangxian_zhengyou", root_code="B", now=now)
    assert c.run_count == 4
    with pytest.raises(InvalidInput) as err:
        launch_campaign(
            session,
            template_key="chuangxian_zhengyou",
            root_code="B",
            now=now,
            schedule={"pledge": {"date": "2026-11-30"}},
        )
    assert [d["stage"] for d in err.value.details] == ["pledge"]
