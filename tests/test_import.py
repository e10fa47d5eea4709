"""Organisation import: parsing CSV/XLSX, validation of every bad row, idempotent upsert, moves."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import event, func, select
from sqlmodel import Session

from states.errors import InvalidInput
from states.importer import ImportResult, OrgRow, RowError, import_orgs, parse_file, validate
from states.models import AuditEvent, Organisation

HEADER = "编码,名称,类型,上级编码,党员人数,书记,联系方式"
TREE = [
    "SJ,示例市卫生局党委,党委,,120,张示例,0000-0000001",
    "YY1,第一医院党委,党委,SJ,80,李示例,",
    "YY1-NK,第一医院内科党支部,党支部,YY1,25,,",
    "YY1-WK,第一医院外科党支部,党支部,YY1,,,",
]


def write_csv(tmp_path: Path, lines: list[str], name: str = "orgs.csv", enc: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(("\n".join(lines) + "\n").encode(enc))
    return path


def snapshot(session: Session) -> list[tuple[object, ...]]:
    """Every stored organisation, as plain tuples, by code."""
    session.expire_all()
    cols = [Organisation.__table__.c[n] for n in ("code", "name", "kind", "parent_id", "path")]  # type: ignore[attr-defined]
    cols += [Organisation.__table__.c.depth, Organisation.__table__.c.member_count]  # type: ignore[attr-defined]
    stmt = select(*cols).order_by(Organisation.__table__.c.code)  # type: ignore[attr-defined]
    return [tuple(r) for r in session.execute(stmt)]


def by_code(session: Session) -> dict[str, Organisation]:
    session.expire_all()
    return {o.code: o for o in session.execute(select(Organisation)).scalars()}


def run_import(session: Session, path: Path) -> ImportResult:
    result = import_orgs(session, parse_file(path))
    session.commit()
    return result


# --- parsing (no database) ---------------------------------------------------------------------


def test_parse_csv_rows_numbers_and_values(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [HEADER, TREE[0], ",,,,,,", TREE[1], "X9,某支部,党支部,SJ,abc,,"])
    rows = parse_file(path)
    assert [r.row for r in rows] == [2, 4, 5]  # the empty row 3 is skipped, numbering kept
    assert rows[0] == OrgRow(
        2, "SJ", "示例市卫生局党委", "党委", None, 120, "张示例", "0000-0000001"
    )
    assert rows[1].parent_code == "SJ" and rows[1].contact is None
    assert rows[2].member_count is None and rows[2].raw == {"member_count": "abc"}


def test_parse_csv_with_bom_and_gb18030(tmp_path: Path) -> None:
    bom = write_csv(tmp_path, [HEADER, TREE[0]], "bom.csv", "utf-8-sig")
    gbk = write_csv(tmp_path, [HEADER, TREE[0]], "gbk.csv", "gb18030")
    assert parse_file(bom)[0].name == "示例市卫生局党委"
    assert parse_file(gbk)[0].name == "示例市卫生局党委"


def test_parse_english_headers_trimmed_any_case_and_kind_aliases(tmp_path: Path) -> None:
    lines = [
        " Code , NAME,kind,Parent_Code,member_count,Secretary,CONTACT",
        "SJ,示例市卫生局党委,committee,,10,,",
        "ZZ,示例总支,General_Branch,SJ,,,",
    ]
    rows = parse_file(write_csv(tmp_path, lines))
    assert [(r.code, r.kind, r.parent_code, r.member_count) for r in rows] == [
        ("SJ", "党委", None, 10),
        ("ZZ", "党总支", "SJ", None),
    ]


def test_unknown_extension_is_rejected_in_chinese(tmp_path: Path) -> None:
    path = tmp_path / "orgs.xls"
    path.write_bytes(b"whatever")
    with pytest.raises(InvalidInput) as exc:
        parse_file(path)
    assert "不支持的文件类型" in exc.value.message


# --- importing ---------------------------------------------------------------------------------


def test_good_tree_imports_with_paths_depths_and_parents(session: Session, tmp_path: Path) -> None:
    ticks: list[int] = []
    result = import_orgs(
        session, parse_file(write_csv(tmp_path, [HEADER, *TREE])), progress=ticks.append
    )
    session.commit()
    assert result == ImportResult(created=4, updated=0, unchanged=0)
    assert ticks and ticks[-1] == 4 and ticks == sorted(ticks)
    orgs = by_code(session)
    assert {c: (o.path, o.depth) for c, o in orgs.items()} == {
        "SJ": ("/SJ/", 0),
        "YY1": ("/SJ/YY1/", 1),
        "YY1-NK": ("/SJ/YY1/YY1-NK/", 2),
        "YY1-WK": ("/SJ/YY1/YY1-WK/", 2),
    }
    assert orgs["SJ"].parent_id is None
    assert orgs["YY1"].parent_id == orgs["SJ"].id
    assert orgs["YY1-NK"].parent_id == orgs["YY1"].id
    assert orgs["SJ"].secretary_name == "张示例" and orgs["SJ"].member_count == 120
    assert orgs["YY1-WK"].member_count == 0 and orgs["YY1-WK"].contact is None
    stream = AuditEvent.__table__.c.stream  # type: ignore[attr-defined]
    events = session.execute(select(AuditEvent).where(stream == "org")).scalars().all()
    assert [(e.action, e.data) for e in events] == [
        ("orgs.imported", {"created": 4, "updated": 0, "unchanged": 0})
    ]


def test_children_listed_before_parents_still_import(session: Session, tmp_path: Path) -> None:
    path = write_csv(tmp_path, [HEADER, *reversed(TREE)])
    assert run_import(session, path).created == 4
    assert by_code(session)["YY1-WK"].path == "/SJ/YY1/YY1-WK/"


def test_importing_twice_is_idempotent(session: Session, tmp_path: Path) -> None:
    path = write_csv(tmp_path, [HEADER, *TREE])
    run_import(session, path)
    before = snapshot(session)
    assert run_import(session, path) == ImportResult(created=0, updated=0, unchanged=4)
    assert snapshot(session) == before


def test_changed_fields_are_updated_and_blank_optional_cells_kept(
    session: Session, tmp_path: Path
) -> None:
    run_import(session, write_csv(tmp_path, [HEADER, *TREE]))
    changed = [HEADER, "SJ,示例市卫生健康委党委,党委,,,,", *TREE[1:]]
    result = run_import(session, write_csv(tmp_path, changed, "changed.csv"))
    assert result == ImportResult(created=0, updated=1, unchanged=3)
    sj = by_code(session)["SJ"]
    assert sj.name == "示例市卫生健康委党委"
    assert (sj.member_count, sj.secretary_name) == (120, "张示例")


def test_english_headers_import(session: Session, tmp_path: Path) -> None:
    lines = [
        "code,name,kind,parent_code,member_count,secretary,contact",
        "SJ,示例市卫生局党委,committee,,5,,",
        "YY1,第一医院党委,committee,SJ,3,,",
        "YY1-G1,第一医院第一党小组,group,YY1,2,,",
    ]
    assert run_import(session, write_csv(tmp_path, lines)).created == 3
    orgs = by_code(session)
    assert orgs["YY1-G1"].kind == "党小组"
    assert (orgs["YY1-G1"].path, orgs["YY1-G1"].depth) == ("/SJ/YY1/YY1-G1/", 2)


def test_xlsx_imports(session: Session, tmp_path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["编码", "名称", "类型", "上级编码", "党员人数", "书记", "联系方式"])
    sheet.append(["SJ", "示例市卫生局党委", "党委", None, 120, "张示例", None])
    sheet.append([None] * 7)
    sheet.append([1001, "第一医院党委", "党委", "SJ", 80.0, None, None])
    path = tmp_path / "orgs.xlsx"
    book.save(path)
    rows = parse_file(path)
    assert [(r.row, r.code, r.member_count) for r in rows] == [(2, "SJ", 120), (4, "1001", 80)]
    assert run_import(session, path).created == 2
    assert by_code(session)["1001"].path == "/SJ/1001/"


def test_every_bad_row_is_reported_at_once_and_nothing_is_written(
    session: Session, tmp_path: Path
) -> None:
    run_import(session, write_csv(tmp_path, [HEADER, TREE[0]]))
    before = snapshot(session)
    audit_before = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    lines = [
        HEADER,
        "OK1,第一医院党委,党委,SJ,10,,",  # row 2: fine
        "A1,某党支部,党支部,NOPE,1,,",  # row 3: unknown parent
        "C1,循环一,党支部,C2,1,,",  # row 4: cycle C1 -> C2 -> C1
        "C2,循环二,党支部,C1,1,,",  # row 5: cycle
        "K1,某组织,党工委,SJ,1,,",  # row 6: unknown kind
        "OK1,第一医院党委,党委,SJ,10,,",  # row 7: duplicate code
        "N1,,党支部,SJ,1,,",  # row 8: missing name
        "M1,某党支部,党支部,SJ,-3,,",  # row 9: bad member count
        "M2,某党支部,党支部,SJ,十,,",  # row 10: bad member count
        "S1,某党支部,党支部,S1,1,,",  # row 11: its own parent
        "bad code,某党支部,党支部,SJ,1,,",  # row 12: bad code format
        ",某党支部,党支部,SJ,1,,",  # row 13: missing code
    ]
    rows = parse_file(write_csv(tmp_path, lines, "bad.csv"))
    errors = validate(session, rows)
    found = {(e.row, e.column) for e in errors}
    assert found == {
        (3, "上级编码"),
        (4, "上级编码"),
        (5, "上级编码"),
        (6, "类型"),
        (7, "编码"),
        (8, "名称"),
        (9, "党员人数"),
        (10, "党员人数"),
        (11, "上级编码"),
        (12, "编码"),
        (13, "编码"),
    }
    text = {(e.row, e.column): e.message for e in errors}
    assert "NOPE" in text[(3, "上级编码")]
    assert "循环" in text[(4, "上级编码")] and "循环" in text[(5, "上级编码")]
    assert "第 2 行" in text[(7, "编码")]
    assert "自身" in text[(11, "上级编码")]
    with pytest.raises(InvalidInput) as exc:
        import_orgs(session, rows)
    assert exc.value.message == f"导入失败：共 {len(errors)} 处错误，未写入任何数据"
    assert exc.value.details == [
        {"row": e.row, "column": e.column, "message": e.message} for e in errors
    ]
    session.commit()
    assert snapshot(session) == before
    audit_after = session.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
    assert audit_after == audit_before


def test_missing_required_columns_is_one_error_on_row_1(session: Session, tmp_path: Path) -> None:
    rows = parse_file(write_csv(tmp_path, ["编码,名称,党员人数", "SJ,示例市卫生局党委,3"]))
    errors = validate(session, rows)
    assert len(errors) == 1
    assert errors[0].row == 1 and "类型" in errors[0].message and "上级编码" in errors[0].message
    with pytest.raises(InvalidInput):
        import_orgs(session, rows)


def test_parent_may_already_exist_in_database(session: Session, tmp_path: Path) -> None:
    run_import(session, write_csv(tmp_path, [HEADER, TREE[0]]))
    result = run_import(session, write_csv(tmp_path, [HEADER, TREE[1]], "more.csv"))
    assert result == ImportResult(created=1, updated=0, unchanged=0)
    orgs = by_code(session)
    assert orgs["YY1"].parent_id == orgs["SJ"].id and orgs["YY1"].path == "/SJ/YY1/"


def test_reparenting_moves_the_whole_subtree(session: Session, tmp_path: Path) -> None:
    lines = [
        HEADER,
        *TREE,
        "YY1-NK-1,内科第一党小组,党小组,YY1-NK,5,,",
        "WJ,示例市卫健工委,党委,,10,,",
    ]
    run_import(session, write_csv(tmp_path, lines))
    # Only YY1 is in the second file: its descendants are moved by the subtree rewrite.
    move = [HEADER, "YY1,第一医院党委,党委,WJ,80,李示例,", "WJ2,示例新党委,党委,WJ,1,,"]
    result = run_import(session, write_csv(tmp_path, move, "move.csv"))
    assert result == ImportResult(created=1, updated=1, unchanged=0)
    orgs = by_code(session)
    assert {c: (o.path, o.depth) for c, o in orgs.items()} == {
        "SJ": ("/SJ/", 0),
        "WJ": ("/WJ/", 0),
        "WJ2": ("/WJ/WJ2/", 1),
        "YY1": ("/WJ/YY1/", 1),
        "YY1-NK": ("/WJ/YY1/YY1-NK/", 2),
        "YY1-WK": ("/WJ/YY1/YY1-WK/", 2),
        "YY1-NK-1": ("/WJ/YY1/YY1-NK/YY1-NK-1/", 3),
    }
    assert orgs["YY1"].parent_id == orgs["WJ"].id
    assert orgs["YY1-NK"].parent_id == orgs["YY1"].id


def test_nested_moves_and_a_move_under_a_new_parent(session: Session, tmp_path: Path) -> None:
    lines = [HEADER, *TREE, "YY1-NK-1,内科第一党小组,党小组,YY1-NK,5,,"]
    run_import(session, write_csv(tmp_path, lines))
    # Swap the nesting: YY1-NK becomes a root under a new committee, YY1 moves below it.
    move = [
        HEADER,
        "NEW,示例新党委,党委,,1,,",
        "YY1-NK,第一医院内科党支部,党支部,NEW,25,,",
        "YY1,第一医院党委,党委,YY1-NK,80,李示例,",
    ]
    result = run_import(session, write_csv(tmp_path, move, "move.csv"))
    assert result == ImportResult(created=1, updated=2, unchanged=0)
    orgs = by_code(session)
    assert {c: o.path for c, o in orgs.items()} == {
        "SJ": "/SJ/",
        "NEW": "/NEW/",
        "YY1-NK": "/NEW/YY1-NK/",
        "YY1-NK-1": "/NEW/YY1-NK/YY1-NK-1/",
        "YY1": "/NEW/YY1-NK/YY1/",
        "YY1-WK": "/NEW/YY1-NK/YY1/YY1-WK/",
    }
    assert orgs["YY1-WK"].depth == 3 and orgs["YY1-NK-1"].depth == 2
    assert orgs["YY1-NK"].parent_id == orgs["NEW"].id


def test_moving_an_org_under_its_own_descendant_is_refused(
    session: Session, tmp_path: Path
) -> None:
    run_import(session, write_csv(tmp_path, [HEADER, *TREE]))
    before = snapshot(session)
    rows = parse_file(
        write_csv(tmp_path, [HEADER, "SJ,示例市卫生局党委,党委,YY1-NK,,,"], "bad.csv")
    )
    errors = validate(session, rows)
    assert [(e.row, e.column) for e in errors] == [(2, "上级编码")]
    assert "下级" in errors[0].message
    with pytest.raises(InvalidInput):
        import_orgs(session, rows)
    session.commit()
    assert snapshot(session) == before


def test_validate_accepts_rows_built_in_code(session: Session) -> None:
    rows = [OrgRow(1, "SJ", "示例市卫生局党委", "branch"), OrgRow(2, "X", "某组织", "cell")]
    assert validate(session, rows) == [
        RowError(2, "类型", "类型无效：cell（应为 党委、党总支、党支部、党小组 之一）")
    ]


def test_ten_thousand_rows_import_and_reimport(session: Session, tmp_path: Path) -> None:
    lines = [HEADER, "ROOT,示例市委组织部党委,党委,,1,,"]
    for i in range(100):
        lines.append(f"D{i},示例第{i}党委,党委,ROOT,1,,")
        lines += [f"D{i}-B{j},示例第{i}-{j}党支部,党支部,D{i},3,," for j in range(100)]
    path = write_csv(tmp_path, lines)
    assert run_import(session, path) == ImportResult(created=10_101, updated=0, unchanged=0)
    assert run_import(session, path) == ImportResult(created=0, updated=0, unchanged=10_101)
    assert by_code(session)["D99-B99"].path == "/ROOT/D99/D99-B99/"


def _expected_paths(parents: dict[str, str | None]) -> dict[str, str]:
    def path(code: str) -> str:
        parent = parents[code]
        return (path(parent) if parent else "/") + code + "/"

    return {code: path(code) for code in parents}


def test_random_reparenting_matches_the_tree_in_memory(session: Session, tmp_path: Path) -> None:
    rng = random.Random(20261123)
    codes = [f"O{i}" for i in range(60)]
    parents: dict[str, str | None] = {
        c: (rng.choice(codes[:i]) if i > 2 else None) for i, c in enumerate(codes)
    }
    lines = [HEADER, *(f"{c},示例组织{c},党委,{parents[c] or ''},1,," for c in codes)]
    run_import(session, write_csv(tmp_path, lines))
    moved: dict[str, str | None] = {}
    for code in rng.sample(codes, 20):
        below = {c for c, p in _expected_paths({**parents, **moved}).items() if f"/{code}/" in p}
        target = rng.choice([None, *(c for c in codes if c not in below)])
        if target != parents[code]:
            moved[code] = target
    statements: list[str] = []

    def listen(_conn: object, _cursor: object, sql: str, *_rest: object) -> None:
        statements.append(sql)

    event.listen(session.get_bind(), "before_cursor_execute", listen)
    try:
        move = [HEADER, *(f"{c},示例组织{c},党委,{p or ''},1,," for c, p in moved.items())]
        result = run_import(session, write_csv(tmp_path, move, "move.csv"))
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listen)
    assert result == ImportResult(created=0, updated=len(moved), unchanged=0)
    rewrites = [s for s in statements if s.startswith("UPDATE organisation SET path")]
    assert len(rewrites) == len(moved)  # one set-based UPDATE per moved subtree
    expected = _expected_paths({**parents, **moved})
    orgs = by_code(session)
    assert {c: o.path for c, o in orgs.items()} == expected
    assert all(o.depth == o.path.count("/") - 2 for o in orgs.values())
    ids = {c: o.id for c, o in orgs.items()}
    final = {**parents, **moved}
    assert {c: o.parent_id for c, o in orgs.items()} == {
        c: (ids[p] if p else None) for c, p in final.items()
    }
