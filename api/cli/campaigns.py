"""The `dangjian` command line: 活动：`dangjian campaign launch | status | list`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from api.cli.base import CONTEXT, friendly, main, work
from states.errors import InvalidInput


@main.group(context_settings=CONTEXT)
def campaign() -> None:
    """创建活动 / campaigns."""


@campaign.command("launch")
@click.option("--template", "template_key", required=True, help="模板 / template key.")
@click.option("--root", "root_code", required=True, help="发起组织编码 / root organisation code.")
@click.option(
    "--kinds", default=None, help="参与的组织类型，逗号分隔（默认 党支部）/ participating kinds."
)
@click.option(
    "--schedule",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="日程 YAML：阶段 → {date|working_days|days} / schedule file.",
)
@click.option("--name", help="活动名称 / campaign name.")
@click.option(
    "--allow-past",
    is_flag=True,
    help="日程中有截止日期已过的阶段时仍然发起 / launch even if some deadlines are already past.",
)
@friendly
def campaign_launch(
    template_key: str,
    root_code: str,
    kinds: str | None,
    schedule: Path | None,
    name: str | None,
    allow_past: bool,
) -> None:
    """在一个组织的下级范围内发起活动 / launch a campaign over a subtree."""
    from states.campaigns import count_participants, launch_campaign
    from states.catalog import get_template
    from states.orgs import get_org_by_code

    plan: dict[str, Any] | None = None
    if schedule is not None:
        loaded = yaml.safe_load(schedule.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise InvalidInput(
                "日程文件须为「阶段: 截止规则」的映射", details=[{"field": "schedule"}]
            )
        plan = loaded
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    with work() as s:
        tpl = get_template(template_key)
        total = count_participants(s, get_org_by_code(s, root_code), kind_list or tpl.participants)
        with click.progressbar(length=max(total, 1), label="创建进度 / creating runs") as bar:
            camp = launch_campaign(
                s,
                template_key=template_key,
                root_code=root_code,
                kinds=kind_list,
                schedule=plan,
                name=name,
                progress=bar.update,
                allow_past=allow_past,
            )
    click.secho(
        f"活动 #{camp.id}「{camp.name}」已发起：{camp.run_count} 个支部的创建进度 / "
        f"campaign {camp.id} launched with {camp.run_count} runs",
        fg="green",
    )


@campaign.command("status")
@click.argument("campaign_id", type=int)
@friendly
def campaign_status_cmd(campaign_id: int) -> None:
    """各阶段进度、逾期与待审批 / runs per stage, overdue, waiting for approval."""
    from states.campaigns import campaign_status, get_campaign

    with work() as s:
        status = campaign_status(s, get_campaign(s, campaign_id))
    click.secho(
        f"#{status.campaign_id} {status.name}：共 {status.total} 个支部的创建进度", bold=True
    )
    width = max(status.total, 1)
    width_names = max(len(st.name) for st in status.stages)
    for st in status.stages:
        bar = "█" * round(30 * st.runs / width)
        extra = []
        if st.overdue:
            extra.append(f"逾期 {st.overdue}")
        if st.waiting:
            extra.append(f"待审批 {st.waiting}")
        name = st.name + "　" * (width_names - len(st.name))  # full-width pad: CJK columns line up
        click.echo(f"  {name}{st.runs:>6}  {bar:<30} {'，'.join(extra)}")
    click.echo(
        f"逾期 overdue {status.overdue} · 待审批 waiting {status.waiting} · "
        f"完成 done {status.done} ({status.percent_done}%)"
    )


@campaign.command("list")
@friendly
def campaign_list() -> None:
    """列出活动 / list campaigns."""
    from sqlmodel import col, select

    from states.models import Campaign

    with work() as s:
        rows = s.exec(select(Campaign).order_by(col(Campaign.id))).all()
    if not rows:
        click.echo("还没有活动 / no campaigns yet")
    for c in rows:
        click.echo(
            f"#{c.id}  {c.name}  [{c.template_key} v{c.template_version}]  {c.run_count} 份创建进度"
        )
