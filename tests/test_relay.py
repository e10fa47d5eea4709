"""The outbox relay against real receivers: an SMTP server process and robot stand-ins."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from notifications.relay import LEASE, drain, run_once
from states import outbox, runs
from states.db import unit_of_work
from states.models import Delivery, InboxItem, OrgChannel, OutboxMessage, User
from states.notice_settings import ChannelSpec, add_channel, set_opt_out
from states.timeutil import utcnow
from tests.api_world import MEETING, World
from tests.stand_ins import RobotServer, read_mail, smtp_server

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    with smtp_server(tmp_path) as (host, port, maildir):
        env = {
            "SMTP_HOST": host,
            "SMTP_PORT": str(port),
            "SMTP_TLS": "none",
            "SMTP_FROM": "党建 <noreply@example.org>",
        }
        yield env, maildir


def _emails(w: World) -> None:
    with Session(w.engine) as s:
        for u in s.execute(select(User)).scalars():
            u.email = f"{u.username}@example.org"
        s.commit()


def _channel(w: World, code: str, kind: str, url: str, secret: str | None = None, **kw: Any) -> int:
    with unit_of_work(w.engine) as s:
        from states.models import Organisation

        org = s.execute(select(Organisation).where(Organisation.code == code)).scalar_one()
        return add_channel(s, org, ChannelSpec(kind=kind, url=url, secret=secret, **kw)).id or 0


def _request(w: World, code: str = "S1", who: str = "sec_s1") -> int:
    with unit_of_work(w.engine) as s:
        actor = w.actors[who]
        runs.record_evidence(s, run_id=w.runs[code], actor=actor, kind="meeting", data=MEETING)
        return runs.request_advance(s, run_id=w.runs[code], actor=actor).id or 0


def _count(engine: Engine, model: type, *where: Any) -> int:
    with Session(engine) as s:
        return int(s.execute(select(func.count()).select_from(model).where(*where)).scalar_one())


def _out(sent: Any) -> dict[str, int]:
    """Deliveries sent outside the in-app inbox."""
    return {k: v for k, v in sent.items() if k != "inapp"}


def _skip_launch_notice(w: World) -> None:
    """The world's campaign launch queued a notice; mark it done so tests see only their own."""
    with Session(w.engine) as s:
        s.execute(update(OutboxMessage).values(status="done"))
        s.commit()


def test_a_request_reaches_every_channel_once(
    world: World, smtp: tuple[dict[str, str], Path]
) -> None:
    w = world
    env_smtp, maildir = smtp
    _emails(w)
    _skip_launch_notice(w)
    with ExitStack() as stack:
        wecom = stack.enter_context(RobotServer("wecom", key="g1-wecom-key"))
        ding = stack.enter_context(RobotServer("dingtalk", key="g1-ding-token", secret="SECding"))
        feishu = stack.enter_context(
            RobotServer("feishu", key="g1-feishu-hook", secret="feishu-secret")
        )
        hook = stack.enter_context(RobotServer("webhook", secret="hook-secret"))
        env = {**env_smtp, **wecom.env, "DANGJIAN_BASE_URL": "https://dj.example.org"}
        _channel(w, "G1", "wecom", "g1-wecom-key")  # the key alone, joined to the configured base
        _channel(w, "G1", "dingtalk", ding.url, "SECding")
        _channel(w, "G1", "feishu", feishu.url, "feishu-secret")
        _channel(w, "G1", "webhook", hook.url, "hook-secret")
        _channel(w, "H2", "webhook", hook.url + "/other")  # another subtree: must not receive
        req_id = _request(w)

        report = run_once(w.engine, env=env)
        assert report.claimed == 1 and report.done == 1, report.summary()
        assert report.sent == {
            "inapp": 2,
            "email": 2,
            "wecom": 1,
            "dingtalk": 1,
            "feishu": 1,
            "webhook": 1,
        }
        # com_g1 and "dual" (G1's committee) get it: in the inbox and by e-mail.
        with Session(w.engine) as s:
            users = {u.id: u.username for u in s.execute(select(User)).scalars()}
            inbox = [users[i.user_id] for i in s.execute(select(InboxItem)).scalars()]
        assert sorted(inbox) == ["com_g1", "dual"]
        mails = read_mail(maildir)
        assert sorted(m["To"] for m in mails) == ["com_g1@example.org", "dual@example.org"]
        assert all("待审批" in str(m["Subject"]) for m in mails)
        for robot in (wecom, ding, feishu, hook):
            assert len(robot.accepted()) == 1, robot.kind
        body = hook.accepted()[0].json
        assert body["event_kind"] == "request_submitted"
        assert body["link"] == "https://dj.example.org/approvals"
        assert hook.accepted()[0].headers["x-dangjian-message-id"] == body["id"]
        assert "内科第一党支部" in wecom.accepted()[0].json["markdown"]["content"]

        # Nothing is sent twice.
        again = run_once(w.engine, env=env)
        assert again.claimed == 0
        assert all(len(r.received) == 1 for r in (wecom, ding, feishu, hook))
        assert len(read_mail(maildir)) == 2
    assert req_id


def test_opt_out_and_no_smtp(world: World, smtp: tuple[dict[str, str], Path]) -> None:
    w = world
    env_smtp, maildir = smtp
    _emails(w)
    _skip_launch_notice(w)
    with unit_of_work(w.engine) as s:
        set_opt_out(s, w.actors["dual"].user_id, "email", True)
    _request(w)
    drain(w.engine, env=env_smtp)
    assert [m["To"] for m in read_mail(maildir)] == ["com_g1@example.org"]
    # Without SMTP settings no e-mail delivery is planned at all; the inbox still gets it.
    _request(w, "S2", "sec_s2")
    report = drain(w.engine, env={})
    assert "email" not in report.sent and report.done == 1
    assert _count(w.engine, InboxItem) == 4


def test_transient_failures_retry_with_backoff(world: World) -> None:
    w = world
    _skip_launch_notice(w)
    with RobotServer("webhook") as hook:
        _channel(w, "G1", "webhook", hook.url)
        hook.fail_next(2, status=503)
        _request(w)
        t0 = utcnow()
        r1 = run_once(w.engine, env={}, now=t0)
        assert r1.retried == {"webhook": 1}
        with Session(w.engine) as s:
            d = s.execute(select(Delivery).where(Delivery.channel == "webhook")).scalar_one()
            row = s.get(OutboxMessage, d.outbox_id)
        assert d.status == "pending" and d.attempts == 1
        assert d.next_attempt_at == t0 + timedelta(seconds=60)
        assert (
            row is not None and row.status == "retry" and row.next_attempt_at == d.next_attempt_at
        )
        # Not due yet: nothing happens; then the second failure doubles the wait.
        assert run_once(w.engine, env={}, now=t0 + timedelta(seconds=30)).claimed == 0
        r2 = run_once(w.engine, env={}, now=t0 + timedelta(seconds=61))
        assert r2.retried == {"webhook": 1}
        r3 = run_once(w.engine, env={}, now=t0 + timedelta(seconds=61 + 121))
        assert _out(r3.sent) == {"webhook": 1} and r3.done == 1
        ids = {r.headers["x-dangjian-message-id"] for r in hook.received}
        assert len(hook.received) == 3 and len(ids) == 1  # the same message id every time


def test_permanent_failure_is_recorded_and_shown(world: World) -> None:
    w = world
    _skip_launch_notice(w)
    with RobotServer("dingtalk", key="token-123456", secret="right-secret") as ding:
        _channel(w, "G1", "dingtalk", ding.url, "wrong-secret")
        _request(w)
        report = run_once(w.engine, env={})
    assert report.failed == {"dingtalk": 1} and report.failed_rows == 1
    with Session(w.engine) as s:
        d = s.execute(select(Delivery).where(Delivery.channel == "dingtalk")).scalar_one()
        row = s.get(OutboxMessage, d.outbox_id)
    assert d.status == "failed" and "310000" in (d.last_error or "")
    assert row is not None and row.status == "failed" and "310000" in (row.last_error or "")
    # The in-app notice went out regardless.
    assert _count(w.engine, Delivery, Delivery.channel == "inapp", Delivery.status == "sent") == 2
    # Organisers see it through the API.
    r = w.get("org_b", f"/api/v1/orgs/{w.orgs['B'].id}/deliveries", params={"status": "failed"})
    assert r.status_code == 200 and r.json()["total"] == 1
    assert "310000" in r.json()["items"][0]["last_error"]


def test_robot_rate_limit_and_throttle(world: World) -> None:
    w = world
    _skip_launch_notice(w)
    clock = [utcnow().timestamp()]  # the robot's clock follows the relay's simulated time
    with RobotServer("wecom", key="wecom-key-1", limit=(20, 60.0), clock=lambda: clock[0]) as wecom:
        ch = _channel(w, "G1", "wecom", wecom.url)
        with unit_of_work(w.engine) as s:
            for i in range(25):
                outbox.enqueue(
                    s,
                    event_kind="bulletin",
                    dedupe_key=f"bulletin:t{i}",
                    payload={"campaign": "测试", "period": f"第 {i} 周"},
                    org_id=w.orgs["G1"].id,
                )
        t0 = utcnow()
        clock[0] = t0.timestamp()
        report = run_once(w.engine, env={}, now=t0)
        # Our own limit holds the 21st and later back; the robot never has to throttle us.
        assert report.sent["wecom"] == 20 and report.deferred["wecom"] == 5
        assert len(wecom.received) == 20
        clock[0] += 61
        later = drain(w.engine, env={}, now=t0 + timedelta(seconds=61))
        assert later.sent["wecom"] == 5 and len(wecom.received) == 25
        # The robot's throttle code pauses it, counting no failure.
        wecom.throttle_next(1)
        with unit_of_work(w.engine) as s:
            outbox.enqueue(
                s,
                event_kind="bulletin",
                dedupe_key="bulletin:x",
                payload={},
                org_id=w.orgs["G1"].id,
            )
        t1 = t0 + timedelta(minutes=5)
        clock[0] = t1.timestamp()
        r = run_once(w.engine, env={}, now=t1)
        assert r.retried == {"wecom": 1} and not r.failed
        with Session(w.engine) as s:
            paused = s.get(OrgChannel, ch)
        assert paused is not None and paused.paused_until == t1 + timedelta(seconds=60)
        assert _out(drain(w.engine, env={}, now=t1 + timedelta(seconds=61)).sent) == {"wecom": 1}


def test_quiet_hours_hold_robots_but_not_escalations(world: World) -> None:
    w = world
    _skip_launch_notice(w)
    # 23:00 in Shanghai is 15:00 UTC: the next one, so the notices are already due then.
    night = utcnow().replace(hour=15, minute=0, second=0, microsecond=0)
    if night <= utcnow():
        night += timedelta(days=1)
    with RobotServer("webhook") as hook, RobotServer("wecom", key="wecom-key-2") as wecom:
        _channel(w, "S1", "wecom", wecom.url, quiet_hours="22:00-07:30")
        _channel(w, "S1", "webhook", hook.url)  # webhooks are for machines: no quiet hours
        with unit_of_work(w.engine) as s:
            outbox.enqueue(
                s,
                event_kind="reminder",
                dedupe_key="r:1",
                payload={"run_id": w.runs["S1"]},
                run_id=w.runs["S1"],
                org_id=w.orgs["S1"].id,
            )
            outbox.enqueue(
                s,
                event_kind="overdue",
                dedupe_key="o:1",
                payload={"level": 1, "run_id": w.runs["S1"]},
                run_id=w.runs["S1"],
                org_id=w.orgs["S1"].id,
            )
        r = run_once(w.engine, env={}, now=night)
        assert r.sent["wecom"] == 1 and r.deferred["wecom"] == 1  # the escalation went out
        assert r.sent["webhook"] == 2
        assert "逾期" in wecom.received[0].json["markdown"]["content"]
        with Session(w.engine) as s:
            held = s.execute(
                select(Delivery).where(Delivery.channel == "wecom", Delivery.status == "pending")
            ).scalar_one()
        assert held.next_attempt_at == night + timedelta(hours=8, minutes=30)
        assert _out(drain(w.engine, env={}, now=held.next_attempt_at).sent) == {"wecom": 1}


def test_a_rolled_back_change_sends_nothing(world: World) -> None:
    w = world
    _skip_launch_notice(w)
    with pytest.raises(RuntimeError), unit_of_work(w.engine) as s:
        actor = w.actors["sec_s1"]
        runs.record_evidence(s, run_id=w.runs["S1"], actor=actor, kind="meeting", data=MEETING)
        runs.request_advance(s, run_id=w.runs["S1"], actor=actor)
        raise RuntimeError("the caller fails after the change")
    assert run_once(w.engine, env={}).claimed == 0
    assert _count(w.engine, InboxItem) == 0


RELAY = """
import json, sys
from states.db import make_engine
from notifications.relay import run_once
report = run_once(make_engine(sys.argv[1]), env={})
print(json.dumps({"sent": dict(report.sent), "claimed": report.claimed}))
"""


def test_relay_killed_between_sending_and_recording(world: World, db_url: str) -> None:
    """The receiver kills the relay process when the message arrives, before the relay can
    record it. The next pass (after the lease) sends it once more, with the same id; then never."""
    w = world
    _skip_launch_notice(w)
    procs: list[subprocess.Popen[str]] = []

    def kill_relay(_rec: Any) -> None:
        if procs and procs[-1].poll() is None and len(hook.received) == 1:
            os.kill(procs[-1].pid, signal.SIGKILL)
            procs[-1].wait(timeout=10)

    with RobotServer("webhook", on_request=kill_relay) as hook:
        _channel(w, "G1", "webhook", hook.url)
        _request(w)
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", RELAY, db_url], env=env, text=True, stdout=subprocess.PIPE
            )
        )
        procs[-1].wait(timeout=60)
        assert procs[-1].returncode == -signal.SIGKILL
        assert len(hook.received) == 1
        with Session(w.engine) as s:
            d = s.execute(select(Delivery).where(Delivery.channel == "webhook")).scalar_one()
        assert d.status == "pending"  # sent, but never recorded
        # Within the lease nobody touches it; after the lease a new relay resends it once.
        assert run_once(w.engine, env={}).claimed == 0
        later = utcnow() + LEASE + timedelta(seconds=1)
        report = run_once(w.engine, env={}, now=later)
        assert _out(report.sent) == {"webhook": 1}
        assert drain(w.engine, env={}, now=later + timedelta(hours=1)).claimed == 0
        ids = [r.headers["x-dangjian-message-id"] for r in hook.received]
        assert len(ids) == 2 and ids[0] == ids[1]
    # In-app notices were written once, in the plan transaction, despite the crash.
    assert _count(w.engine, InboxItem) == 2


@pytest.mark.postgres_only
def test_two_relays_at_once_deliver_each_notice_once(pg_engine: Engine) -> None:
    from tests.api_world import build_world

    w = build_world(pg_engine)
    _skip_launch_notice(w)
    with RobotServer("webhook") as hook:
        _channel(w, "G1", "webhook", hook.url)
        with unit_of_work(w.engine) as s:
            for i in range(60):
                outbox.enqueue(
                    s,
                    event_kind="bulletin",
                    dedupe_key=f"b:{i}",
                    payload={"period": str(i)},
                    org_id=w.orgs["G1"].id,
                )
        barrier = threading.Barrier(2)
        reports = []

        def relay() -> None:
            barrier.wait()
            reports.append(drain(w.engine, batch=10, env={}))

        threads = [threading.Thread(target=relay) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sum(r.sent["webhook"] for r in reports) == 60
        assert all(r.claimed > 0 for r in reports)  # both relays did work
        ids = [json.loads(r.body)["id"] for r in hook.received]
        assert len(ids) == len(set(ids)) == 60


def test_a_pass_stops_sending_before_its_lease_runs_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import notifications.relay as relay

    w = world
    _skip_launch_notice(w)
    monkeypatch.setattr(relay, "LEASE", timedelta(seconds=1))
    with RobotServer("webhook") as hook:
        _channel(w, "G1", "webhook", hook.url)
        hook.sleep_next(1, seconds=1.0)  # a slow receiver uses up the pass's time
        with unit_of_work(w.engine) as s:
            for i in range(3):
                outbox.enqueue(
                    s,
                    event_kind="bulletin",
                    dedupe_key=f"slow:{i}",
                    payload={},
                    org_id=w.orgs["G1"].id,
                )
        first = run_once(w.engine, env={})
        assert first.claimed == 3 and _out(first.sent) == {"webhook": 1}
        with Session(w.engine) as s:
            left = (
                s.execute(select(OutboxMessage).where(OutboxMessage.status == "retry"))
                .scalars()
                .all()
            )
        assert len(left) == 2 and all(r.locked_until is None for r in left)
        assert _out(drain(w.engine, env={}).sent) == {"webhook": 2}
        assert len({r.headers["x-dangjian-message-id"] for r in hook.received}) == 3
