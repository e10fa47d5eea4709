"""The `dangjian` command line: 审计日志与工作日历：`dangjian audit verify`，`dangjian calendar override | check`."""

from __future__ import annotations

from datetime import date
from typing import Any

import click

from api.cli.base import CONTEXT, fail, friendly, main, work


@main.group(context_settings=CONTEXT)
def audit() -> None:
    """审计日志 / the audit log."""


@audit.command("verify")
@friendly
def audit_verify() -> None:
    """校验审计日志哈希链 / verify the hash chain; names the first broken link."""
    from states.audit import verify

    with work() as s:
        report = verify(s)
    if report.broken is None:
        click.secho(
            f"审计链完整：{report.events} 条事件，{report.streams} 条链 / "
            f"chain intact: {report.events} events in {report.streams} streams",
            fg="green",
        )
        return
    b = report.broken
    fail(
        f"审计链在事件 #{b.event_id}（链 {b.stream} 第 {b.seq} 条）处断开：{b.reason} / "
        f"chain broken at event {b.event_id} ({b.stream} seq {b.seq})"
    )


# --- calendar ---------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def calendar() -> None:
    """工作日历 / the working-day calendar."""


@calendar.command("override")
@click.argument("day", type=click.DateTime(formats=["%Y-%m-%d"]))
@click.option("--workday/--holiday", "is_workday", required=True, help="上班 / 放假")
@click.option("--note", help="说明 / note, e.g. 春节调休.")
@friendly
def calendar_override(day: Any, is_workday: bool, note: str | None) -> None:
    """设定某天上班或放假（优先于官方日历）/ mark a day as working or not."""
    from states.workcal import set_override

    with work() as s:
        set_override(s, day=day.date(), is_workday=is_workday, note=note)
    click.secho(f"{day.date()}：{'上班' if is_workday else '放假'} / saved", fg="green")


@calendar.command("check")
@click.argument("year", type=int, default=date.today().year)
@friendly
def calendar_check(year: int) -> None:
    """检查某年是否有官方节假日数据 / does the calendar cover YEAR?"""
    from sqlmodel import col, func, select

    from states.models import CalendarOverride
    from states.workcal import covered

    with work() as s:
        n = s.exec(
            select(func.count())
            .select_from(CalendarOverride)
            .where(
                col(CalendarOverride.day) >= date(year, 1, 1),
                col(CalendarOverride.day) <= date(year, 12, 31),
            )
        ).one()
    if covered(year):
        click.secho(f"{year} 年有官方节假日数据 / covered; 自定义 {n} 天", fg="green")
    else:
        click.secho(
            f"{year} 年尚无官方节假日数据，按周一至周五推算；已自定义 {n} 天 / "
            f"not covered: weekdays assumed; {n} overrides",
            fg="yellow",
        )
