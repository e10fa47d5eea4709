"""The `dangjian` command line: 网页与接口服务：`dangjian serve [--workers N] [--with-worker]`.

With more than one worker, each is a single-process uvicorn server (uvloop, httptools) on its
own listening socket bound with SO_REUSEPORT, so the kernel spreads new connections over the
processes (with one shared socket, whichever process wakes first takes a whole burst, and
keep-alive clients stay on it). Each process keeps its own connection pool
(`DANGJIAN_DB_POOL_SIZE`, see `states.db`).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import socket
from typing import Any

import click

from api.cli.base import cli_engine, friendly, main, require_schema
from api.cli.timed import raise_on_sigterm, start_worker_child, stop_worker_child

#: uvloop and httptools: the fastest event loop and HTTP parser uvicorn offers.
FAST = {"loop": "uvloop", "http": "httptools"}


def default_workers(url: str) -> int:
    """One server per core on PostgreSQL; one on SQLite (a single writer at a time anyway)."""
    return 1 if url.startswith("sqlite") else (os.cpu_count() or 1)


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto 6: NODELAY
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def serve_one(host: str, port: int, access_log: bool) -> None:
    """One single-process server on its own SO_REUSEPORT socket (a spawned worker)."""
    import uvicorn

    config = uvicorn.Config(
        "api.app:create_app",
        factory=True,
        access_log=access_log,
        log_level="info" if access_log else "warning",
        proxy_headers=False,
        **FAST,  # type: ignore[arg-type]
    )
    uvicorn.Server(config).run(sockets=[reuseport_socket(host, port)])


def serve_many(host: str, port: int, workers: int, access_log: bool) -> None:
    """`workers` servers; SIGINT or SIGTERM stops them all (each shuts down gracefully)."""
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=serve_one, args=(host, port, access_log), daemon=True)
        for _ in range(workers)
    ]
    for p in procs:
        p.start()

    def stop(*_: Any) -> None:
        for p in procs:
            if p.is_alive():
                p.terminate()

    previous = signal.signal(signal.SIGINT, stop), signal.signal(signal.SIGTERM, stop)
    try:
        for p in procs:
            p.join()
    finally:
        signal.signal(signal.SIGINT, previous[0])
        signal.signal(signal.SIGTERM, previous[1])


def run_server(host: str, port: int, workers: int, access_log: bool) -> None:
    import uvicorn

    from api.app import create_app

    if workers > 1:
        serve_many(host, port, workers, access_log)
        return
    uvicorn.run(
        create_app(cli_engine()),
        host=host,
        port=port,
        log_level="info",
        access_log=access_log,
        proxy_headers=False,
        **FAST,  # type: ignore[arg-type]
    )


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址 / address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="端口 / port.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="服务进程数（默认：PostgreSQL 为 CPU 核数，SQLite 为 1）/ server processes "
    "(default: one per core on PostgreSQL, 1 on SQLite).",
)
@click.option(
    "--access-log/--no-access-log",
    default=True,
    show_default=True,
    help="逐条打印请求 / log every request.",
)
@click.option(
    "--with-worker",
    is_flag=True,
    help="同时启动定时任务进程（dangjian worker），一起停止 / also run the worker.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="显示定时任务的 Prefect 运行日志 / show the worker's Prefect log lines.",
)
@friendly
def serve(
    host: str, port: int, workers: int | None, access_log: bool, with_worker: bool, verbose: bool
) -> None:
    """启动网页与 JSON 接口服务 / serve the web pages and the JSON API (uvicorn).

    演示账号由 `dangjian demo` 列出（可重复运行）/ `dangjian demo` lists the demo log-ins.
    """
    engine = cli_engine()
    require_schema(engine)
    n = workers or default_workers(str(engine.url))
    shown = f"127.0.0.1:{port}" if host in ("0.0.0.0", "::") else f"{host}:{port}"
    click.secho(f"服务地址 / serving at: http://{shown}/", fg="green", bold=True)
    click.echo(f"接口文档 / API docs:   http://{shown}/docs")
    if n > 1:
        click.echo(f"服务进程 / server processes: {n}")
    click.echo("按 Ctrl+C 停止 / press Ctrl+C to stop")
    if not with_worker:
        run_server(host, port, n, access_log)
        return
    # uvicorn re-raises the SIGTERM it caught once it has shut down: make that an exception
    # here, so the `finally` below stops the worker (instead of the default handler killing us).
    raise_on_sigterm()
    child = start_worker_child(verbose=verbose)
    try:
        run_server(host, port, n, access_log)
    finally:
        stop_worker_child(child)
