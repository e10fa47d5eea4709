"""Public survey answers per second (`POST /s/{token}`) against a real server, on PostgreSQL.

    .venv/bin/python -m bench.survey                      # about a minute
    .venv/bin/python -m bench.survey --posts 3000 --clients 16 --workers 2 --rounds 3

Setup (not timed), on a fresh database `bench_survey`: a 党委 → 党总支 → N 党支部 tree, a 创先争优
campaign with every branch's run at 群众评议, and on each branch a survey with 500 one-time codes
and the open link (N = enough branches for the code posts). The server is `dangjian serve
--workers W --no-access-log` (one single-process uvicorn per worker on its own SO_REUSEPORT
socket), with `DANGJIAN_TRUSTED_PROXIES=127.0.0.1`: each post names its own client address in
`X-Forwarded-For`, as a reverse proxy would, so the per-address rate limit (20 open-link posts
per address per 10 minutes) does not refuse the benchmark's traffic. Warmed with 50 posts.

Timed, per round: `--posts` form posts from `--clients` threads, each on one keep-alive
connection, half answering by a one-time code and half by the open link (each link post with
its own signed device cookie); every post must answer 200 with a receipt. Reported: posts per
second over the round's wall time, and p50, p90, p99 and max milliseconds from sending a post to
reading the whole answer; medians over rounds. Goal: ≥ 500 posts/s, p99 ≤ 100 ms.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

from sqlalchemy import update
from sqlmodel import Session, select

from bench.common import emit, fresh_pg, machine, make_actor, median, migrated_engine, note
from states.campaigns import launch_campaign
from states.models import Organisation, Role, Run
from states.orgs import child_path
from states.public_links import token_for
from states.survey import keys, service
from states.users import Actor

REPO = Path(__file__).resolve().parent.parent
SECRET = "bench-survey-secret"
CODES_PER_SURVEY = 500
FORM = {f"q_{i}": "满意" for i in range(1, 7)}


def _org(s: Session, code: str, name: str, kind: str, parent: Organisation | None) -> Organisation:
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
    return org


def _tree(s: Session, branches: int) -> None:
    top = _org(s, "SV", "示例党委", "党委", None)
    general = _org(s, "SVG", "示例党总支", "党总支", top)
    for i in range(branches):
        _org(s, f"SV{i:03d}", f"示例第{i + 1}党支部", "党支部", general)
    s.commit()


def _open_surveys(s: Session, organiser: Actor) -> list[tuple[str, list[str]]]:
    """Open a survey on every run; return (token, codes) per survey."""
    out = []
    for run in s.exec(select(Run)).all():
        survey = service.open_survey(
            s, run_id=run.id or 0, actor=organiser, codes=CODES_PER_SURVEY, open_link=True
        )
        s.commit()
        _, codes = service.reveal_codes(s, survey_id=survey.id or 0, actor=organiser)
        s.commit()
        out.append((token_for("survey", survey.nonce), codes))
    return out


def seed(url: str, code_posts: int) -> list[tuple[str, list[str]]]:
    """The tree, the campaign at 群众评议, and open surveys with enough codes."""
    branches = max(1, -(-code_posts // CODES_PER_SURVEY))
    engine = migrated_engine(url)
    with Session(engine, expire_on_commit=False) as s:
        _tree(s, branches)
        organiser = make_actor(s, "bench_sv", "SV", Role.ORGANISER)
        launch_campaign(s, template_key="chuangxian_zhengyou", root_code="SV", actor=organiser)
        s.commit()
        s.execute(update(Run).values(stage="appraise"))
        s.commit()
        committee = make_actor(s, "bench_sv_com", "SV", Role.COMMITTEE)
        surveys = _open_surveys(s, committee)
    engine.dispose()
    return surveys


def start_server(url: str, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers), "--no-access-log"]
    env = {**os.environ, "DATABASE_URL": url, "DANGJIAN_TRUSTED_PROXIES": "127.0.0.1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, 15)
    raise SystemExit("the server did not start")


class Posts:
    """The requests to send, built before timing: code posts and open-link posts, interleaved."""

    def __init__(self, surveys: list[tuple[str, list[str]]]) -> None:
        self.codes = [(token, c) for token, codes in surveys for c in codes]
        self.link_token = surveys[0][0]
        self.next_addr = 0

    def _addr(self) -> str:
        self.next_addr += 1
        n = self.next_addr
        return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"

    def build(self, n: int) -> list[bytes]:
        out = []
        for i in range(n):
            if i % 2 == 0 and self.codes:
                token, code = self.codes.pop()
                out.append(self._request(token, {**FORM, "code": code}, None))
            else:
                _, cookie = keys.new_device()
                out.append(self._request(self.link_token, FORM, cookie))
        return out

    def _request(self, token: str, form: dict[str, str], cookie: str | None) -> bytes:
        body = urlencode(form).encode()
        head = [
            f"POST /s/{token} HTTP/1.1",
            "Host: 127.0.0.1",
            "Content-Type: application/x-www-form-urlencoded",
            f"Content-Length: {len(body)}",
            f"X-Forwarded-For: {self._addr()}",
        ]
        if cookie:
            head.append(f"Cookie: dj_device={cookie}")
        return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _read_answer(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = bytearray(rest)
    while len(body) < length:
        body += sock.recv(65536)
    buf[:] = body[length:]
    return int(head[9:12]), bytes(body[:length])


def run_round(port: int, requests: list[bytes], clients: int) -> tuple[float, list[float], int]:
    """Send `requests` from `clients` keep-alive connections; (wall s, latencies, failures)."""
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    chunks = [requests[i::clients] for i in range(clients)]

    def client(mine: list[bytes]) -> None:
        nonlocal failures
        local: list[float] = []
        bad = 0
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            buf = bytearray()
            for req in mine:
                t0 = time.perf_counter()
                sock.sendall(req)
                status, body = _read_answer(sock, buf)
                local.append(time.perf_counter() - t0)
                bad += status != 200 or b'id="receipt"' not in body
        with lock:
            latencies.extend(local)
            failures += bad

    threads = [threading.Thread(target=client, args=(c,)) for c in chunks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0, latencies, failures


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0)}


def measure(args: argparse.Namespace) -> None:
    os.environ["DANGJIAN_SECRET_KEY"] = SECRET  # the server signs and checks with the same key
    keys.server_secret.cache_clear()
    url = fresh_pg("bench_survey")
    code_posts = (args.posts * args.rounds + 50) // 2 + 1
    note(f"seeding {code_posts} codes")
    posts = Posts(seed(url, code_posts))
    server, port = start_server(url, args.workers)
    rounds = []
    try:
        run_round(port, posts.build(50), min(args.clients, 10))  # warm every process
        for r in range(args.rounds):
            wall, lat, failures = run_round(port, posts.build(args.posts), args.clients)
            rate = len(lat) / wall
            note(f"round {r + 1}: {rate:,.0f} posts/s, failures {failures}")
            if failures:
                raise SystemExit(f"{failures} posts were not answered 200 with a receipt")
            rounds.append({"posts_per_s": round(rate, 1), **percentiles(lat)})
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    summary = {k: median([r[k] for r in rounds]) for k in rounds[0]}
    emit(
        {
            "bench": "survey_answers",
            "backend": "postgresql",
            "workers": args.workers,
            "clients": args.clients,
            "posts": args.posts,
            "rounds": rounds,
            "median": summary,
            "goal": {"posts_per_s": 500, "p99_ms": 100},
            "machine": machine(),
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--posts", type=int, default=2000, help="posts per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16, help="keep-alive connections")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="server processes")
    measure(ap.parse_args())


if __name__ == "__main__":
    main()
