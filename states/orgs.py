"""The organisation tree: materialised-path queries, index-backed, never recursion over rows."""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import BindParameter, ColumnElement, and_, bindparam, func
from sqlmodel import Session, col, select

from states.errors import NotFound
from states.models import Organisation

CODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
CODE_CHUNK = 1000
_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def code_key(code: str) -> str:
    """Return the case-insensitive identity of an organisation code.

    Codes are unique by `lower(code)` (index `uq_organisation_code_ci`); they are ASCII
    (`CODE_RE`), so only A-Z fold, exactly as SQLite's and PostgreSQL's `lower` fold them.
    """
    return code.translate(_FOLD)


def code_in(keys: Sequence[str], column: Any = None) -> ColumnElement[bool]:
    """Return `lower(code) IN keys` on `Organisation.code` (or `column`), index-backed.

    Callers pass at most `CODE_CHUNK` keys from `code_chunks`. The keys are well-formed codes
    (letters, digits, `._-`), rendered as quoted literals: no bound parameters, so no statement
    nears PostgreSQL's limit of 65,535, and psycopg does not re-parse 1,000 placeholders a chunk.
    """
    values: BindParameter[str] = bindparam(
        "code_keys", list(keys), expanding=True, literal_execute=True
    )
    return func.lower(col(Organisation.code) if column is None else column).in_(values)


def code_chunks(codes: Iterable[str], size: int = CODE_CHUNK) -> Iterator[list[str]]:
    """Yield the keys of the well-formed `codes`, sorted and de-duplicated, `size` at a time.

    A malformed code (a NUL byte, a space, …) names no organisation and never reaches the
    database, where PostgreSQL would refuse a NUL byte outright.
    """
    keys = sorted({code_key(c) for c in codes if CODE_RE.match(c)})
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def orgs_by_code(session: Session, codes: Iterable[str]) -> dict[str, Organisation]:
    """Return the organisations with these codes in any case, by `code_key`."""
    found: dict[str, Organisation] = {}
    for chunk in code_chunks(codes):
        for org in session.execute(select(Organisation).where(code_in(chunk))).scalars():
            found[code_key(org.code)] = org
    return found


def child_path(parent_path: str | None, code: str) -> str:
    """Return the path of an organisation with `code` under a parent with `parent_path`."""
    return f"{parent_path or '/'}{code}/"


def path_codes(path: str) -> list[str]:
    """Return the codes along a path, root first."""
    return [c for c in path.split("/") if c]


def subtree_filter(
    path: str, *, include_self: bool = True, column: Any = None
) -> ColumnElement[bool]:
    """Return a range predicate (btree-backed) for a subtree, on `Organisation.path` or on
    `column` (the path column of an alias)."""
    column = col(Organisation.path) if column is None else column
    # Every descendant path starts with `path` (which ends in '/'); '0' sorts right after '/'.
    upper = path[:-1] + "0"
    cond = and_(column >= path, column < upper)
    if not include_self:
        cond = and_(cond, column != path)
    return cond


def get_org(session: Session, org_id: int) -> Organisation:
    """Return the organisation or raise NotFound."""
    org = session.get(Organisation, org_id)
    if org is None:
        raise NotFound("组织不存在", details={"org_id": org_id})
    return org


def get_org_by_code(session: Session, code: str) -> Organisation:
    """Return the organisation with `code` in any case, or raise NotFound."""
    org = orgs_by_code(session, [code]).get(code_key(code))
    if org is None:
        raise NotFound(f"组织编码不存在：{code}", details={"code": code})
    return org


def ancestors(session: Session, org: Organisation) -> list[Organisation]:
    """Return the ancestors of `org`, nearest first (parent, grandparent, …)."""
    codes = path_codes(org.path)[:-1]
    if not codes:
        return []
    rows = session.execute(select(Organisation).where(col(Organisation.code).in_(codes))).scalars()
    by_code = {o.code: o for o in rows}
    return [by_code[c] for c in reversed(codes) if c in by_code]


def subtree(
    session: Session,
    org: Organisation,
    *,
    kinds: Sequence[str] | None = None,
    include_self: bool = True,
) -> list[Organisation]:
    """Return the organisations in `org`'s subtree, in path order."""
    stmt = select(Organisation).where(subtree_filter(org.path, include_self=include_self))
    if kinds:
        stmt = stmt.where(col(Organisation.kind).in_(list(kinds)))
    return list(session.execute(stmt.order_by(Organisation.path)).scalars())


def children(session: Session, org: Organisation) -> list[Organisation]:
    """Return the direct children of `org`, by code."""
    stmt = select(Organisation).where(Organisation.parent_id == org.id).order_by(Organisation.code)
    return list(session.execute(stmt).scalars())


def is_within(path: str, ancestor_path: str) -> bool:
    """Return whether `path` lies in the subtree at `ancestor_path` (itself included)."""
    return path.startswith(ancestor_path)


def ancestor_paths(path: str, *, include_self: bool = False) -> list[str]:
    """Return the paths of the ancestors of `path`, root first (and `path` itself if asked)."""
    codes = path_codes(path)
    stop = len(codes) + 1 if include_self else len(codes)
    return ["/" + "/".join(codes[:i]) + "/" for i in range(1, stop)]


def secretaries(session: Session, org_ids: Sequence[int]) -> dict[int, str]:
    """The display names of the users holding the 书记 role on each organisation ("、"-joined),
    for pages where the organisation's own record names no secretary."""
    from states.models import Grant, Role, User

    if not org_ids:
        return {}
    rows = session.execute(
        select(Grant.org_id, User.display_name)
        .join(User, col(User.id) == col(Grant.user_id))
        .where(col(Grant.org_id).in_(sorted(set(org_ids))), Grant.role == Role.SECRETARY)
        .where(col(User.is_active))
        .order_by(col(Grant.org_id), col(User.display_name))
    ).all()
    names: dict[int, list[str]] = {}
    for org_id, name in rows:
        names.setdefault(int(org_id), []).append(str(name))
    return {org_id: "、".join(found) for org_id, found in names.items()}
