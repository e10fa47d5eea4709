"""Roster import on PostgreSQL, set-based: the checked rows are staged, checked and merged in SQL.

`states.members.importer.import_members` calls `import_staged` on PostgreSQL. Each row is first
checked on its own in Python (`states.members.rows.parse_row`); the good ones are streamed with
one COPY into a TEMP staging table, dropped at the end. Everything that needs the database is
then a few statements over that table, whatever the file's size: branch and 党小组 codes joined on
`lower(code)`, reach (the callable `scope`, asked once per distinct branch), repeats within the
file, the stored member each row names (党员编号, else branch + 姓名 + 入党日期), a number held
outside reach, two rows naming one member. Every bad row is named (the first `MAX_ERRORS` by row
number, with the total); only when there is none are members updated (one UPDATE … FROM) and
created (one INSERT … SELECT). No Python structure grows with the file.

The rules are those of the chunked path in `importer.py` (used on SQLite), with one difference
that only matters for odd files: rows are matched against the roster as it was before the
import, so a row without 党员编号 sharing branch, name and join date with any other row of the
file is refused (before, it was refused only when that other row came first).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlmodel import Session

from states.members.models import ACTIVE
from states.members.rows import HEADERS, MemberRow, Problems, RowError, parse_row
from states.sheets import shown

CHUNK = 5000
STAGE = "member_import"
NULL = "\\N"
_STAGE_COLUMNS = "num, name, branch_code, group_code, category, "
_STAGE_COLUMNS += "joined_on, member_no, phone, status, status_on"
_FIELDS = "org_id, group_org_id, name, category, joined_on, member_no, phone, status, status_on"

# Error kinds, in the order a row is checked (a row gets the first that applies).
NO_BRANCH, BRANCH_IS_GROUP, BRANCH_OUT, NO_GROUP, NOT_GROUP, GROUP_ELSEWHERE = 1, 2, 3, 4, 5, 6
NO_REPEAT, IDENTITY_REPEAT, SAME_MEMBER, AMBIGUOUS, NUMBER_OUT = 7, 8, 9, 10, 11

_CREATE_STAGE = f"""
CREATE TEMP TABLE {STAGE} (
    num integer NOT NULL, name text NOT NULL, branch_code text NOT NULL, group_code text,
    category text NOT NULL, joined_on date NOT NULL,
    member_no text, phone text, status text, status_on date
) ON COMMIT DROP"""

# Each row with its branch and 党小组, and the first placement error.
_RESOLVE = f"""
CREATE TEMP TABLE {STAGE}_r ON COMMIT DROP AS
WITH r AS (
    SELECT s.*, b.id AS org_id, g.id AS group_id, n.id AS no_id, n.org_id AS no_org,
           CASE WHEN b.id IS NULL THEN {NO_BRANCH}
                WHEN b.kind = '党小组' THEN {BRANCH_IS_GROUP}
                WHEN s.group_code IS NULL THEN NULL
                WHEN g.id IS NULL THEN {NO_GROUP}
                WHEN g.kind <> '党小组' THEN {NOT_GROUP}
                WHEN g.parent_id <> b.id THEN {GROUP_ELSEWHERE} END AS err
    FROM {STAGE} s
    LEFT JOIN organisation b ON lower(b.code) = lower(s.branch_code)
    LEFT JOIN organisation g ON lower(g.code) = lower(s.group_code)
    LEFT JOIN member n ON n.member_no = s.member_no),
i AS (
    SELECT m.org_id, m.name, m.joined_on, count(*) AS n_all, min(m.id) AS id_all,
           count(*) FILTER (WHERE m.member_no IS NULL) AS n_blank,
           min(m.id) FILTER (WHERE m.member_no IS NULL) AS id_blank
    FROM member m
    WHERE (m.org_id, m.name, m.joined_on) IN (
        SELECT org_id, name, joined_on FROM r WHERE no_id IS NULL)
    GROUP BY m.org_id, m.name, m.joined_on)
SELECT r.*, NULL::integer AS first_num,
       coalesce(r.no_id, CASE WHEN r.member_no IS NULL THEN i.id_all ELSE i.id_blank END)
           AS old_id,
       CASE WHEN r.member_no IS NULL THEN i.n_all ELSE i.n_blank END AS same
FROM r LEFT JOIN i ON r.no_id IS NULL AND i.org_id = r.org_id AND i.name = r.name
                      AND i.joined_on = r.joined_on"""

_BRANCHES = f"""
SELECT DISTINCT r.org_id, o.path FROM {STAGE}_r r JOIN organisation o ON o.id = r.org_id
WHERE r.err IS NULL OR r.err >= {NO_GROUP}"""

_OUT_OF_REACH = f"""
UPDATE {STAGE}_r SET err = {BRANCH_OUT}
WHERE org_id = ANY(CAST(:ids AS integer[])) AND (err IS NULL OR err >= {NO_GROUP})"""

# A 党员编号 given by more than one row: every row after the first is a repeat.
_NUMBER_REPEATS = f"""
WITH d AS (
    SELECT num, min(num) OVER (PARTITION BY member_no) AS first_num FROM {STAGE}_r
    WHERE err IS NULL AND member_no IN (
        SELECT member_no FROM {STAGE}_r WHERE err IS NULL AND member_no IS NOT NULL
        GROUP BY member_no HAVING count(*) > 1))
UPDATE {STAGE}_r r SET err = {NO_REPEAT}, first_num = d.first_num
FROM d WHERE r.num = d.num AND d.num <> d.first_num"""

# Rows sharing branch, name and join date, one of them without 党员编号: after the first, a
# row without number repeats the first such row; any other row is the same member as one before.
_IDENTITY_REPEATS = f"""
WITH k AS (
    SELECT org_id, name, joined_on FROM {STAGE}_r WHERE err IS NULL
    GROUP BY org_id, name, joined_on
    HAVING count(*) > 1 AND count(*) FILTER (WHERE member_no IS NULL) > 0),
w AS (
    SELECT r.num, r.member_no,
           min(r.num) OVER p AS first_any,
           min(r.num) FILTER (WHERE r.member_no IS NULL) OVER p AS first_blank
    FROM {STAGE}_r r JOIN k USING (org_id, name, joined_on) WHERE r.err IS NULL
    WINDOW p AS (PARTITION BY r.org_id, r.name, r.joined_on)),
d AS (
    SELECT num,
           CASE WHEN member_no IS NULL AND first_blank < num THEN {IDENTITY_REPEAT}
                ELSE {SAME_MEMBER} END AS err,
           CASE WHEN first_blank < num THEN first_blank ELSE first_any END AS first_num
    FROM w WHERE first_any < num AND (member_no IS NULL OR first_blank < num))
UPDATE {STAGE}_r r SET err = d.err, first_num = d.first_num FROM d WHERE r.num = d.num"""

_NUMBER_HOLDERS = f"""
SELECT DISTINCT m.no_org, o.path FROM {STAGE}_r m JOIN organisation o ON o.id = m.no_org
WHERE m.err IS NULL AND m.no_org <> m.org_id"""

# Errors found while matching, with how many there are in all.
_MATCH_ERRORS = f"""
WITH e AS (
    SELECT num, member_no, same, NULL::integer AS first_num,
           CASE WHEN same > 1 THEN {AMBIGUOUS} ELSE {NUMBER_OUT} END AS err
    FROM {STAGE}_r WHERE err IS NULL AND (same > 1 OR no_org = ANY(CAST(:out AS integer[])))
    UNION ALL
    SELECT num, member_no, same, first_num, {SAME_MEMBER} FROM (
        SELECT num, member_no, same, min(num) OVER (PARTITION BY old_id) AS first_num
        FROM {STAGE}_r WHERE err IS NULL AND old_id IN (
            SELECT old_id FROM {STAGE}_r WHERE err IS NULL AND old_id IS NOT NULL
            GROUP BY old_id HAVING count(*) > 1)) t
    WHERE num <> first_num)
SELECT e.*, count(*) OVER () AS total FROM e ORDER BY num LIMIT :limit"""

_PLACE_ERRORS = f"""
SELECT r.num, r.err, r.first_num, r.branch_code, r.group_code, b.code AS b_code,
       g.code AS g_code, g.kind AS g_kind, r.member_no, count(*) OVER () AS total
FROM {STAGE}_r r
LEFT JOIN organisation b ON b.id = r.org_id LEFT JOIN organisation g ON g.id = r.group_id
WHERE r.err IS NOT NULL ORDER BY r.num LIMIT :limit"""

_UPDATE = f"""
UPDATE member m SET ({_FIELDS}, updated_at) = (
    v.org_id, v.group_org_id, v.name, v.category, v.joined_on, v.member_no, v.phone, v.status,
    v.status_on, :now)
FROM (
    SELECT x.old_id, x.org_id,
           coalesce(x.group_id, CASE WHEN o.org_id = x.org_id THEN o.group_org_id END)
               AS group_org_id,
           x.name, x.category, x.joined_on, coalesce(x.member_no, o.member_no) AS member_no,
           coalesce(x.phone, o.phone) AS phone, coalesce(x.status, o.status) AS status,
           coalesce(x.status_on,
                    CASE WHEN o.status = coalesce(x.status, o.status) THEN o.status_on END)
               AS status_on
    FROM {STAGE}_r x JOIN member o ON o.id = x.old_id) v
WHERE m.id = v.old_id
  AND ({", ".join(f"m.{f.strip()}" for f in _FIELDS.split(","))})
      IS DISTINCT FROM ({", ".join(f"v.{f.strip()}" for f in _FIELDS.split(","))})"""

_INSERT = f"""
INSERT INTO member ({_FIELDS}, created_at, updated_at)
SELECT org_id, group_id, name, category, joined_on, member_no, phone,
       coalesce(status, '{ACTIVE}'), status_on, :now, :now
FROM {STAGE}_r WHERE old_id IS NULL"""


def import_staged(
    session: Session,
    records: Iterator[tuple[int, list[str]]],
    columns: dict[str, int],
    scope: Callable[[str], bool] | None,
    today: date,
    now: datetime,
    problems: Problems,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int, int]:
    """Stage, check and merge the rows; return (created, updated, unchanged).

    Errors go to `problems`; when there is any, nothing is written (the caller raises)."""
    session.execute(text(f"DROP TABLE IF EXISTS pg_temp.{STAGE}, pg_temp.{STAGE}_r"))
    session.execute(text("SET LOCAL work_mem = '256MB'"))
    session.execute(text(_CREATE_STAGE))
    _stage(session, records, columns, today, problems, progress)
    session.execute(text(f"ANALYZE {STAGE}"))
    session.execute(text(_RESOLVE))
    session.execute(text(f"ANALYZE {STAGE}_r"))
    if scope is not None:
        outside = _outside(session, _BRANCHES, scope)
        if outside:
            session.execute(text(_OUT_OF_REACH), {"ids": outside})
    session.execute(text(_NUMBER_REPEATS))
    session.execute(text(_IDENTITY_REPEATS))
    _place_errors(session, problems)
    out = _outside(session, _NUMBER_HOLDERS, scope) if scope is not None else []
    _match_errors(session, problems, out)
    counts = (0, 0, 0) if problems.count else _merge(session, now)
    session.execute(text(f"DROP TABLE {STAGE}, {STAGE}_r"))
    return counts


def _stage(
    session: Session,
    records: Iterator[tuple[int, list[str]]],
    columns: dict[str, int],
    today: date,
    problems: Problems,
    progress: Callable[[int], None] | None,
) -> None:
    """Check each row on its own and COPY the good ones into the staging table."""
    raw = session.connection().connection.driver_connection
    seen = 0
    lines: list[str] = []
    sql = f"COPY {STAGE} ({_STAGE_COLUMNS}) FROM STDIN"
    with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[union-attr]
        for num, cells in records:
            row, errors = parse_row(num, cells, columns, today)
            if row is None:
                problems.add(*errors)
            else:
                lines.append(_line(row))
            seen += 1
            if seen % CHUNK == 0:
                copy.write("".join(lines).encode())
                lines.clear()
                if progress is not None:
                    progress(seen)
        copy.write("".join(lines).encode())
    if progress is not None:
        progress(seen)


def _line(row: MemberRow) -> str:
    """The row as a line of COPY text. Only the name can hold a backslash (codes, numbers,
    phones, categories and statuses are checked, tabs and line breaks are cleaned away)."""
    name = row.name.replace("\\", "\\\\") if "\\" in row.name else row.name
    status_on = row.status_on.isoformat() if row.status_on else NULL
    return (
        f"{row.row}\t{name}\t{row.branch_code}\t{row.group_code or NULL}\t{row.category}\t"
        f"{row.joined_on.isoformat()}\t{row.member_no or NULL}\t{row.phone or NULL}\t"
        f"{row.status or NULL}\t{status_on}\n"
    )


def _outside(session: Session, sql: str, scope: Callable[[str], bool]) -> list[int]:
    """The ids, among (id, path) rows of `sql`, of the organisations outside `scope`."""
    return [org_id for org_id, path in session.execute(text(sql)) if not scope(path)]


def _place_errors(session: Session, problems: Problems) -> None:
    limit = {"limit": problems.room()}
    total = 0
    for rec in session.execute(text(_PLACE_ERRORS), limit):
        total = rec.total
        problems.keep(_place_error(rec))
    problems.count += total


def _place_error(rec: Any) -> RowError:
    kind, num = rec.err, rec.num
    if kind == NO_BRANCH:
        return RowError(num, HEADERS["branch_code"], f"支部编码不存在：{shown(rec.branch_code)}")
    if kind == BRANCH_IS_GROUP:
        msg = f"{rec.b_code} 是党小组：请把它填在党小组编码列，支部编码填其所属的支部"
        return RowError(num, HEADERS["branch_code"], msg)
    if kind == BRANCH_OUT:
        return RowError(num, HEADERS["branch_code"], f"支部 {rec.b_code} 不在您的管辖范围内")
    if kind == NO_GROUP:
        msg = f"党小组编码不存在：{shown(rec.group_code)}"
    elif kind == NOT_GROUP:
        msg = f"{rec.g_code} 不是党小组（是{rec.g_kind}）"
    elif kind == GROUP_ELSEWHERE:
        msg = f"党小组 {rec.g_code} 不属于支部 {rec.b_code}"
    else:
        return _repeat_error(rec)
    return RowError(num, HEADERS["group_code"], msg)


def _repeat_error(rec: Any) -> RowError:
    kind, num, first = rec.err, rec.num, rec.first_num
    if kind == NO_REPEAT:
        msg = f"党员编号重复：{rec.member_no} 已在第 {first} 行出现"
        return RowError(num, HEADERS["member_no"], msg)
    if kind == IDENTITY_REPEAT:
        msg = f"与第 {first} 行重复：同一支部、姓名、入党日期（如确为两人，请填写党员编号）"
        return RowError(num, HEADERS["name"], msg)
    return RowError(num, HEADERS["name"], f"与第 {first} 行是同一名党员")


def _match_errors(session: Session, problems: Problems, out: list[int]) -> None:
    params = {"limit": problems.room(), "out": out}
    total = 0
    for rec in session.execute(text(_MATCH_ERRORS), params):
        total = rec.total
        if rec.err == AMBIGUOUS:
            msg = f"名册中已有 {rec.same} 名同支部、同姓名、同入党日期的党员，请填写党员编号以区分"
            problems.keep(RowError(rec.num, HEADERS["member_no"], msg))
        elif rec.err == NUMBER_OUT:
            msg = f"党员编号 {rec.member_no} 已登记在您管辖范围以外的组织"
            problems.keep(RowError(rec.num, HEADERS["member_no"], msg))
        else:
            problems.keep(_repeat_error(rec))
    problems.count += total


def _merge(session: Session, now: datetime) -> tuple[int, int, int]:
    """Update the changed members and insert the new ones; return the counts."""
    rows = session.execute(text(f"SELECT count(*) FROM {STAGE}_r")).scalar_one()
    updated = _rowcount(session.execute(text(_UPDATE), {"now": now}))
    created = _rowcount(session.execute(text(_INSERT), {"now": now}))
    return created, updated, rows - created - updated


def _rowcount(result: Any) -> int:
    return int(result.rowcount)
