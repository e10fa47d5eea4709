"""The `dangjian` command line: 用户与授权：`dangjian users add | grant | list`."""

from __future__ import annotations

import click
from sqlmodel import col, select

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
