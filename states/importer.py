"""Bulk import of the organisation tree from CSV or XLSX: parse, validate everything, then upsert.

Validation reports every problem at once, with spreadsheet row numbers and Chinese column names.
The import writes nothing unless the whole file is valid; it is idempotent by organisation code.

Blank cells in the optional columns (党员人数, 书记, 联系方式) mean "not given": a new organisation
gets the default, an existing one keeps its current value. A blank 上级编码 makes a root.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import String, Table, bindparam, insert, literal, update
from sqlalchemy import func as sa_func
from sqlmodel import Session, select

from states import audit, orgs
from states.errors import InvalidInput
from states.models import ORG_KINDS, Organisation
from states.orgs import code_key
from states.sheets import SheetLimits, clean_text, formula_prefixed, read_sheet, shown
from states.timeutil import utcnow

ORG: Table = Organisation.metadata.tables["organisation"]

#: Canonical field -> Chinese header (also the `column` of a RowError).
HEADERS: dict[str, str] = {
    "code": "编码",
    "name": "名称",
    "kind": "类型",
    "parent_code": "上级编码",
    "member_count": "党员人数",
    "secretary": "书记",
    "contact": "联系方式",
}
REQUIRED = ("code", "name", "kind", "parent_code")
_ALIASES: dict[str, str] = {
    **{zh: key for key, zh in HEADERS.items()},
    **{key: key for key in HEADERS},
    "secretary_name": "secretary",
}
KIND_ALIASES: dict[str, str] = {
    "committee": "党委",
    "general_branch": "党总支",
    "branch": "党支部",
    "group": "党小组",
}
_MAX_LEN = {"name": 200, "secretary": 100, "contact": 200}
_MAX_MEMBERS = 1_000_000
_PHONE = re.compile(r"[+-][0-9 ()-]*\Z")
_MAX_PATH = 512
_BATCH = 1000


@dataclass
class OrgRow:
    """One data row of an import file; `raw` keeps cell text that failed to parse, by field."""

    row: int
    code: str
    name: str
    kind: str
    parent_code: str | None = None
    member_count: int | None = None
    secretary: str | None = None
    contact: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


class ParsedRows(list[OrgRow]):
    """The rows of a file, plus the required columns its header lacked."""

    def __init__(self, rows: Iterable[OrgRow] = (), missing: Sequence[str] = ()) -> None:
        super().__init__(rows)
        self.missing: tuple[str, ...] = tuple(missing)


@dataclass(frozen=True)
class RowError:
    """One problem: spreadsheet row number, Chinese column header, Chinese message."""

    row: int
    column: str
    message: str


@dataclass(frozen=True)
class ImportResult:
    """How many organisations an import created, updated and left unchanged."""

    created: int
    updated: int
    unchanged: int


# --- parsing -----------------------------------------------------------------------------------


def parse_file(path: Path, limits: SheetLimits | None = None) -> ParsedRows:
    """Read a CSV or XLSX file within `limits` (`states.sheets`); the first non-empty row is the
    header and empty rows are skipped. Free text is cleaned of controls and invisible characters.
    """
    sheet = read_sheet(path, limits)
    columns = _match_header([clean_text(c) for c in sheet.header])
    missing = [HEADERS[key] for key in REQUIRED if key not in columns]
    return ParsedRows((_make_row(num, cells, columns) for num, cells in sheet.records), missing)


def _match_header(cells: Sequence[str]) -> dict[str, int]:
    """Map canonical field -> column index; the first matching column wins."""
    columns: dict[str, int] = {}
    for index, cell in enumerate(cells):
        key = _ALIASES.get(cell.strip()) or _ALIASES.get(cell.strip().lower())
        if key is not None and key not in columns:
            columns[key] = index
    return columns


def _make_row(num: int, cells: Sequence[str], columns: dict[str, int]) -> OrgRow:
    def get(key: str) -> str:
        index = columns.get(key)
        return cells[index] if index is not None and index < len(cells) else ""

    kind = clean_text(get("kind"))
    row = OrgRow(
        row=num,
        code=get("code"),
        name=clean_text(get("name")),
        kind=normalise_kind(kind) or kind,
        parent_code=get("parent_code") or None,
        secretary=clean_text(get("secretary")) or None,
        contact=clean_text(get("contact")) or None,
    )
    count = clean_text(get("member_count"))
    if count.isdecimal() and len(count) <= 9:
        row.member_count = int(count)
    elif count:
        row.raw["member_count"] = count
    return row


def normalise_kind(value: str) -> str | None:
    """Return the Chinese kind for a Chinese or English kind name, or None if unknown."""
    text = value.strip()
    if text in ORG_KINDS:
        return text
    return KIND_ALIASES.get(text.lower().replace(" ", "_").replace("-", "_"))


# --- validation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _DbOrg:
    id: int
    code: str
    path: str
    name: str
    kind: str
    parent_id: int | None
    member_count: int
    secretary: str | None
    contact: str | None


@dataclass
class _Plan:
    """Everything an import needs, worked out in memory before anything is written."""

    rows: list[OrgRow]  # the first row of each code
    db: dict[str, _DbOrg]  # existing organisations named by the file (codes and parents)
    final: dict[str, str]
    errors: list[RowError]


def validate(session: Session, rows: Sequence[OrgRow]) -> list[RowError]:
    """Return every problem in `rows` (empty when the file can be imported)."""
    return _plan(session, rows).errors


def _plan(session: Session, rows: Sequence[OrgRow]) -> _Plan:
    missing = rows.missing if isinstance(rows, ParsedRows) else ()
    if missing:
        error = RowError(1, "、".join(missing), f"缺少必需的列：{'、'.join(missing)}")
        return _Plan(list(rows), {}, {}, [error])
    errors = [e for r in rows for e in _row_errors(r)]
    first, duplicates = _first_of_each_code(rows)
    errors += duplicates
    db = _load_db(session, {*first, *(code_key(r.parent_code) for r in rows if r.parent_code)})
    rows_by_code, db_by_code = _canonical(first, db)
    graph = _Graph(rows_by_code, db_by_code)
    errors += graph.parent_errors()
    final = graph.final_paths()
    errors += [
        RowError(r.row, HEADERS["code"], f"组织层级过深：路径超过 {_MAX_PATH} 个字符")
        for code, r in rows_by_code.items()
        if len(final.get(code, "")) > _MAX_PATH
    ]
    order = list(HEADERS.values())
    errors.sort(key=lambda e: (e.row, order.index(e.column) if e.column in order else 99))
    return _Plan(list(rows_by_code.values()), db_by_code, final, errors)


def _first_of_each_code(rows: Sequence[OrgRow]) -> tuple[dict[str, OrgRow], list[RowError]]:
    """Return the first row of each code (by case-insensitive key) and the repeats as errors."""
    first: dict[str, OrgRow] = {}
    errors: list[RowError] = []
    for r in rows:
        key = code_key(r.code)
        if r.code and key in first:
            other = first[key]
            note = "" if other.code == r.code else f"（编码不区分大小写，与 {other.code} 相同）"
            msg = f"编码重复：{shown(r.code)} 已在第 {other.row} 行出现{note}"
            errors.append(RowError(r.row, HEADERS["code"], msg))
        elif r.code:
            first[key] = r
    return first, errors


def _canonical(
    first: dict[str, OrgRow], db: dict[str, _DbOrg]
) -> tuple[dict[str, OrgRow], dict[str, _DbOrg]]:
    """Spell every code as stored (an existing organisation) or as its first row spells it.

    A row whose code matches an organisation in another case is that organisation; parent codes
    in any case name the organisation or row they match.
    """
    spelling = {key: r.code for key, r in first.items()} | {k: o.code for k, o in db.items()}

    def spelled(code: str | None) -> str | None:
        return spelling.get(code_key(code), code) if code else None

    rows = {
        spelling[key]: replace(r, code=spelling[key], parent_code=spelled(r.parent_code))
        for key, r in first.items()
    }
    return rows, {o.code: o for o in db.values()}


def _row_errors(r: OrgRow) -> Iterator[RowError]:
    """Yield the problems one row has on its own."""
    yield from _code_errors(r)
    if not clean_text(r.name):
        yield RowError(r.row, HEADERS["name"], "名称不能为空")
    if not r.kind.strip():
        yield RowError(r.row, HEADERS["kind"], "类型不能为空")
    elif normalise_kind(r.kind) is None:
        allowed = "、".join(ORG_KINDS)
        yield RowError(r.row, HEADERS["kind"], f"类型无效：{shown(r.kind)}（应为 {allowed} 之一）")
    yield from _count_errors(r)
    for key, limit in _MAX_LEN.items():
        value = clean_text(getattr(r, key) or "")
        if len(value) > limit:
            yield RowError(r.row, HEADERS[key], f"{HEADERS[key]}过长：最多 {limit} 个字")
        elif _formula_like(key, value):
            yield RowError(
                r.row,
                HEADERS[key],
                f"{HEADERS[key]}不能以 = + - @ 开头（在表格软件中会被当作公式）：{shown(value)}",
            )


def _code_errors(r: OrgRow) -> Iterator[RowError]:
    if not r.code:
        yield RowError(r.row, HEADERS["code"], "编码不能为空")
    elif not orgs.CODE_RE.match(r.code):
        yield RowError(
            r.row,
            HEADERS["code"],
            f"编码格式不正确：{shown(r.code)}（须以字母或数字开头，只含字母、数字、点、下划线、"
            "连字符，最长 64 位）",
        )
    if r.parent_code and not orgs.CODE_RE.match(r.parent_code):
        yield RowError(r.row, HEADERS["parent_code"], f"上级编码格式不正确：{shown(r.parent_code)}")


def _count_errors(r: OrgRow) -> Iterator[RowError]:
    bad = r.raw.get("member_count")
    if bad is not None and bad.isdecimal():
        yield RowError(r.row, HEADERS["member_count"], f"党员人数过大：最多 {_MAX_MEMBERS:,}")
    elif bad is not None or (r.member_count is not None and r.member_count < 0):
        value = shown(bad) if bad is not None else r.member_count
        yield RowError(r.row, HEADERS["member_count"], f"党员人数必须是非负整数：{value}")
    elif r.member_count is not None and r.member_count > _MAX_MEMBERS:
        yield RowError(r.row, HEADERS["member_count"], f"党员人数过大：最多 {_MAX_MEMBERS:,}")


def _formula_like(key: str, value: str) -> bool:
    """Names and secretaries may not look like formulas; a contact may be a +86 / -1 number."""
    if key == "contact" and _PHONE.match(value):
        return False
    return formula_prefixed(value)


def _load_db(session: Session, keys: set[str]) -> dict[str, _DbOrg]:
    """Load the existing organisations with these codes (any case), by code key, in chunks."""
    found: dict[str, _DbOrg] = {}
    cols = [ORG.c[n] for n in ("id", "code", "path", "name", "kind", "parent_id")]
    cols += [ORG.c.member_count, ORG.c.secretary_name, ORG.c.contact]
    for chunk in orgs.code_chunks(keys, _BATCH):
        for rec in session.execute(select(*cols).where(orgs.code_in(chunk, ORG.c.code))):
            found[code_key(rec.code)] = _DbOrg(*rec)
    return found


class _Graph:
    """The tree after the import: file rows override the parents the database holds."""

    def __init__(self, rows: dict[str, OrgRow], db: dict[str, _DbOrg]) -> None:
        self.rows = rows
        self.db_parent: dict[str, str | None] = {}
        for org in db.values():
            segs = orgs.path_codes(org.path)
            for i, code in enumerate(segs):
                self.db_parent[code] = segs[i - 1] if i else None
        self.final: dict[str, str] = {}
        self.cycles: list[list[str]] = []
        self._resolved = False

    def parent(self, code: str) -> str | None:
        if code in self.rows:
            return self.rows[code].parent_code
        return self.db_parent.get(code)

    def known(self, code: str) -> bool:
        return code in self.rows or code in self.db_parent

    def parent_errors(self) -> list[RowError]:
        """Report unknown parents, self-parents and cycles (each row in a cycle)."""
        column = HEADERS["parent_code"]
        errors: list[RowError] = []
        for code, r in self.rows.items():
            if r.parent_code == code:
                errors.append(RowError(r.row, column, "上级编码不能是本组织自身"))
            elif r.parent_code and not self.known(r.parent_code):
                msg = f"上级编码不存在：{r.parent_code}（既不在本文件中，也不在系统中）"
                errors.append(RowError(r.row, column, msg))
        self.final_paths()
        for cycle in self.cycles:
            errors += self._cycle_errors(cycle)
        return errors

    def _cycle_errors(self, cycle: list[str]) -> Iterator[RowError]:
        via_db = any(c not in self.rows for c in cycle)
        for i, code in enumerate(cycle):
            if code not in self.rows:
                continue
            loop = [*cycle[i:], *cycle[:i], code]
            shown = " → ".join(loop if len(loop) <= 8 else [*loop[:6], "…", code])
            msg = (
                f"调整上级后组织将位于其自身的下级组织之下：{shown}"
                if via_db
                else f"上级关系形成循环：{shown}"
            )
            yield RowError(self.rows[code].row, HEADERS["parent_code"], msg)

    def final_paths(self) -> dict[str, str]:
        """Return the path every resolvable file row will have; record cycles on the way."""
        if self._resolved:
            return self.final
        self._resolved = True
        blocked: set[str] = set()
        for start in self.rows:
            self._resolve(start, blocked)
        return self.final

    def _resolve(self, start: str, blocked: set[str]) -> None:
        """Walk up from `start` until a known path, the root, a dead end or a cycle."""
        chain: list[str] = []
        seen: dict[str, int] = {}
        code: str | None = start
        while code is not None and code not in self.final and code not in blocked:
            if code in seen:
                if len(chain) - seen[code] > 1:  # a self-parent is reported on its own
                    self.cycles.append(chain[seen[code] :])
                blocked.update(chain)
                return
            if not self.known(code):
                blocked.update(chain)
                return
            seen[code] = len(chain)
            chain.append(code)
            code = self.parent(code)
        if code is not None and code in blocked:
            blocked.update(chain)
            return
        base = self.final[code] if code is not None else None
        for link in reversed(chain):
            base = self.final[link] = orgs.child_path(base, link)


# --- import ------------------------------------------------------------------------------------


def import_orgs(
    session: Session,
    rows: Sequence[OrgRow],
    *,
    actor_id: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Validate, then upsert every row by code; writes nothing if any row is invalid.

    `progress(n)` receives the number of rows handled so far. Flushes but never commits.
    """
    session.flush()
    plan = _plan(session, rows)
    if plan.errors:
        raise InvalidInput(
            f"导入失败：共 {len(plan.errors)} 处错误，未写入任何数据",
            details=[asdict(e) for e in plan.errors],
        )
    writer = _Writer(session, plan, progress)
    result = writer.run()
    audit.append(
        session, stream="org", action="orgs.imported", actor_id=actor_id, data=asdict(result)
    )
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Organisation):
            session.expire(obj)
    return result


class _Writer:
    """Applies a valid plan: subtree moves, then inserts by depth, then field updates."""

    def __init__(
        self, session: Session, plan: _Plan, progress: Callable[[int], None] | None
    ) -> None:
        self.session = session
        self.plan = plan
        self.progress = progress
        self.done = 0
        self.now = utcnow()
        self.ids = {code: org.id for code, org in plan.db.items()}

    def run(self) -> ImportResult:
        new = [r for r in self.plan.rows if r.code not in self.plan.db]
        changed = [r for r in self.plan.rows if r.code in self.plan.db and self._changed(r)]
        self._tick(len(self.plan.rows) - len(new) - len(changed))
        self._move_subtrees()
        self._insert(new)
        self._update(changed)
        self.session.flush()
        unchanged = len(self.plan.rows) - len(new) - len(changed)
        return ImportResult(created=len(new), updated=len(changed), unchanged=unchanged)

    def _tick(self, count: int) -> None:
        self.done += count
        if self.progress is not None and count:
            self.progress(self.done)

    def _values(self, r: OrgRow, old: _DbOrg | None) -> dict[str, Any]:
        """Return the stored fields a row asks for; blank optional cells keep `old`'s values."""
        return {
            "name": clean_text(r.name),
            "kind": normalise_kind(clean_text(r.kind)),
            "member_count": r.member_count
            if r.member_count is not None
            else (old.member_count if old else 0),
            "secretary_name": clean_text(r.secretary or "") or (old.secretary if old else None),
            "contact": clean_text(r.contact or "") or (old.contact if old else None),
        }

    def _changed(self, r: OrgRow) -> bool:
        old = self.plan.db[r.code]
        current = {
            "name": old.name,
            "kind": old.kind,
            "member_count": old.member_count,
            "secretary_name": old.secretary,
            "contact": old.contact,
        }
        return self._values(r, old) != current or self._moved(r.code)

    def _moved(self, code: str) -> bool:
        """Whether an existing organisation gets a different parent."""
        old_parent = orgs.path_codes(self.plan.db[code].path)[:-1][-1:]
        new_parent = orgs.path_codes(self.plan.final[code])[:-1][-1:]
        return old_parent != new_parent

    def _move_subtrees(self) -> None:
        """Rewrite each moved subtree's paths with one UPDATE, deepest original path first.

        Rows already rewritten hold their final paths, which never start with the original
        path of an organisation that moves, so no row is rewritten twice.
        """
        existing = [self.plan.db[r.code] for r in self.plan.rows if r.code in self.plan.db]
        moved = [org for org in existing if self._moved(org.code)]
        for org in sorted(moved, key=lambda o: -len(orgs.path_codes(o.path))):
            new = self.plan.final[org.code]
            delta = len(orgs.path_codes(new)) - len(orgs.path_codes(org.path))
            stmt = (
                update(ORG)
                .where(orgs.subtree_filter(org.path))
                .values(
                    path=literal(new, String) + sa_func.substr(ORG.c.path, len(org.path) + 1),
                    depth=ORG.c.depth + delta,
                    updated_at=self.now,
                )
            )
            self.session.execute(stmt)

    def _insert(self, new: list[OrgRow]) -> None:
        """Insert new organisations level by level, so each parent's id is known."""
        levels: dict[int, list[OrgRow]] = defaultdict(list)
        for r in new:
            levels[len(orgs.path_codes(self.plan.final[r.code])) - 1].append(r)
        stmt = insert(ORG).returning(ORG.c.id, ORG.c.code)
        for depth in sorted(levels):
            for start in range(0, len(levels[depth]), _BATCH):
                chunk = levels[depth][start : start + _BATCH]
                params = [self._insert_params(r, depth) for r in chunk]
                for rec in self.session.execute(stmt, params):
                    self.ids[rec.code] = rec.id
                self._tick(len(chunk))

    def _insert_params(self, r: OrgRow, depth: int) -> dict[str, Any]:
        return {
            **self._values(r, None),
            "code": r.code,
            "parent_id": self.ids[r.parent_code] if r.parent_code else None,
            "path": self.plan.final[r.code],
            "depth": depth,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def _update(self, changed: list[OrgRow]) -> None:
        """Update changed fields (and parent ids) of existing organisations, in batches."""
        fields = ("name", "kind", "member_count", "secretary_name", "contact", "parent_id")
        stmt = (
            update(ORG)
            .where(ORG.c.id == bindparam("b_id"))
            .values({f: bindparam(f"b_{f}") for f in (*fields, "updated_at")})
        )
        for start in range(0, len(changed), _BATCH):
            chunk = changed[start : start + _BATCH]
            params = []
            for r in chunk:
                values = self._values(r, self.plan.db[r.code])
                values["parent_id"] = self.ids[r.parent_code] if r.parent_code else None
                values["updated_at"] = self.now
                values["id"] = self.ids[r.code]
                params.append({f"b_{k}": v for k, v in values.items()})
            self.session.execute(stmt, params)
            self._tick(len(chunk))


def scope_errors(
    session: Session, rows: Sequence[OrgRow], reaches: Callable[[str], bool]
) -> list[RowError]:
    """Return a RowError for every row that would touch an organisation out of reach.

    `reaches(path)` says whether the importing user manages the organisation at `path`. A row
    may change an organisation in reach, or add one under a parent in reach (or under another
    row of the same file that is itself allowed). Codes match in any case. Used by the API and
    the web page; the CLI is an operator tool.
    """
    db = _load_db(
        session,
        {code_key(r.code) for r in rows} | {code_key(r.parent_code) for r in rows if r.parent_code},
    )
    errors: list[RowError] = []
    for r in rows:
        existing = db.get(code_key(r.code))
        if existing is not None and not reaches(existing.path):
            errors.append(RowError(r.row, "编码", f"组织 {r.code} 不在您的管辖范围内"))
            continue
        if not r.parent_code:
            if existing is None or existing.parent_id is not None:
                errors.append(
                    RowError(r.row, "上级编码", "只能在您管辖的组织之下导入，请填写上级编码")
                )
            continue
        parent = db.get(code_key(r.parent_code))
        if parent is not None and not reaches(parent.path):
            errors.append(
                RowError(r.row, "上级编码", f"上级组织 {r.parent_code} 不在您的管辖范围内")
            )
    return errors
