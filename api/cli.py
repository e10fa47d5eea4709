"""The `dangjian` command line: set-up, imports, users, campaigns, audit, calendar, demo."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, select

from states.errors import DomainError, InvalidInput

F = TypeVar("F", bound=Callable[..., Any])
# Warnings reach the user once, through `friendly`; keep logging's last-resort handler quiet.
logging.getLogger("states").addHandler(logging.NullHandler())
logging.getLogger("workflows").addHandler(logging.NullHandler())
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _engine() -> Engine:
    from states.db import get_engine

    return get_engine()


def _fail(message: str, details: Any = None, code: int = 1) -> None:
    click.secho(f"错误 / Error: {message}", fg="red", err=True)
    if isinstance(details, list):
        for item in details[:50]:
            click.echo(f"  - {_detail(item)}", err=True)
        if len(details) > 50:
            click.echo(f"  … 另有 {len(details) - 50} 条 / {len(details) - 50} more", err=True)
    sys.exit(code)


def _detail(item: Any) -> str:
    if isinstance(item, dict):
        if "row" in item:
            return f"第 {item['row']} 行 [{item.get('column', '')}]：{item.get('message', '')}"
        return "；".join(f"{k}: {v}" for k, v in item.items())
    return str(item)


def friendly(fn: F) -> F:
    """Turn domain errors into a message and a non-zero exit code; warnings into notes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                result = fn(*args, **kwargs)
            except InvalidInput as exc:
                _fail(exc.message, exc.details, code=2)
            except DomainError as exc:
                _fail(exc.message, exc.details)
            except OperationalError as exc:
                _fail(f"无法访问数据库 / cannot use the database: {exc.orig or exc}")
            finally:
                seen: set[str] = set()
                for w in caught:
                    text = str(w.message)
                    if text not in seen and "Deprecat" not in type(w.message).__name__:
                        seen.add(text)
                        click.secho(f"注意 / Warning: {text}", fg="yellow", err=True)
        return result

    return wrapper  # type: ignore[return-value]


def require_schema(engine: Engine) -> None:
    """Exit with a clear message when the database is not migrated to the newest schema."""
    from states.migrate import current_revision, head_revision

    current = current_revision(engine)
    if current != head_revision():
        _fail(
            f"数据库尚未升级到最新结构（当前：{current or '空库'}）。请先运行 `dangjian db upgrade`。\n"
            f"The database schema is not up to date ({current or 'empty'}); run `dangjian db upgrade`."
        )


@contextmanager
def work() -> Iterator[Session]:
    """A unit of work on the configured, migrated database."""
    from states.db import unit_of_work

    engine = _engine()
    require_schema(engine)
    with unit_of_work(engine) as session:
        yield session


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="dangjian-flow", prog_name="dangjian")
def main() -> None:
    """dangjian-flow：基层党组织创建活动流程服务 / campaign workflows for grassroots Party organisations.

    数据库由 DATABASE_URL 指定；未设置时使用数据目录（DANGJIAN_DATA_DIR，默认 ./.data）中的
    SQLite 文件。 The database comes from DATABASE_URL, else a SQLite file in the data directory.
    """


# --- db ---------------------------------------------------------------------------------------


@main.group(context_settings=CONTEXT)
def db() -> None:
    """数据库结构 / database schema."""


@db.command("upgrade")
@friendly
def db_upgrade() -> None:
    """升级数据库到最新结构 / apply all migrations."""
    from states.migrate import current_revision, upgrade

    engine = _engine()
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
        f"当前 / current: {current_revision(_engine()) or '—'}   最新 / head: {head_revision()}"
    )


# --- organisations ----------------------------------------------------------------------------


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
                _fail(f"校验失败：共 {len(errors)} 处错误", [e.__dict__ for e in errors], code=2)
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


# --- users ------------------------------------------------------------------------------------

ROLE_HELP = "secretary 书记 | committee 委员 | organiser 组织员 | supervisor 督导 | admin 管理员"


@main.group(context_settings=CONTEXT)
def users() -> None:
    """用户与授权 / users and role grants."""


@users.command("add")
@click.option("--username", required=True, help="登录名 / log-in name.")
@click.option("--password", required=True, help="密码（至少 8 位）/ password (8+ characters).")
@click.option("--org", "org_code", required=True, help="组织编码 / organisation code.")
@click.option("--role", required=True, help=ROLE_HELP)
@click.option("--name", "display_name", help="显示名 / display name.")
@click.option("--email", help="电子邮箱 / e-mail.")
@friendly
def users_add(
    username: str,
    password: str,
    org_code: str,
    role: str,
    display_name: str | None,
    email: str | None,
) -> None:
    """新建用户并授予角色 / create a user with a role on an organisation."""
    from states.users import add_user, grant_role, parse_role

    parsed = parse_role(role)
    with work() as s:
        user = add_user(
            s, username=username, password=password, display_name=display_name, email=email
        )
        grant_role(s, user=user, org_code=org_code, role=parsed)
    click.secho(f"已创建用户 {username}（{parsed.value} @ {org_code}）/ user created", fg="green")


@users.command("grant")
@click.option("--username", required=True)
@click.option("--org", "org_code", required=True)
@click.option("--role", required=True, help=ROLE_HELP)
@friendly
def users_grant(username: str, org_code: str, role: str) -> None:
    """为已有用户增加角色 / add a role to an existing user."""
    from states.errors import NotFound
    from states.users import get_user_by_username, grant_role, parse_role

    parsed = parse_role(role)
    with work() as s:
        user = get_user_by_username(s, username)
        if user is None:
            raise NotFound(f"用户不存在：{username}")
        grant_role(s, user=user, org_code=org_code, role=parsed)
    click.secho(f"已授予 {username}：{parsed.value} @ {org_code} / granted", fg="green")


@users.command("list")
@friendly
def users_list() -> None:
    """列出用户及其角色 / list users and their grants."""
    from states.models import Grant, Organisation, User

    with work() as s:
        rows = s.exec(
            select(User.username, User.display_name, Grant.role, Organisation.code)
            .join(Grant, col(Grant.user_id) == col(User.id))
            .join(Organisation, col(Organisation.id) == col(Grant.org_id))
            .order_by(col(User.username))
        ).all()
    for username, name, role, code in rows:
        click.echo(f"{username:<24} {role:<11} {code:<12} {name}")


# --- templates --------------------------------------------------------------------------------


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


# --- campaigns --------------------------------------------------------------------------------


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
@friendly
def campaign_launch(
    template_key: str, root_code: str, kinds: str | None, schedule: Path | None, name: str | None
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
        with click.progressbar(length=max(total, 1), label="创建支部进程 / creating runs") as bar:
            camp = launch_campaign(
                s,
                template_key=template_key,
                root_code=root_code,
                kinds=kind_list,
                schedule=plan,
                name=name,
                progress=bar.update,
            )
    click.secho(
        f"活动 #{camp.id}「{camp.name}」已发起：{camp.run_count} 个支部进程 / "
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
    click.secho(f"#{status.campaign_id} {status.name}：共 {status.total} 个支部进程", bold=True)
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
    from states.models import Campaign

    with work() as s:
        rows = s.exec(select(Campaign).order_by(col(Campaign.id))).all()
    if not rows:
        click.echo("还没有活动 / no campaigns yet")
    for c in rows:
        click.echo(
            f"#{c.id}  {c.name}  [{c.template_key} v{c.template_version}]  {c.run_count} 个进程"
        )


# --- audit ------------------------------------------------------------------------------------


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
    _fail(
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


# --- demo -------------------------------------------------------------------------------------


@main.command(context_settings=CONTEXT)
@friendly
def demo() -> None:
    """建立演示数据（可重复运行）/ build the demo tree, users and campaign (safe to run twice)."""
    from states.demo import DEMO_PASSWORD, build_demo
    from states.migrate import upgrade

    engine = _engine()
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

    engine = _engine()
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
    results = send_test(_engine(), org)
    if not results:
        _fail(f"{org.name} 还没有通知渠道；先用 dangjian notify channel add 添加", code=2)
    failed = 0
    for label, result in results:
        if result.ok:
            click.secho(f"  ✓ {label}", fg="green")
        else:
            failed += 1
            click.secho(f"  ✗ {label}：{result.detail}", fg="red")
    if failed:
        sys.exit(1)


# --- timed work: sweeps, the worker, deployments ---------------------------------------------

SWEEP_DEFAULT = ("deadline_sweep", "approval_sla_sweep", "phase_schedule")
FLOW_NAMES = (*SWEEP_DEFAULT, "weekly_bulletin", "deliver_notifications")


def _parse_as_of(raw: str | None) -> Any:
    """`--as-of`: ISO 8601; without a zone it is Beijing time; without it, now."""
    from datetime import datetime

    from states.timeutil import SHANGHAI, utcnow

    if raw is None or not raw.strip():
        return utcnow()
    text = raw.strip().replace(" ", "T", 1)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(
            f"无法识别的时间「{raw}」，应为 ISO 8601 格式，如 2026-12-01T09:00+08:00"
        ) from None
    return value.replace(tzinfo=SHANGHAI) if value.tzinfo is None else value


def _flow_names(flow_name: str | None) -> list[str]:
    if flow_name is None:
        return list(SWEEP_DEFAULT)
    if flow_name == "all":
        return list(FLOW_NAMES)
    if flow_name not in FLOW_NAMES:
        raise InvalidInput(f"未知的流程「{flow_name}」，可选：{'、'.join(FLOW_NAMES)} 或 all")
    return [flow_name]


def _run_jobs_directly(engine: Engine, names: list[str], as_of: Any, *, verbose: bool) -> None:
    """Run the jobs in this process (no Prefect); print each summary and its warnings."""
    from workflows.jobs import run_job

    def log(line: str) -> None:
        if verbose and not line.startswith("警告："):  # warnings are printed once, below
            click.echo(f"    {line}")

    seen: set[str] = set()
    for name in names:
        with warnings.catch_warnings(record=True) as caught:  # shown here, once, not at exit
            warnings.simplefilter("always")
            report = run_job(engine, name, as_of, log=log)
        click.echo(f"  {report.summary()}")
        for message in [*report.warnings, *(str(w.message) for w in caught)]:
            if message not in seen:
                seen.add(message)
                click.secho(f"  注意 / Warning: {message}", fg="yellow")


@main.command("sweep", context_settings=CONTEXT)
@click.option(
    "--as-of",
    "as_of_raw",
    default=None,
    metavar="TIME",
    help="按这个时间运行，如 2026-12-01T09:00+08:00（不带时区按北京时间；默认现在）"
    " / run as of TIME.",
)
@click.option(
    "--flow",
    "flow_name",
    default=None,
    metavar="NAME",
    help="只运行这个流程：deadline_sweep | approval_sla_sweep | phase_schedule | weekly_bulletin"
    " | deliver_notifications | all（默认前三个）/ one flow, or all.",
)
@click.option(
    "--via-prefect",
    is_flag=True,
    help="通过 Prefect 流程运行（用 PREFECT_API_URL，未设置时用临时服务器，启动约需 10 秒）"
    " / run the Prefect flow instead of the job directly.",
)
@friendly
def sweep_cmd(as_of_raw: str | None, flow_name: str | None, via_prefect: bool) -> None:
    """按给定时间运行一次截止提醒、督办、阶段开启等流程 / run the timed flows once.

    默认直接运行（不启动 Prefect），打印每个流程做了什么；同一时间重复运行不会重复提醒。
    Runs the jobs directly by default; running twice at the same time sends nothing twice.
    """
    as_of = _parse_as_of(as_of_raw)
    names = _flow_names(flow_name)
    engine = _engine()
    require_schema(engine)
    click.echo(f"运行时间 / as of: {as_of.isoformat()}")
    if not via_prefect:
        _run_jobs_directly(engine, names, as_of, verbose=True)
        return
    from workflows.settings import apply_defaults

    apply_defaults()
    from workflows.flows import FLOWS
    from workflows.jobs import JOBS

    for name in names:
        flow: Any = FLOWS[name]
        result = flow() if name == "deliver_notifications" else flow(as_of=as_of)
        counts = result.get("counts", result) if isinstance(result, dict) else result
        parts = (
            "，".join(f"{k} {v}" for k, v in sorted(counts.items()))
            if isinstance(counts, dict)
            else str(counts)
        )
        click.echo(f"  {JOBS[name]}：{parts or '无'}")
        if isinstance(result, dict):
            for message in result.get("warnings") or []:
                click.secho(f"  注意 / Warning: {message}", fg="yellow")


def _wait_for_api(url: str, timeout: float) -> None:
    """Wait until a configured Prefect server answers its health check."""
    import time

    import httpx

    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            if httpx.get(url.rstrip("/") + "/health", timeout=3.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            _fail(f"PREFECT_API_URL（{url}）在 {timeout:.0f} 秒内没有应答；请检查 Prefect 服务器")
        if not told:
            click.echo(f"等待 Prefect 服务器 {url} …")
            told = True
        time.sleep(1.0)


def _raise_on_sigterm() -> None:
    """Until Prefect's runner takes over: SIGTERM ends us like Ctrl+C (cleanup runs)."""
    import signal

    def handler(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)
    # Started in the background by a shell, SIGINT is ignored: take it back (Ctrl+C, kill -INT).
    signal.signal(signal.SIGINT, signal.default_int_handler)


@main.command("worker", context_settings=CONTEXT)
@click.option(
    "--no-initial-sweep",
    is_flag=True,
    help="启动时不先运行一次提醒与督办 / skip the sweeps at start.",
)
@friendly
def worker(no_initial_sweep: bool) -> None:
    """按计划运行全部定时流程（截止提醒、督办、审批超时、阶段、简报、发送通知）/ run the schedules.

    设置了 PREFECT_API_URL 时使用那台 Prefect 服务器；否则在本机启动一个受管的 Prefect 服务器
    （SQLite，数据在 数据目录/prefect，端口 DANGJIAN_PREFECT_PORT，默认 4200），随本命令一起停止。
    间隔：DANGJIAN_SWEEP_INTERVAL（默认 900 秒）、DANGJIAN_DELIVER_INTERVAL（默认 30 秒）。
    With PREFECT_API_URL it uses that server; otherwise it runs a local Prefect server for itself.
    """
    import os
    from contextlib import ExitStack, suppress

    from states.timeutil import utcnow
    from workflows.settings import apply_defaults, prefect_imported

    engine = _engine()
    require_schema(engine)
    apply_defaults()
    _raise_on_sigterm()
    api_url = os.environ.get("PREFECT_API_URL", "").strip()
    server = None
    with ExitStack() as stack:
        if not api_url:
            from workflows.local_server import LocalServer

            server = LocalServer()
            click.echo(
                f"正在启动本机 Prefect 服务器（端口 {server.port}，数据 {server.home}）… "
                "/ starting a local Prefect server"
            )
            server.start()

            def stop_server() -> None:
                click.echo("正在停止 Prefect 服务器… / stopping the Prefect server")
                server.stop()
                click.echo("Prefect 服务器已停止 / stopped")

            stack.callback(stop_server)
        if not no_initial_sweep:
            click.echo("先运行一次提醒、督办与阶段开启 / first sweep:")
            _run_jobs_directly(engine, list(SWEEP_DEFAULT), utcnow(), verbose=False)
        if server is not None:
            seconds = server.wait_ready(
                tick=lambda s: click.echo(f"  仍在启动 Prefect 服务器（已 {s:.0f} 秒）…")
            )
            rss = server.rss_mb()
            memory = f"，内存 {rss:.0f} MB" if rss else ""
            click.secho(
                f"Prefect 服务器已就绪，用时 {seconds:.1f} 秒{memory} / ready in {seconds:.1f} s",
                fg="green",
            )
            click.echo(f"Prefect 界面 / UI: {server.ui_url}")
            api_url = server.api_url
            os.environ["PREFECT_API_URL"] = api_url
            os.environ["PREFECT_HOME"] = str(server.home)
            if prefect_imported():  # environment changes come too late: use a settings context
                from prefect.settings import PREFECT_API_URL, temporary_settings

                stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        else:
            _wait_for_api(api_url, float(os.environ.get("DANGJIAN_PREFECT_START_TIMEOUT", "180")))
            click.echo(f"使用 Prefect 服务器 / using: {api_url}")
        from workflows import deploy

        plans = deploy.plans()
        click.echo(f"登记 {len(plans)} 个部署并按计划运行 / serving {len(plans)} deployments:")
        for p in plans:
            click.echo(f"  {p.flow + '/' + deploy.DEPLOYMENT_NAME:<32} {p.describe()}")
        click.echo("按 Ctrl+C 停止 / press Ctrl+C to stop")
        # Prefect's own SIGTERM handler leaves this coroutine behind; it is harmless.
        warnings.filterwarnings("ignore", message="coroutine 'Runner.astop' was never awaited")
        with suppress(KeyboardInterrupt):  # Ctrl+C: Prefect stops; the stack stops the server
            deploy.serve_all()


def _start_worker_child() -> Any:
    """`dangjian worker` as a child process (its own session: we alone decide when it stops)."""
    import subprocess
    import threading

    from workflows.local_server import die_with_parent

    proc = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker"],
        start_new_session=True,
        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
    )
    click.echo(f"定时任务进程已启动（pid {proc.pid}）/ worker started")

    def watch() -> None:
        code = proc.wait()
        if code not in (0, -15, 143) and not getattr(proc, "stopping", False):
            click.secho(
                f"定时任务进程已退出（退出码 {code}），网页服务继续运行 / the worker exited",
                fg="red",
                err=True,
            )

    threading.Thread(target=watch, name="worker-watch", daemon=True).start()
    return proc


def _stop_worker_child(proc: Any) -> None:
    import subprocess

    proc.stopping = True
    if proc.poll() is None:
        click.echo("正在停止定时任务进程… / stopping the worker")
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@main.command("deploy", context_settings=CONTEXT)
@click.option("--pool", required=True, help="Prefect 工作池名称 / work pool name.")
@click.option(
    "--source",
    default=None,
    help="各工作机上本项目代码的目录（各机相同路径）或 git 地址；默认本机的项目目录"
    " / the code's directory on every worker machine, or a git URL.",
)
@click.option("--work-queue", default=None, help="工作队列 / work queue (optional).")
@friendly
def deploy_cmd(pool: str, source: str | None, work_queue: str | None) -> None:
    """多台机器：把全部流程登记到工作池（带计划）/ register every flow on a work pool.

    需要 PREFECT_API_URL 指向共用的 Prefect 服务器；工作池不存在时按 process 类型创建。
    各机运行 `prefect worker start --pool 名称` 即可领取并运行。
    """
    import asyncio
    import os

    from workflows.settings import apply_defaults

    if not os.environ.get("PREFECT_API_URL", "").strip():
        _fail("请先设置 PREFECT_API_URL，指向各机共用的 Prefect 服务器", code=2)
    apply_defaults()
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    from workflows import deploy

    async def ensure_pool() -> bool:
        async with get_client() as client:
            try:
                await client.read_work_pool(pool)
                return False
            except ObjectNotFound:
                await client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
                return True

    if asyncio.run(ensure_pool()):
        click.echo(f"已创建工作池 {pool}（process）/ work pool created")
    for name, deployment_id in deploy.deploy_to_pool(pool, source, work_queue=work_queue):
        click.echo(f"  {name}  {deployment_id}")
    click.secho(
        f"已登记 {len(deploy.plans())} 个部署到工作池 {pool}；在每台机器上运行："
        f"prefect worker start --pool {pool}",
        fg="green",
    )


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="监听地址 / address to bind.")
@click.option("--port", default=8000, show_default=True, type=int, help="端口 / port.")
@click.option(
    "--with-worker",
    is_flag=True,
    help="同时启动定时任务进程（dangjian worker），一起停止 / also run the worker.",
)
@friendly
def serve(host: str, port: int, with_worker: bool) -> None:
    """启动网页与 JSON 接口服务 / serve the web pages and the JSON API (uvicorn)."""
    import uvicorn

    from api.app import create_app
    from states.demo import DEMO_PASSWORD, demo_logins

    engine = _engine()
    require_schema(engine)
    shown = f"127.0.0.1:{port}" if host in ("0.0.0.0", "::") else f"{host}:{port}"
    click.secho(f"服务地址 / serving at: http://{shown}/", fg="green", bold=True)
    click.echo(f"接口文档 / API docs:   http://{shown}/docs")
    with work() as s:
        logins = demo_logins(s)
    if logins:
        click.echo(f"演示账号（密码 {DEMO_PASSWORD}）/ demo log-ins (password {DEMO_PASSWORD}):")
        for username, role, org in logins:
            click.echo(f"  {username:<22} {role:<11} {org}")
    click.echo("按 Ctrl+C 停止 / press Ctrl+C to stop")
    if not with_worker:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info")
        return
    # uvicorn re-raises the SIGTERM it caught once it has shut down: make that an exception
    # here, so the `finally` below stops the worker (instead of the default handler killing us).
    _raise_on_sigterm()
    child = _start_worker_child()
    try:
        uvicorn.run(create_app(engine), host=host, port=port, log_level="info")
    finally:
        _stop_worker_child(child)


if __name__ == "__main__":  # pragma: no cover
    main()
