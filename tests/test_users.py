"""Users, grants and reach: deny by default, scoped to the subtree."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from states.errors import Conflict, InvalidInput
from states.models import Organisation, Role
from states.users import add_user, check_password, grant_role, load_actor, parse_role
from tests.factories import make_tree


def _reached(session: Session, actor_id: int) -> list[str]:
    actor = load_actor(session, actor_id)
    rows = session.exec(
        select(Organisation.code).where(actor.reach_filter()).order_by(Organisation.code)
    )
    return list(rows)


def test_reach_by_role(session: Session) -> None:
    make_tree(session)
    secretary = add_user(session, username="s", password="password-1")
    grant_role(session, user=secretary, org_code="G1", role=Role.SECRETARY)
    committee = add_user(session, username="c", password="password-1")
    grant_role(session, user=committee, org_code="G1", role=Role.COMMITTEE)
    nobody = add_user(session, username="n", password="password-1")
    session.commit()
    assert _reached(session, secretary.id or 0) == ["G1"]
    assert _reached(session, committee.id or 0) == ["G1", "S1", "S2"]
    assert _reached(session, nobody.id or 0) == []
    actor = load_actor(session, committee.id or 0)
    assert actor.reaches("/B/H1/G1/S1/") and not actor.reaches("/B/H1/S3/")
    assert not actor.reaches("/B/H1/G10/")  # a sibling whose code merely starts the same


def test_sibling_code_prefix_is_not_in_the_subtree(session: Session) -> None:
    tree = {
        "B": ("局党委", "党委", None, 0),
        "G1": ("一总支", "党总支", "B", 0),
        "G10": ("十总支", "党总支", "B", 0),
        "G1-S": ("一支部", "党支部", "G1", 3),
        "G10-S": ("十支部", "党支部", "G10", 3),
    }
    make_tree(session, tree)
    user = add_user(session, username="c", password="password-1")
    grant_role(session, user=user, org_code="G1", role=Role.COMMITTEE)
    assert _reached(session, user.id or 0) == ["G1", "G1-S"]


def test_passwords_and_names(session: Session) -> None:
    make_tree(session)
    user = add_user(session, username="zhang", password="correct horse")
    assert user.password_hash.startswith("$2") and "correct" not in user.password_hash
    assert check_password("correct horse", user.password_hash)
    assert not check_password("wrong", user.password_hash)
    with pytest.raises(Conflict):
        add_user(session, username="zhang", password="another-one")
    with pytest.raises(InvalidInput, match="至少 8 位"):
        add_user(session, username="li", password="short")
    assert parse_role("委员") is Role.COMMITTEE and parse_role("Secretary") is Role.SECRETARY
    with pytest.raises(InvalidInput, match="未知角色"):
        parse_role("king")
