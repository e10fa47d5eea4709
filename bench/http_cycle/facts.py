"""What was measured: the code's state (commit, uncommitted changes) and PostgreSQL's settings."""

from __future__ import annotations

import hashlib
import subprocess
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine

from bench.http_cycle.constants import REPO


def git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return res.stdout.strip()


def code_state() -> dict[str, Any]:
    """The commit, and a digest of uncommitted changes (untracked files too) under api/, states/."""
    diff = git("diff", "HEAD", "--", "api", "states")
    changed = git("diff", "HEAD", "--name-only", "--", "api", "states").split()
    for path in git("ls-files", "--others", "--exclude-standard", "--", "api", "states").split():
        changed.append(path)
        diff += path + hashlib.sha256((REPO / path).read_bytes()).hexdigest()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "trees": git("rev-parse", "HEAD:api", "HEAD:states").replace("\n", " "),
        "diff": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else "clean",
        "changed": sorted(changed),
    }


def _same_code(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("trees"), a["diff"]) == (b.get("trees"), b["diff"])


def pg_settings(engine: Engine) -> dict[str, str]:
    names = (
        "max_connections", "shared_buffers", "fsync", "synchronous_commit", "wal_level",
        "max_wal_size", "checkpoint_timeout", "work_mem",
    )  # fmt: skip
    with engine.connect() as conn:
        return {n: conn.execute(text(f"SHOW {n}")).scalar_one() for n in names}
