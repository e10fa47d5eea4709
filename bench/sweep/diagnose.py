"""EXPLAIN (ANALYZE, BUFFERS) of the hot statements and a cProfile of one sweep."""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

from bench.common import note
from bench.sweep.constants import EXPLAIN_TXT, PROFILE_TXT
from bench.sweep.data import World, reset, set_due
from bench.sweep.measure import StatementClock
from workflows import jobs


def explain(world: World, clock: StatementClock, title: str, out: list[str]) -> None:
    """EXPLAIN ANALYZE the captured statements (in a transaction rolled back afterwards)."""
    raw = world.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        for bucket in (
            "INSERT timer_fired … SELECT run (due rows)",
            "SELECT run ⋈ organisation (details)",
            "UPDATE run escalation_level",
        ):
            if bucket not in clock.examples:
                continue
            stmt, params = clock.examples[bucket]
            with pg.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)
                plan = [r[0] for r in cur.fetchall()]
            pg.rollback()
            short = [x if len(x) < 400 else x[:400] + " …" for x in [stmt, *plan]]
            out += [f"== {title}: {bucket}", *short, ""]
    finally:
        raw.close()


def profile_sweep(world: World) -> list[str]:
    """cProfile of one sweep: the top functions by cumulative and by own time."""
    prof = cProfile.Profile()
    prof.enable()
    jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue().splitlines()


def analysis(world: World, records: list[dict[str, Any]]) -> None:
    """EXPLAIN ANALYZE of the hot statements and a cProfile of one sweep (on the current case)."""
    reset(world)
    lines: list[str] = []
    with StatementClock(world.engine) as clock:
        jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    reset(world)
    explain(world, clock, f"{world.total:,} runs, {world.due:,} due, first batch", lines)
    jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    explain(world, clock, f"{world.total:,} runs, after the sweep (nothing due)", lines)
    EXPLAIN_TXT.write_text("\n".join(lines))
    reset(world)
    prof = profile_sweep(world)
    PROFILE_TXT.write_text("\n".join(prof))
    note(f"wrote {EXPLAIN_TXT} and {PROFILE_TXT}")


def explain_big(world: World, due: int) -> None:
    """EXPLAIN ANALYZE the slowest INSERT … SELECT of a sweep that finds nothing, at `due`."""
    set_due(world, due)
    jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    with StatementClock(world.engine) as clock:
        jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    clock.examples = {k: v for k, v in clock.examples.items() if k.startswith("INSERT timer_fired")}
    lines: list[str] = []
    explain(
        world, clock, f"{world.total:,} runs, {due:,} due, after the sweep (nothing due)", lines
    )
    with EXPLAIN_TXT.open("a") as fh:
        fh.write("\n\n" + "\n".join(lines))
