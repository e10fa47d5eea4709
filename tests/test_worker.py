"""Deployments and schedules; `dangjian worker` end to end; `dangjian sweep`.

The end-to-end test starts the real `dangjian worker` (which starts its own Prefect server) on a
demo database and waits until a *scheduled* `deliver_notifications` run has delivered the demo's
pending notices: proof that the embedded default runs schedules, which Prefect's ephemeral mode
cannot. It is not marked slow or skipped: it runs in CI, in 20–45 s (server start-up 4–15 s,
first scheduled run ~10 s after the deployments are registered). Its timeouts are generous
limits against a hang, not speed assertions.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from api.cli import main
from states.errors import Conflict, InvalidInput

FLOW_NAMES = [
    "deadline_sweep",
    "approval_sla_sweep",
    "phase_schedule",
    "weekly_bulletin",
    "deliver_notifications",
]


def _dangjian() -> list[str]:
    script = Path(sys.executable).parent / "dangjian"
    return [str(script)] if script.exists() else [sys.executable, "-m", "api.cli"]


def _env(data: Path, **extra: str) -> dict[str, str]:
    """A clean environment: no inherited Prefect or database settings, SQLite in `data`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and k not in ("DATABASE_URL", "DANGJIAN_PREFECT_PORT")
    }
    env.update(
        DANGJIAN_DATA_DIR=str(data),
        DATABASE_URL=f"sqlite:///{data / 'dangjian.db'}",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo database built once by the real CLI (`db upgrade`, `demo`); tests copy it."""
    data = tmp_path_factory.mktemp("demo-template")
    for args in (["db", "upgrade"], ["demo"]):
        done = subprocess.run(
            [*_dangjian(), *args], env=_env(data), capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
    return data


@pytest.fixture
def demo_dir(demo_template: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for f in demo_template.glob("dangjian.db*"):
        shutil.copy2(f, data / f.name)
    return data


def _outbox(data: Path) -> dict[int, str]:
    with sqlite3.connect(data / "dangjian.db", timeout=30) as conn:
        return dict(conn.execute("SELECT id, status FROM outbox").fetchall())


# --- (a) deployments ------------------------------------------------------------------------


def test_deployments_schedules_and_concurrency(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

    from workflows.deploy import deployments

    monkeypatch.delenv("DANGJIAN_SWEEP_INTERVAL", raising=False)
    monkeypatch.delenv("DANGJIAN_DELIVER_INTERVAL", raising=False)
    built = {d.flow_name: d for d in deployments()}
    assert sorted(built) == sorted(FLOW_NAMES)
    expected_interval = {
        "deadline_sweep": 900,
        "approval_sla_sweep": 900,
        "deliver_notifications": 30,
    }
    expected_cron = {"phase_schedule": "15 0 * * *", "weekly_bulletin": "0 8 * * 1"}
    for name, d in built.items():
        assert d.name == "dangjian"
        assert d.entrypoint == f"workflows.flows.{name}"  # importable wherever it is installed
        assert d.concurrency_limit == 1
        assert d.concurrency_options is not None
        assert d.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.CANCEL_NEW
        (entry,) = d.schedules or []
        schedule = entry.schedule
        assert entry.active
        if name in expected_interval:
            assert isinstance(schedule, IntervalSchedule)
            assert schedule.interval == timedelta(seconds=expected_interval[name])
        else:
            assert isinstance(schedule, CronSchedule)
            assert schedule.cron == expected_cron[name]
            assert schedule.timezone == "Asia/Shanghai"


def test_intervals_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from workflows.deploy import plans

    monkeypatch.setenv("DANGJIAN_SWEEP_INTERVAL", "60")
    monkeypatch.setenv("DANGJIAN_DELIVER_INTERVAL", "5")
    got = {p.flow: p.interval for p in plans()}
    assert got["deadline_sweep"] == got["approval_sla_sweep"] == 60
    assert got["deliver_notifications"] == 5
    for bad in ("0", "abc", "-3"):
        monkeypatch.setenv("DANGJIAN_SWEEP_INTERVAL", bad)
        with pytest.raises(InvalidInput, match="DANGJIAN_SWEEP_INTERVAL"):
            plans()


def test_prefect_defaults_keep_analytics_off(tmp_path: Path) -> None:
    from workflows.settings import apply_defaults, server_env

    env = apply_defaults({"PREFECT_LOGGING_LEVEL": "DEBUG"})
    assert env["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["PREFECT_LOGGING_LEVEL"] == "DEBUG"  # an operator's own setting wins
    srv = server_env(
        tmp_path, "127.0.0.1", 4555, base={"PREFECT_API_URL": "http://x/api", "PATH": "/bin"}
    )
    assert "PREFECT_API_URL" not in srv
    assert srv["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert srv["PREFECT_HOME"] == str(tmp_path.resolve())
    assert srv["PREFECT_SERVER_API_PORT"] == "4555"
    assert srv["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith("sqlite+aiosqlite:///")
    assert "flow_runs" in srv["PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED"]


def test_port_choice() -> None:
    import socket

    from workflows.local_server import choose_port

    with pytest.raises(InvalidInput):
        choose_port(env={"DANGJIAN_PREFECT_PORT": "web"})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Conflict, match=str(port)):
            choose_port(env={"DANGJIAN_PREFECT_PORT": str(port)})
    assert 0 < choose_port(env={}) < 65536


# --- (b) the worker, end to end --------------------------------------------------------------


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            found.append((int(entry.name), cmd))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_worker_runs_the_schedules_and_leaves_no_server(demo_dir: Path, tmp_path: Path) -> None:
    from workflows.local_server import free_port, port_free

    worker_log = tmp_path / "worker.log"

    before = _outbox(demo_dir)
    pending = {i for i, status in before.items() if status != "done"}
    assert pending, "the demo should leave notices to deliver"
    port = free_port()
    env = _env(
        demo_dir,
        DANGJIAN_DELIVER_INTERVAL="2",
        DANGJIAN_PREFECT_PORT=str(port),
        PREFECT_RUNNER_POLL_FREQUENCY="2",  # the runner looks for due runs every 2 s, not 10
    )
    with worker_log.open("wb") as out:
        proc = subprocess.Popen(
            [*_dangjian(), "worker"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server_pid: int | None = None
    try:
        deadline = time.monotonic() + 240  # a hang guard, not a speed requirement
        while True:
            if server_pid is None:
                for pid, cmd in _children(proc.pid):
                    if "prefect" in cmd and "server" in cmd:
                        server_pid = pid
            statuses = _outbox(demo_dir)
            if all(statuses[i] == "done" for i in pending):
                break
            log = worker_log.read_text(errors="replace")
            assert proc.poll() is None, f"the worker stopped:\n{log[-3000:]}"
            assert time.monotonic() < deadline, f"no delivery yet:\n{log[-3000:]}"
            time.sleep(1)
        log = worker_log.read_text(errors="replace")
        assert "Prefect 服务器已就绪" in log
        assert "deliver_notifications" in log and "先运行一次" in log
        assert server_pid is not None and _alive(server_pid)
        assert f"--port {port}" in Path(f"/proc/{server_pid}/cmdline").read_bytes().replace(
            b"\0", b" "
        ).decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    log = worker_log.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Prefect 服务器已停止" in log
    assert server_pid is not None and not _alive(server_pid), "the Prefect server outlived us"
    assert port_free("127.0.0.1", port)
    assert (demo_dir / "prefect" / "prefect.db").exists()  # PREFECT_HOME under the data dir


# --- (c) dangjian sweep ----------------------------------------------------------------------


def test_sweep_help() -> None:
    result = CliRunner().invoke(main, ["sweep", "--help"])
    assert result.exit_code == 0
    for word in ("--as-of", "--flow", "--via-prefect"):
        assert word in result.output


def test_sweep_directly_prints_a_summary(demo_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import datetime

    from states.timeutil import SHANGHAI

    for key, value in _env(demo_dir).items():
        if key.startswith(("DANGJIAN_", "DATABASE_")):
            monkeypatch.setenv(key, value)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    # The demo is dated relative to today (launched weeks ago, some branches overdue).
    when = (datetime.now(SHANGHAI) + timedelta(days=1)).replace(second=0, microsecond=0)
    as_of = when.strftime("%Y-%m-%dT%H:%M+08:00")
    label = f"截止提醒与逾期督办（{when.astimezone(UTC).isoformat()}）"
    runner = CliRunner()
    args = ["sweep", "--as-of", as_of, "--flow", "deadline_sweep"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert label in result.output
    assert "overdue_L" in result.output  # the demo has overdue branches
    assert "审批超时提醒" not in result.output  # only the flow that was named
    again = runner.invoke(main, args)  # the same time again: nothing fires twice
    assert again.exit_code == 0
    assert f"{label}：无" in again.output
    default = runner.invoke(main, ["sweep", "--as-of", as_of])
    assert default.exit_code == 0
    assert "审批超时提醒" in default.output and "阶段开启" in default.output
    assert "每周简报" not in default.output and "发送通知" not in default.output


@pytest.mark.parametrize(
    "args",
    [["--as-of", "2026-13-01"], ["--as-of", "明天"], ["--flow", "nope"]],
)
def test_sweep_bad_input_exits_2(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["sweep", *args], env={"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    )
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("错误")
