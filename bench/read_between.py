"""Commands with page reads between them, on one pooled connection (PostgreSQL).

    python -m bench.read_between --n 400

Setup as in `bench.transitions` (one campaign over N×3 branches, each run with its meeting and
a pending advance request; not timed). Then, on an engine whose pool holds one connection:
N page-like reads alone (`load_request` in a `read_session`), N final approvals alone, N
pairs of one read then one approval, and N pairs of one refused approval (409: already
approved) then one approval. Prints wall and CPU milliseconds per item as JSON lines.
A read that ended with ROLLBACK used to make psycopg drop the connection's prepared
statements, so the approval after it was planned afresh: the pairs cost far more than the
read plus the approval.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence

from sqlalchemy.engine import Engine

from bench.common import (
    drop_pg,
)
from bench.transitions import pending_approvals
from states.db import make_engine, read_session, unit_of_work
from states.errors import Conflict
from states.runs import approve, load_request
from states.users import Actor


def timed(label: str, items: Sequence[int], step: Callable[[int], None]) -> dict[str, object]:
    c0, t0 = time.process_time(), time.perf_counter()
    for item in items:
        step(item)
    n = len(items)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "bench": "read_between",
        "what": label,
        "n": n,
        "wall_ms": round(1000 * wall / n, 3),
        "cpu_ms": round(1000 * cpu / n, 3),
    }


def measure(engine: Engine, actor: Actor, ids: Sequence[int], n: int) -> list[dict[str, object]]:
    page = ids[0]

    def read(_rid: int) -> None:
        with read_session(engine) as s:
            load_request(s, page, actor)

    def decide(rid: int) -> None:
        with unit_of_work(engine) as s:
            approve(s, request_id=rid, actor=actor)

    def both(rid: int) -> None:
        read(rid)
        decide(rid)

    def refused_then_decide(rid: int) -> None:
        try:  # the first warm-up request, approved already: a 409 after the read
            decide(ids[1])
        except Conflict:
            pass
        else:
            raise AssertionError("approving an approved request was not refused")
        decide(rid)

    decide_ids = ids[1 + 30 : 1 + 30 + n]
    pair_ids = ids[1 + 30 + n : 1 + 30 + 2 * n]
    refused_ids = ids[1 + 30 + 2 * n : 1 + 30 + 3 * n]
    for rid in ids[1 : 1 + 30]:  # warm: templates cached, statements prepared
        decide(rid)
    return [
        timed("read", decide_ids, read),
        timed("approve", decide_ids, decide),
        timed("read then approve", pair_ids, both),
        timed("refused approve (409) then approve", refused_ids, refused_then_decide),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    url, engine, approver, ids = pending_approvals(
        "bench_read_between", 3 * args.n + 50, "read-between"
    )
    one = make_engine(url, pool_size=1, max_overflow=0)
    try:
        for row in measure(one, approver, ids, args.n):
            print(json.dumps(row, ensure_ascii=False), flush=True)
    finally:
        one.dispose()
        engine.dispose()
        drop_pg("bench_read_between")


if __name__ == "__main__":
    main()
