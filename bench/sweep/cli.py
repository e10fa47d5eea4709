"""Command line of `python -m bench.sweep`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import note
from bench.sweep.cases import run_bench
from bench.sweep.constants import JSONL, REPO
from bench.sweep.report import render, write_section


def main(argv: list[str] | None = None) -> None:
    from bench import sweep  # its docstring is the --help text

    # prog: how it is run (argparse would otherwise print __main__.py)
    ap = argparse.ArgumentParser(
        prog="python -m bench.sweep",
        description=sweep.__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument(
        "--cases",
        default="1e5:1e4,1e6:1e3,1e6:1e4,1e6:1e5",
        help="comma-separated total:due pairs",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--slow", type=float, default=60.0, help="no more repeats after one longer than this (s)"
    )
    ap.add_argument("--analyse-due", type=int, default=10_000, help="case of EXPLAIN/profile")
    ap.add_argument("--skip-prefect", action="store_true")
    ap.add_argument("--db", default="bench_sweep")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--jsonl", default=str(JSONL), help="results file (JSON lines)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--report-only", action="store_true", help="re-render from the last results")
    args = ap.parse_args(argv)
    if not args.report_only:
        run_bench(args)
    if not args.no_write:
        lines = Path(args.jsonl).read_text().splitlines()
        records = [json.loads(x) for x in lines if x.startswith("{")]
        write_section(Path(args.out), render(records))
        note(f"updated {args.out}")
