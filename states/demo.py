"""The demo: a city health bureau's tree, its people, and a 创先争优 campaign in full swing.

Built through the same services a user calls, so every audit chain and outbox row is real.
Safe to run twice: organisations are upserted by code, users and the campaign are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from states import runs
from states.campaigns import launch_campaign
from states.catalog import (
    DONE,
    ActivityHeadings,
    AppraisalCount,
    CommitmentShare,
    DecisionRecorded,
    EvidenceCount,
    ReviewPresent,
    Stage,
    Template,
)
from states.db import unit_of_work
from states.demo_roster import build_rosters, roster_ids
from states.importer import OrgRow, import_orgs
from states.models import ROLE_LABELS, Campaign, Organisation, Request, Role, Run
from states.timeutil import utcnow
from states.users import Actor, actor_by_username, add_user, get_user_by_username, grant_role

DEMO_PASSWORD = "dangjian2026"
LAUNCHED_DAYS_AGO = 45
DAYS_PER_STAGE = 7  # so that some branches are overdue in later stages too
DEMO_CAMPAIGN = "创先争优（演示）"
TEMPLATE = "chuangxian_zhengyou"

# code, name, kind, parent, members
TREE: list[tuple[str, str, str, str | None, int]] = [
    ("HB", "示例市卫生局党委", "党委", None, 0),
    ("HB-S1", "局机关第一党支部", "党支部", "HB", 9),
    ("HB-S2", "局机关第二党支部", "党支部", "HB", 7),
    ("CDC", "市疾控中心党总支", "党总支", "HB", 0),
    ("CDC-S1", "疾控中心第一党支部", "党支部", "CDC", 6),
    ("CDC-S2", "疾控中心第二党支部", "党支部", "CDC", 5),
    ("H1", "示例市第一人民医院党委", "党委", "HB", 0),
    ("H1-S1", "第一人民医院机关党支部", "党支部", "H1", 8),
    ("H1-G1", "第一人民医院内科党总支", "党总支", "H1", 0),
    ("H1-G1-S1", "内科第一党支部", "党支部", "H1-G1", 6),
    ("H1-G1-S2", "内科第二党支部", "党支部", "H1-G1", 5),
    ("H1-G1-S3", "心血管内科党支部", "党支部", "H1-G1", 4),
    ("H1-G2", "第一人民医院外科党总支", "党总支", "H1", 0),
    ("H1-G2-S1", "普外科党支部", "党支部", "H1-G2", 6),
    ("H1-G2-S2", "骨科党支部", "党支部", "H1-G2", 5),
    ("H1-G2-S3", "麻醉科党支部", "党支部", "H1-G2", 4),
    ("H1-G3", "第一人民医院医技党总支", "党总支", "H1", 0),
    ("H1-G3-S1", "检验科党支部", "党支部", "H1-G3", 4),
    ("H1-G3-S2", "放射科党支部", "党支部", "H1-G3", 5),
    ("H2", "示例市中医院党委", "党委", "HB", 0),
    ("H2-S1", "中医院行政后勤党支部", "党支部", "H2", 7),
    ("H2-S2", "中医院药剂科党支部", "党支部", "H2", 4),
    ("H2-G1", "中医院临床党总支", "党总支", "H2", 0),
    ("H2-G1-S1", "针灸推拿科党支部", "党支部", "H2-G1", 5),
    ("H2-G1-S2", "中医内科党支部", "党支部", "H2-G1", 6),
    ("H2-G1-S3", "中医外科党支部", "党支部", "H2-G1", 4),
    ("H3", "示例市妇幼保健院党委", "党委", "HB", 0),
    ("H3-S1", "妇幼保健院机关党支部", "党支部", "H3", 6),
    ("H3-G1", "妇幼保健院临床党总支", "党总支", "H3", 0),
    ("H3-G1-S1", "产科党支部", "党支部", "H3-G1", 5),
    ("H3-G1-S2", "儿科党支部", "党支部", "H3-G1", 6),
]

# How far each branch has got (stages advanced), and whether it has a request waiting.
PROGRESS: dict[str, tuple[int, bool]] = {
    "HB-S1": (3, True),
    "HB-S2": (2, False),
    "CDC-S1": (1, True),
    "CDC-S2": (0, False),
    "H1-S1": (4, False),
    "H1-G1-S1": (2, True),
    "H1-G1-S2": (1, False),
    "H1-G1-S3": (0, True),
    "H1-G2-S1": (5, True),
    "H1-G2-S2": (1, False),
    "H1-G2-S3": (0, False),
    "H1-G3-S1": (2, False),
    "H1-G3-S2": (6, False),
    "H2-S1": (1, True),
    "H2-S2": (0, False),
    "H2-G1-S1": (3, False),
    "H2-G1-S2": (0, False),
    "H2-G1-S3": (2, True),
    "H3-S1": (1, False),
    "H3-G1-S1": (0, True),
    "H3-G1-S2": (4, True),
}


@dataclass
class Login:
    """A demo log-in to print: user name, role (its Chinese label), organisation code and name."""

    username: str
    role: str
    org: str
    org_name: str = ""


@dataclass
class DemoResult:
    """What the demo built (or found already built)."""

    organisations: int
    campaign_id: int
    already_built: bool
    logins: list[Login] = field(default_factory=list)


def secretary_username(code: str) -> str:
    return "shuji_" + code.lower().replace("-", "_")


def committee_username(code: str) -> str:
    return "weiyuan_" + code.lower().replace("-", "_")


def _people() -> list[tuple[str, str, str, Role]]:
    """Return (username, display name, org code, role) for every demo user."""
    people = [
        ("admin", "系统管理员", "HB", Role.ADMIN),
        ("zuzhike", "局组织科组织员", "HB", Role.ORGANISER),
        ("duzhu", "局督导组成员", "HB", Role.SUPERVISOR),
    ]
    for code, name, kind, _parent, _members in TREE:
        if kind == "党支部":
            people.append((secretary_username(code), f"{name}书记", code, Role.SECRETARY))
        else:
            people.append((committee_username(code), f"{name}委员", code, Role.COMMITTEE))
    return people


def sample_evidence(
    tpl: Template, stage: Stage, members: int, roster: list[int] | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Return evidence that meets every requirement of `stage` except superiors' reviews.

    With a `roster` (member ids), commitments name roster members and meetings tick attendance.
    """
    today = utcnow().date().isoformat()
    out: list[tuple[str, dict[str, Any]]] = []
    for req in stage.requirements:
        if isinstance(req, EvidenceCount):
            record = _record(tpl, req.kind, req.subject, req.label, members, today)
            if roster and req.kind == "meeting":
                record = _ticked(record, roster)
            out += [(req.kind, record)] * req.min
        elif isinstance(req, ActivityHeadings):
            for heading in req.headings:
                item = {"heading": heading, "date": today, "title": f"{heading}主题活动"}
                out += [("activity", item)] * req.min_each
        elif isinstance(req, CommitmentShare):
            who: list[dict[str, Any]] = (
                [{"member_id": m} for m in roster]
                if roster
                else [{"member": f"党员{i:02d}"} for i in range(1, members + 1)]
            )
            out += [("commitment", {**w, "text": "立足岗位，带头服务群众"}) for w in who]
            out.append(("commitment", {"text": "支部承诺：争创五个好先进基层党组织"}))
        elif isinstance(req, AppraisalCount):
            need = max(req.min, int(req.min_member_ratio * members) + 1)
            out += [("appraisal", {"rating": "满意" if i % 5 else "基本满意"}) for i in range(need)]
        elif isinstance(req, DecisionRecorded):
            grade = tpl.grades[0] if tpl.grades else None
            out.append(("decision", {"grade": grade, "commendation": "先进基层党组织"}))
        elif isinstance(req, ReviewPresent):
            continue  # written by a superior: see REVIEW
    return out


def _ticked(record: dict[str, Any], roster: list[int]) -> dict[str, Any]:
    """A meeting with attendance ticked from the roster: the last member away on leave."""
    data = {k: v for k, v in record.items() if k not in ("expected", "present")}
    if len(roster) < 2:
        return {**data, "attendees": roster}
    return {
        **data,
        "attendees": roster[:-1],
        "absences": [{"member_id": roster[-1], "reason": "请假"}],
    }


REVIEW = {
    "achievements": "班子团结，承诺事项落实到位",
    "problems": "活动记录不够及时",
    "direction": "加强经常性学习，做好群众评议准备",
}


def _record(
    tpl: Template, kind: str, subject: str | None, label: str, members: int, today: str
) -> dict[str, Any]:
    if kind == "meeting":
        present = max(members - 1, 1)
        return {"date": today, "title": label, "expected": max(members, 1), "present": present}
    if kind == "document":
        return {"category": subject or label, "title": label, "summary": f"{label}（演示）"}
    if kind == "activity":
        heading = subject or (tpl.headings[0] if tpl.headings else "主题活动")
        return {"heading": heading, "date": today, "title": label}
    if kind == "decision":
        return {"grade": subject or (tpl.grades[0] if tpl.grades else None), "commendation": label}
    if kind == "appraisal":
        return {"rating": "满意"}
    if kind == "commitment":
        return {"member": subject, "text": label}
    return {"text": label}


def build_demo(engine: Engine, *, echo: Callable[[str], None] = lambda _m: None) -> DemoResult:
    """Build the demo in the database behind `engine`; safe to run twice."""
    with unit_of_work(engine) as s:
        import_orgs(s, [OrgRow(i + 2, c, n, k, p, m) for i, (c, n, k, p, m) in enumerate(TREE)])
    echo(f"组织树：{len(TREE)} 个组织 / organisation tree: {len(TREE)} organisations")
    with unit_of_work(engine) as s:
        added = build_rosters(s, {c: m for c, _n, k, _p, m in TREE if k == "党支部" and m})
    if added:
        echo(f"党员名册：{added} 名党员 / rosters: {added} members")
    with unit_of_work(engine) as s:
        for username, name, code, role in _people():
            user = get_user_by_username(s, username) or add_user(
                s, username=username, password=DEMO_PASSWORD, display_name=name
            )
            grant_role(s, user=user, org_code=code, role=role)
    logins = demo_login_list()
    with unit_of_work(engine) as s:
        existing = s.exec(select(Campaign).where(Campaign.name == DEMO_CAMPAIGN)).first()
    if existing is not None:
        return DemoResult(len(TREE), existing.id or 0, True, logins)
    with unit_of_work(engine) as s:
        organiser = actor_by_username(s, "zuzhike")
        campaign = launch_campaign(
            s,
            template_key=TEMPLATE,
            root_code="HB",
            name=DEMO_CAMPAIGN,
            actor=organiser,
            now=utcnow() - timedelta(days=LAUNCHED_DAYS_AGO),
        )
    echo(f"活动已发起：{campaign.run_count} 个支部 / campaign launched: {campaign.run_count} runs")
    for code, (steps, waiting) in PROGRESS.items():
        _drive(engine, campaign, code, steps, waiting)
    echo("各支部进度已生成 / branch progress generated")
    return DemoResult(len(TREE), campaign.id or 0, False, logins)


def _drive(engine: Engine, campaign: Campaign, code: str, steps: int, waiting: bool) -> None:
    """Move one branch `steps` stages along, a stage a week, then leave a request waiting."""
    for step in range(steps):
        request_id = _fill_and_request(engine, campaign.id or 0, code)
        if request_id is None:
            return
        when = campaign.launched_at + timedelta(days=DAYS_PER_STAGE * (step + 1))
        _approve_all(engine, request_id, when)
    if waiting:
        _fill_and_request(engine, campaign.id or 0, code)


def _run_of(s: Session, campaign_id: int, code: str) -> tuple[Run, Organisation]:
    org = s.exec(select(Organisation).where(Organisation.code == code)).one()
    run = s.exec(select(Run).where(Run.campaign_id == campaign_id, Run.org_id == org.id)).one()
    return run, org


def _fill_and_request(engine: Engine, campaign_id: int, code: str) -> int | None:
    with unit_of_work(engine) as s:
        run, org = _run_of(s, campaign_id, code)
        if run.stage == DONE:
            return None
        ctx = runs.load_run(s, run.id or 0, None)
        secretary = actor_by_username(s, secretary_username(code))
        stage = ctx.tpl.stage(run.stage)
        parent = s.get(Organisation, org.parent_id)
        assert parent is not None
        reviewer = actor_by_username(s, committee_username(parent.code))
        roster = roster_ids(s, org.id or 0)
        for kind, data in sample_evidence(ctx.tpl, stage, org.member_count, roster):
            who = reviewer if kind == "decision" else secretary  # grades are decided above
            runs.record_evidence(s, run_id=run.id or 0, actor=who, kind=kind, data=data)
        if any(isinstance(r, ReviewPresent) for r in stage.requirements):
            runs.record_evidence(s, run_id=run.id or 0, actor=reviewer, kind="review", data=REVIEW)
        req = runs.request_advance(
            s, run_id=run.id or 0, actor=secretary, comment="材料已齐，请审批"
        )
        return req.id


def _approve_all(engine: Engine, request_id: int, when: datetime) -> None:
    while True:
        with unit_of_work(engine) as s:
            req = s.get(Request, request_id)
            if req is None or req.status != "pending":
                return
            approver_org = s.get(Organisation, req.current_approver_org_id)
            assert approver_org is not None
            actor: Actor = actor_by_username(s, committee_username(approver_org.code))
            runs.approve(s, request_id=request_id, actor=actor, opinion="同意", now=when)


def demo_login_list() -> list[Login]:
    """Every demo log-in, in tree order (each committee followed by its branches)."""
    names = {code: name for code, name, _k, _p, _m in TREE}
    return [Login(u, ROLE_LABELS[role], code, names[code]) for u, _n, code, role in _people()]
