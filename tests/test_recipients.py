"""Who receives each kind of notice, as a table: event kind and level → people and robots."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import Session, select

from notifications.recipients import RULES, resolve
from states import outbox, runs
from states.campaigns import launch_campaign
from states.models import OutboxMessage, Role, Run, User
from tests.factories import MEETING, make_tree, make_user

PEOPLE: dict[str, tuple[tuple[str, Role], ...]] = {
    "sec_s1": (("S1", Role.SECRETARY),),
    "com_s1": (("S1", Role.COMMITTEE),),
    "com_g1": (("G1", Role.COMMITTEE),),
    "com_h1": (("H1", Role.COMMITTEE),),
    "org_h1": (("H1", Role.ORGANISER),),
    "com_b": (("B", Role.COMMITTEE),),
    "org_b": (("B", Role.ORGANISER),),
    "admin_b": (("B", Role.ADMIN),),  # administrators are not an audience
    "sup_b": (("B", Role.SUPERVISOR),),
    "sec_s4": (("S4", Role.SECRETARY),),
}

# (event kind, level, root of the campaign, run's branch, target org) → (people, robot orgs)
TABLE: list[tuple[str, int, str, str, str, set[str], set[str]]] = [
    ("request_submitted", 0, "B", "S1", "G1", {"com_g1"}, {"G1"}),
    ("extension_requested", 0, "B", "S1", "G1", {"com_g1"}, {"G1"}),
    ("request_withdrawn", 0, "B", "S1", "G1", {"com_g1"}, {"G1"}),
    ("request_approved", 0, "B", "S1", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("request_returned", 0, "B", "S1", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("extension_granted", 0, "B", "S1", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("run_sent_back", 0, "B", "S1", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("reminder", 0, "B", "S1", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("phase_opened", 0, "B", "S1", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("overdue", 1, "B", "S1", "S1", {"sec_s1", "com_s1", "com_g1"}, {"S1", "G1"}),
    # From level 2 the supervisors on the branch or above (B here) are told too.
    (
        "overdue",
        2,
        "B",
        "S1",
        "S1",
        {"sec_s1", "com_s1", "com_g1", "com_h1", "sup_b"},
        {"S1", "G1", "H1"},
    ),
    (
        "overdue",
        3,
        "B",
        "S1",
        "S1",
        {"sec_s1", "com_s1", "com_g1", "com_h1", "com_b", "org_b", "sup_b"},
        {"S1", "G1", "H1", "B"},
    ),
    # A campaign launched at H1 escalates no higher than H1.
    (
        "overdue",
        3,
        "H1",
        "S1",
        "S1",
        {"sec_s1", "com_s1", "com_g1", "com_h1", "org_h1", "sup_b"},
        {"S1", "G1", "H1"},
    ),
    # S3 sits directly under H1: its grandparent is B, above a campaign launched at H1 → H1.
    ("overdue", 2, "H1", "S3", "S3", {"com_h1", "sup_b"}, {"S3", "H1"}),
    ("approval_sla", 1, "B", "S1", "G1", {"com_g1"}, {"G1"}),
    ("approval_sla", 2, "B", "S1", "G1", {"com_g1", "com_h1", "sup_b"}, {"G1", "H1"}),
    ("bulletin", 0, "B", "", "H1", {"com_h1", "org_h1"}, {"H1"}),
    ("campaign_launched", 0, "B", "", "B", {"com_b", "org_b"}, {"B"}),
    # The supervision group: findings on an organisation, and a 通报 to a subtree.
    ("finding_issued", 0, "B", "", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("finding_reminder", 0, "B", "", "S1", {"sec_s1", "com_s1"}, {"S1"}),
    ("finding_overdue", 1, "B", "", "S1", {"sec_s1", "com_s1", "com_g1"}, {"S1", "G1"}),
    ("finding_overdue", 2, "B", "", "S1", {"sec_s1", "com_s1", "com_g1", "sup_b"}, {"S1", "G1"}),
    ("finding_answered", 0, "B", "", "S1", set(), set()),
    ("circular", 0, "B", "", "G1", {"com_g1", "sec_s1", "com_s1"}, {"G1", "S1", "S2"}),
]


def test_every_rule_kind_is_in_the_table() -> None:
    assert set(RULES) <= {row[0] for row in TABLE}


@pytest.mark.parametrize(
    "kind,level,root,branch,target,people,robots",
    TABLE,
    ids=[f"{r[0]}-{r[1]}-{r[2]}-{r[3]}" for r in TABLE],
)
def test_recipients(
    session: Session,
    kind: str,
    level: int,
    root: str,
    branch: str,
    target: str,
    people: set[str],
    robots: set[str],
) -> None:
    orgs = make_tree(session)
    actors = {u: make_user(session, u, *g) for u, g in PEOPLE.items()}
    launcher = actors["org_b"] if root == "B" else actors["org_h1"]
    camp = launch_campaign(
        session, template_key="chuangxian_zhengyou", root_code=root, actor=launcher
    )
    session.commit()
    payload: dict[str, Any] = {"level": level, "campaign_id": camp.id}
    run_id = None
    if branch:
        run = session.execute(
            select(Run).where(Run.campaign_id == camp.id, Run.org_id == orgs[branch].id)
        ).scalar_one()
        run_id = run.id
        if kind.startswith("request") or kind.startswith("extension"):
            sec = actors["sec_s1"]
            runs.record_evidence(
                session, run_id=run.id or 0, actor=sec, kind="meeting", data=MEETING
            )
            req = runs.request_advance(session, run_id=run.id or 0, actor=sec)
            payload["request_id"] = req.id
    outbox.enqueue(
        session,
        event_kind=kind,
        dedupe_key=f"test:{kind}",
        payload=payload,
        run_id=run_id,
        org_id=orgs[target].id,
    )
    session.commit()
    msg = session.execute(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == f"test:{kind}")
    ).scalar_one()
    rec = resolve(session, [msg])[msg.id or 0]
    names = {
        u.username
        for u in session.execute(select(User).where(User.id.in_(rec.user_ids()))).scalars()  # type: ignore[union-attr]
    }
    by_id = {o.id: code for code, o in orgs.items()}
    assert names == people
    assert {by_id[o] for o in rec.orgs} == robots
