"""The `dangjian` command line: 演示数据：`dangjian demo`."""

from __future__ import annotations

import click

from api.cli.base import CONTEXT, cli_engine, friendly, main


@main.command(context_settings=CONTEXT)
@friendly
def demo() -> None:
    """建立演示数据（可重复运行）/ build the demo tree, users and campaign (safe to run twice)."""
    from states.demo import DEMO_PASSWORD, build_demo
    from states.migrate import upgrade

    engine = cli_engine()
    upgrade(engine)
    result = build_demo(engine, echo=click.echo)
    if result.already_built:
        click.echo("演示数据已存在，未重复创建 / demo already built; nothing duplicated")
    click.secho(f"\n演示活动 #{result.campaign_id} / demo campaign {result.campaign_id}", bold=True)
    click.echo(f"数据库 / database: {engine.url.render_as_string(hide_password=True)}")
    click.echo(f"所有演示账号的密码 / password for every demo log-in: {DEMO_PASSWORD}")
    shown = [lg for lg in result.logins if not lg.username.startswith("shuji_")]
    shown += [lg for lg in result.logins if lg.username.startswith("shuji_")][:4]
    for lg in shown:
        click.echo(f"  {lg.username:<22} {lg.role:<11} {lg.org}")
    rest = len(result.logins) - len(shown)
    click.echo(f"  … 另有 {rest} 个支部书记账号（dangjian users list）/ {rest} more secretaries")
