"""Organisation import: parsing CSV/XLSX, validation of every bad row, idempotent upsert, moves."""

from __future__ import annotations

import random
import sys
import unicodedata
import zipfile
from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook
from sqlalchemy import event, func, select
from sqlmodel import Session

from states.errors import InvalidInput
from states.importer import (
    ImportResult,
    OrgRow,
    RowError,
    import_orgs,
    parse_file,
    scope_errors,
    validate,
)
from states.models import AuditEvent, Organisation
from states.sheets import SheetLimits, TooLarge, clean_text, read_sheet

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


# --- bounded reading (states.sheets, states.xlsx) ------------------------------------------

SMALL = SheetLimits(max_rows=3, max_cols=8, max_cells=100, max_cell_chars=20)


def write_book(path: Path, rows: list[list[object]]) -> Path:
    """An XLSX written by openpyxl (shared strings, styles, dimension), as Excel would."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def fake_xlsx(
    path: Path, sheet_xml: str, entries: dict[str, bytes] | None = None, strings: str = "ss.xml"
) -> Path:
    """A minimal workbook around `sheet_xml` (the inside of <worksheet>); its shared strings
    are the part `xl/<strings>`."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pkg = "http://schemas.openxmlformats.org/package/2006/relationships"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr(
            "_rels/.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="r1" Type="{rel}/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        book.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
            '<sheet name="s" sheetId="1" r:id="rId7"/></sheets></workbook>',
        )
        book.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<Relationships xmlns="{pkg}"><Relationship Id="rId7" Type="{rel}/worksheet" '
            'Target="/xl/worksheets/data.xml"/>'
            f'<Relationship Id="rId8" Type="{rel}/sharedStrings" Target="{strings}"/>'
            "</Relationships>",
        )
        book.writestr(
            "xl/worksheets/data.xml", f'<worksheet xmlns="{main}">{sheet_xml}</worksheet>'
        )
        for name, data in (entries or {}).items():
            book.writestr(name, data)
    return path


def row_xml(num: int, *values: str) -> str:
    cells = "".join(f'<c t="inlineStr"><is><t>{v}</t></is></c>' for v in values)
    return f'<row r="{num}">{cells}</row>'


def test_rows_up_to_the_limit_read_one_more_refused(tmp_path: Path) -> None:
    lines = [HEADER] + [f"C{i},名,党支部,,,," for i in range(3)]
    assert len(parse_file(write_csv(tmp_path, lines), SMALL)) == 3
    with pytest.raises(InvalidInput, match=r"最多 3 行.*第 5 行") as caught:
        parse_file(write_csv(tmp_path, [*lines, "C9,名,党支部,,,,"]), SMALL)
    assert not isinstance(caught.value, TooLarge)
    rows = [[h for h in HEADER.split(",")]] + [[f"C{i}", "名", "党支部"] for i in range(4)]
    with pytest.raises(InvalidInput, match="最多 3 行"):
        parse_file(write_book(tmp_path / "o.xlsx", rows), SMALL)


def test_the_row_limit_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DANGJIAN_IMPORT_MAX_ROWS", "7")
    assert SheetLimits.from_env().max_rows == 7
    monkeypatch.setenv("DANGJIAN_IMPORT_MAX_ROWS", "many")
    assert SheetLimits.from_env().max_rows == SheetLimits().max_rows


def test_a_declared_dimension_over_the_limits_is_refused_before_any_row(tmp_path: Path) -> None:
    # The rows after the dimension are not even well-formed: they are never read.
    path = fake_xlsx(tmp_path / "d.xlsx", '<dimension ref="A1:C5"/><sheetData><row><c><oops')
    with pytest.raises(InvalidInput, match=r"A1:C5.*5 行"):
        parse_file(path, SMALL)
    wide = fake_xlsx(tmp_path / "w.xlsx", '<dimension ref="A1:Z2"/><sheetData><row><oops')
    with pytest.raises(InvalidInput, match="26 列"):
        parse_file(wide, SMALL)


def test_cells_columns_and_shared_strings_are_bounded(tmp_path: Path) -> None:
    long = fake_xlsx(
        tmp_path / "l.xlsx",
        f"<sheetData>{row_xml(1, '编码', '名称')}{row_xml(2, 'A', '长' * 21)}</sheetData>",
    )
    with pytest.raises(InvalidInput, match=r"第 2 行 B 列.*上限 20") as caught:
        parse_file(long, SMALL)
    assert caught.value.details["column"] == "B"
    far = fake_xlsx(
        tmp_path / "f.xlsx", '<sheetData><row r="1"><c r="XFD1"><v>1</v></c></row></sheetData>'
    )
    with pytest.raises(InvalidInput, match="XFD"):
        parse_file(far, SMALL)
    strings = (
        b'<sst xmlns="x"><si><t>ok</t></si><si><r><t>' + "长".encode() * 21 + b"</t></r></si></sst>"
    )
    shared = fake_xlsx(tmp_path / "s.xlsx", "<sheetData/>", {"xl/sharedStrings.xml": strings})
    # Not referenced from the workbook's relationships: never read.
    with pytest.raises(InvalidInput, match="文件为空"):
        parse_file(shared, SMALL)
    # Referenced: the second string is refused while it streams, runs joined.
    referenced = fake_xlsx(
        tmp_path / "r.xlsx", "<sheetData/>", {"xl/sharedStrings.xml": strings}, "sharedStrings.xml"
    )
    with pytest.raises(InvalidInput, match="共享字符串表中第 2 条文字过长"):
        parse_file(referenced, SMALL)
    csv_long = write_csv(tmp_path, [HEADER, "A1," + "名" * 21 + ",党支部,,,,"])
    with pytest.raises(InvalidInput, match="第 2 行 B 列（名称）"):
        parse_file(csv_long, SMALL)


def test_the_zip_directory_is_checked_before_unpacking(tmp_path: Path) -> None:
    big = fake_xlsx(
        tmp_path / "b.xlsx", "<sheetData/>", {"xl/media/pad.bin": b"\0" * 3 * 1024 * 1024}
    )
    with pytest.raises(TooLarge, match="压缩比"):
        parse_file(big)
    with pytest.raises(TooLarge, match="单个部件上限"):
        parse_file(big, SheetLimits(max_entry_bytes=1024 * 1024))
    with pytest.raises(TooLarge, match="解压后过大"):
        parse_file(big, SheetLimits(max_unpacked_bytes=1024 * 1024, max_ratio=10**6))
    with pytest.raises(TooLarge, match="内部文件"):
        parse_file(big, SheetLimits(max_entries=3))
    with pytest.raises(TooLarge, match="文件过大"):
        parse_file(big, SheetLimits(max_bytes=100))


def test_csv_lines_encodings_and_quotes(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="第 2 行过长"):
        parse_file(write_csv(tmp_path, [HEADER, "A" * 200]), SheetLimits(max_line_chars=100))
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"\xff\xfe\xfa" * 10)
    with pytest.raises(InvalidInput, match="编码"):
        parse_file(bad)


def test_the_header_is_the_first_non_empty_row_and_numbers_keep_their_rows(tmp_path: Path) -> None:
    path = write_book(
        tmp_path / "h.xlsx",
        [
            [None],
            ["编码", "名称", "类型", "上级编码", "党员人数"],
            ["A1", "名", "党支部", None, 3.0],
        ],
    )
    (row,) = parse_file(path)
    assert (row.row, row.code, row.member_count) == (3, "A1", 3)
    dated = write_book(
        tmp_path / "d.xlsx", [["编码", "名称"], ["A1", date(2026, 3, 1)], ["A2", True]]
    )
    sheet = read_sheet(dated)
    assert list(sheet.records) == [(2, ["A1", "2026-03-01"]), (3, ["A2", "TRUE"])]


def test_clean_text_drops_every_control_and_format_character() -> None:
    for point in range(sys.maxunicode + 1):
        char = chr(point)
        if unicodedata.category(char) in ("Cc", "Cf"):
            assert clean_text(f"a{char}b") in ("ab", "a b"), hex(point)
    assert clean_text(" 第一\t党支部\r\n") == "第一 党支部"
    assert (
        clean_text("\ufe00汉字\u3000") == "\ufe00汉字"
    )  # variation selectors are not format characters


def test_codes_match_in_any_case(session: Session, tmp_path: Path) -> None:
    run_import(session, write_csv(tmp_path, [HEADER, *TREE]))
    before = snapshot(session)
    lines = [HEADER, "yy1-nk,内科党支部（改）,党支部,yy1,,,", "Yy1-Nk,重复,党支部,YY1,,,"]
    errors = validate(session, parse_file(write_csv(tmp_path, lines)))
    assert [(e.row, e.column) for e in errors] == [(3, "编码")]
    result = run_import(session, write_csv(tmp_path, [*lines[:2], "new-1,新支部,党支部,SJ,,,"]))
    assert result == ImportResult(created=1, updated=1, unchanged=0)
    orgs = by_code(session)
    assert orgs["YY1-NK"].name == "内科党支部（改）" and "yy1-nk" not in orgs
    assert len(snapshot(session)) == len(before) + 1


def test_scope_checks_and_lookups_are_chunked(session: Session, tmp_path: Path) -> None:
    lines = [HEADER, "ROOT,根,党委,,,,"] + [f"B{i},支部{i},党支部,root,,," for i in range(2_500)]
    rows = parse_file(write_csv(tmp_path, lines))
    assert run_import(session, write_csv(tmp_path, lines)).created == 2_501
    assert scope_errors(session, rows, lambda path: True) == []
    denied = scope_errors(session, rows, lambda path: path != "/ROOT/")
    assert len(denied) == 2_501 and denied[1].message == "上级组织 root 不在您的管辖范围内"
