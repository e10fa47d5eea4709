"""CPU accounting from /proc (servers, PostgreSQL, this process, the machine) and pg_stat_database counters."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from bench.common import note
from bench.http_cycle.constants import CLK_TCK


@dataclass(frozen=True)
class Proc:
    """One process's CPU so far, in clock ticks (from /proc/<pid>/stat)."""

    comm: str
    ppid: int
    user: int
    sys: int
    reaped: int  # CPU of its children that exited and were waited for (cutime + cstime)

    @property
    def ticks(self) -> int:
        return self.user + self.sys


def _proc_table() -> dict[int, Proc]:
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = Proc(
            comm, int(f[1]), int(f[11]), int(f[12]), int(f[13]) + int(f[14])
        )
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pg_database(pid: int) -> str | None:
    """The database a PostgreSQL backend or autovacuum worker serves (None: server-wide)."""
    title = _cmdline(pid).decode(errors="replace").strip("\0").split(": ")
    words = title[2].split() if len(title) > 2 else []
    if words[:2] == ["autovacuum", "worker"] and len(words) > 2:
        return words[2]
    if len(words) > 2 and "(" in words[2]:  # "<user> <database> <host>(<port>) <state>"
        return words[1]
    return None


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def cpu_snapshot(server_roots: Sequence[int], db: str) -> dict[str, int]:
    """CPU ticks used so far by the servers, PostgreSQL (for `db`), this process, the machine.

    PostgreSQL counts its live processes serving `db` or the whole cluster (checkpointer, WAL
    writer, …) plus what the postmaster has reaped from exited children: the app's pool closes
    overflow connections, whose backends would otherwise vanish from the count.
    """
    table = _proc_table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, proc in table.items():
        children[proc.ppid].append(pid)
    server = server_sys = 0
    stack = list(server_roots)
    while stack:
        pid = stack.pop()
        if pid in table:
            server += table[pid].ticks
            server_sys += table[pid].sys
        stack.extend(children.get(pid, []))
    pg = 0
    for pid, proc in table.items():
        if proc.comm != "postgres":
            continue
        if table.get(proc.ppid, proc).comm != "postgres":  # the postmaster
            pg += proc.reaped
        if _pg_database(pid) in (None, db):
            pg += proc.ticks
    busy, total = _machine_ticks()
    me = table.get(os.getpid())
    return {
        "server": server,
        "server_sys": server_sys,
        "pg": pg,
        "client": me.ticks if me else 0,
        "busy": busy,
        "total": total,
    }


@dataclass(frozen=True)
class Meter:
    """Where to read CPU time: the servers' process trees and the benchmark database."""

    server_roots: Sequence[int]
    db: str

    def snap(self) -> dict[str, int]:
        return cpu_snapshot(self.server_roots, self.db)


def cpu_split(before: dict[str, int], after: dict[str, int], calls: int) -> dict[str, float]:
    """CPU ms per call of the server, PostgreSQL and this process; machine use in % of all CPUs."""
    d = {k: after[k] - before[k] for k in before}
    total = max(d["total"], 1)
    ms = 1000 / CLK_TCK / max(calls, 1)
    other = max(d["busy"] - d["server"] - d["pg"] - d["client"], 0)
    return {
        "server_ms": round(d["server"] * ms, 2),
        "server_sys_pct": round(100 * d["server_sys"] / max(d["server"], 1), 1),
        "pg_ms": round(d["pg"] * ms, 2),
        "client_ms": round(d["client"] * ms, 2),
        "busy_pct": round(100 * d["busy"] / total, 1),
        "other_pct": round(100 * other / total, 1),
    }


class DbStats:
    """New connections and transactions in the benchmark database (pg_stat_database)."""

    QUERY = (
        "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.start: tuple[int, int] = self.read()

    def read(self) -> tuple[int, int]:
        row = self.conn.execute(self.QUERY).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def attach(self, rec: dict[str, Any], now: tuple[int, int]) -> dict[str, Any]:
        """Add connections and transactions per call since `start` (includes the check after
        the measurement: one connection, one or two transactions)."""
        calls = max(rec["calls"], 1)
        rec["new_conns_per_call"] = round((now[0] - self.start[0]) / calls, 3)
        rec["xacts_per_call"] = round((now[1] - self.start[1]) / calls, 2)
        return rec

    def close(self) -> None:
        self.conn.close()


def machine_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs in use over `seconds`, in %."""
    b0, t0 = _machine_ticks()
    time.sleep(seconds)
    b1, t1 = _machine_ticks()
    return round(100 * (b1 - b0) / max(t1 - t0, 1), 1)


def wait_idle(limit: float, threshold: float = 15.0, first: float = 2.0) -> float:
    """Wait up to `limit` seconds for the machine to go quiet; return the last busy %.

    Other work on this small machine skews every figure: the benchmark waits for it to stop
    before it starts and before each measurement, and reports the share it still took.
    """
    t0 = time.monotonic()
    busy = machine_busy(first)
    while busy > threshold and time.monotonic() - t0 < limit:
        note(f"machine {busy:.0f}% busy by other work; waiting for it to go quiet")
        busy = machine_busy(5.0)
    return busy
