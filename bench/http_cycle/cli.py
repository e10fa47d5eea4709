"""Command line of `python -m bench.http_cycle`."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import note
from bench.http_cycle.constants import REPO
from bench.http_cycle.orchestrate import run_bench
from bench.http_cycle.report import load_meta, render, write_section


def main(argv: list[str] | None = None) -> None:
    from bench import http_cycle  # its docstring is the --help text

    # prog: how it is run (argparse would otherwise print __main__.py)
    ap = argparse.ArgumentParser(
        prog="python -m bench.http_cycle",
        description=http_cycle.__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument("--clients", default="1,4,16,32", help="comma-separated client counts")
    ap.add_argument(
        "--workers",
        default="1,2,2+reuseport",
        help="server variants: worker counts, each optionally +reuseport or +nodelay "
        "(bench/serve.py)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.5, help="length of each measurement")
    ap.add_argument("--branches", type=int, default=5000, help="branches (one run each/campaign)")
    ap.add_argument("--committees", type=int, default=50, help="parents of the branches")
    ap.add_argument("--http-pool", type=int, default=1500, help="runs per HTTP measurement")
    ap.add_argument("--sql-pool", type=int, default=4000, help="runs per SQL measurement")
    ap.add_argument("--warmup-pool", type=int, default=300)
    ap.add_argument("--warmup-seconds", type=float, default=2.0)
    ap.add_argument("--py-spy", metavar="PATH", help="py-spy executable: profile the server")
    ap.add_argument("--profile-clients", type=int, default=16)
    ap.add_argument("--profile-seconds", type=float, default=12.0)
    ap.add_argument(
        "--noise",
        type=float,
        default=10.0,
        help="repeat a measurement during which other work took more than this %% of the CPUs",
    )
    ap.add_argument("--retries", type=int, default=2, help="repeats per noisy measurement")
    ap.add_argument("--spares", type=int, default=8, help="spare HTTP run pools for repeats")
    ap.add_argument(
        "--wait-idle", type=float, default=120, help="wait up to this many s for a quiet machine"
    )
    ap.add_argument("--db", default="dj_bench_http")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="file to update")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--report-only", action="store_true", help="re-render from the last results")
    args = ap.parse_args(argv)
    if not args.report_only:
        run_bench(args)
    if not args.no_write:
        write_section(Path(args.out), render(load_meta()))
        note(f"updated {args.out}")
