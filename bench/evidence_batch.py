"""A batch of 60 commitments in one call, on PostgreSQL: time per call (goal ≤ 150 ms).

    python -m bench.evidence_batch [--calls 20] [--members 60] [--keep]

Builds `bench_evidence_batch`: a tree of branches each with a roster of `--members` 在册
members, one 创先争优 campaign with every run at 公开承诺. Then, per branch, one call records
every member's commitment (`member_id`) at once: first through the service
(`states.evidence.records.record_batch` in one unit of work), then over HTTP
(`POST /api/v1/runs/{id}/evidence/batch` through the app with a bearer token, TestClient).
Each call writes 60 records, 60 links and 60 audit events and commits. JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import time
from datetime import date

from fastapi.testclient import TestClient
from sqlalchemy import insert, select, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from api.app import create_app
from bench.common import (
    TreeShape,
    analyze,
    build_tree,
    drop_pg,
    emit,
    fresh_pg,
    machine,
    make_actor,
    median,
    migrated_engine,
    note,
)
from states.campaigns import launch_campaign
from states.db import unit_of_work
from states.evidence.records import record_batch
from states.members.models import Member
from states.models import Organisation, Role, Run
from states.tokens import issue_token

DB = "bench_evidence_batch"


def _setup(engine: Engine, branches: int, members: int) -> list[tuple[str, int, list[int]]]:
    """Return (branch code, run id, member ids) per branch."""
    build_tree(engine, TreeShape(branches=branches, members=members))
    with Session(engine) as s:
        codes = list(
            s.execute(
                select(col(Organisation.code), col(Organisation.id))
                .where(col(Organisation.kind) == "党支部")
                .order_by(Organisation.code)
            ).all()
        )
        rows = [
            {
                "org_id": org_id,
                "name": f"党员{i:03d}",
                "category": "正式党员",
                "joined_on": date(2010, 7, 1),
                "status": "在册",
            }
            for _code, org_id in codes
            for i in range(members)
        ]
        s.execute(insert(Member), rows)
        organiser = make_actor(s, "bench_organiser", "B", Role.ORGANISER)
        launch_campaign(s, template_key="chuangxian_zhengyou", root_code="B", actor=organiser)
        s.commit()
        s.execute(text("UPDATE run SET stage = 'pledge'"))
        s.commit()
        out = []
        for code, org_id in codes:
            run_id = s.execute(select(col(Run.id)).where(col(Run.org_id) == org_id)).scalar_one()
            ids = list(
                s.execute(
                    select(col(Member.id))
                    .where(col(Member.org_id) == org_id)
                    .order_by(col(Member.id))
                ).scalars()
            )
            out.append((code, int(run_id), [int(i) for i in ids]))
    analyze(engine, "member", "run", "evidence", "evidence_link", "audit_event")
    return out


def _items(ids: list[int]) -> list[tuple[str, dict[str, object]]]:
    return [("commitment", {"member_id": i, "text": "立足岗位，带头服务群众"}) for i in ids]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=20, help="calls per path (service, HTTP)")
    parser.add_argument("--members", type=int, default=60)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()
    engine = migrated_engine(fresh_pg(DB))
    branches = _setup(engine, 2 * args.calls, args.members)
    note(f"{len(branches)} branches with {args.members} members each, runs at 公开承诺")
    service_ms = []
    with Session(engine) as s:
        secretaries = {
            code: make_actor(s, f"sec_{code}", code, Role.SECRETARY) for code, *_ in branches
        }
    for code, run_id, ids in branches[: args.calls]:
        t0 = time.perf_counter()
        with unit_of_work(engine) as s:
            evs = record_batch(s, run_id=run_id, actor=secretaries[code], items=_items(ids))
        service_ms.append((time.perf_counter() - t0) * 1000)
        assert len(evs) == args.members
    client = TestClient(create_app(engine))
    http_ms = []
    for code, run_id, ids in branches[args.calls :]:
        with Session(engine) as s:
            token = issue_token(s, secretaries[code].user_id).token
            s.commit()
        body = {"items": [{"kind": k, "data": d} for k, d in _items(ids)]}
        t0 = time.perf_counter()
        resp = client.post(
            f"/api/v1/runs/{run_id}/evidence/batch",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        http_ms.append((time.perf_counter() - t0) * 1000)
        assert resp.status_code == 201, resp.text
    for path, values in (("service", service_ms), ("http", http_ms)):
        emit(
            {
                "bench": "evidence_batch",
                "path": path,
                "items_per_call": args.members,
                "calls": len(values),
                "median_ms": round(median(values), 1),
                "max_ms": round(max(values), 1),
                "min_ms": round(min(values), 1),
            }
        )
    emit({"bench": "evidence_batch", "machine": machine(engine)})
    engine.dispose()
    if not args.keep:
        drop_pg(DB)


if __name__ == "__main__":
    main()
