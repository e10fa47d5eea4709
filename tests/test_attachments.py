"""Attachments on evidence records: sniffing, limits, storage, reach, headers, the page upload.

Files are generated here (a PNG through Pillow, a minimal PDF, a DOCX built with zipfile, an
XLSX from openpyxl, ELF and PE headers renamed .jpg, a zip bomb renamed .xlsx). The data
directory is a temporary one per test (`DANGJIAN_DATA_DIR`).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from PIL import Image
from sqlmodel import Session, col, select

from api.app import create_app
from states.attachments import sniff as sniffing
from states.attachments.service import MAX_BYTES, MAX_PER_RECORD
from states.models import Attachment, AuditEvent
from tests.api_world import MEETING, World
from tests.browser import web_user

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture(autouse=True)
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DANGJIAN_DATA_DIR", str(tmp_path))
    return tmp_path


# --------------------------------------------------------------------------- sample files


def png(color: Any = "red", size: tuple[int, int] = (800, 600), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, "PNG")
    return buf.getvalue()


def image(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), "blue").save(buf, fmt)
    return buf.getvalue()


PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)


def docx() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types/>')
        z.writestr("_rels/.rels", "<Relationships/>")
        z.writestr("word/document.xml", "<w:document/>")
    return buf.getvalue()


def xlsx() -> bytes:
    book = openpyxl.Workbook()
    book.active.append(["姓名", "承诺"])  # type: ignore[union-attr]
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


@functools.cache
def zip_bomb() -> bytes:
    """200 MB of zeros packed into a few hundred KB, with XLSX-looking part names."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("xl/workbook.xml", "w", force_zip64=True) as part:
            block = b"\0" * (1024 * 1024)
            for _ in range(210):
                part.write(block)
    return buf.getvalue()


ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 200
PE = b"MZ\x90\x00\x03" + b"\0" * 60 + b"PE\0\0" + b"\0" * 200
OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 1024


# --------------------------------------------------------------------------- sniffing (no DB)


@pytest.mark.parametrize(
    ("name", "make", "mime"),
    [
        ("照片.png", lambda: png(), "image/png"),
        ("照片.jpg", lambda: image("JPEG"), "image/jpeg"),
        ("动图.gif", lambda: image("GIF"), "image/gif"),
        ("照片.webp", lambda: image("WEBP"), "image/webp"),
        ("方案.pdf", lambda: PDF, "application/pdf"),
        ("方案.docx", docx, DOCX_MIME),
        ("名单.xlsx", xlsx, XLSX_MIME),
        ("旧方案.doc", lambda: OLE, "application/msword"),
        ("旧名单.xls", lambda: OLE, "application/vnd.ms-excel"),
        ("改了名.pdf", lambda: png(), "image/png"),  # the bytes decide, not the name
    ],
)
def test_accepted_types_are_sniffed_from_the_bytes(
    tmp_path: Path, name: str, make: Any, mime: str
) -> None:
    path = tmp_path / "f"
    path.write_bytes(make())
    assert sniffing.sniff(path, name).mime == mime


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("照片.jpg", ELF),
        ("照片.jpg", PE),
        ("页面.png", b"<!DOCTYPE html><html><script>alert(1)</script></html>"),
        ("图.png", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
        ("名单.xlsx", None),  # the zip bomb
        ("资料.docx", b"PK\x03\x04" + b"\0" * 100),  # a broken zip
        ("安装包.doc.exe", OLE),  # OLE2 (like an .msi) without a document's name
    ],
)
def test_other_types_are_refused_naming_the_file(tmp_path: Path, name: str, data: Any) -> None:
    path = tmp_path / "f"
    path.write_bytes(zip_bomb() if data is None else data)
    with pytest.raises(sniffing.InvalidInput) as err:
        sniffing.sniff(path, name)
    assert name in err.value.message
    assert err.value.details == [{"field": "file", "filename": name}]


def test_a_plain_zip_and_macros_are_refused(tmp_path: Path) -> None:
    for names, why in ((["notes.txt"], "不是 Word"), (["xl/vbaProject.bin"], "含有宏")):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("[Content_Types].xml", "<Types/>")
            z.writestr("xl/workbook.xml", "<workbook/>")
            for n in names:
                z.writestr(n, "x")
        if names == ["notes.txt"]:
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w") as z:
                z.writestr("notes.txt", "x")
        path = tmp_path / "f"
        path.write_bytes(buf.getvalue())
        with pytest.raises(sniffing.InvalidInput, match=why):
            sniffing.sniff(path, "a.xlsx")


def test_kept_names_match_the_sniffed_type() -> None:
    assert sniffing.safe_filename("活动照片.PNG", sniffing.PNG) == "活动照片.PNG"
    assert sniffing.safe_filename("照片.exe", sniffing.PNG) == "照片.exe.png"
    assert sniffing.safe_filename("../../etc/passwd", sniffing.PDF) == "passwd.pdf"
    assert sniffing.safe_filename('C:\\x\\"a<b>.jpeg', sniffing.JPEG) == "ab.jpeg"


# --------------------------------------------------------------------------- through the API


def record(w: World, who: str = "sec_s1", run: str = "S1") -> int:
    resp = w.post(
        who, f"/api/v1/runs/{w.runs[run]}/evidence", json={"kind": "meeting", "data": MEETING}
    )
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


def upload(w: World, who: str, evidence_id: int, name: str, data: bytes) -> Any:
    return w.post(
        who,
        f"/api/v1/evidence/{evidence_id}/attachments",
        files={"file": (name, data, "application/octet-stream")},
    )


def rows(w: World) -> list[Attachment]:
    with Session(w.engine) as s:
        return list(s.execute(select(Attachment).order_by(col(Attachment.id))).scalars())


def stored_files(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "files").rglob("*") if p.is_file())


def test_upload_download_thumbnail_headers_and_audit(world: World, data_dir: Path) -> None:
    w = world
    ev = record(w)
    data = png()
    resp = upload(w, "sec_s1", ev, "活动照片.png", data)
    assert resp.status_code == 201, resp.text
    a = resp.json()
    sha = hashlib.sha256(data).hexdigest()
    assert a["sha256"] == sha and a["content_type"] == "image/png" and a["size"] == len(data)
    assert (data_dir / "files" / sha[:2] / sha[2:4] / sha).read_bytes() == data
    assert not list((data_dir / "files" / "tmp").iterdir())  # no temp file left

    got = w.get("com_g1", a["url"])  # a committee above reads it too
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["x-content-type-options"] == "nosniff"
    assert got.headers["content-disposition"].startswith("attachment;")
    assert (
        "filename*=UTF-8''%E6%B4%BB%E5%8A%A8%E7%85%A7%E7%89%87.png"
        in got.headers["content-disposition"]
    )
    assert got.headers["cache-control"].startswith("private")

    thumb = w.get("sec_s1", a["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as small:
        assert max(small.size) == 320
    listed = w.get("sec_s1", f"/api/v1/evidence/{ev}/attachments").json()
    assert [i["id"] for i in listed["items"]] == [a["id"]] and listed["total"] == 1

    with Session(w.engine) as s:
        event = s.execute(
            select(AuditEvent).where(AuditEvent.action == "attachment.added")
        ).scalar_one()
    assert event.stream == f"run:{w.runs['S1']}" and event.data["sha256"] == sha

    pdf = upload(w, "sec_s1", ev, "方案.pdf", PDF).json()
    assert pdf["thumbnail_url"] is None
    assert w.get("sec_s1", f"/api/v1/attachments/{pdf['id']}/thumbnail").status_code == 404


@pytest.mark.parametrize(
    ("name", "make", "mime"),
    [
        ("方案.docx", docx, DOCX_MIME),
        ("名单.xlsx", xlsx, XLSX_MIME),
        ("方案.pdf", lambda: PDF, "application/pdf"),
    ],
)
def test_documents_upload(world: World, name: str, make: Any, mime: str) -> None:
    resp = upload(world, "sec_s1", record(world), name, make())
    assert resp.status_code == 201, resp.text
    assert resp.json()["content_type"] == mime


@pytest.mark.parametrize(
    ("name", "data"), [("照片.jpg", ELF), ("照片.jpg", PE), ("名单.xlsx", None)]
)
def test_bad_types_get_422_naming_the_file_and_write_nothing(
    world: World, data_dir: Path, name: str, data: bytes | None
) -> None:
    w = world
    ev = record(w)
    resp = upload(w, "sec_s1", ev, name, zip_bomb() if data is None else data)
    assert resp.status_code == 422, resp.text
    assert name in resp.json()["message"] and resp.json()["details"][0]["field"] == "file"
    assert rows(w) == [] and stored_files(data_dir) == []


def test_over_10_mb_is_413_and_writes_nothing(world: World, data_dir: Path) -> None:
    w = world
    ev = record(w)
    big = b"%PDF-1.4\n" + b"0" * MAX_BYTES  # one part just over the limit (the body fits)
    resp = upload(w, "sec_s1", ev, "大文件.pdf", big)
    assert resp.status_code == 413, resp.text
    assert resp.json()["code"] == "too_large" and "10 MB" in resp.json()["message"]
    assert rows(w) == [] and stored_files(data_dir) == []
    exact = b"%PDF-1.4\n" + b"0" * (MAX_BYTES - 9)
    assert upload(w, "sec_s1", ev, "刚好.pdf", exact).status_code == 201


def test_413_is_answered_while_streaming_before_the_body_is_read(world: World) -> None:
    """A chunked 50 MB body: the app stops reading just past 10 MB (not after all of it)."""
    w = world
    ev = record(w)
    app = create_app(w.engine)
    chunk = 1024 * 1024
    head = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\n"
    )
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        body = head if pulled == 1 else b"0" * chunk
        return {"type": "http.request", "body": body, "more_body": pulled < 50}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    token = w.as_("sec_s1")["Authorization"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"/api/v1/evidence/{ev}/attachments",
        "raw_path": f"/api/v1/evidence/{ev}/attachments".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", token),
            (b"content-type", b"multipart/form-data; boundary=XyZ"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
        "state": {},
    }
    # In a thread of its own: a browser test earlier in the session may have left Playwright's
    # event loop running in this one, and asyncio.run refuses to nest.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, app(scope, receive, send)).result()
    assert sent[0]["status"] == 413
    assert pulled <= 13, pulled  # 10 MB and a little, never the 50 MB
    assert rows(w) == []


def test_content_length_over_the_limit_is_refused_before_reading() -> None:
    from api.v1.attachments import MAX_UPLOAD_BODY

    assert MAX_BYTES < MAX_UPLOAD_BODY <= MAX_BYTES + 64 * 1024


def test_twenty_files_per_record_then_409(world: World) -> None:
    w = world
    ev = record(w)
    for i in range(MAX_PER_RECORD):
        resp = upload(w, "sec_s1", ev, f"{i}.png", png((i, 0, 0), (8, 8)))
        assert resp.status_code == 201, (i, resp.text)
    resp = upload(w, "sec_s1", ev, "21.png", png((0, 99, 0), (8, 8)))
    assert resp.status_code == 409 and str(MAX_PER_RECORD) in resp.json()["message"]
    assert len(rows(w)) == MAX_PER_RECORD


def test_same_bytes_are_stored_once(world: World, data_dir: Path) -> None:
    w = world
    first, second = record(w), record(w)
    data = png("green")
    a = upload(w, "sec_s1", first, "a.png", data)
    again = upload(w, "sec_s1", first, "again.png", data)
    b = upload(w, "sec_s1", second, "b.png", data)
    assert (a.status_code, again.status_code, b.status_code) == (201, 200, 201)
    assert again.json()["id"] == a.json()["id"] and b.json()["id"] != a.json()["id"]
    assert len(rows(w)) == 2
    sha = hashlib.sha256(data).hexdigest()
    assert stored_files(data_dir).count(sha) == 1  # one file for both records (+ thumbnail)


def test_reach_sibling_subtree_gets_404_everywhere(world: World, data_dir: Path) -> None:
    w = world
    ev = record(w)
    a = upload(w, "sec_s1", ev, "a.png", png()).json()
    for who in ("admin_h2", "sec_s2", "sec_s4"):
        for url in (a["url"], a["thumbnail_url"], f"/api/v1/evidence/{ev}/attachments"):
            resp = w.get(who, url)
            assert resp.status_code == 404 and resp.json()["code"] == "not_found", (who, url)
        resp = upload(w, who, ev, "x.png", png("black"))
        assert resp.status_code == 404, (who, resp.text)
    # In reach but no right to add files: an organiser above reads, cannot upload.
    assert w.get("org_h1", a["url"]).status_code == 200
    assert upload(w, "org_h1", ev, "x.png", png("black")).status_code == 403
    # A committee member above may add files (代办); nobody's refusal wrote anything.
    assert upload(w, "com_g1", ev, "上级补充.png", png("white")).status_code == 201
    assert len(rows(w)) == 2
    assert w.get("sec_s1", "/api/v1/attachments/999999").status_code == 404


def test_a_voided_record_takes_no_more_files(world: World) -> None:
    from sqlalchemy import update

    from states.models import Evidence

    w = world
    ev = record(w)
    with Session(w.engine) as s:
        s.execute(update(Evidence).where(col(Evidence.id) == ev).values(status="void"))
        s.commit()
    resp = upload(w, "sec_s1", ev, "a.png", png())
    assert resp.status_code == 409 and "作废" in resp.json()["message"]


def test_no_file_or_not_multipart_is_422(world: World) -> None:
    w = world
    ev = record(w)
    url = f"/api/v1/evidence/{ev}/attachments"
    assert w.post("sec_s1", url, json={"file": "x"}).status_code == 422
    resp = w.post("sec_s1", url, data={"note": "没有文件"}, files={"other": ("a", b"a")})
    assert resp.status_code == 422 and resp.json()["details"][0]["field"] == "file"


# --------------------------------------------------------------------------- pages


def test_page_upload_shows_files_and_thumbnails(world: World) -> None:
    w = world
    ev = record(w)
    run_url = f"/runs/{w.runs['S1']}"
    user = web_user(w.client.app, "sec_s1")
    page = user.get(run_url).text
    assert (
        f'action="/evidence/{ev}/attachments"' in page and 'enctype="multipart/form-data"' in page
    )
    name = "<script>alert(1)</script>.png"
    resp = user.client.post(
        f"/evidence/{ev}/attachments",
        data={"csrf_token": user.csrf, "next": f"{run_url}#attachments-{ev}"},
        files={"file": (name, png(), "image/png")},
        follow_redirects=False,
    )
    assert resp.status_code == 303 and resp.headers["location"] == f"{run_url}#attachments-{ev}"
    page = user.get(run_url).text
    assert "已上传附件" in page
    # The name loses its path and the characters no file name may hold: shown as text.
    (att,) = rows(w)
    assert att.filename == "script.png" and "<script>alert" not in page
    assert "上传附件：script.png" in page  # the run history says it in words
    assert f'src="/files/{att.id}/thumbnail"' in page
    got = user.get(f"/files/{att.id}")
    assert got.status_code == 200 and got.headers["x-content-type-options"] == "nosniff"
    assert user.get(f"/files/{att.id}/thumbnail").headers["content-type"] == "image/jpeg"
    # A wrong type comes back as a notice on the run page, nothing stored.
    resp = user.client.post(
        f"/evidence/{ev}/attachments",
        data={"csrf_token": user.csrf},
        files={"file": ("病毒.jpg", ELF, "image/jpeg")},
        follow_redirects=False,
    )
    assert resp.status_code == 303
    assert "病毒.jpg" in user.get(resp.headers["location"].split("#")[0]).text
    assert len(rows(w)) == 1
    # Without the CSRF token: refused, nothing stored; the sibling subtree: the 404 page.
    resp = user.client.post(
        f"/evidence/{ev}/attachments",
        files={"file": ("a.png", png("blue"))},
        follow_redirects=False,
    )
    assert resp.status_code == 403 and len(rows(w)) == 1
    sibling = web_user(w.client.app, "admin_h2")
    assert sibling.get(f"/files/{att.id}").status_code == 404
    assert "页面不存在" in sibling.get(f"/files/{att.id}/thumbnail").text
    assert re.search(r"附件", user.get(run_url).text)


def test_phone_upload_in_chromium(browser: Any, live_world: Any, tmp_path: Path) -> None:
    """On a 375-px phone, without any script of ours: choose a photo, upload, see its thumbnail."""
    from tests.browser import PHONE, login, shot

    live = live_world
    w: World = live.world
    ev = record(w, "sec_s2", "S2")
    photo = tmp_path / "支部活动照片.png"
    photo.write_bytes(png("orange", (1200, 900)))
    ctx = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, locale="zh-CN")
    try:
        p = ctx.new_page()
        p.set_default_timeout(10_000)
        login(p, live.base_url, "sec_s2")
        p.goto(live.url(f"/runs/{w.runs['S2']}"))
        p.set_input_files(f"#file-{ev}", str(photo))
        p.locator(f"#attachments-{ev} button[type=submit]").click()
        p.wait_for_load_state()
        assert p.locator(".flash-success").first.is_visible()
        img = p.locator(f"#attachments-{ev} img")
        img.scroll_into_view_if_needed()
        assert img.evaluate("i => i.complete && i.naturalWidth") == 320
        assert p.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        shot(p, "run-phone-attachment")
    finally:
        ctx.close()
