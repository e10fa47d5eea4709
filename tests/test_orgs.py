"""Tree queries on the materialised path: subtree, children, ancestors; codes in any case."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from states.errors import NotFound
from states.orgs import (
    ancestors,
    children,
    code_chunks,
    code_key,
    get_org,
    get_org_by_code,
    orgs_by_code,
    subtree,
)
from tests.factories import make_tree


def test_tree_queries(session: Session) -> None:
    orgs = make_tree(session)
    h1 = orgs["H1"]
    assert [o.code for o in subtree(session, h1)] == ["H1", "G1", "S1", "S2", "S3"]
    assert [o.code for o in subtree(session, h1, include_self=False)] == ["G1", "S1", "S2", "S3"]
    assert [o.code for o in subtree(session, orgs["B"], kinds=["党支部"])] == [
        "S1",
        "S2",
        "S3",
        "S4",
    ]
    assert [o.code for o in children(session, h1)] == ["G1", "S3"]
    assert [o.code for o in ancestors(session, orgs["S1"])] == ["G1", "H1", "B"]
    assert ancestors(session, orgs["B"]) == []
    assert get_org(session, h1.id or 0).code == "H1"
    with pytest.raises(NotFound):
        get_org(session, 10_000)
    with pytest.raises(NotFound, match="NOPE"):
        get_org_by_code(session, "NOPE")


def test_codes_are_found_in_any_case_and_malformed_ones_never_reach_the_database(
    session: Session,
) -> None:
    make_tree(session)
    assert get_org_by_code(session, "h1").code == "H1"
    assert get_org_by_code(session, "s4").path == "/B/H2/S4/"
    # A NUL byte would be an error on PostgreSQL; the Kelvin sign folds to "k" in Python.
    for odd in ("H\x001", "H1 ", "\u212a1", "", "H1\n"):
        with pytest.raises(NotFound):
            get_org_by_code(session, odd)
    assert code_key("Jt01G1B1") == "jt01g1b1" and code_key("\u212a") == "\u212a"
    assert list(code_chunks(["B", "b", "x\x00", "A", "c"], size=2)) == [["a", "b"], ["c"]]


def test_many_codes_are_looked_up_in_chunks(session: Session) -> None:
    make_tree(session)
    codes = [f"NOPE{i}" for i in range(70_000)] + ["b", "G1"]
    found = orgs_by_code(session, codes)
    assert sorted(o.code for o in found.values()) == ["B", "G1"]
