"""The `dangjian` command line: 用户与授权：`dangjian users add | grant | list | reset-password | import`."""

from __future__ import annotations

from pathlib import Path

import click

from api.cli.base import CONTEXT, friendly, main, work

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
    from sqlmodel import col, select

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


@users.command("reset-password")
@click.option("--username", required=True, help="登录名 / log-in name.")
@friendly
def users_reset_password(username: str) -> None:
    """重置密码：打印一次新的初始密码，下次登录须修改；该用户的全部登录一并失效。

    Reset a password: prints a new initial password once; it must be changed at the next
    log-in, and every session of the user is revoked.
    """
    from states.accounts import reset_password
    from states.errors import NotFound
    from states.users import get_user_by_username

    with work() as s:
        user = get_user_by_username(s, username)
        if user is None:
            raise NotFound(f"用户不存在：{username}", details={"username": username})
        password = reset_password(s, user, actor_id=None)
    click.secho(f"已重置 {username} 的密码，首次登录须修改 / password reset", fg="green")
    click.echo(f"初始密码 / initial password: {password}")


@users.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="只检查，不写入 / check only, write nothing.")
@friendly
def users_import(file: Path, dry_run: bool) -> None:
    """按表格批量建立账号与授权（CSV/XLSX，任一行有错则整批不写入，可重复导入）。

    Columns 用户名, 姓名, 组织编码, 角色, 手机号 (or username, name, org_code, role, phone). New
    accounts get a random initial password, printed once here and changed at the first log-in;
    existing accounts with the same 姓名 keep their password and only gain missing grants.
    """
    from states.accounts import import_users, parse_user_sheet

    sheet = parse_user_sheet(file)
    with work() as s:
        outcome = import_users(s, sheet)
        if dry_run:
            s.rollback()
    verb = "检查通过（未写入）/ checked, nothing written" if dry_run else "导入完成 / imported"
    click.secho(
        f"{verb}：新建账号 {len(outcome.created)} 个，新增授权 {outcome.grants_added} 项，"
        f"已有 {outcome.unchanged} 项",
        fg="green",
    )
    if outcome.created and not dry_run:
        _password_table(outcome.created)


def _password_table(created: list[tuple[str, str, str]]) -> None:
    """用户名 / 姓名 / 初始密码, aligned; shown once (not stored anywhere in clear)."""
    width = max(8, *(len(u) for u, _n, _p in created))
    click.echo(f"\n{'用户名':<{width - 3}}  初始密码        姓名")
    for username, name, password in created:
        click.echo(f"{username:<{width}}  {password:<14}  {name}")
    click.secho("初始密码只显示这一次，请妥善转交；首次登录须修改。", fg="yellow")
