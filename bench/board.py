"""Time to first byte of the public 公示 board page (`GET /b/{token}`) from a real server process.

    .venv/bin/python -m bench.board                       # SQLite and PostgreSQL, about a minute
    .venv/bin/python -m bench.board --backends postgresql --n 500

Setup (not timed), per backend, on a fresh database (`bench_board` on PostgreSQL): a 党委 →
党总支 → 党支部 tree, a 创先争优 campaign, a branch of `--members` members on the roster, each with
a commitment, `--activities` activities over the headings, the superior's review, and a closed
survey of 50 answers; its board published with masked names. The server is
`uvicorn --factory api.app:create_app` in its own process (access log off), warmed with 20
requests. Each timed request opens a new TCP connection, sends the GET, and waits for the first
byte of the answer; the connection is then read to the end. Also timed: the 404 of a forged
token (answered before any query). Reported per backend: p50, p90, p99 and max milliseconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from bench.common import emit, fresh_pg, fresh_sqlite, machine, make_actor, migrated_engine, note
from states.board import service
from states.campaigns import launch_campaign
from states.members.models import Member
from states.models import Evidence, EvidenceLink, Organisation, Role, Run
from states.orgs import child_path
from states.public_links import new_nonce, token_for
from states.survey.models import Survey, SurveyAnswer
from states.timeutil import utcnow

REPO = Path(__file__).resolve().parent.parent
HEADINGS = ("党性教育", "岗位奉献", "服务群众", "亮牌示范", "组织创新")


def _tree(s: Session) -> None:
    parent = None
    for code, name, kind in (("BB", "示例党委", "党委"), ("BG", "示例党总支", "党总支")):
        org = Organisation(
            code=code,
            name=name,
            kind=kind,
            parent_id=parent.id if parent else None,
            path=child_path(parent.path if parent else None, code),
            depth=parent.depth + 1 if parent else 0,
        )
        s.add(org)
        s.flush()
        parent = org
    assert parent is not None
    s.add(
        Organisation(
            code="BS",
            name="示例第一党支部",
            kind="党支部",
            parent_id=parent.id,
            path=child_path(parent.path, "BS"),
            depth=2,
        )
    )
    s.commit()


def _evidence(s: Session, run: Run, kind: str, data: dict[str, Any]) -> None:
    ev = Evidence(org_id=run.org_id, run_id=run.id, stage=run.stage, kind=kind, data=data)
    s.add(ev)
    s.flush()
    s.add(EvidenceLink(evidence_id=ev.id or 0, run_id=run.id or 0, stage=run.stage))


def _content(s: Session, run: Run, members: int, activities: int) -> None:
    for i in range(members):
        m = Member(
            org_id=run.org_id,
            name=f"党员{i:03d}",
            category="正式党员",
            joined_on=date(2000, 1, 1) + timedelta(days=i),
            phone="13800000000",
        )
        s.add(m)
        s.flush()
        _evidence(
            s, run, "commitment", {"member_id": m.id, "text": f"第 {i} 项承诺：" + "办实事" * 8}
        )
    for i in range(activities):
        day = (date(2026, 9, 1) + timedelta(days=i)).isoformat()
        data = {
            "heading": HEADINGS[i % 5],
            "date": day,
            "title": f"活动 {i}",
            "description": "说明",
        }
        _evidence(s, run, "activity", data)
    _evidence(s, run, "review", {"achievements": "成效明显", "problems": "无", "direction": "坚持"})


def _survey(s: Session, run: Run, user_id: int) -> None:
    survey = Survey(
        run_id=run.id or 0,
        stage=run.stage,
        org_id=run.org_id,
        questions=[{"key": "overall", "label": "总体评价"}]
        + [{"key": f"h{i}", "label": h} for i, h in enumerate(HEADINGS)],
        nonce=new_nonce(),
        opened_by=user_id,
        closed_at=utcnow(),
    )
    s.add(survey)
    s.flush()
    answers = {"overall": "满意", **{f"h{i}": "基本满意" for i in range(5)}}
    for i in range(50):
        s.add(
            SurveyAnswer(
                survey_id=survey.id or 0,
                channel="code",
                receipt=f"B{i:04d}",
                answers=answers,
                comment="很好" if i % 5 == 0 else None,
            )
        )


def seed(url: str, members: int, activities: int) -> str:
    """Build the board's data and publish it; return its token."""
    engine = migrated_engine(url)
    with Session(engine, expire_on_commit=False) as s:
        _tree(s)
        organiser = make_actor(s, "bench_org", "BB", Role.ORGANISER)
        campaign = launch_campaign(
            s, template_key="chuangxian_zhengyou", root_code="BB", actor=organiser
        )
        s.commit()
        run = s.exec(select(Run).where(Run.campaign_id == campaign.id)).one()
        _content(s, run, members, activities)
        _survey(s, run, organiser.user_id)
        published = service.publish(
            s, run_id=run.id or 0, actor=organiser, mask_names=True, until=None
        )
        s.commit()
        token = published.token
    engine.dispose()
    return token


def start_server(url: str) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning"]
    env = {**os.environ, "DATABASE_URL": url}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env)
    for _ in range(400):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, port
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise SystemExit("the server did not start")


def ttfb(port: int, path: str) -> tuple[float, int]:
    """Seconds from sending the request to the first byte of the answer, and the status."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        t0 = time.perf_counter()
        sock.sendall(request.encode())
        first = sock.recv(1)
        elapsed = time.perf_counter() - t0
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    status = int((first + rest)[9:12])
    return elapsed, status


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0)}


def measure(backend: str, n: int, members: int, activities: int) -> None:
    url = (
        fresh_pg("bench_board")
        if backend == "postgresql"
        else fresh_sqlite(REPO / "bench" / "results" / "board.db")
    )
    token = seed(url, members, activities)
    proc, port = start_server(url)
    try:
        for _ in range(20):
            ttfb(port, f"/b/{token}")
        for label, path, expected in (
            ("board", f"/b/{token}", 200),
            ("forged_404", "/b/" + token_for("survey", token.split(".")[0]), 404),
        ):
            times = []
            for _ in range(n):
                elapsed, status = ttfb(port, path)
                assert status == expected, (label, status)
                times.append(elapsed)
            record = {"summary": True, "backend": backend, "page": label, "n": n}
            record.update(members=members, activities=activities, **percentiles(times))
            emit(record)
            note(f"{backend} {label}: {record}")
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", default="sqlite,postgresql")
    ap.add_argument("--n", type=int, default=300, help="timed requests per page")
    ap.add_argument("--members", type=int, default=40)
    ap.add_argument("--activities", type=int, default=30)
    args = ap.parse_args()
    (REPO / "bench" / "results").mkdir(parents=True, exist_ok=True)
    emit({"meta": True, "machine": machine()})
    for backend in args.backends.split(","):
        measure(backend.strip(), args.n, args.members, args.activities)


if __name__ == "__main__":
    main()
