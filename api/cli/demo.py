"""The `dangjian` command line: 演示数据：`dangjian demo`.

The demo's log-ins are printed here, once, all of them, in one table (the password once above
it); `dangjian serve` prints none, so a database that happens to hold a user called `admin` is
never advertised with the demo's password.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from api.cli.base import CONTEXT, cli_engine, friendly, main

if TYPE_CHECKING:
    from states.demo import Login

HEADINGS = ("用户名 / username", "角色 / role", "组织 / organisation")


def display_width(text: str) -> int:
    """Terminal columns `text` takes: wide (CJK) characters count twice."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - display_width(text))


def login_table(logins: Sequence[Login]) -> list[str]:
    """The lines of the log-ins table: headings, a rule, one row per log-in."""
    rows = [(lg.username, lg.role, f"{lg.org_name}（{lg.org}）") for lg in logins]
    widths = [max(display_width(r[i]) for r in [HEADINGS, *rows]) for i in range(2)]
    lines = []
    for cells in [HEADINGS, tuple("-" * w for w in [*widths, 24]), *rows]:
        lines.append("  ".join(_pad(c, w) for c, w in zip(cells, [*widths, 0], strict=True)))
    return [line.rstrip() for line in lines]


@main.command(context_settings=CONTEXT)
@friendly
def demo() -> None:
    """建立演示数据（可重复运行）并列出全部演示账号 / build the demo and list every log-in."""
    from states.demo import DEMO_PASSWORD, build_demo
    from states.migrate import upgrade

    engine = cli_engine()
    upgrade(engine)
    result = build_demo(engine, echo=click.echo)
    if result.already_built:
        click.echo("演示数据已存在，未重复创建 / demo already built; nothing duplicated")
    click.secho(f"\n演示活动 #{result.campaign_id} / demo campaign {result.campaign_id}", bold=True)
    click.echo(f"数据库 / database: {engine.url.render_as_string(hide_password=True)}")
    click.echo(f"进度一览 / progress: dangjian campaign status {result.campaign_id}")
    click.secho(
        f"\n演示账号共 {len(result.logins)} 个，密码均为 / every demo log-in's password: "
        f"{DEMO_PASSWORD}",
        bold=True,
    )
    for line in login_table(result.logins):
        click.echo(f"  {line}")
