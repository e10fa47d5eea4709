"""The `dangjian` command line: 导出：`dangjian export ledger --run ID | --campaign ID --org CODE -o FILE`."""

from __future__ import annotations

import os
from pathlib import Path

import click

from api.cli.base import CONTEXT, fail, friendly, main, work

BASE_URL_ENV = "DANGJIAN_BASE_URL"


@main.group(context_settings=CONTEXT)
def export() -> None:
    """导出 / exports (台账 workbooks)."""


@export.command("ledger")
@click.option("--run", "run_id", type=int, help="一个支部的创建进度编号 / one run's id.")
@click.option("--campaign", "campaign_id", type=int, help="活动编号 / a campaign's id.")
@click.option("--org", "org_code", help="组织编码（与 --campaign 一起）/ the organisation's code.")
@click.option("--per-branch", is_flag=True, help="每个支部另加一张工作表 / a sheet per branch.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    required=True,
    help="输出的 .xlsx 文件 / the workbook to write.",
)
@click.option(
    "--base-url",
    default=lambda: os.environ.get(BASE_URL_ENV, ""),
    help=f"附件链接的网站地址（默认 {BASE_URL_ENV}）/ the site address for attachment links.",
)
@friendly
def export_ledger(
    run_id: int | None,
    campaign_id: int | None,
    org_code: str | None,
    per_branch: bool,
    output: Path,
    base_url: str,
) -> None:
    """导出台账（Excel）/ write the 台账 workbook of a run, or of a campaign under an organisation."""
    if (run_id is None) == (campaign_id is None) or (campaign_id is not None and not org_code):
        fail(
            "请给出 --run ID，或 --campaign ID 与 --org CODE / give --run, or --campaign and --org"
        )
    base = base_url.rstrip("/")
    if run_id is not None:
        _run_ledger(run_id, output, base)
    else:
        _committee_ledger(campaign_id or 0, org_code or "", per_branch, output, base)


def _run_ledger(run_id: int, output: Path, base_url: str) -> None:
    from states.ledger import run_book

    with work() as s:
        data = run_book.load(s, run_id, None)
        run_book.write(data, output, base_url=base_url)
    click.secho(f"已导出 {data.ctx.org.name} 的台账：{output} / written", fg="green")


def _committee_ledger(
    campaign_id: int, org_code: str, per_branch: bool, output: Path, base_url: str
) -> None:
    from states.ledger import committee, exports

    def progress(done: int, total: int) -> None:
        click.echo(f"\r已处理 {done} / {total} 个支部 / runs", nl=False, err=True)

    with work() as s:
        scope = exports.scope_by_code(s, campaign_id, org_code)
        total = committee.write(
            s, scope, output, per_branch=per_branch, progress=progress, base_url=base_url
        )
    click.echo("", err=True)
    click.secho(f"已导出 {scope.org.name} 的台账汇总（{total} 个）：{output} / written", fg="green")
