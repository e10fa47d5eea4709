"""The `dangjian` command line: 组织树：`dangjian import-orgs`，`dangjian orgs tree`."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.base import CONTEXT, fail, friendly, main, work


@main.command("import-orgs", context_settings=CONTEXT)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="只校验，不写入 / validate only, write nothing.")
@friendly
def import_orgs_cmd(file: Path, dry_run: bool) -> None:
    """从 CSV 或 XLSX 导入组织树（按编码幂等）/ import the organisation tree (idempotent by code).

    列 / columns: 编码, 名称, 类型, 上级编码, 党员人数, 书记, 联系方式
    (code, name, kind, parent_code, member_count, secretary, contact).
    任何一行有错则整批不写入 / any bad row fails the whole import, nothing is written.
    """
    from states.importer import import_orgs, parse_file, validate

    rows = parse_file(file)
    with work() as s:
        if dry_run:
            errors = validate(s, rows)
            if errors:
                fail(f"校验失败：共 {len(errors)} 处错误", [e.__dict__ for e in errors], code=2)
            click.secho(f"校验通过：{len(rows)} 行 / {len(rows)} rows valid", fg="green")
            return
        with click.progressbar(length=len(rows), label="导入 / importing") as bar:
            done = [0]

            def progress(n: int) -> None:
                bar.update(n - done[0])
                done[0] = n

            result = import_orgs(s, rows, progress=progress)
    click.secho(
        f"导入完成：新增 {result.created}，更新 {result.updated}，未变 {result.unchanged} / "
        f"imported: {result.created} created, {result.updated} updated, "
        f"{result.unchanged} unchanged",
        fg="green",
    )


@main.group(context_settings=CONTEXT)
def orgs() -> None:
    """组织树 / the organisation tree."""


@orgs.command("tree")
@click.option("--root", "root_code", help="从该编码开始 / start at this code.")
@click.option("--depth", type=int, default=None, help="最多显示几层 / levels to show.")
@friendly
def orgs_tree(root_code: str | None, depth: int | None) -> None:
    """显示组织树 / print the tree."""
    from sqlmodel import col, select

    from states.models import Organisation
    from states.orgs import get_org_by_code, subtree

    with work() as s:
        if root_code:
            nodes = subtree(s, get_org_by_code(s, root_code))
        else:
            nodes = list(s.exec(select(Organisation).order_by(col(Organisation.path))))
        if not nodes:
            click.echo("（空）还没有组织，请先 import-orgs / no organisations yet")
            return
        base = nodes[0].depth
        for o in nodes:
            level = o.depth - base
            if depth is not None and level > depth:
                continue
            members = f"，党员 {o.member_count} 名" if o.member_count else ""
            click.echo(f"{'  ' * level}{o.name}（{o.code}，{o.kind}{members}）")
