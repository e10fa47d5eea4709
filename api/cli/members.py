"""The `dangjian` command line: 党员名册：`dangjian members import FILE [--dry-run]`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from api.cli.base import CONTEXT, friendly, main, work


@main.group(context_settings=CONTEXT)
def members() -> None:
    """党员名册 / the member roster."""


@members.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="只校验，不写入 / validate only, write nothing.")
@click.option(
    "--max-rows",
    type=click.IntRange(1, 10_000_000),
    default=None,
    help="本次允许的最多数据行数（文件大小等上限随之放大）/ row limit for this file "
    "(size limits scale with it); default DANGJIAN_IMPORT_MAX_ROWS or 200,000.",
)
@friendly
def import_cmd(file: Path, dry_run: bool, max_rows: int | None) -> None:
    """从 CSV 或 XLSX 导入党员名册（幂等）/ import the roster (idempotent).

    列 / columns: 姓名, 支部编码, 党小组编码, 类别, 入党日期, 党员编号, 手机号 [, 状态, 状态日期]
    (name, branch_code, group_code, category, joined_on, member_no, phone [, status, status_on]).
    任何一行有错则整批不写入，退出码 2 / any bad row fails the whole import (exit code 2).
    """
    from states.members.importer import import_members
    from states.members.service import limits_for_rows

    limits = limits_for_rows(max_rows) if max_rows else None
    with (
        work() as s,
        click.progressbar(length=_estimate(file), label="导入 / importing", file=sys.stderr) as bar,
    ):
        done = [0]

        def progress(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        result = import_members(s, file, limits=limits, progress=progress)
        if dry_run:
            s.rollback()
    if dry_run:
        total = result.created + result.updated + result.unchanged
        click.secho(
            f"校验通过：{total} 行（将新增 {result.created}，更新 {result.updated}，"
            f"未变 {result.unchanged}），未写入 / {total} rows valid, nothing written",
            fg="green",
        )
        return
    click.secho(
        f"导入完成：新增 {result.created}，更新 {result.updated}，未变 {result.unchanged} / "
        f"imported: {result.created} created, {result.updated} updated, "
        f"{result.unchanged} unchanged",
        fg="green",
    )


def _estimate(file: Path) -> int:
    """Rows in a CSV (lines less the header), counted in 1 MB reads; 0 for a workbook."""
    if file.suffix.lower() != ".csv":
        return 0
    lines = 0
    with file.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            lines += chunk.count(b"\n")
    return max(lines - 1, 0)
