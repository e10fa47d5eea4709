"""Tree queries on the materialised path: subtree, children, ancestors."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from states.errors import NotFound
from states.orgs import ancestors, children, get_org, get_org_by_code, subtree
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
