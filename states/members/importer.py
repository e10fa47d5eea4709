"""Roster import (党员名册): CSV/XLSX in, members upserted, all or nothing, every bad row named.

The file is read by `states.sheets.read_sheet` (every size, row, cell and zip-bomb limit applies)
and streamed, so a million-row file never sits in memory. Each row is first checked on its own
(`states.members.rows`). On PostgreSQL the rest is set-based (`states.members.staged`: COPY into
a staging table, the checks as joins, one UPDATE and one INSERT). Elsewhere (SQLite) the rows go
in chunks of `CHUNK`: one IN lookup for the branch and 党小组 codes not seen before (cached, any
case), one for the member numbers and one for the (branch, name) identities; then new members
are inserted in one statement and changed ones updated in one executemany. Writing stops at the
first bad row but checking goes on, so every problem is reported (the first `MAX_ERRORS`); the
caller's transaction is then rolled back by the `InvalidInput` raised, so nothing is written.

Identity: 党员编号 when the row gives one (an existing member without a number is matched by
identity and gets it), else (branch, 姓名, 入党日期). Re-importing a file changes nothing. Blank
optional cells (党小组编码, 手机号, 状态, 党员编号) keep what is stored; a member moved to another
branch with no 党小组 given leaves her old 党小组. Rows repeated in the file are errors: the chunked path
remembers one 64-bit hash per row (a false repeat needs a hash collision, about 1 in 10^7 for a
million rows), and a row matching a member this import already wrote is a repeat too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import date
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlmodel import Session

from states import audit, orgs
from states.errors import InvalidInput
from states.members.models import ACTIVE, Member
from states.members.rows import (
    HEADERS,
    MemberRow,
    Problems,
    RowError,
    match_header,
    missing_columns,
    parse_row,
)
from states.models import Organisation
from states.orgs import code_key
from states.sheets import SheetLimits, read_sheet, shown
from states.timeutil import UTCDateTime, local_date, utcnow

MEMBER: Table = Member.metadata.tables["member"]
ORG: Table = Organisation.metadata.tables["organisation"]
CHUNK = 2000
MAX_ERRORS = 1000
#: Reach of an import: True when members may be put in the organisation at this path.
Scope = Callable[[str], bool]
_FIELDS: tuple[str, ...] = ("org_id", "group_org_id", "name", "category", "joined_on")
_FIELDS += ("member_no", "phone", "status", "status_on")


@dataclass(frozen=True)
class ImportResult:
    """How many members an import created, updated and left unchanged."""

    created: int
    updated: int
    unchanged: int


@dataclass(frozen=True, slots=True)
class _Org:
    id: int
    code: str
    path: str
    kind: str
    parent_id: int | None


@dataclass(slots=True)
class _Placed:
    row: MemberRow
    branch: _Org
    group: _Org | None
    old: Row[Any] | None = None


def import_members(
    session: Session,
    path: Path,
    *,
    scope: Scope | None = None,
    actor_id: int | None = None,
    limits: SheetLimits | None = None,
    progress: Callable[[int], None] | None = None,
    today: date | None = None,
) -> ImportResult:
    """Import the roster file at `path`; raise `InvalidInput` (nothing kept) on any bad row.

    `scope(path)` says where members may go (None: anywhere, the operator's CLI). Writes in the
    caller's transaction, never commits; the caller must roll back when this raises.
    """
    sheet = read_sheet(path, limits)
    columns = match_header(sheet.header)
    missing = missing_columns(columns)
    if missing:
        column = "、".join(missing)
        error = RowError(sheet.header_row, column, f"缺少必需的列：{column}")
        raise InvalidInput(f"导入失败：缺少必需的列：{column}", details=[asdict(error)])
    today = today or local_date(utcnow())
    problems = Problems(MAX_ERRORS)
    if session.get_bind().dialect.name == "postgresql":
        from states.members.staged import import_staged

        counts = import_staged(
            session, sheet.records, columns, scope, today, utcnow(), problems, progress
        )
        result = ImportResult(*counts)
    else:
        job = _Import(session, columns, scope, today, problems)
        for chunk in _chunks(sheet.records, CHUNK):
            job.chunk(chunk)
            if progress is not None:
                progress(job.rows)
        result = ImportResult(job.created, job.updated, job.unchanged)
    _raise_errors(problems)
    audit.append(
        session,
        stream="org",
        action="members.imported",
        actor_id=actor_id,
        data={**asdict(result), "file": path.name},
    )
    return result


def _raise_errors(problems: Problems) -> None:
    if problems.count:
        shown_note = f"（只列出前 {MAX_ERRORS} 处）" if problems.count > MAX_ERRORS else ""
        raise InvalidInput(
            f"导入失败：共 {problems.count} 处错误{shown_note}，未写入任何数据",
            details=[asdict(e) for e in problems.sorted()],
        )


def _chunks(records: Iterator[tuple[int, list[str]]], size: int) -> Iterator[list[Any]]:
    while chunk := list(islice(records, size)):
        yield chunk


class _Import:
    """The state of one import across chunks: caches, the rows seen, errors, counts."""

    def __init__(
        self,
        session: Session,
        columns: dict[str, int],
        scope: Scope | None,
        today: date,
        problems: Problems,
    ) -> None:
        self.session = session
        self.columns = columns
        self.scope = scope
        self.today = today
        self.now = utcnow()
        self.orgs: dict[str, _Org | None] = {}
        self.seen: dict[int, int] = {}
        self.idents: dict[int, tuple[int, int | None]] = {}
        self.problems = problems
        self.rows = self.created = self.updated = self.unchanged = 0

    # --- per chunk ---------------------------------------------------------------------------

    def chunk(self, records: list[tuple[int, list[str]]]) -> None:
        self.rows += len(records)
        rows: list[MemberRow] = []
        for num, cells in records:
            row, errors = parse_row(num, cells, self.columns, self.today)
            self.problems.add(*errors)
            if row is not None:
                rows.append(row)
        self._load_orgs(rows)
        placed = [p for p in (self._place(r) for r in rows) if p is not None]
        placed = [p for p in placed if self._first(p)]
        self._match(placed)
        if not self.problems.count:
            self._write(placed)

    # --- organisations -----------------------------------------------------------------------

    def _load_orgs(self, rows: Iterable[MemberRow]) -> None:
        """Look up the branch and 党小组 codes not seen before, one IN query per 1,000 codes."""
        wanted = {code_key(c) for r in rows for c in (r.branch_code, r.group_code) if c}
        wanted -= self.orgs.keys()
        cols = [ORG.c.id, ORG.c.code, ORG.c.path, ORG.c.kind, ORG.c.parent_id]
        for chunk in orgs.code_chunks(wanted):
            for rec in self.session.execute(select(*cols).where(orgs.code_in(chunk, ORG.c.code))):
                self.orgs[code_key(rec.code)] = _Org(*rec)
        for key in wanted:
            self.orgs.setdefault(key, None)

    def _place(self, row: MemberRow) -> _Placed | None:
        """Resolve the row's branch and 党小组; check kinds, nesting and reach."""
        branch = self.orgs.get(code_key(row.branch_code))
        column = HEADERS["branch_code"]
        if branch is None:
            return self._fail(row, column, f"支部编码不存在：{shown(row.branch_code)}")
        if branch.kind == "党小组":
            msg = f"{branch.code} 是党小组：请把它填在党小组编码列，支部编码填其所属的支部"
            return self._fail(row, column, msg)
        if self.scope is not None and not self.scope(branch.path):
            return self._fail(row, column, f"支部 {branch.code} 不在您的管辖范围内")
        group = None
        if row.group_code:
            group = self.orgs.get(code_key(row.group_code))
            column = HEADERS["group_code"]
            if group is None:
                return self._fail(row, column, f"党小组编码不存在：{shown(row.group_code)}")
            if group.kind != "党小组":
                return self._fail(row, column, f"{group.code} 不是党小组（是{group.kind}）")
            if group.parent_id != branch.id:
                return self._fail(row, column, f"党小组 {group.code} 不属于支部 {branch.code}")
        return _Placed(row, branch, group)

    def _fail(self, row: MemberRow, column: str, message: str) -> _Placed | None:
        self.problems.add(RowError(row.row, column, message))
        return None

    def _first(self, p: _Placed) -> bool:
        """Whether this is the first row for its member in the file (a repeat is an error).

        A numbered row repeats an earlier row with its number, or one without a number sharing
        its branch, name and join date; a row without a number repeats any earlier row sharing
        those (the rule of `states.members.staged`)."""
        r = p.row
        if r.member_no:
            first = self.seen.setdefault(hash(("n", r.member_no)), r.row)
            if first != r.row:
                msg = f"党员编号重复：{r.member_no} 已在第 {first} 行出现"
                self._fail(r, HEADERS["member_no"], msg)
                return False
        key = hash(("i", p.branch.id, r.name, r.joined_on))
        first_any, first_blank = self.idents.setdefault(key, (r.row, None))
        if first_blank is None and not r.member_no:
            self.idents[key] = (first_any, r.row)
        if first_blank is not None and not r.member_no:
            msg = (
                f"与第 {first_blank} 行重复：同一支部、姓名、入党日期（如确为两人，请填写党员编号）"
            )
            return self._fail(r, HEADERS["name"], msg) is not None
        same = first_blank if first_blank is not None else first_any if not r.member_no else None
        if same is not None and same != r.row:
            self._fail(r, HEADERS["name"], f"与第 {same} 行是同一名党员")
            return False
        return True

    # --- existing members --------------------------------------------------------------------

    def _select(self) -> Any:
        cols = [MEMBER.c[f] for f in ("id", *_FIELDS)]
        touched = (MEMBER.c.updated_at == bindparam("now", self.now, type_=UTCDateTime)).label(
            "touched"
        )
        return select(*cols, touched, ORG.c.path).join(ORG, ORG.c.id == MEMBER.c.org_id)

    def _match(self, placed: list[_Placed]) -> None:
        """Find each row's stored member: by number, else by (branch, name, joined date)."""
        numbers = sorted({p.row.member_no for p in placed if p.row.member_no})
        by_no: dict[str, Row[Any]] = {}
        if numbers:
            stmt = self._select().where(MEMBER.c.member_no.in_(numbers))
            by_no = {rec.member_no: rec for rec in self.session.execute(stmt)}
        rest = []
        for p in placed:
            p.old = by_no.get(p.row.member_no or "")
            if p.old is None:
                rest.append(p)
        if rest:
            found = self._by_identity(rest)
            for p in rest:
                self._match_identity(p, found)
        taken: dict[int, int] = {}
        for p in placed:
            self._check_match(p, taken)

    def _by_identity(self, rest: list[_Placed]) -> dict[tuple[int, str, date], list[Row[Any]]]:
        """The stored members of these rows' branches with these names, by identity."""
        stmt = self._select().where(
            MEMBER.c.org_id.in_(sorted({p.branch.id for p in rest})),
            MEMBER.c.name.in_(sorted({p.row.name for p in rest})),
        )
        found: dict[tuple[int, str, date], list[Row[Any]]] = {}
        for rec in self.session.execute(stmt):
            found.setdefault((rec.org_id, rec.name, rec.joined_on), []).append(rec)
        return found

    def _match_identity(
        self, p: _Placed, found: dict[tuple[int, str, date], list[Row[Any]]]
    ) -> None:
        same = found.get((p.branch.id, p.row.name, p.row.joined_on), [])
        if p.row.member_no:
            same = [m for m in same if m.member_no is None]
        if len(same) > 1:
            msg = f"名册中已有 {len(same)} 名同支部、同姓名、同入党日期的党员，请填写党员编号以区分"
            self._fail(p.row, HEADERS["member_no"], msg)  # nothing is written then
        elif same:
            p.old = same[0]

    def _check_match(self, p: _Placed, taken: dict[int, int]) -> None:
        old = p.old
        if old is None:
            return
        if self.scope is not None and not self.scope(old.path):
            msg = f"党员编号 {p.row.member_no} 已登记在您管辖范围以外的组织"
            self._fail(p.row, HEADERS["member_no"], msg)
        elif old.touched or old.id in taken:
            first = f"第 {taken[old.id]} 行" if old.id in taken else "本文件前面的一行"
            self._fail(p.row, HEADERS["name"], f"与{first}是同一名党员")
        taken.setdefault(old.id, p.row.row)

    # --- writing -----------------------------------------------------------------------------

    def _values(self, p: _Placed) -> dict[str, Any]:
        r, old = p.row, p.old
        kept_group = old.group_org_id if old is not None and old.org_id == p.branch.id else None
        status = r.status or (old.status if old is not None else ACTIVE)
        kept_on = old.status_on if old is not None and old.status == status else None
        return {
            "org_id": p.branch.id,
            "group_org_id": p.group.id if p.group else kept_group,
            "name": r.name,
            "category": r.category,
            "joined_on": r.joined_on,
            "member_no": r.member_no or (old.member_no if old is not None else None),
            "phone": r.phone or (old.phone if old is not None else None),
            "status": status,
            "status_on": r.status_on or kept_on,
        }

    def _write(self, placed: list[_Placed]) -> None:
        new: list[dict[str, Any]] = []
        changed: list[dict[str, Any]] = []
        for p in placed:
            values = self._values(p)
            if p.old is None:
                new.append({**values, "created_at": self.now, "updated_at": self.now})
            elif tuple(p.old[1 : 1 + len(_FIELDS)]) != tuple(values.values()):
                changed.append({f"b_{k}": v for k, v in values.items()} | self._ids(p))
            else:
                self.unchanged += 1
        self._insert(new)
        self._update(changed)
        self.created += len(new)
        self.updated += len(changed)

    def _ids(self, p: _Placed) -> dict[str, Any]:
        return {"b_id": p.old.id if p.old is not None else 0, "b_updated_at": self.now}

    def _insert(self, new: list[dict[str, Any]]) -> None:
        if not new:
            return
        self.session.execute(insert(MEMBER), new)

    def _update(self, changed: list[dict[str, Any]]) -> None:
        if not changed:
            return
        stmt = (
            update(MEMBER)
            .where(MEMBER.c.id == bindparam("b_id"))
            .values({f: bindparam(f"b_{f}") for f in (*_FIELDS, "updated_at")})
        )
        self.session.execute(stmt, changed)
