"""Accounts: password rules, changing one's password, an admin's reset, and `users import`.

Password rules (Chinese messages, all problems listed at once): at least 8 characters, at most
64 and 72 bytes (bcrypt's limit), letters and digits both, not the user name, not the old
password, not one of `COMMON_PASSWORDS`. Changing one's password checks the old one through the
log-in rate limit (`states.tokens.reserve_attempt`: failures count with failed log-ins of the
same user name and client), then sets the new hash, clears `must_change_password`, revokes every
other token of the user and appends `user.password_changed`, in one transaction.

Initial passwords (a reset, an imported account) are random: 12 characters from 55 symbols,
about 69 bits. Key stretching protects guessable passwords; it adds nothing to a random one of
that size, and the account must choose its own at the first log-in, so initial passwords are
hashed at bcrypt's lowest cost (`INITIAL_ROUNDS`, about 1 ms instead of 80): an import of 500
accounts hashes in about a second instead of 40.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sqlalchemy import delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from states import audit
from states.db import read_session, unit_of_work
from states.errors import Forbidden, InvalidInput, NotFound
from states.models import Grant, LoginFailure, Organisation, Role, User
from states.orgs import is_within
from states.timeutil import utcnow
from states.tokens import reserve_attempt, revoke_user_tokens
from states.users import Actor, check_password, hash_password, manageable_roles

MIN_LENGTH = 8
MAX_LENGTH = 64
MAX_BYTES = 72  # bcrypt reads no further
INITIAL_ROUNDS = 4
INITIAL_LENGTH = 12
_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/l/I
#: A small built-in list of passwords tried first by anyone guessing (compared case-insensitively).
COMMON_PASSWORDS = frozenset(
    {
        "12345678",
        "123456789",
        "1234567890",
        "password",
        "password1",
        "password123",
        "passw0rd",
        "qwerty123",
        "qwertyuiop",
        "abc12345",
        "abcd1234",
        "a1234567",
        "aa123456",
        "11111111",
        "88888888",
        "66666666",
        "1q2w3e4r",
        "1qaz2wsx",
        "zxcvbnm123",
        "iloveyou1",
        "admin123",
        "admin888",
        "root1234",
        "woaini1314",
        "5201314a",
        "dangjian",
        "dangjian123",
        "dangjian2026",
        "changeme1",
        "welcome1",
    }
)


def password_problems(
    password: str, *, username: str, old_password: str | None = None
) -> list[str]:
    """Every rule `password` breaks, in Chinese; empty when it is acceptable."""
    problems: list[str] = []
    if len(password) < MIN_LENGTH:
        problems.append(f"密码至少 {MIN_LENGTH} 位")
    if len(password) > MAX_LENGTH or len(password.encode("utf-8")) > MAX_BYTES:
        problems.append(f"密码最长 {MAX_LENGTH} 个字符（{MAX_BYTES} 字节）")
    if password != password.strip():
        problems.append("密码首尾不能是空格")
    if not (re.search(r"[A-Za-z]", password) and re.search(r"[0-9]", password)):
        problems.append("密码须同时包含字母和数字")
    name = username.strip().lower()
    if name and len(name) >= 3 and name in password.lower():
        problems.append("密码不能包含用户名")
    if old_password is not None and password == old_password:
        problems.append("新密码不能与原密码相同")
    if password.lower() in COMMON_PASSWORDS:
        problems.append("密码过于常见，容易被猜中，请换一个")
    return problems


def require_good_password(password: str, *, username: str, old_password: str | None = None) -> None:
    """Raise InvalidInput (field `new_password`) listing every rule `password` breaks."""
    problems = password_problems(password, username=username, old_password=old_password)
    if problems:
        raise InvalidInput(
            "新密码不符合要求：" + "；".join(problems),
            details={"field": "new_password", "problems": problems},
        )


def initial_password() -> str:
    """A random initial password with letters and digits (about 69 bits)."""
    while True:
        pw = "".join(secrets.choice(_ALPHABET) for _ in range(INITIAL_LENGTH))
        if re.search(r"[A-Za-z]", pw) and re.search(r"[0-9]", pw):
            return pw


def hash_initial(password: str) -> str:
    """Hash a random initial password at the lowest cost (see the module's note)."""
    return hash_password(password, rounds=INITIAL_ROUNDS)


# --------------------------------------------------------------------------- change / reset


@dataclass(frozen=True)
class Changed:
    """The outcome of a password change: how many other sessions were revoked."""

    revoked: int


def change_own_password(
    engine: Engine,
    *,
    user_id: int,
    client: str,
    old_password: str,
    new_password: str,
    keep_token: str | None,
) -> Changed:
    """Check the old password (rate-limited like log-in), then set the new one.

    Raises RateLimited over the log-in limits, InvalidInput with field `old_password` for a
    wrong old password (counted as a failed log-in) or `new_password` for a weak new one.
    """
    with read_session(engine) as s:
        user = s.get(User, user_id)
        if user is None or not user.is_active:
            raise NotFound("用户不存在或已停用")
        username, stored = user.username, user.password_hash
    attempt = reserve_attempt(engine, username, client)
    if not check_password(old_password, stored):
        raise InvalidInput("原密码不正确", details={"field": "old_password"})
    with unit_of_work(engine) as s:
        s.execute(
            delete(LoginFailure).where(
                col(LoginFailure.username) == attempt.username,
                col(LoginFailure.client) == attempt.client,
            )
        )
    require_good_password(new_password, username=username, old_password=old_password)
    new_hash = hash_password(new_password)
    with unit_of_work(engine) as s:
        revoked = _set_password(s, user_id, new_hash, must_change=False, keep=keep_token)
        audit.append(
            s,
            stream="user",
            action="user.password_changed",
            actor_id=user_id,
            data={"user_id": user_id, "username": username, "revoked_sessions": revoked},
        )
    return Changed(revoked)


def _set_password(
    session: Session, user_id: int, password_hash: str, *, must_change: bool, keep: str | None
) -> int:
    """Store the hash and flags, revoke the user's other tokens; return how many were revoked."""
    now = utcnow()
    session.execute(
        update(User)
        .where(col(User.id) == user_id)
        .values(
            password_hash=password_hash, must_change_password=must_change, password_changed_at=now
        )
    )
    return revoke_user_tokens(session, user_id, keep=keep, now=now)


def reset_password(session: Session, user: User, *, actor_id: int | None) -> str:
    """Give `user` a new random initial password (returned once), to be changed at log-in.

    Every token of the user is revoked; the reset is audited (never the password).
    """
    password = initial_password()
    revoked = _set_password(
        session, user.id or 0, hash_initial(password), must_change=True, keep=None
    )
    audit.append(
        session,
        stream="user",
        action="user.password_reset",
        actor_id=actor_id,
        data={"user_id": user.id, "username": user.username, "revoked_sessions": revoked},
    )
    return password


def reset_target(session: Session, actor: Actor, org: Organisation, user_id: int) -> User:
    """The user an admin or organiser may reset from the page of `org`, else NotFound.

    The user must hold a grant on `org` or below, and every grant she holds must be one the
    actor manages (so an organiser never resets an admin, nor anyone with a grant elsewhere).
    """
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotFound("用户不存在")
    rows = session.execute(
        select(Grant.role, Organisation)
        .join(Organisation, col(Organisation.id) == col(Grant.org_id))
        .where(Grant.user_id == user_id)
    ).all()
    if not any(is_within(o.path, org.path) for _r, o in rows):
        raise NotFound("用户不存在")
    if not all(Role(r) in manageable_roles(actor, o) for r, o in rows):
        raise NotFound("用户不存在")
    if user.id == actor.user_id:
        raise Forbidden("请在“修改密码”页面修改自己的密码")
    return user


# --------------------------------------------------------------------------- users import

#: Canonical field -> Chinese header (also the `column` of a row error).
IMPORT_HEADERS: dict[str, str] = {
    "username": "用户名",
    "name": "姓名",
    "org_code": "组织编码",
    "role": "角色",
    "phone": "手机号",
}
IMPORT_REQUIRED = ("username", "name", "org_code", "role")
_ALIASES = {**{zh: k for k, zh in IMPORT_HEADERS.items()}, **{k: k for k in IMPORT_HEADERS}}
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_MOBILE = re.compile(r"(?:\+?86)?1[3-9]\d{9}\Z")
_LANDLINE = re.compile(r"0\d{2,3}-?\d{7,8}\Z")
MAX_NAME = 100
_CHUNK = 500


@dataclass(frozen=True)
class UserRow:
    """One valid row of an accounts sheet."""

    row: int
    username: str
    name: str
    org_code: str
    role: Role
    phone: str | None


@dataclass
class ImportOutcome:
    """What an import did: new accounts with their initial passwords (shown once), grants."""

    created: list[tuple[str, str, str]]  # username, name, initial password
    grants_added: int
    unchanged: int


def _error(row: int, field: str, message: str) -> dict[str, object]:
    return {"row": row, "column": IMPORT_HEADERS.get(field, field), "message": message}


def _columns(header: list[str]) -> dict[str, int]:
    """Map canonical fields to column indexes; InvalidInput naming any missing column."""
    found: dict[str, int] = {}
    for i, cell in enumerate(header):
        key = _ALIASES.get(clean_text_lower(cell))
        if key is not None and key not in found:
            found[key] = i
    missing = [IMPORT_HEADERS[k] for k in IMPORT_REQUIRED if k not in found]
    if missing:
        raise InvalidInput(
            "表头缺少列：" + "、".join(missing) + "（应为 用户名, 姓名, 组织编码, 角色, 手机号）",
            details={"field": "file", "missing": missing},
        )
    return found


def clean_text_lower(cell: str) -> str:
    from states.sheets import clean_text

    text = clean_text(cell)
    return text.lower() if text.isascii() else text


def _parse_row(
    num: int, cells: list[str], cols: dict[str, int]
) -> tuple[UserRow | None, list[dict[str, object]]]:
    from states.sheets import clean_text, formula_prefixed, shown
    from states.users import parse_role

    def cell(key: str) -> str:
        i = cols.get(key)
        return clean_text(cells[i]) if i is not None and i < len(cells) else ""

    errs: list[dict[str, object]] = []
    username, name, code, role_text = cell("username"), cell("name"), cell("org_code"), cell("role")
    phone = cell("phone").replace(" ", "") or None
    if not USERNAME_RE.match(username):
        errs.append(
            _error(
                num,
                "username",
                f"用户名格式不正确：{shown(username) or '（空）'}（字母或数字开头，只含字母、数字和 . _ @ -，最长 64 位）",
            )
        )
    if not name or len(name) > MAX_NAME:
        errs.append(_error(num, "name", f"姓名须填写，最长 {MAX_NAME} 个字"))
    elif formula_prefixed(name):
        errs.append(_error(num, "name", f"姓名不能以 = + - @ 开头：{shown(name)}"))
    if not code:
        errs.append(_error(num, "org_code", "组织编码须填写"))
    role: Role | None = None
    try:
        role = parse_role(role_text)
    except InvalidInput as exc:
        errs.append(_error(num, "role", exc.message))
    if phone is not None and not (_MOBILE.match(phone) or _LANDLINE.match(phone)):
        errs.append(
            _error(
                num, "phone", f"手机号格式不正确：{shown(phone)}（如 13800000000 或 010-12345678）"
            )
        )
    if errs or role is None:
        return None, errs
    return UserRow(num, username, name, code, role, phone), []


@dataclass
class UserSheet:
    """The rows of an accounts sheet that are valid on their own, and the other rows' errors."""

    rows: list[UserRow]
    errors: list[dict[str, object]]


def parse_user_sheet(path: object) -> UserSheet:
    """Read and check an accounts sheet on its own (`import_users` checks it against the data)."""
    from pathlib import Path

    from states.sheets import read_sheet

    sheet = read_sheet(Path(str(path)))
    cols = _columns(sheet.header)
    rows: list[UserRow] = []
    errors: list[dict[str, object]] = []
    for num, cells in sheet.records:
        row, errs = _parse_row(num, cells, cols)
        errors += errs
        if row is not None:
            rows.append(row)
    errors += _file_duplicates(rows)
    if not rows and not errors:
        raise InvalidInput("文件中没有数据行", details={"field": "file"})
    return UserSheet(rows, errors)


def _import_failed(errors: list[dict[str, object]]) -> InvalidInput:
    bad = len({e["row"] for e in errors})
    errors.sort(key=lambda e: (int(str(e["row"])), str(e["column"])))
    return InvalidInput(f"导入未执行：{bad} 行有误，未写入任何内容", details=errors)


def _file_duplicates(rows: list[UserRow]) -> list[dict[str, object]]:
    """A user name repeated with another 姓名 or 手机号, or the same grant twice."""
    errs: list[dict[str, object]] = []
    first: dict[str, UserRow] = {}
    grants: dict[tuple[str, str, Role], int] = {}
    for r in rows:
        seen = first.setdefault(r.username, r)
        if seen is not r and (seen.name != r.name or (r.phone and seen.phone != r.phone)):
            errs.append(
                _error(
                    r.row,
                    "username",
                    f"用户名 {r.username} 已在第 {seen.row} 行用于另一人（姓名或手机号不同）",
                )
            )
            continue
        key = (r.username, r.org_code.lower(), r.role)
        if key in grants:
            errs.append(
                _error(r.row, "username", f"与第 {grants[key]} 行重复（同一用户、组织和角色）")
            )
        grants.setdefault(key, r.row)
    return errs


def import_users(
    session: Session, sheet: UserSheet, *, actor_id: int | None = None
) -> ImportOutcome:
    """Create the missing accounts and grants of `rows`, all or nothing; idempotent.

    Unknown organisations and user names already taken by another 姓名 are named by row, and
    nothing is written. Existing accounts keep their password; only missing grants are added.
    New accounts get a random initial password (returned once) and must change it at log-in.
    """
    from states.orgs import code_key, orgs_by_code

    rows = sheet.rows
    orgs = orgs_by_code(session, {r.org_code for r in rows})
    existing = _users_by_name(session, sorted({r.username for r in rows}))
    errors = list(sheet.errors) + [
        _error(r.row, "org_code", f"组织不存在：{r.org_code}")
        for r in rows
        if code_key(r.org_code) not in orgs
    ]
    for r in rows:
        user = existing.get(r.username)
        if user is not None and user.display_name != r.name:
            errors.append(
                _error(
                    r.row,
                    "username",
                    f"用户名 {r.username} 已被“{user.display_name}”使用，与姓名“{r.name}”不符；请换一个用户名",
                )
            )
    if errors:
        raise _import_failed(errors)
    created = _create_accounts(session, rows, existing)
    ids = {u: int(existing[u].id or 0) for u in existing} | {
        u: i for u, (i, _n, _p) in created.items()
    }
    audit.append_many(
        session,
        stream="user",
        events=[
            ("user.created", actor_id, {"user_id": i, "username": u, "source": "import"})
            for u, (i, _n, _p) in created.items()
        ],
    )
    added = _add_grants(session, rows, ids, orgs, actor_id)
    return ImportOutcome(
        created=[(u, n, p) for u, (_i, n, p) in created.items()],
        grants_added=added,
        unchanged=len(rows) - added,
    )


def _users_by_name(session: Session, names: list[str]) -> dict[str, User]:
    found: dict[str, User] = {}
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        for user in session.execute(select(User).where(col(User.username).in_(chunk))).scalars():
            found[user.username] = user
    return found


def _create_accounts(
    session: Session, rows: list[UserRow], existing: dict[str, User]
) -> dict[str, tuple[int, str, str]]:
    """Insert the new accounts in one statement; return username -> (id, name, password)."""
    from sqlalchemy import insert

    new: dict[str, UserRow] = {}
    for r in rows:
        if r.username not in existing:
            new.setdefault(r.username, r)
    if not new:
        return {}
    passwords = {u: initial_password() for u in new}
    now = utcnow()
    session.execute(
        insert(User),
        [
            {
                "username": u,
                "display_name": r.name,
                "password_hash": hash_initial(passwords[u]),
                "phone": r.phone,
                "is_active": True,
                "created_at": now,
                "must_change_password": True,
            }
            for u, r in new.items()
        ],
    )
    made = _users_by_name(session, sorted(new))
    return {u: (int(made[u].id or 0), new[u].name, passwords[u]) for u in new}


def _add_grants(
    session: Session,
    rows: list[UserRow],
    ids: dict[str, int],
    orgs: dict[str, Organisation],
    actor_id: int | None,
) -> int:
    """Insert the grants not yet held (one statement) and audit each; return how many."""
    from sqlalchemy import insert

    from states.orgs import code_key

    wanted = {
        (ids[r.username], int(orgs[code_key(r.org_code)].id or 0), r.role.value) for r in rows
    }
    user_ids = sorted({u for u, _o, _r in wanted})
    held: set[tuple[int, int, str]] = set()
    for start in range(0, len(user_ids), _CHUNK):
        chunk = user_ids[start : start + _CHUNK]
        held |= {
            (int(u), int(o), str(r))
            for u, o, r in session.execute(
                select(Grant.user_id, Grant.org_id, Grant.role).where(col(Grant.user_id).in_(chunk))
            ).all()
        }
    missing = sorted(wanted - held)
    if not missing:
        return 0
    now = utcnow()
    session.execute(
        insert(Grant),
        [{"user_id": u, "org_id": o, "role": r, "created_at": now} for u, o, r in missing],
    )
    code_of = {int(o.id or 0): o.code for o in orgs.values()}
    audit.append_many(
        session,
        stream="user",
        events=[
            ("grant.added", actor_id, {"user_id": u, "org": code_of[o], "role": r})
            for u, o, r in missing
        ],
    )
    return len(missing)
