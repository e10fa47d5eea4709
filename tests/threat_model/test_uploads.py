"""Threat model, findings 3, 6, 7 (NUL bytes) and 9: hostile import files.

Probed from outside, the organisation import
- parsed uploads on the event loop with no limit on unpacked size or rows: a 1 MB XLSX holding
  one 1 GiB shared string froze `/healthz` for 17 s at 2.9 GB RSS; a 9.99 MB XLSX of 3 M rows
  held the server for 395 s up to 6 GB; the CLI ran 300 s before being killed;
- failed for any tree over 65,535 organisations with a misleading 503 (one IN list per file);
- answered a NUL byte in a name with a 500 (PostgreSQL refuses NUL in text) and a CLI traceback;
- imported `jt01g1b1` and `Jt01G1B1` as two organisations beside `JT01G1B1`, kept RTL-override
  and zero-width characters in names, and stored formula-prefixed names as they were.

The bombs are built here with zipfile, streaming the huge entries through zlib, and sent to a
real `uvicorn` process (the `api.app:create_app` factory) on a loopback port while a thread polls
`/healthz` every 100 ms; the server's peak RSS is read from /proc. Everything stays on loopback.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
import time
import warnings
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlmodel import Session

import api.v1.orgs as api_orgs
from states.db import make_engine
from states.errors import InvalidInput
from states.importer import parse_file
from states.models import Organisation
from states.sheets import TooLarge
from tests.api_world import World
from tests.browser import csrf_of
from tests.threat_model.live import Poller, Server

ROOT = Path(__file__).resolve().parents[2]
IMPORT = "/api/v1/orgs/import"
MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
HEADER = "编码,名称,类型,上级编码,党员人数,书记,联系方式\n"
GIB = 1 << 30
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
UVICORN += ["--host", "127.0.0.1", "--log-level", "warning"]

# --- building hostile workbooks ------------------------------------------------------------

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/>'
    "</Types>"
)
ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)
WORKBOOK = (
    f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
    '<sheets><sheet name="组织" sheetId="1" r:id="rId1"/></sheets></workbook>'
)
WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/>'
    "</Relationships>"
)
SMALL_SHEET = (
    f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}"><sheetData>'
    '<row r="1"><c r="A1" t="s"><v>0</v></c></row></sheetData></worksheet>'
)


def write_xlsx(path: Path, sheet: Iterable[bytes], strings: Iterable[bytes] | None = None) -> Path:
    """Write a minimal workbook; the sheet and shared strings are streamed through zlib."""
    parts: list[tuple[str, Iterable[bytes]]] = [
        ("[Content_Types].xml", [CONTENT_TYPES.encode()]),
        ("_rels/.rels", [ROOT_RELS.encode()]),
        ("xl/workbook.xml", [WORKBOOK.encode()]),
        ("xl/_rels/workbook.xml.rels", [WORKBOOK_RELS.encode()]),
        ("xl/worksheets/sheet1.xml", sheet),
    ]
    if strings is not None:
        parts.append(("xl/sharedStrings.xml", strings))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as book:
        for name, chunks in parts:
            with book.open(name, "w", force_zip64=True) as entry:
                for chunk in chunks:
                    entry.write(chunk)
    return path


def one_huge_string(size: int) -> Iterator[bytes]:
    """A shared-strings part holding one string of `size` bytes, 1 MiB at a time."""
    yield f'<?xml version="1.0"?><sst xmlns="{MAIN}" count="1" uniqueCount="1"><si><t>'.encode()
    block = b"A" * (1 << 20)
    for _ in range(size // len(block)):
        yield block
    yield b"</t></si></sst>"


def many_rows(count: int, row: bytes, dimension: str | None = None) -> Iterator[bytes]:
    """A sheet of `count` rows made from `row` % row number, 10,000 rows per chunk."""
    dim = f'<dimension ref="{dimension}"/>' if dimension else ""
    yield f'<?xml version="1.0"?><worksheet xmlns="{MAIN}">{dim}<sheetData>'.encode()
    slots = row.count(b"%d")
    for start in range(1, count + 1, 10_000):
        stop = min(start + 10_000, count + 1)
        yield b"".join(row % ((n,) * slots) for n in range(start, stop))
    yield b"</sheetData></worksheet>"


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The hostile workbooks, built once: each is at most 10 MB as uploaded."""
    folder = tmp_path_factory.mktemp("bombs")
    built = {
        # ~1 MB holding one 1 GiB shared string (the 2.9 GB / 17 s freeze).
        "shared_string": write_xlsx(
            folder / "shared_string.xlsx", [SMALL_SHEET.encode()], one_huge_string(GIB)
        ),
        # ~7 MB holding 3 M rows of data (the 395 s / 6 GB hold): a 113 MB sheet part.
        "three_million_rows": write_xlsx(
            folder / "three_million_rows.xlsx",
            many_rows(3_000_000, b'<row r="%d"><c><v>1</v></c></row>', "A1:G3000000"),
        ),
        # Under every zip-directory limit, but declaring 3 M rows: refused before a row is read.
        "claims_three_million": write_xlsx(
            folder / "claims_three_million.xlsx",
            many_rows(3_000_000, b'<row r="%d"/>', "A1:G3000000"),
        ),
        # No dimension at all, 300,000 rows of data: the row limit is enforced while streaming.
        "streams_300k_rows": write_xlsx(
            folder / "streams_300k_rows.xlsx",
            many_rows(300_000, b'<row r="%d"><c r="A%d" t="inlineStr"><is><t>X</t></is></c></row>'),
        ),
    }
    for path in built.values():
        assert path.stat().st_size <= 10 * 1024 * 1024
    return built


def upload_while_polling(srv: Server, path: Path) -> tuple[httpx.Response, float, Poller]:
    poller = Poller(srv.url)
    thread = poller.start()
    time.sleep(0.3)  # a few polls before the upload
    started = time.monotonic()
    with path.open("rb") as handle:
        reply = httpx.post(
            srv.url + IMPORT,
            headers={"Authorization": f"Bearer {srv.token}"},
            files={"file": (path.name, handle, "application/octet-stream")},
            timeout=120,
        )
    elapsed = time.monotonic() - started
    time.sleep(0.3)
    poller.stop.set()
    thread.join(timeout=15)
    return reply, elapsed, poller


@pytest.mark.parametrize(
    ("bomb", "status"),
    [
        ("shared_string", 413),
        ("three_million_rows", 413),
        ("claims_three_million", 422),
        ("streams_300k_rows", 422),
    ],
)
def test_bombs_are_refused_while_the_server_keeps_answering(
    server: Server, bombs: dict[str, Path], bomb: str, status: int
) -> None:
    reply, elapsed, poller = upload_while_polling(server, bombs[bomb])
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert body["code"] in ("too_large", "invalid_input") and "上限" in body["message"]
    assert elapsed < 30, f"{bomb}: answered in {elapsed:.1f} s"
    assert not poller.failures, poller.failures
    assert len(poller.latencies) >= 3
    assert max(poller.latencies) < 1.0, f"{bomb}: /healthz took {max(poller.latencies):.2f} s"
    assert server.peak_rss() < GIB, f"server peak RSS {server.peak_rss() / 2**20:.0f} MiB"
    assert server.proc.poll() is None  # still serving


def test_nothing_was_written_by_the_bombs(server: Server) -> None:
    engine = make_engine(f"sqlite:///{server.log.parent / 'server.db'}")
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Organisation)).scalar_one() == 8
    engine.dispose()


# --- the same files through the CLI path -----------------------------------------------------


@pytest.mark.parametrize(
    "bomb", ["shared_string", "three_million_rows", "claims_three_million", "streams_300k_rows"]
)
def test_bombs_through_parse_file_fail_fast(bombs: dict[str, Path], bomb: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidInput) as caught:
        parse_file(bombs[bomb])
    assert time.monotonic() - started < 30
    assert "上限" in caught.value.message
    assert isinstance(caught.value, TooLarge) == (bomb in ("shared_string", "three_million_rows"))


def test_the_cli_refuses_a_bomb_with_exit_2_and_no_traceback(
    bombs: dict[str, Path], tmp_path: Path
) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    out = tmp_path / "out.txt"
    with out.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "import-orgs", str(bombs["shared_string"])],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text(errors="replace")
    assert proc.returncode == 2, text
    assert "Traceback" not in text and "上限" in text
    assert usage.ru_maxrss * 1024 < GIB  # ru_maxrss is in KiB on Linux


# --- many organisations through the API -------------------------------------------------------


def test_seventy_thousand_organisations_through_the_api(world: World) -> None:
    """More codes than PostgreSQL takes parameters in one statement (65,535): one file, chunked."""
    lines = [HEADER]
    lines += [f"T{i:05d},第{i}党支部,党支部,{'H1' if i % 2 else 'h1'},3,,\n" for i in range(70_000)]
    started = time.monotonic()
    reply = world.client.post(
        IMPORT,
        headers=world.as_("org_b"),
        files={"file": ("big.csv", "".join(lines).encode(), "text/csv")},
    )
    elapsed = time.monotonic() - started
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json() == {"created": 70_000, "updated": 0, "unchanged": 0}
    with Session(world.engine) as s:
        h1 = world.orgs["H1"].id
        under = select(func.count()).where(Organisation.parent_id == h1)  # type: ignore[arg-type]
        assert s.execute(under.select_from(Organisation)).scalar_one() == 70_000 + 2
    print(f"\n70,000 organisations imported through the API in {elapsed:.1f} s")


# --- every bad input is a 4xx ----------------------------------------------------------------


def upload(
    w: World, data: bytes | str, name: str = "orgs.csv", who: str = "org_b"
) -> httpx.Response:
    raw = data.encode() if isinstance(data, str) else data
    return w.client.post(IMPORT, headers=w.as_(who), files={"file": (name, raw, "text/csv")})


def count_orgs(w: World) -> int:
    with Session(w.engine) as s:
        return int(s.execute(select(func.count()).select_from(Organisation)).scalar_one())


def stored(w: World, code: str) -> Organisation | None:
    with Session(w.engine) as s:
        return s.execute(select(Organisation).where(Organisation.code == code)).scalar_one_or_none()


def test_nul_and_control_characters_never_reach_the_database(world: World) -> None:
    r = upload(world, HEADER + "N1,第一\x00党支部\x07,党支部,H1,3,张\x00三,\x00123\n")
    assert r.status_code == 200, r.text
    org = stored(world, "N1")
    assert org is not None and org.name == "第一党支部" and org.secretary_name == "张三"
    assert org.contact == "123"
    before = count_orgs(world)
    # Codes are identifiers: a NUL in a code or a parent code is refused, shown escaped.
    for row in ("N\x002,名,党支部,H1,,,", "N3,名,党支部,H\x001,,,"):
        r = upload(world, HEADER + row + "\n")
        assert r.status_code == 422, r.text
        assert "\\u0000" in r.json()["details"][0]["message"]
    assert count_orgs(world) == before
    # A kind is one of four words: invisible characters around it do not matter.
    assert upload(world, HEADER + "N4,名,党\x00支部\u200b,H1,,,\n").status_code == 200


def test_bidi_overrides_and_zero_width_characters_are_stripped(world: World) -> None:
    name = "\u202e第二\u200b党支部\u2066\u2069\ufeff\u200d\u00ad"
    r = upload(world, HEADER + f"N5,{name},党支部,H1,3,\u200b李四\u202c,\n")
    assert r.status_code == 200, r.text
    org = stored(world, "N5")
    assert org is not None and org.name == "第二党支部" and org.secretary_name == "李四"


@pytest.mark.parametrize("prefix", ["=", "+", "-", "@", "\t=", "\r=", "\u200b="])
def test_formula_prefixed_names_are_refused(world: World, prefix: str) -> None:
    before = count_orgs(world)
    cell = f'"{prefix}HYPERLINK(""http://127.0.0.1/"",""点此"")"'
    r = upload(world, HEADER + f"F1,{cell},党支部,H1,,,\n")
    assert r.status_code == 422, r.text
    (detail,) = r.json()["details"]
    assert detail["row"] == 2 and detail["column"] == "名称" and "公式" in detail["message"]
    r = upload(world, HEADER + f"F2,正常党支部,党支部,H1,,{cell},\n")
    assert r.status_code == 422 and r.json()["details"][0]["column"] == "书记"
    assert count_orgs(world) == before


def test_a_phone_number_with_a_plus_is_a_contact_not_a_formula(world: World) -> None:
    r = upload(world, HEADER + "F3,正常党支部,党支部,H1,,,+86 010-1234567\n")
    assert r.status_code == 200, r.text
    r = upload(world, HEADER + "F4,正常党支部,党支部,H1,,,=1+1\n")
    assert r.status_code == 422 and r.json()["details"][0]["column"] == "联系方式"


def test_look_alike_codes_are_the_same_organisation(world: World) -> None:
    assert upload(world, HEADER + "JT01G1B1,原名党支部,党支部,H1,3,,\n").status_code == 200
    before = count_orgs(world)
    # Both look-alikes in one file: a duplicate, nothing written.
    r = upload(world, HEADER + "jt01g1b1,甲,党支部,H1,,,\nJt01G1B1,乙,党支部,H1,,,\n")
    assert r.status_code == 422
    (detail,) = r.json()["details"]
    assert detail["row"] == 3 and "重复" in detail["message"] and "大小写" in detail["message"]
    # One look-alike: the existing organisation, updated, its spelling kept; parents in any case.
    r = upload(world, HEADER + "jt01g1b1,新名党支部,党支部,h1,,,\njt01-x,小组,党小组,JT01G1B1,,,\n")
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1, "updated": 1, "unchanged": 0}
    assert count_orgs(world) == before + 1
    org = stored(world, "JT01G1B1")
    assert org is not None and org.name == "新名党支部"
    assert stored(world, "jt01g1b1") is None
    child = stored(world, "jt01-x")
    assert child is not None and child.path == org.path + "jt01-x/"


def test_look_alike_codes_respect_the_reach(world: World) -> None:
    # h2 is H2, out of the reach of an organiser of H1, in any case.
    r = upload(world, HEADER + "h2,改名,党委,b,,,\n", who="org_h1")
    assert r.status_code == 422
    assert "管辖范围" in r.json()["details"][0]["message"]
    r = upload(world, HEADER + "N9,新支部,党支部,s4,,,\n", who="org_h1")
    assert r.status_code == 422
    assert "管辖范围" in r.json()["details"][0]["message"]


def xlsx_bytes(tmp_path: Path, sheet: str, strings: str | None = None) -> bytes:
    head = f'<?xml version="1.0"?><worksheet xmlns="{MAIN}">'
    path = write_xlsx(
        tmp_path / "probe.xlsx",
        [(head + sheet + "</worksheet>").encode()],
        [strings.encode()] if strings is not None else None,
    )
    return path.read_bytes()


def bad_inputs(tmp_path: Path) -> dict[str, tuple[bytes, str, int]]:
    """name: (file bytes, file name, expected status)."""
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        f'<sst xmlns="{MAIN}"><si><t>&lol2;</t></si></sst>'
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as book, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name we want
        book.writestr("xl/workbook.xml", WORKBOOK)
        book.writestr("xl/workbook.xml", WORKBOOK)
    long_cell = f'<sheetData><row r="1"><c t="inlineStr"><is><t>{"长" * 1001}</t></is></c></row>'
    wide = '<sheetData><row r="1"><c r="XFD1"><v>1</v></c></row></sheetData>'
    return {
        "not a zip": (b"PK\x03\x04 definitely not a workbook", "x.xlsx", 422),
        "random bytes": (os.urandom(4096), "x.xlsx", 422),
        "duplicate zip entries": (buf.getvalue(), "x.xlsx", 422),
        "billion laughs": (xlsx_bytes(tmp_path, "<sheetData/>", laughs), "x.xlsx", 422),
        "a cell of 1,001 characters": (
            xlsx_bytes(tmp_path, long_cell + "</sheetData>"),
            "x.xlsx",
            422,
        ),
        "column XFD": (xlsx_bytes(tmp_path, wide), "x.xlsx", 422),
        "a CSV line of 70,000 characters": ((HEADER + "A" * 70_000 + "\n").encode(), "x.csv", 422),
        "a CSV field of 1,001 characters": (
            (HEADER + "A1," + "名" * 1001 + ",党支部,H1\n").encode(),
            "x.csv",
            422,
        ),
        "undecodable CSV": (b"\xff\xfe\xfa" * 100, "x.csv", 422),
        "an unterminated quote": ((HEADER + 'A1,"名' + "\n" * 3).encode(), "x.csv", 422),
        "a member count over a million": (
            (HEADER + "A1,名,党支部,H1,99999999999\n").encode(),
            "x.csv",
            422,
        ),
        "a member count of 5,000 digits": (
            (HEADER + "A1,名,党支部,H1," + "9" * 999 + "\n").encode(),
            "x.csv",
            422,
        ),
        "over 10 MB": (b"a" * (10 * 1024 * 1024 + 1), "x.csv", 413),
        "no extension": (b"abc", "orgs", 422),
    }


def test_every_bad_input_is_a_4xx_and_writes_nothing(world: World, tmp_path: Path) -> None:
    before = count_orgs(world)
    for label, (data, name, status) in bad_inputs(tmp_path).items():
        r = upload(world, data, name=name)
        assert r.status_code == status, f"{label}: {r.status_code} {r.text[:300]}"
        assert r.json()["message"], label
    assert count_orgs(world) == before


def test_the_web_import_answers_a_bomb_with_413(world: World, bombs: dict[str, Path]) -> None:
    token = world.tokens["org_b"]["Authorization"].split()[1]
    client = TestClient(world.client.app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set("dj_session", token)
    csrf = csrf_of(client.get("/orgs/import").text)
    before = count_orgs(world)
    for bomb, status in (("shared_string", 413), ("claims_three_million", 422)):
        with bombs[bomb].open("rb") as handle:
            r = client.post(
                "/orgs/import",
                data={"csrf_token": csrf},
                files={"file": (f"{bomb}.xlsx", handle, "application/octet-stream")},
            )
        assert r.status_code == status and "上限" in r.text, r.text[:300]
    assert count_orgs(world) == before


def test_imports_beyond_the_slots_wait_then_get_503(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    slots = threading.BoundedSemaphore(api_orgs.IMPORT_SLOTS)
    monkeypatch.setattr(api_orgs, "_slots", slots)
    monkeypatch.setattr(api_orgs, "SLOT_WAIT", 0.2)
    for _ in range(api_orgs.IMPORT_SLOTS):
        slots.acquire()
    r = upload(world, HEADER + "B9,某支部,党支部,H1,,,\n")
    assert r.status_code == 503 and r.headers["Retry-After"] and "稍后" in r.json()["message"]
    slots.release()
    r = upload(world, HEADER + "B9,某支部,党支部,H1,,,\n")
    assert r.status_code == 200, r.text
    assert csv.field_size_limit() == 131072  # an import never changes the process-wide limit
