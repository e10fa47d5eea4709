"""The `dangjian` command line: 数据库结构：`dangjian db upgrade | current`."""

from __future__ import annotations

import click

from api.cli.base import CONTEXT, cli_engine, friendly, main


@main.group(context_settings=CONTEXT)
def db() -> None:
    """数据库结构 / database schema."""


@db.command("upgrade")
@friendly
def db_upgrade() -> None:
    """升级数据库到最新结构 / apply all migrations."""
    from states.migrate import current_revision, upgrade

    engine = cli_engine()
    upgrade(engine)
    click.secho(
        f"数据库已是最新结构 / schema is up to date: {current_revision(engine)}", fg="green"
    )
    click.echo(f"  {engine.url.render_as_string(hide_password=True)}")


@db.command("current")
@friendly
def db_current() -> None:
    """显示数据库结构版本 / show the schema revision."""
    from states.migrate import current_revision, head_revision

    click.echo(
        f"当前 / current: {current_revision(cli_engine()) or '—'}   最新 / head: {head_revision()}"
    )
