"""The `dangjian` command line: 网页与接口服务：`dangjian serve [--with-worker]`."""

from __future__ import annotations

import click

from api.cli.base import cli_engine, friendly, main, require_schema, work
from api.cli.timed import raise_on_sigterm, start_worker_child, stop_worker_child


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址 / address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="端口 / port.")
@click.option(
    "--with-worker",
    is_flag=True,
    help="同时启动定时任务进程（dangjian worker），一起停止 / also run the worker.",
)
@friendly
def serve(host: str, port: int, with_worker: bool) -> None:
    """启动网页与 JSON 接口服务 / serve the web pages and the JSON API (uvicorn)."""
    import uvicorn

    from api.app import create_app
    from states.demo import DEMO_PASSWORD, demo_logins

    engine = cli_engine()
    require_schema(engine)
    shown = f"127.0.0.1:{port}" if host in ("0.0.0.0", "::") else f"{host}:{port}"
    click.secho(f"服务地址 / serving at: http://{shown}/", fg="green", bold=True)
    click.echo(f"接口文档 / API docs:   http://{shown}/docs")
    with work() as s:
        logins = demo_logins(s)
    if logins:
        click.echo(f"演示账号（密码 {DEMO_PASSWORD}）/ demo log-ins (password {DEMO_PASSWORD}):")
        for username, role, org in logins:
            click.echo(f"  {username:<22} {role:<11} {org}")
    click.echo("按 Ctrl+C 停止 / press Ctrl+C to stop")
    if not with_worker:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info", proxy_headers=False)
        return
    # uvicorn re-raises the SIGTERM it caught once it has shut down: make that an exception
    # here, so the `finally` below stops the worker (instead of the default handler killing us).
    raise_on_sigterm()
    child = start_worker_child()
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info", proxy_headers=False)
    finally:
        stop_worker_child(child)
