"""Timed work, simulated: a 90-day 创先争优 campaign over a 50-branch tree, stepped day by day.

Each morning the deadline and approval sweeps run at 09:00 (China time); at 10:00 the branches
act according to their temper (idle, slow, fast, or stuck waiting for an approval that never
comes). Before each sweep an independent per-run reference computes what is due that morning
from the runs as they stand; the sweep must fire exactly that (no more, none early, none
missed), each notice once, with the right recipients. Mondays also publish the weekly bulletin,
whose numbers are checked against the runs. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from notifications.recipients import resolve
from states import runs, timers
from states.campaigns import launch_campaign
from states.catalog import DONE, ReviewPresent, builtin_templates
from states.demo import REVIEW, sample_evidence
from states.models import (
    Bulletin,
    Decision,
    Organisation,
    OutboxMessage,
    Request,
    RequestStatus,
    Role,
    Run,
    TimerFired,
)
from states.timeutil import SHANGHAI, local_date
from states.users import Actor
from states.workcal import WorkCalendar, load_calendar
from tests.factories import make_tree, make_user
from workflows import jobs

START = date(2026, 3, 2)  # a Monday; the 90 days cross Qingming and May Day (with 调休)
DAYS = 90
TPL = builtin_templates()["chuangxian_zhengyou"]
GROUPS = 5
PER_GROUP = 10


def at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=SHANGHAI).astimezone(UTC)


def tree() -> dict[str, tuple[str, str, str | None, int]]:
    out: dict[str, tuple[str, str, str | None, int]] = {"R": ("示例区委", "党委", None, 0)}
    for g in range(1, GROUPS + 1):
        out[f"G{g}"] = (f"第{g}党总支", "党总支", "R", 0)
        for i in range(PER_GROUP):
            code = f"G{g}-S{i}"
            out[code] = (f"第{g}总支第{i}支部", "党支部", f"G{g}", 3)
    return out


def temper(code: str) -> str:
    i = int(code.rsplit("S", 1)[1])
    return {0: "idle", 1: "idle", 2: "idle", 3: "slow", 4: "slow", 5: "slow", 9: "stuck"}.get(
        i, "fast"
    )


@dataclass
class Sim:
    engine: Engine
    cal: WorkCalendar
    orgs: dict[str, Organisation]
    secretaries: dict[str, Actor]
    committees: dict[str, Actor]
    campaign_id: int
    run_of: dict[str, int]
    code_of: dict[int, str] = field(default_factory=dict)
    fired: set[tuple[Any, ...]] = field(default_factory=set)
    stuck_requested: set[str] = field(default_factory=set)

    @classmethod
    def build(cls, engine: Engine) -> Sim:
        with Session(engine, expire_on_commit=False) as s:
            orgs = make_tree(s, tree())
            secretaries = {
                code: make_user(s, f"sec_{code}", (code, Role.SECRETARY))
                for code, (_, kind, _, _) in tree().items()
                if kind == "党支部"
            }
            committees = {
                code: make_user(s, f"com_{code}", (code, Role.COMMITTEE))
                for code, (_, kind, _, _) in tree().items()
                if kind != "党支部"
            }
            organiser = make_user(s, "organiser", ("R", Role.ORGANISER))
            campaign = launch_campaign(
                s,
                template_key=TPL.key,
                root_code="R",
                actor=organiser,
                now=at(START, 8),
            )
            s.commit()
            run_of = {
                code: run_id
                for code, run_id in s.execute(
                    select(Organisation.code, Run.id)
                    .join(Run, col(Run.org_id) == col(Organisation.id))
                    .where(col(Run.campaign_id) == campaign.id)
                ).all()
            }
            cal = load_calendar(s)
        sim = cls(engine, cal, orgs, secretaries, committees, campaign.id or 0, run_of)
        sim.code_of = {v: k for k, v in run_of.items()}
        return sim

    # -- what the branches do -------------------------------------------------------------
    def act(self, today: date) -> None:
        now = at(today, 10)
        with Session(self.engine, expire_on_commit=False) as s:
            states = {
                r.id: r
                for r in s.execute(
                    select(Run).where(col(Run.campaign_id) == self.campaign_id)
                ).scalars()
            }
            for code, run_id in sorted(self.run_of.items()):
                run = states[run_id]
                if run.stage == DONE or run.pending_request_id is not None:
                    continue
                mood = temper(code)
                assert run.deadline is not None
                deadline_day = local_date(run.deadline)
                if mood == "fast":
                    due = self.cal.add_working_days(local_date(run.entered_at), 2)
                elif mood == "slow":
                    lag = (1, 3, 5)[int(code.rsplit("S", 1)[1]) % 3]
                    due = self.cal.add_working_days(deadline_day, lag)
                elif mood == "stuck":
                    due = START + timedelta(days=3)
                    if code in self.stuck_requested:
                        continue
                else:
                    continue
                if today < due:
                    continue
                self.advance(s, code, run, now, approve=mood != "stuck")
                if mood == "stuck":
                    self.stuck_requested.add(code)
            s.commit()

    def advance(self, s: Session, code: str, run: Run, now: datetime, *, approve: bool) -> None:
        stage = TPL.stage(run.stage)
        org = self.orgs[code]
        parent = s.get_one(Organisation, org.parent_id)
        for kind, data in sample_evidence(TPL, stage, org.member_count):
            # grades are decided above: the parent's committee records the decision
            who = self.committees[parent.code] if kind == "decision" else self.secretaries[code]
            runs.record_evidence(s, run_id=run.id or 0, actor=who, kind=kind, data=data)
        if any(isinstance(r, ReviewPresent) for r in stage.requirements):
            runs.record_evidence(
                s,
                run_id=run.id or 0,
                actor=self.committees[parent.code],
                kind="review",
                data=REVIEW,
            )
        req = runs.request_advance(s, run_id=run.id or 0, actor=self.secretaries[code], now=now)
        if not approve:
            return
        for step_org in list(req.chain):
            approver_code = s.get_one(Organisation, step_org).code
            runs.approve(s, request_id=req.id or 0, actor=self.committees[approver_code], now=now)

    # -- the reference: what is due this morning, run by run ---------------------------------
    def expected(self, today: date) -> set[tuple[Any, ...]]:
        as_of = at(today, 9)
        esc = TPL.escalation
        out: set[tuple[Any, ...]] = set()
        with Session(self.engine) as s:
            for run in s.execute(
                select(Run).where(col(Run.campaign_id) == self.campaign_id)
            ).scalars():
                if run.stage == DONE or run.deadline is None or run.pending_request_id:
                    continue
                d = local_date(run.deadline)
                if as_of < run.deadline:
                    left = self.cal.working_days_between(today, d)
                    due = [k for k in TPL.reminders.offsets if left <= k]
                    if due:
                        out.add((run.id, run.stage, "reminder", min(due), run.deadline))
                    continue
                l2 = self.cal.add_working_days(d + timedelta(days=1), esc.level2_after)
                l3 = self.cal.add_working_days(l2, esc.level3_after)
                level = 3 if today >= l3 else 2 if today >= l2 else 1
                out.add((run.id, run.stage, "overdue", level, run.deadline))
            sla = TPL.approval.sla_working_days
            for req in s.execute(
                select(Request).where(col(Request.status) == RequestStatus.PENDING)
            ).scalars():
                last = s.execute(
                    select(func.max(Decision.created_at)).where(col(Decision.request_id) == req.id)
                ).scalar()
                since = last or req.submitted_at
                waited = self.cal.working_days_between(local_date(since), today)
                level = 2 if waited >= 2 * sla else 1 if waited >= sla else 0
                if level:
                    out.add((req.run_id, req.from_stage, "approval_sla", level, since))
        return {key for key in out if key not in self.fired}

    def fired_on(self, as_of: datetime) -> set[tuple[Any, ...]]:
        with Session(self.engine) as s:
            return {
                (t.run_id, t.stage, t.kind, t.level, t.due)
                for t in s.execute(
                    select(TimerFired).where(col(TimerFired.as_of) == as_of)
                ).scalars()
            }


def check_bulletin(sim: Sim, as_of: datetime) -> None:
    """The stored bulletins of this week match the runs, committee by committee."""
    with Session(sim.engine) as s:
        rows = s.execute(
            select(Run, Organisation).join(Organisation, col(Organisation.id) == col(Run.org_id))
        ).all()
        bulletins = {
            b.org_id: b.data
            for b in s.execute(select(Bulletin).where(col(Bulletin.as_of) == as_of)).scalars()
        }
    committees = [code for code in sim.committees]
    assert set(bulletins) == {sim.orgs[c].id for c in committees}
    for code in committees:
        org = sim.orgs[code]
        mine = [(r, o) for r, o in rows if o.path.startswith(org.path) and o.id != org.id]
        data = bulletins[org.id]
        assert data["total"] == len(mine) == (50 if code == "R" else 10)
        assert data["done"] == sum(r.stage == DONE for r, _ in mine)
        assert data["overdue"] == sum(
            r.stage != DONE and r.deadline is not None and r.deadline < as_of for r, _ in mine
        )
        assert data["waiting"] == sum(r.pending_request_id is not None for r, _ in mine)
        by_stage = Counter(r.stage for r, _ in mine)
        assert {s["id"]: s["runs"] for s in data["stages"]} == {
            sid: by_stage.get(sid, 0) for sid in [*TPL.stage_ids, DONE]
        }
        listed = sorted(
            (o.path, o.name) for r, o in mine if r.escalation_level >= 2 and r.stage != DONE
        )
        assert data["notice_list"] == [name for _, name in listed]


def test_ninety_days_every_notice_once_on_its_day(engine: Engine) -> None:
    sim = Sim.build(engine)
    bulletin_weeks = 0
    for offset in range(DAYS):
        today = START + timedelta(days=offset)
        as_of = at(today, 9)
        want = sim.expected(today)
        deadline = jobs.sweep(engine, "deadline_sweep", as_of)
        sla = jobs.sweep(engine, "approval_sla_sweep", as_of)
        got = sim.fired_on(as_of)
        assert got == want, f"{today}: missing {want - got}, unexpected {got - want}"
        assert deadline.total + sla.total == len(got)
        sim.fired |= got
        # The same morning again (a retried or second sweep) fires nothing.
        assert jobs.sweep(engine, "deadline_sweep", as_of).total == 0
        assert jobs.sweep(engine, "approval_sla_sweep", as_of).total == 0
        if today.weekday() == 0:
            report = jobs.weekly_bulletin(engine, as_of)
            assert sum(report.counts.values()) == len(sim.committees)
            check_bulletin(sim, as_of)
            assert sum(jobs.weekly_bulletin(engine, as_of).counts.values()) == 0
            bulletin_weeks += 1
        sim.act(today)

    assert bulletin_weeks == 13
    kinds = Counter((k[2], k[3]) for k in sim.fired)
    by_temper: dict[str, Counter[tuple[str, int]]] = defaultdict(Counter)
    for run_id, _stage, kind, level, _due in sim.fired:
        by_temper[temper(sim.code_of[run_id])][(kind, level)] += 1
    # Idle branches climb the whole ladder on their first stage, once each.
    assert by_temper["idle"] == Counter(
        {
            ("reminder", 3): 15,
            ("reminder", 1): 15,
            ("overdue", 1): 15,
            ("overdue", 2): 15,
            ("overdue", 3): 15,
        }
    )
    # Slow branches are reminded and reach level 1 on every stage they pass; some reach level 2.
    assert by_temper["slow"][("overdue", 1)] >= 15 and by_temper["slow"][("overdue", 2)] >= 5
    # Fast branches act long before any deadline: never reminded or escalated.
    assert by_temper["fast"] == Counter()
    # Stuck requests: the approver after 3 working days, its parent after 6; never the branch.
    assert by_temper["stuck"] == Counter({("approval_sla", 1): 5, ("approval_sla", 2): 5})
    assert kinds[("reminder", 1)] >= 30

    with Session(engine) as s:
        outbox = list(
            s.execute(
                select(OutboxMessage).where(
                    col(OutboxMessage.event_kind).in_(["reminder", "overdue", "approval_sla"])
                )
            ).scalars()
        )
        assert len(outbox) == len(sim.fired)  # one notice per timer, never two
        recipients = resolve(s, outbox)
        sec = {c: a.user_id for c, a in sim.secretaries.items()}
        com = {c: a.user_id for c, a in sim.committees.items()}
        for msg in outbox:
            got_users = set(recipients[msg.id or 0].users)
            code = sim.code_of[msg.run_id or 0]
            group = code.split("-")[0]
            level = msg.payload["level"]
            if msg.event_kind == "reminder":
                assert got_users == {sec[code]}
            elif msg.event_kind == "overdue":
                want_users = {sec[code], com[group]}
                if level >= 2:
                    want_users.add(com["R"])
                assert want_users <= got_users
                if level < 3:
                    assert got_users == want_users
                else:
                    assert len(got_users - want_users) == 1  # the campaign's organiser
            else:
                want_users = {com[group]} | ({com["R"]} if level >= 2 else set())
                assert got_users == want_users


def test_extension_starts_a_new_ladder(engine: Engine) -> None:
    """A granted extension moves the deadline: the old ladder stops, the new one runs once."""
    sim = Sim.build(engine)
    code = "G1-S0"
    run_id = sim.run_of[code]
    day = START + timedelta(days=17)  # past the first deadline (16 March): level 1 due
    assert jobs.sweep(engine, "deadline_sweep", at(day, 9)).counts.get("overdue_L1") == 50
    with Session(engine, expire_on_commit=False) as s:
        new_deadline = at(day + timedelta(days=14), 23)
        req = runs.request_extension(
            s,
            run_id=run_id,
            actor=sim.secretaries[code],
            new_deadline=new_deadline,
            reason="材料准备中",
        )
        runs.approve(s, request_id=req.id or 0, actor=sim.committees["G1"], now=at(day, 11))
        s.commit()
        assert s.get_one(Run, run_id).escalation_level == 0
    fired: list[tuple[date, str, int]] = []
    for offset in range(1, 21):
        when = day + timedelta(days=offset)
        jobs.sweep(engine, "deadline_sweep", at(when, 9))
        fired += [(when, k[2], k[3]) for k in sim.fired_on(at(when, 9)) if k[0] == run_id]
    # New deadline 2 April: reminded 3 and 1 working days before, level 1 on 3 April; level 2
    # would be 9 April (after Qingming), beyond these 20 days. The old ladder never resumes.
    assert fired == [
        (date(2026, 3, 30), "reminder", 3),
        (date(2026, 4, 1), "reminder", 1),
        (date(2026, 4, 3), "overdue", 1),
    ]


@pytest.mark.parametrize("year", [2027])
def test_a_year_without_calendar_data_warns_and_still_sweeps(engine: Engine, year: int) -> None:
    sim = Sim.build(engine)
    with Session(engine) as s:
        s.execute(
            update(Run).values(
                deadline=at(date(year, 3, 1), 23), entered_at=at(date(year, 2, 1), 9)
            )
        )
        s.commit()
    report = jobs.sweep(engine, "deadline_sweep", at(date(year, 3, 3), 9))
    assert any(f"{year} 年" in w for w in report.warnings)
    assert report.counts == {"overdue_L1": len(sim.run_of)}


@pytest.mark.postgres_only
def test_notices_built_in_sql_equal_the_python_ones(pg_engine: Engine) -> None:
    """On PostgreSQL reminders and escalations are built in one SQL statement; their rows must be
    exactly those `outbox_rows` builds in Python (the SQLite path) for the same timers."""
    sim = Sim.build(pg_engine)
    with Session(pg_engine) as s:  # a spread of deadlines: reminders and all three levels
        for i, run_id in enumerate(sorted(sim.run_of.values())):
            deadline = at(date(2026, 3, 2) + timedelta(days=i % 25), 23)
            s.execute(update(Run).where(col(Run.id) == run_id).values(deadline=deadline))
        s.commit()
    as_of = at(date(2026, 3, 20), 9)
    report = jobs.sweep(pg_engine, "deadline_sweep", as_of)
    assert {k.split("_L")[0] for k in report.counts} == {"reminder", "overdue"}
    assert len({k for k in report.counts if k.startswith("overdue")}) == 3
    with Session(pg_engine) as s:
        stored = {
            m.dedupe_key: (m.event_kind, m.run_id, m.org_id, m.payload)
            for m in s.execute(select(OutboxMessage)).scalars()
            if m.event_kind in ("reminder", "overdue")
        }
        timers_rows = list(s.execute(select(TimerFired)).scalars())
        rebuilt = {}
        for t in timers_rows:
            window = timers.Window(t.kind, t.level, (sim.campaign_id,), t.due)
            for row in timers.outbox_rows(
                s, window, as_of, [timers.Fired(t.run_id, t.stage, t.due, t.ref)]
            ):
                rebuilt[row["dedupe_key"]] = (
                    row["event_kind"],
                    row["run_id"],
                    row["org_id"],
                    row["payload"],
                )
    assert len(stored) == len(timers_rows) == report.total
    assert stored == rebuilt
