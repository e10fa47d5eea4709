"""What a new user meets first: the demo's log-ins, the install markers, the browser setup of
`scripts/test.sh`, and the site icon.

* `dangjian demo` prints every demo log-in once, in one table, the password once above it;
  `dangjian serve` prints none (SQLite and PostgreSQL). The README's example users exist.
* scripts/_env.sh, run in a temporary copy with a stand-in `.venv/bin/python` that records the
  installs: alternating demo.sh (base) and test.sh (dev) installs at most once per extra, a dev
  install satisfies the base one, a changed pyproject.toml installs again.
* `ensure_browser` with stand-in `id`, `sudo`, `apt-get`, `dpkg`: installs when it can, else says
  how in one line and fails.
* `GET /favicon.ico` over real HTTP, from the link on the log-in page, in Chromium.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from api.cli import main
from states.demo import DEMO_PASSWORD, demo_login_list
from tests.browser import LiveWorld

if TYPE_CHECKING:
    from playwright.sync_api import Page

ROOT = Path(__file__).resolve().parent.parent


def _mentions(text: str, word: str) -> int:
    """How often `word` occurs as a whole user name (weiyuan_h1 is not in weiyuan_h1_g1)."""
    return len(re.findall(rf"(?<![\w]){re.escape(word)}(?![\w])", text))


def test_demo_prints_every_login_once_and_serve_none(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    out = runner.invoke(main, ["demo"], catch_exceptions=False).output
    logins = demo_login_list()
    assert len(logins) == 34
    for lg in logins:
        assert _mentions(out, lg.username) == 1, lg.username
        assert f"{lg.org_name}（{lg.org}）" in out
    assert out.count(DEMO_PASSWORD) == 1
    assert "用户名" in out and "组织" in out and "另有" not in out
    again = runner.invoke(main, ["demo"], catch_exceptions=False).output
    assert "已存在" in again and _mentions(again, "shuji_h1_g1_s1") == 1

    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)  # the banner, not the server
    monkeypatch.setattr("api.cli.serve.serve_many", lambda *a, **k: None)  # nor its processes
    served = runner.invoke(main, ["serve", "--port", "8123"], catch_exceptions=False).output
    assert "http://127.0.0.1:8123/" in served
    assert DEMO_PASSWORD not in served and not any(lg.username in served for lg in logins)


def test_readme_example_users_exist_in_the_demo() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:shuji|weiyuan)_[a-z0-9_]+|zuzhike|duzhu)\b", readme))
    assert "shuji_h1_g1_s1" in named
    assert named <= {lg.username for lg in demo_login_list()}


@pytest.mark.parametrize(
    ("verbose", "preset", "expected"),
    [(False, None, "WARNING"), (True, None, None), (False, "DEBUG", "DEBUG")],
)
def test_worker_console_quiet_unless_verbose(
    monkeypatch: pytest.MonkeyPatch, verbose: bool, preset: str | None, expected: str | None
) -> None:
    from api.cli.timed import quiet_console

    key = "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"
    if preset is None:
        monkeypatch.delenv(key, raising=False)
    else:
        monkeypatch.setenv(key, preset)  # an operator's own setting wins
    quiet_console(verbose)
    assert os.environ.get(key) == expected
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert "-v, --verbose" in result.output


# --- scripts/_env.sh in a temporary copy ------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/../../calls.log"
"""


def _sandbox(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "_env.sh", tmp_path / "scripts" / "_env.sh")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(FAKE_PYTHON)
    (bin_dir / "python").chmod(0o755)
    return tmp_path


def _bash(
    root: Path, script: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f"source scripts/_env.sh; {script}"],
        cwd=root,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )


def _installs(root: Path) -> list[str]:
    log = root / "calls.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [line.rsplit(" ", 1)[-1] for line in lines if " -e " in line]


def test_install_markers_do_not_fight(tmp_path: Path) -> None:
    root = _sandbox(tmp_path / "base-first")
    for extras in ("", "dev", "", "dev", ""):  # demo.sh, test.sh, demo.sh, …
        assert _bash(root, f'ensure_venv "{extras}"').returncode == 0
    assert _installs(root) == [".", ".[dev]"]
    fresh = _sandbox(tmp_path / "dev-first")
    for extras in ("dev", "", "dev", ""):
        assert _bash(fresh, f'ensure_venv "{extras}"').returncode == 0
    assert _installs(fresh) == [".[dev]"]  # a dev install includes the base one
    (fresh / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "2"\n')
    assert _bash(fresh, 'ensure_venv ""').returncode == 0
    assert _installs(fresh) == [".[dev]", "."]
    markers = sorted(p.name for p in (fresh / ".venv").glob(".installed-*"))
    assert len(markers) == 1 and markers[0].endswith("-base")  # older hashes cleared


def _fake_bin(tmp_path: Path, uid: int, *, sudo_ok: bool, apt: bool) -> Path:
    """Stand-ins for id, sudo, apt-get, dpkg and fc-list; apt-get "installs" by creating files."""
    fake = tmp_path / "fakebin"
    fake.mkdir()
    for tool in ("dirname", "grep", "sha256sum", "cut", "find", "touch", "chmod", "true"):
        found = shutil.which(tool)
        assert found is not None
        (fake / tool).symlink_to(found)
    scripts = {
        "id": f"echo {uid}",
        "sudo": f'[ "$1" = -n ] && shift; {"exec" if sudo_ok else "exit 1; exec"} "$@"',
        "dpkg": f'[ -f "{tmp_path}/font" ]',
        "fc-list": "exit 0",
    }
    if apt:
        scripts["apt-get"] = (
            f'echo "$*" >> "{tmp_path}/apt.log"; '
            f'if [ "$1" = install ]; then : > "$DANGJIAN_CHROMIUM"; chmod +x "$DANGJIAN_CHROMIUM";'
            f' : > "{tmp_path}/font"; : > "{fake}/pdftotext"; chmod +x "{fake}/pdftotext"; fi'
        )
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/bash\n{body}\n")
        (fake / name).chmod(0o755)
    return fake


@pytest.mark.parametrize(
    ("uid", "sudo_ok", "apt", "installs"),
    [
        (0, False, True, True),
        (1000, True, True, True),
        (1000, False, True, False),
        (0, False, False, False),
    ],
)
def test_ensure_browser_installs_or_says_how(
    tmp_path: Path, uid: int, sudo_ok: bool, apt: bool, installs: bool
) -> None:
    root = _sandbox(tmp_path / "repo")
    fake = _fake_bin(tmp_path, uid, sudo_ok=sudo_ok, apt=apt)
    chromium = tmp_path / "chromium"
    env = {"PATH": str(fake), "DANGJIAN_CHROMIUM": str(chromium), "DANGJIAN_NO_BROWSER": ""}
    bash = shutil.which("bash")
    assert bash is not None
    result = subprocess.run(
        [bash, "-c", "source scripts/_env.sh; ensure_browser"],
        cwd=root,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    if installs:
        assert result.returncode == 0, result.stderr
        assert chromium.exists()
        assert "chromium fonts-wqy-microhei" in (tmp_path / "apt.log").read_text()
    else:
        assert result.returncode != 0
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "apt-get install -y chromium fonts-wqy-microhei" in lines[0]
        assert not chromium.exists()
    skipped = subprocess.run(
        [bash, "-c", "source scripts/_env.sh; ensure_browser"],
        cwd=root,
        env={**os.environ, **env, "DANGJIAN_NO_BROWSER": "1"},
        check=False,
    )
    assert skipped.returncode == 0


# --- the site icon ---------------------------------------------------------------------------


def test_favicon_is_linked_and_served(live_world: LiveWorld, page: Page) -> None:
    from PIL import Image

    page.goto(live_world.url("/login"))
    href = page.eval_on_selector("link[rel=icon]", "el => el.href")
    assert href == live_world.url("/favicon.ico")
    resp = page.request.get(href)
    assert resp.status == 200
    assert resp.headers["content-type"].startswith("image/")
    icon = Image.open(io.BytesIO(resp.body()))
    assert icon.format == "ICO" and (32, 32) in icon.info["sizes"]
    assert page.request.get(live_world.url("/favicon.ico")).status == 200
