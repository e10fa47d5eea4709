"""A small world for API tests: the factory tree, people on it, a campaign and tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.app import create_app
from states.campaigns import launch_campaign
from states.models import Organisation, Role, Run
from states.tokens import issue_token
from states.users import Actor
from tests.factories import make_tree, make_user

# username: grants. Sibling subtree of H1 is H2 (with S4).
PEOPLE: dict[str, tuple[tuple[str, Role], ...]] = {
    "sec_s1": (("S1", Role.SECRETARY),),
    "sec_s2": (("S2", Role.SECRETARY),),
    "com_g1": (("G1", Role.COMMITTEE),),
    "com_h1": (("H1", Role.COMMITTEE),),
    "org_b": (("B", Role.ORGANISER),),
    "admin_b": (("B", Role.ADMIN),),
    "org_h1": (("H1", Role.ORGANISER),),
    # Secretary of S1 who also sits on the committee above it (G1).
    "dual": (("S1", Role.SECRETARY), ("G1", Role.COMMITTEE)),
    # The sibling subtree: every role there, none reaching H1.
    "admin_h2": (("H2", Role.ADMIN), ("H2", Role.ORGANISER), ("H2", Role.COMMITTEE)),
    "sec_s4": (("S4", Role.SECRETARY),),
}

MEETING = {"date": "2026-11-20", "title": "动员大会", "expected": 3, "present": 3}


@dataclass
class World:
    engine: Engine
    client: TestClient
    orgs: dict[str, Organisation]
    actors: dict[str, Actor]
    tokens: dict[str, dict[str, str]]
    campaign_id: int
    runs: dict[str, int] = field(default_factory=dict)

    def as_(self, username: str) -> dict[str, str]:
        return self.tokens[username]

    def get(self, username: str, url: str, **kw: Any) -> Any:
        return self.client.get(url, headers=self.as_(username), **kw)

    def post(self, username: str, url: str, **kw: Any) -> Any:
        headers = {**self.as_(username), **kw.pop("headers", {})}
        return self.client.post(url, headers=headers, **kw)


def build_world(engine: Engine) -> World:
    with Session(engine, expire_on_commit=False) as s:
        orgs = make_tree(s)
        actors = {name: make_user(s, name, *grants) for name, grants in PEOPLE.items()}
        campaign = launch_campaign(
            s, template_key="chuangxian_zhengyou", root_code="B", actor=actors["org_b"]
        )
        s.flush()
        tokens = {
            name: {"Authorization": "Bearer " + issue_token(s, a.user_id).token}
            for name, a in actors.items()
        }
        run_rows = s.execute(
            select(Organisation.code, Run.id)
            .join(Run, Run.org_id == Organisation.id)  # type: ignore[arg-type]
            .where(Run.campaign_id == campaign.id)
        ).all()
        s.commit()
    client = TestClient(create_app(engine), raise_server_exceptions=False)
    return World(
        engine, client, orgs, actors, tokens, campaign.id or 0, {c: int(r) for c, r in run_rows}
    )
