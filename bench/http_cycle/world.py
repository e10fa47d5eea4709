"""Setup, not timed: the benchmark database, and the tree, users, tokens and runs COPYed into it."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from bench.common import ORG_COLUMNS, PG_ADMIN_URL, copy_rows, pg_url
from bench.http_cycle.constants import MEETING, ROOT, TEMPLATE
from states.audit import GENESIS, event_hash
from states.campaigns import launch_campaign
from states.catalog import get_template
from states.db import make_engine
from states.evidence import validate_evidence
from states.orgs import child_path
from states.timeutil import utcnow
from states.tokens import token_digest


def _admin(sql: str) -> None:
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def fresh_db(name: str) -> str:
    """Drop and recreate database `name` (must start with dj_bench_); return its URL."""
    if not name.startswith("dj_bench_"):
        raise SystemExit(f"refusing to recreate {name!r}: use a database named dj_bench_*")
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def drop_db(name: str) -> None:
    if name.startswith("dj_bench_"):
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def conninfo(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"


@dataclass(frozen=True)
class Target:
    """One run to take through one cycle, with who acts on it."""

    run_id: int
    org_id: int
    org_code: str
    org_name: str
    approver_org: int
    campaign_id: int
    campaign_name: str
    secretary: int
    committee: int
    sec_token: str
    com_token: str


@dataclass
class World:
    branches: list[tuple[int, str, str, int]]  # (org id, code, name, parent org id)
    secretary_of: dict[int, tuple[int, str]]  # org id → (user id, token)
    committee_of: dict[int, tuple[int, str]]
    runs: list[Target] = field(default_factory=list)
    taken: int = 0

    def take(self, n: int) -> list[Target]:
        if self.taken + n > len(self.runs):
            raise RuntimeError(f"run pool exhausted: {self.taken} + {n} > {len(self.runs)}")
        out = self.runs[self.taken : self.taken + n]
        self.taken += n
        return out


def build_world(engine: Engine, branches: int, committees: int) -> World:
    """COPY root → committees (党总支) → branches (党支部), their users, grants and tokens."""
    now = utcnow()
    root_path = child_path(None, ROOT)
    orgs: list[tuple[Any, ...]] = [
        (1, ROOT, "示例市卫生局党委", "党委", None, root_path, 0, 0, now, now)
    ]
    c_paths = []
    for c in range(committees):
        code = f"C{c + 1:03d}"
        c_paths.append(child_path(root_path, code))
        orgs.append((2 + c, code, f"第{c + 1}党总支", "党总支", 1, c_paths[-1], 1, 0, now, now))
    world = World(branches=[], secretary_of={}, committee_of={})
    s_base = 2 + committees
    for s in range(branches):
        c = s % committees
        code = f"S{s + 1:05d}"
        org_id, name = s_base + s, f"第{s + 1}党支部"
        path = child_path(c_paths[c], code)
        orgs.append((org_id, code, name, "党支部", 2 + c, path, 2, 3, now, now))
        world.branches.append((org_id, code, name, 2 + c))
    copy_rows(engine, "organisation", ORG_COLUMNS, orgs)

    users, grants, tokens = [], [], []
    holders = [(org_id, f"sec-{code}", "secretary") for org_id, code, _, _ in world.branches]
    holders += [(2 + c, f"com-C{c + 1:03d}", "committee") for c in range(committees)]
    for uid, (org_id, username, role) in enumerate(holders, 1):
        token = secrets.token_urlsafe(32)
        users.append((uid, username, username, "!", True, now))
        grants.append((uid, uid, org_id, role, now))
        tokens.append((uid, token_digest(token), uid, "api", now, now + timedelta(hours=12)))
        mine = world.secretary_of if role == "secretary" else world.committee_of
        mine[org_id] = (uid, token)
    copy_rows(
        engine,
        "app_user",
        ["id", "username", "display_name", "password_hash", "is_active", "created_at"],
        users,
    )
    copy_rows(engine, "role_grant", ["id", "user_id", "org_id", "role", "created_at"], grants)
    copy_rows(
        engine,
        "api_token",
        ["id", "token_hash", "user_id", "label", "created_at", "expires_at"],
        tokens,
    )
    return world


def launch_runs(engine: Engine, world: World, needed: int) -> None:
    """Launch campaigns over the whole tree (one after another) until `needed` runs exist."""
    orgs = {org_id: (code, name, parent) for org_id, code, name, parent in world.branches}
    launched = 0
    with Session(engine, expire_on_commit=False) as s:
        while launched < needed:
            n = len(world.runs) // len(world.branches) + 1
            campaign = launch_campaign(s, template_key=TEMPLATE, root_code=ROOT, name=f"http {n}")
            s.commit()
            rows = s.execute(
                text("SELECT id, org_id FROM run WHERE campaign_id = :c ORDER BY id"),
                {"c": campaign.id},
            ).all()
            for run_id, org_id in rows:
                code, name, parent = orgs[org_id]
                sec, com = world.secretary_of[org_id], world.committee_of[parent]
                world.runs.append(
                    Target(
                        run_id, org_id, code, name, parent, campaign.id or 0, campaign.name,
                        sec[0], com[0], sec[1], com[1],
                    )
                )  # fmt: skip
            launched += len(rows)


def record_meetings(dsn: str, targets: Sequence[Target]) -> None:
    """Give each run its meeting: the evidence row and audit event `record_evidence` writes."""
    clean, subject = validate_evidence(get_template(TEMPLATE), "meeting", MEETING)
    by_run = {t.run_id: t for t in targets}
    now = utcnow()
    with psycopg.connect(dsn) as conn:
        assert not conn.execute(
            "SELECT 1 FROM audit_event WHERE run_id = ANY(%s) LIMIT 1", (list(by_run),)
        ).fetchone(), "runs to prepare already have audit events"
        rows = conn.execute(
            "INSERT INTO evidence (org_id, run_id, stage, kind, subject, data, recorded_by,"
            " recorder_org_id, on_behalf, created_at)"
            " SELECT t.org, t.run_id, 'mobilize', 'meeting', %s, %s, t.sec, t.org, false, %s"
            " FROM unnest(%s::int[], %s::int[], %s::int[]) AS t(run_id, sec, org)"
            " RETURNING id, run_id",
            (
                subject,
                Json(clean),
                now,
                [t.run_id for t in targets],
                [t.secretary for t in targets],
                [t.org_id for t in targets],
            ),
        ).fetchall()
        conn.execute(
            "INSERT INTO evidence_link (evidence_id, run_id, stage, linked_by, linked_at)"
            " SELECT e.id, e.run_id, e.stage, e.recorded_by, e.created_at FROM evidence e"
            " WHERE e.id = ANY(%s)",
            ([ev_id for ev_id, _ in rows],),
        )
        cols = "stream, seq, at, actor_id, action, run_id, data, prev_hash, hash"
        with conn.cursor().copy(f"COPY audit_event ({cols}) FROM STDIN") as cp:
            for ev_id, run_id in rows:
                t = by_run[run_id]
                data = {
                    "org": t.org_code,
                    "evidence_id": ev_id,
                    "stage": "mobilize",
                    "kind": "meeting",
                    "subject": subject,
                    "on_behalf": False,
                }
                digest = event_hash(
                    prev_hash=GENESIS, stream=f"run:{run_id}", seq=1, at=now,
                    actor_id=t.secretary, action="evidence.recorded", run_id=run_id, data=data,
                )  # fmt: skip
                cp.write_row(
                    (f"run:{run_id}", 1, now, t.secretary, "evidence.recorded", run_id,
                     json.dumps(data), GENESIS, digest)
                )  # fmt: skip
        conn.execute(  # each run's row holds its stream's head (`Run.audit_seq`/`audit_hash`)
            "UPDATE run SET audit_seq = e.seq, audit_hash = e.hash FROM audit_event e"
            " WHERE e.stream = 'run:' || run.id AND e.seq = 1 AND run.id = ANY(%s)",
            (list(by_run),),
        )
