"""The `dangjian` command line: 通知：`dangjian notify channel add | list`，`send-pending`，`failures`，`test`."""

from __future__ import annotations

import sys

import click

from api.cli.base import CONTEXT, cli_engine, fail, friendly, main, require_schema, work


@main.group(context_settings=CONTEXT)
def notify() -> None:
    """通知：渠道、发送、测试 / notifications: channels, delivery, tests."""


@notify.group("channel", context_settings=CONTEXT)
def notify_channel() -> None:
    """组织的机器人与 Webhook 渠道 / an organisation's robots and webhooks."""


@notify_channel.command("add")
@click.option("--org", "org_code", required=True, help="组织编码 / organisation code.")
@click.option(
    "--kind",
    required=True,
    type=click.Choice(["wecom", "dingtalk", "feishu", "webhook"]),
    help="渠道类型 / channel kind.",
)
@click.option("--url", required=True, help="完整地址，或机器人的 key / access_token / hook id.")
@click.option(
    "--secret", default=None, help="签名密钥 / signing secret (DingTalk, Feishu, webhook)."
)
@click.option("--quiet-hours", default=None, help="免打扰时段 / quiet hours, e.g. 22:00-07:30.")
@click.option(
    "--no-escalations-in-quiet",
    is_flag=True,
    help="免打扰时段内督办也不发 / hold escalations in quiet hours too.",
)
@friendly
def notify_channel_add(
    org_code: str,
    kind: str,
    url: str,
    secret: str | None,
    quiet_hours: str | None,
    no_escalations_in_quiet: bool,
) -> None:
    """添加（或按地址更新）一个渠道 / add (or update by URL) one channel."""
    from states.notice_settings import ChannelSpec, add_channel, mask_url
    from states.orgs import get_org_by_code

    with work() as s:
        org = get_org_by_code(s, org_code)
        ch = add_channel(
            s,
            org,
            ChannelSpec(
                kind=kind,
                url=url,
                secret=secret,
                quiet_hours=quiet_hours,
                escalations_in_quiet=not no_escalations_in_quiet,
            ),
        )
        click.secho(
            f"已保存渠道 #{ch.id}：{org.name} {kind} {mask_url(ch.url)} / channel saved", fg="green"
        )


@notify_channel.command("list")
@click.option("--org", "org_code", required=True, help="组织编码 / organisation code.")
@friendly
def notify_channel_list(org_code: str) -> None:
    """列出渠道（密钥已遮盖）/ list channels (secrets masked)."""
    from states.notice_settings import KIND_LABELS, channels_of, mask, mask_url
    from states.orgs import get_org_by_code

    with work() as s:
        org = get_org_by_code(s, org_code)
        rows = channels_of(s, org.id or 0)
        if not rows:
            click.echo(f"{org.name} 还没有通知渠道 / no channels yet")
        for ch in rows:
            state = "启用" if ch.enabled else "停用"
            quiet = f" 免打扰 {ch.quiet_hours}" if ch.quiet_hours else ""
            secret = f" 密钥 {mask(ch.secret)}" if ch.secret else ""
            click.echo(
                f"  #{ch.id:<4} {KIND_LABELS.get(ch.kind, ch.kind):<10} {mask_url(ch.url)}"
                f"{secret} {state}{quiet}"
            )


@notify.command("send-pending")
@click.option("--batch", default=100, show_default=True, help="每批条数 / rows per batch.")
@click.option("--all", "drain_all", is_flag=True, help="直到没有到期通知 / until nothing is due.")
@friendly
def notify_send_pending(batch: int, drain_all: bool) -> None:
    """发送到期的通知（中继的一轮）/ one pass of the notification relay."""
    from notifications.relay import drain, run_once

    engine = cli_engine()
    require_schema(engine)
    report = drain(engine, batch=batch) if drain_all else run_once(engine, batch=batch)
    click.echo(report.summary())
    if report.failed:
        click.secho(
            "有永久失败的投递，见 dangjian notify failures / some deliveries failed", fg="red"
        )


@notify.command("failures")
@click.option("--limit", default=20, show_default=True)
@friendly
def notify_failures(limit: int) -> None:
    """最近永久失败的投递及原因 / recent permanent delivery failures."""
    from sqlmodel import col, select

    from states.models import Delivery, OutboxMessage
    from states.timeutil import format_local

    with work() as s:
        rows = s.execute(
            select(Delivery, OutboxMessage.event_kind)
            .join(OutboxMessage, col(OutboxMessage.id) == col(Delivery.outbox_id))
            .where(Delivery.status == "failed")
            .order_by(col(Delivery.id).desc())
            .limit(limit)
        ).all()
        if not rows:
            click.secho("没有失败的投递 / no failed deliveries", fg="green")
        for d, kind in rows:
            click.echo(
                f"  {format_local(d.next_attempt_at)} {kind:<18} {d.channel:<9} "
                f"{d.target:<24} 尝试 {d.attempts} 次：{d.last_error or ''}"
            )


@notify.command("test")
@click.option("--org", "org_code", required=True, help="组织编码 / organisation code.")
@friendly
def notify_test(org_code: str) -> None:
    """通过该组织的每个渠道发一条测试消息并报告结果 / send a test through each channel."""
    from notifications.relay import send_test
    from states.orgs import get_org_by_code

    with work() as s:
        org = get_org_by_code(s, org_code)
    results = send_test(cli_engine(), org)
    if not results:
        fail(f"{org.name} 还没有通知渠道；先用 dangjian notify channel add 添加", code=2)
    failed = 0
    for label, result in results:
        if result.ok:
            click.secho(f"  ✓ {label}", fg="green")
        else:
            failed += 1
            click.secho(f"  ✗ {label}：{result.detail}", fg="red")
    if failed:
        sys.exit(1)
