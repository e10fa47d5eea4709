"""The `dangjian` command line: 活动模板：`dangjian templates list | show`."""

from __future__ import annotations

import click

from api.cli.base import CONTEXT, friendly, main


@main.group(context_settings=CONTEXT)
def templates() -> None:
    """活动模板 / campaign templates."""


@templates.command("list")
@friendly
def templates_list() -> None:
    """列出内置模板 / list the shipped templates."""
    from states.catalog import builtin_templates

    for tpl in builtin_templates().values():
        stages = " → ".join(s.name for s in tpl.stages)
        click.echo(f"{tpl.key}  v{tpl.version}  {tpl.name}\n    {stages}")


@templates.command("show")
@click.argument("key")
@click.option("--mermaid", is_flag=True, help="输出 Mermaid 状态图 / print a Mermaid diagram.")
@friendly
def templates_show(key: str, mermaid: bool) -> None:
    """显示模板的阶段、条件与审批链 / show stages, requirements and approvals."""
    from states.catalog import get_template
    from states.machines import mermaid as to_mermaid
    from states.requirements import describe

    tpl = get_template(key)
    if mermaid:
        click.echo(to_mermaid(tpl))
        return
    click.secho(f"{tpl.name}（{tpl.key} 第 {tpl.version} 版）", bold=True)
    for i, st in enumerate(tpl.stages, 1):
        when = ""
        if st.phase:
            when = f"  [{st.phase.opens} ~ {st.phase.closes}]"
        elif st.duration:
            when = f"  [{st.duration.days} 个{'工作日' if st.duration.working else '自然日'}]"
        click.echo(f"{i}. {st.name}（{st.id}）{when}")
        for req in st.requirements:
            click.echo(f"     · {describe(req)}")
        chain = tpl.chain_for(st.id)
        steps = [
            "上级"
            if c.parent == 1
            else f"上{c.parent}级"
            if c.parent
            else f"最近的{c.nearest_kind}"
            for c in chain
        ]
        click.echo(f"     审批：{' → '.join(steps)}")
