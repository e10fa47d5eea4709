"""The `dangjian` command line: 定时任务：`dangjian sweep`，`dangjian worker`，`dangjian deploy`."""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

import click

from api.cli.base import CONTEXT, cli_engine, fail, friendly, main, require_schema
from states.errors import InvalidInput

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SWEEP_DEFAULT = ("deadline_sweep", "approval_sla_sweep", "phase_schedule")
FLOW_NAMES = (*SWEEP_DEFAULT, "weekly_bulletin", "deliver_notifications")


def _parse_as_of(raw: str | None) -> Any:
    """`--as-of`: ISO 8601; without a zone it is Beijing time; without it, now."""
    from datetime import datetime

    from states.timeutil import SHANGHAI, utcnow

    if raw is None or not raw.strip():
        return utcnow()
    text = raw.strip().replace(" ", "T", 1)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"无法识别的时间「{raw}」，应为 ISO 8601 格式，如 2026-12-01T09:00+08:00"
        ) from None
    return value.replace(tzinfo=SHANGHAI) if value.tzinfo is None else value


def _flow_names(flow_name: str | None) -> list[str]:
    if flow_name is None:
        return list(SWEEP_DEFAULT)
    if flow_name == "all":
        return list(FLOW_NAMES)
    if flow_name not in FLOW_NAMES:
        raise InvalidInput(f"未知的流程「{flow_name}」，可选：{'、'.join(FLOW_NAMES)} 或 all")
    return [flow_name]


def _run_jobs_directly(engine: Engine, names: list[str], as_of: Any, *, verbose: bool) -> None:
    """Run the jobs in this process (no Prefect); print each summary and its warnings."""
    from workflows.jobs import run_job

    def log(line: str) -> None:
        if verbose and not line.startswith("警告："):  # warnings are printed once, below
            click.echo(f"    {line}")

    seen: set[str] = set()
    for name in names:
        with warnings.catch_warnings(record=True) as caught:  # shown here, once, not at exit
            warnings.simplefilter("always")
            report = run_job(engine, name, as_of, log=log)
        click.echo(f"  {report.summary()}")
        for message in [*report.warnings, *(str(w.message) for w in caught)]:
            if message not in seen:
                seen.add(message)
                click.secho(f"  注意 / Warning: {message}", fg="yellow")


@main.command("sweep", context_settings=CONTEXT)
@click.option(
    "--as-of",
    "as_of_raw",
    default=None,
    metavar="TIME",
    help="按这个时间运行，如 2026-12-01T09:00+08:00（不带时区按北京时间；默认现在）"
    " / run as of TIME.",
)
@click.option(
    "--flow",
    "flow_name",
    default=None,
    metavar="NAME",
    help="只运行这个流程：deadline_sweep | approval_sla_sweep | phase_schedule | weekly_bulletin"
    " | deliver_notifications | all（默认前三个）/ one flow, or all.",
)
@click.option(
    "--via-prefect",
    is_flag=True,
    help="通过 Prefect 流程运行（用 PREFECT_API_URL，未设置时用临时服务器，启动约需 10 秒）"
    " / run the Prefect flow instead of the job directly.",
)
@friendly
def sweep_cmd(as_of_raw: str | None, flow_name: str | None, via_prefect: bool) -> None:
    """按给定时间运行一次截止提醒、督办、阶段开启等流程 / run the timed flows once.

    默认直接运行（不启动 Prefect），打印每个流程做了什么；同一时间重复运行不会重复提醒。
    Runs the jobs directly by default; running twice at the same time sends nothing twice.
    """
    as_of = _parse_as_of(as_of_raw)
    names = _flow_names(flow_name)
    engine = cli_engine()
    require_schema(engine)
    click.echo(f"运行时间 / as of: {as_of.isoformat()}")
    if not via_prefect:
        _run_jobs_directly(engine, names, as_of, verbose=True)
        return
    from workflows.settings import apply_defaults

    apply_defaults()
    from workflows.flows import FLOWS
    from workflows.jobs import JOBS

    for name in names:
        flow: Any = FLOWS[name]
        result = flow() if name == "deliver_notifications" else flow(as_of=as_of)
        counts = result.get("counts", result) if isinstance(result, dict) else result
        parts = (
            "，".join(f"{k} {v}" for k, v in sorted(counts.items()))
            if isinstance(counts, dict)
            else str(counts)
        )
        click.echo(f"  {JOBS[name]}：{parts or '无'}")
        if isinstance(result, dict):
            for message in result.get("warnings") or []:
                click.secho(f"  注意 / Warning: {message}", fg="yellow")


def _wait_for_api(url: str, timeout: float) -> None:
    """Wait until a configured Prefect server answers its health check."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            if httpx.get(url.rstrip("/") + "/health", timeout=3.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            fail(f"PREFECT_API_URL（{url}）在 {timeout:.0f} 秒内没有应答；请检查 Prefect 服务器")
        if not told:
            click.echo(f"等待 Prefect 服务器 {url} …")
            told = True
        time.sleep(1.0)


def raise_on_sigterm() -> None:
    """Until Prefect's runner takes over: SIGTERM ends us like Ctrl+C (cleanup runs)."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    # Started in the background by a shell, SIGINT is ignored: take it back (Ctrl+C, kill -INT).
    signal.signal(signal.SIGINT, signal.default_int_handler)


@main.command("worker", context_settings=CONTEXT)
@click.option(
    "--no-initial-sweep",
    is_flag=True,
    help="启动时不先运行一次提醒与督办 / skip the sweeps at start.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="显示 Prefect 与各流程的运行日志（默认只显示警告与错误）/ show Prefect's log lines.",
)
@friendly
def worker(no_initial_sweep: bool, verbose: bool) -> None:
    """按计划运行全部定时流程（截止提醒、督办、审批超时、阶段、简报、发送通知）/ run the schedules.

    设置了 PREFECT_API_URL 时使用那台 Prefect 服务器；否则在本机启动一个受管的 Prefect 服务器
    （SQLite，数据在 数据目录/prefect，端口 DANGJIAN_PREFECT_PORT，默认 4200），随本命令一起停止。
    间隔：DANGJIAN_SWEEP_INTERVAL（默认 900 秒）、DANGJIAN_DELIVER_INTERVAL（默认 30 秒）。
    With PREFECT_API_URL it uses that server; otherwise it runs a local Prefect server for itself.
    默认只打印就绪与界面地址等几行；各次运行的日志在 Prefect 界面里，-v 时也打印在这里。
    """
    import os
    from contextlib import ExitStack, suppress

    from states.timeutil import utcnow
    from workflows.settings import apply_defaults, prefect_imported

    engine = cli_engine()
    require_schema(engine)
    quiet_console(verbose)
    apply_defaults()
    raise_on_sigterm()
    api_url = os.environ.get("PREFECT_API_URL", "").strip()
    server = None
    with ExitStack() as stack:
        if not api_url:
            from workflows.local_server import LocalServer

            server = LocalServer()
            click.echo(
                f"正在启动本机 Prefect 服务器（端口 {server.port}，数据 {server.home}）… "
                "/ starting a local Prefect server"
            )
            server.start()

            def stop_server() -> None:
                click.echo("正在停止 Prefect 服务器… / stopping the Prefect server")
                server.stop()
                click.echo("Prefect 服务器已停止 / stopped")

            stack.callback(stop_server)
        if not no_initial_sweep:
            click.echo("先运行一次提醒、督办与阶段开启 / first sweep:")
            _run_jobs_directly(engine, list(SWEEP_DEFAULT), utcnow(), verbose=verbose)
        if server is not None:
            seconds = server.wait_ready(
                tick=lambda s: click.echo(f"  仍在启动 Prefect 服务器（已 {s:.0f} 秒）…")
            )
            rss = server.rss_mb()
            memory = f"，内存 {rss:.0f} MB" if rss else ""
            click.secho(
                f"Prefect 服务器已就绪，用时 {seconds:.1f} 秒{memory} / ready in {seconds:.1f} s",
                fg="green",
            )
            click.echo(f"Prefect 界面 / UI: {server.ui_url}")
            api_url = server.api_url
            os.environ["PREFECT_API_URL"] = api_url
            os.environ["PREFECT_HOME"] = str(server.home)
            if prefect_imported():  # environment changes come too late: use a settings context
                from prefect.settings import PREFECT_API_URL, temporary_settings

                stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        else:
            _wait_for_api(api_url, float(os.environ.get("DANGJIAN_PREFECT_START_TIMEOUT", "180")))
            click.echo(f"使用 Prefect 服务器 / using: {api_url}")
        from workflows import deploy

        plans = deploy.plans()
        click.echo(f"登记 {len(plans)} 个部署并按计划运行 / serving {len(plans)} deployments:")
        for p in plans:
            click.echo(f"  {p.flow + '/' + deploy.DEPLOYMENT_NAME:<32} {p.describe()}")
        click.echo("按 Ctrl+C 停止 / press Ctrl+C to stop")
        # Prefect's own SIGTERM handler leaves this coroutine behind; it is harmless.
        warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
        drop_cancelled_callbacks()
        with suppress(KeyboardInterrupt):  # Ctrl+C: Prefect stops; the stack stops the server
            deploy.serve_all()


def quiet_console(verbose: bool) -> None:
    """Unless `verbose`, Prefect's console shows warnings and errors only.

    Set before Prefect is imported, in the environment, so the flow runs the runner starts in
    their own processes are quiet too; the log lines still reach the Prefect UI (its API handler
    keeps PREFECT_LOGGING_LEVEL). An operator's own setting wins.
    """
    import os

    if not verbose:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


class _NotCancelled:
    """Drops asyncio's "Exception in callback" records about a cancelled task (at shutdown)."""

    def filter(self, record: Any) -> bool:
        import asyncio

        return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def drop_cancelled_callbacks() -> None:
    """Prefect's runner, stopped by SIGTERM, leaves a control-channel read whose cancellation
    asyncio logs as an error with a traceback; it is harmless, and not shown."""
    import logging

    logging.getLogger("asyncio").addFilter(_NotCancelled())


def start_worker_child(*, verbose: bool = False) -> Any:
    """`dangjian worker` as a child process (its own session: we alone decide when it stops)."""
    import subprocess
    import threading

    from workflows.local_server import die_with_parent

    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker", *(["--verbose"] if verbose else [])],
        start_new_session=True,
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
    )
    click.echo(f"定时任务进程已启动（pid {proc.pid}）/ worker started")

    def watch() -> None:
        code = proc.wait()
        if code not in (0, -15, 143) and not getattr(proc, "stopping", False):
            click.secho(
                f"定时任务进程已退出（退出码 {code}），网页服务继续运行 / the worker exited",
                fg="red",
                err=True,
            )

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()
    return proc


def stop_worker_child(proc: Any) -> None:
    import subprocess

    proc.stopping = True
    if proc.poll() is None:
        click.echo("正在停止定时任务进程… / stopping the worker")
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@main.command("deploy", context_settings=CONTEXT)
@click.option("--pool", required=True, help="Prefect 工作池名称 / work pool name.")
@click.option(
    "--source",
    default=None,
    help="各工作机上本项目代码的目录（各机相同路径）或 git 地址；默认本机的项目目录"
    " / the code's directory on every worker machine, or a git URL.",
)
@click.option("--work-queue", default=None, help="工作队列 / work queue (optional).")
@friendly
def deploy_cmd(pool: str, source: str | None, work_queue: str | None) -> None:
    """多台机器：把全部流程登记到工作池（带计划）/ register every flow on a work pool.

    需要 PREFECT_API_URL 指向共用的 Prefect 服务器；工作池不存在时按 process 类型创建。
    各机运行 `prefect worker start --pool 名称` 即可领取并运行。
    """
    import asyncio
    import os

    from workflows.settings import apply_defaults

    if not os.environ.get("PREFECT_API_URL", "").strip():
        fail("请先设置 PREFECT_API_URL，指向各机共用的 Prefect 服务器", code=2)
    apply_defaults()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from workflows import deploy

    async def ensure_pool() -> bool:
        async with get_client() as client:
            try:
                await client.read_work_pool(pool)
                return False
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
                return True

    if asyncio.run(ensure_pool()):
        click.echo(f"已创建工作池 {pool}（process）/ work pool created")
    for name, deployment_id in deploy.deploy_to_pool(pool, source, work_queue=work_queue):
        click.echo(f"  {name}  {deployment_id}")
    click.secho(
        f"已登记 {len(deploy.plans())} 个部署到工作池 {pool}；在每台机器上运行："
        f"prefect worker start --pool {pool}",
        fg="green",
    )
