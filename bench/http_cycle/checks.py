"""Checks after a measurement, and the SQL each endpoint issues per call."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import event

from bench.common import note
from bench.http_cycle.constants import API
from bench.http_cycle.world import Target
from states.db import make_engine


def verify_cycles(dsn: str, targets: Sequence[Target], cycles: int) -> None:
    """Runs moved to pledge == cycles, each with exactly one approved request and its rows."""
    ids = [t.run_id for t in targets]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT"
            " (SELECT count(*) FROM run WHERE id = ANY(%(ids)s) AND stage = 'pledge'"
            "   AND pending_request_id IS NULL),"
            " (SELECT count(*) FROM request WHERE run_id = ANY(%(ids)s) AND status = 'approved'),"
            " (SELECT count(*) FROM audit_event WHERE run_id = ANY(%(ids)s)"
            "   AND action = 'stage.advanced'),"
            " (SELECT count(*) FROM outbox WHERE run_id = ANY(%(ids)s)"
            "   AND event_kind = 'request_approved'),"
            " (SELECT count(*) FROM request WHERE run_id = ANY(%(ids)s) AND status = 'pending')",
            {"ids": ids},
        ).fetchone()
    assert row is not None
    *got, pending = row
    assert tuple(got) == (cycles,) * 4, f"expected {cycles} finished cycles, database says {got}"
    if pending:
        note(f"  {pending} request(s) left pending (a failed approve); counted as errors")


def statements_per_call(url: str, targets: Sequence[Target]) -> dict[str, Any]:
    """Run cycles in-process (TestClient) and log the last cycle's SQL, per endpoint.

    The earlier cycles warm the per-process caches, as in a running server.
    """
    from starlette.testclient import TestClient

    from api.app import create_app

    engine = make_engine(url)
    current = {"call": ""}
    seen: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)

    def _log(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if not current["call"]:
            return
        words = statement.split()
        keys = [k for k in ("FROM", "INTO", "UPDATE") if k in words]
        table = words[words.index(keys[0]) + 1] if keys else ""
        seen[current["call"]].append(f"{words[0].upper()} {table}".strip())

    def _count(name: str) -> Any:
        def _inc(*_a: Any) -> None:
            if current["call"]:
                counts[current["call"]][name] += 1

        return _inc

    with TestClient(create_app(engine)) as client:
        *warm, probe = targets
        for t in [*warm, probe]:
            last = t is probe
            if last:
                event.listen(engine, "before_cursor_execute", _log)
                event.listen(engine.pool, "checkout", _count("checkouts"))
                event.listen(engine, "commit", _count("commits"))
                event.listen(engine, "rollback", _count("rollbacks"))
            current["call"] = "request" if last else ""
            r = client.post(
                f"{API}/runs/{t.run_id}/requests",
                json={},
                headers={"Authorization": f"Bearer {t.sec_token}"},
            )
            assert r.status_code == 201, r.text
            current["call"] = "approve" if last else ""
            r = client.post(
                f"{API}/requests/{r.json()['id']}/approve",
                json={},
                headers={"Authorization": f"Bearer {t.com_token}"},
            )
            assert r.status_code == 200, r.text
            current["call"] = ""
    engine.dispose()
    return {
        call: {"statements": seen[call], **dict(counts[call])} for call in ("request", "approve")
    }
