"""The `dangjian` command line: 网页与接口服务：`dangjian serve [--with-worker]`."""

from __future__ import annotations

import click

from api.cli.base import cli_engine, friendly, main, require_schema
from api.cli.timed import raise_on_sigterm, start_worker_child, stop_worker_child


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址 / address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="端口 / port.")
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
def serve(host: str, port: int, with_worker: bool, verbose: bool) -> None:
    """启动网页与 JSON 接口服务 / serve the web pages and the JSON API (uvicorn).

    演示账号由 `dangjian demo` 列出（可重复运行）/ `dangjian demo` lists the demo log-ins.
    """
    import uvicorn

    from api.app import create_app

    engine = cli_engine()
    require_schema(engine)
    shown = f"127.0.0.1:{port}" if host in ("0.0.0.0", "::") else f"{host}:{port}"
    click.secho(f"服务地址 / serving at: http://{shown}/", fg="green", bold=True)
    click.echo(f"接口文档 / API docs:   http://{shown}/docs")
    click.echo("按 Ctrl+C 停止 / press Ctrl+C to stop")
    if not with_worker:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info", proxy_headers=False)
        return
    # uvicorn re-raises the SIGTERM it caught once it has shut down: make that an exception
    # here, so the `finally` below stops the worker (instead of the default handler killing us).
    raise_on_sigterm()
    child = start_worker_child(verbose=verbose)
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info", proxy_headers=False)
    finally:
        stop_worker_child(child)
