"""Shared helpers: throwaway databases, a set-wise organisation tree, machine facts, JSON lines."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col

from states.db import make_engine
from states.migrate import upgrade
from states.models import Grant, Organisation, Role, User
from states.orgs import child_path
from states.timeutil import utcnow
from states.users import Actor, load_actor

PG_ADMIN_URL = os.environ.get(
    "BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ROOT_CODE = "B"
ORG_COLUMNS = (
    "id",
    "code",
    "name",
    "kind",
    "parent_id",
    "path",
    "depth",
    "member_count",
    "created_at",
    "updated_at",
)


def emit(record: dict[str, Any]) -> None:
    """Print one JSON line (the results format every bench script shares)."""
    print(json.dumps(record, ensure_ascii=False), flush=True)


def note(message: str) -> None:
    """Progress on stderr, so stdout stays pure JSON lines."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


# --- databases -------------------------------------------------------------------------------


def pg_url(dbname: str) -> str:
    """Return the URL of database `dbname` on the benchmark server."""
    url = make_url(PG_ADMIN_URL).set(database=dbname)
    return url.render_as_string(hide_password=False)


def fresh_pg(dbname: str) -> str:
    """Drop and recreate PostgreSQL database `dbname` (must start with `bench_`); return its URL."""
    if not dbname.startswith("bench_"):
        raise SystemExit(f"refusing to recreate {dbname!r}: benchmark databases start with bench_")
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{dbname}"'))
    admin.dispose()
    return pg_url(dbname)


def drop_pg(dbname: str) -> None:
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)'))
    admin.dispose()


def fresh_sqlite(path: Path) -> str:
    """Delete the SQLite file (and its WAL/SHM) at `path`; return its URL."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{path.resolve()}"


def migrated_engine(url: str, **kwargs: Any) -> Engine:
    """Return an engine on `url` after running the migrations to head."""
    engine = make_engine(url, **kwargs)
    upgrade(engine)
    return engine


def checkpoint(engine: Engine) -> None:
    """Flush dirty pages before a timed section (PostgreSQL CHECKPOINT / SQLite WAL truncate)."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("CHECKPOINT"))
        return
    raw = engine.raw_connection()  # outside a transaction: a checkpoint can't run inside one
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    finally:
        raw.close()


def analyze(engine: Engine, *tables: str) -> None:
    """Refresh planner statistics, as autovacuum would shortly after a bulk load."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in tables:
                conn.execute(text(f"VACUUM ANALYZE {table}"))
    else:
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))


# --- the organisation tree -------------------------------------------------------------------


@dataclass(frozen=True)
class TreeShape:
    """1 bureau → hospitals → general branches → `branches` branches (党支部)."""

    branches: int
    branches_per_general: int = 100
    generals_per_hospital: int = 10
    members: int = 3

    @property
    def generals(self) -> int:
        return -(-self.branches // self.branches_per_general)

    @property
    def hospitals(self) -> int:
        return -(-self.generals // self.generals_per_hospital)

    @property
    def total(self) -> int:
        return 1 + self.hospitals + self.generals + self.branches


def tree_rows(shape: TreeShape, now: datetime) -> Iterator[tuple[Any, ...]]:
    """Yield organisation rows (ORG_COLUMNS order) level by level, parents first, with ids."""
    root_path = child_path(None, ROOT_CODE)
    yield (1, ROOT_CODE, "示例市卫生局党委", "党委", None, root_path, 0, 0, now, now)
    h_base = 2
    g_base = h_base + shape.hospitals
    s_base = g_base + shape.generals
    h_paths = [child_path(root_path, f"H{h + 1:03d}") for h in range(shape.hospitals)]
    for h, path in enumerate(h_paths):
        yield (h_base + h, f"H{h + 1:03d}", f"第{h + 1}医院党委", "党委", 1, path, 1, 0, now, now)
    g_paths = []
    for g in range(shape.generals):
        h = g // shape.generals_per_hospital
        code = f"G{g + 1:05d}"
        path = child_path(h_paths[h], code)
        g_paths.append(path)
        yield (g_base + g, code, f"第{g + 1}党总支", "党总支", h_base + h, path, 2, 0, now, now)
    for s in range(shape.branches):
        g = s // shape.branches_per_general
        code = f"S{s + 1:06d}"
        path = child_path(g_paths[g], code)
        row = (s_base + s, code, f"第{s + 1}党支部", "党支部", g_base + g, path, 3)
        yield (*row, shape.members, now, now)


def build_tree(engine: Engine, shape: TreeShape) -> float:
    """Insert the tree set-wise (COPY on PostgreSQL, executemany on SQLite); return seconds."""
    t0 = time.perf_counter()
    now = utcnow()
    if engine.dialect.name == "postgresql":
        raw = engine.raw_connection()
        try:
            pg = raw.driver_connection
            assert pg is not None
            with pg.cursor() as cur:
                cols = ", ".join(ORG_COLUMNS)
                with cur.copy(f"COPY organisation ({cols}) FROM STDIN") as cp:
                    for row in tree_rows(shape, now):
                        cp.write_row(row)
                cur.execute(
                    "SELECT setval(pg_get_serial_sequence('organisation', 'id'), "
                    "(SELECT max(id) FROM organisation))"
                )
            raw.commit()
        finally:
            raw.close()
    else:
        table = Organisation.__table__  # type: ignore[attr-defined]
        batch: list[dict[str, Any]] = []
        with engine.begin() as conn:
            for row in tree_rows(shape, now):
                batch.append(dict(zip(ORG_COLUMNS, row, strict=True)))
                if len(batch) == 10_000:
                    conn.execute(insert(table), batch)
                    batch = []
            if batch:
                conn.execute(insert(table), batch)
    with Session(engine) as s:
        count = s.execute(select(func.count()).select_from(Organisation)).scalar_one()
    assert count == shape.total, (count, shape.total)
    analyze(engine, "organisation")
    return time.perf_counter() - t0


def make_actor(session: Session, username: str, code: str, role: Role) -> Actor:
    """Create a user holding `role` on organisation `code` (no bcrypt: never logs in)."""
    user = User(username=username, display_name=username, password_hash="!")
    session.add(user)
    session.flush()
    org_id = session.execute(
        select(col(Organisation.id)).where(col(Organisation.code) == code)
    ).scalar_one()
    session.add(Grant(user_id=user.id or 0, org_id=org_id, role=role.value))
    session.commit()
    return load_actor(session, user.id or 0)


# --- machine facts ---------------------------------------------------------------------------


def copy_rows(
    engine: Engine, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows with explicit ids into `table`, then move its id sequence past them."""
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        with pg.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        raw.commit()
    finally:
        raw.close()


def machine(engine: Engine | None = None) -> dict[str, Any]:
    """Return nproc, memory, CPU model, Python and (if given an engine) the database settings."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["mem_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if engine is not None and engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            info["postgresql"] = conn.execute(text("SHOW server_version")).scalar_one()
            for name in ("fsync", "synchronous_commit", "shared_buffers", "max_wal_size"):
                info[f"pg_{name}"] = conn.execute(text(f"SHOW {name}")).scalar_one()
    return info
