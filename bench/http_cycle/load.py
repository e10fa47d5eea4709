"""The timed part over HTTP: concurrent clients driving advance → approve cycles, and their tallies."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.common import median
from bench.http_cycle.constants import API
from bench.http_cycle.cpu import Meter, _proc_table, cpu_split
from bench.http_cycle.server import Server
from bench.http_cycle.wire import Response, TransportError, Wire
from bench.http_cycle.world import Target


@dataclass
class Tally:
    """What one client saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful calls
    by_call: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cycles: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    end: float = 0.0
    exhausted: bool = False


def _slices(targets: Sequence[Target], clients: int) -> list[list[Target]]:
    return [list(targets[k::clients]) for k in range(clients)]


async def _http_user(
    client: Wire, targets: Sequence[Target], deadline: float, tally: Tally
) -> None:
    clock = time.perf_counter

    async def call(kind: str, path: str, token: str, expect: int) -> Response | None:
        t0 = clock()
        try:
            r = await client.request("POST", path, {"Authorization": f"Bearer {token}"}, b"{}")
        except TransportError as exc:
            tally.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        if r.status_code != expect:
            tally.errors[f"{kind}: HTTP {r.status_code}"] += 1
            return None
        dt = clock() - t0
        tally.latencies.append(dt)
        tally.by_call[kind].append(dt)
        return r

    for t in targets:
        if clock() >= deadline:
            break
        r = await call("request", f"{API}/runs/{t.run_id}/requests", t.sec_token, 201)
        if r is None:
            continue
        rid = r.json()["id"]
        if await call("approve", f"{API}/requests/{rid}/approve", t.com_token, 200):
            tally.cycles += 1
    else:
        tally.exhausted = True
    tally.end = clock()


async def _drive_http(
    base: str, slices: Sequence[Sequence[Target]], seconds: float, meter: Meter
) -> tuple[float, list[Tally], dict[str, int], dict[str, int]]:
    url = urlsplit(base)
    clients = [Wire(url.hostname or "127.0.0.1", url.port or 80) for _ in slices]
    try:
        await asyncio.gather(*(c.request("GET", "/healthz") for c in clients))  # connected
        tallies = [Tally() for _ in slices]
        before = meter.snap()
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _http_user(c, s, start + seconds, t)
                for c, s, t in zip(clients, slices, tallies, strict=True)
            )
        )
        after = meter.snap()
        return start, tallies, before, after
    finally:
        await asyncio.gather(*(c.close() for c in clients))


def healthz_ms(base: str, n: int = 50) -> float:
    """Median latency of `GET /healthz` on one keep-alive connection, in ms."""
    lat = []
    with httpx.Client(base_url=base, trust_env=False) as c:
        c.get("/healthz")
        for _ in range(n):
            t0 = time.perf_counter()
            c.get("/healthz").raise_for_status()
            lat.append(time.perf_counter() - t0)
    return round(1000 * median(lat), 2)


def measure_http(
    server: Server, targets: Sequence[Target], clients: int, seconds: float, meter: Meter
) -> dict[str, Any]:
    pids = server.worker_pids()
    t0 = _proc_table()
    start, tallies, before, after = asyncio.run(
        _drive_http(server.base, _slices(targets, clients), seconds, meter)
    )
    t1 = _proc_table()
    row = _result(start, tallies, before, after)
    if len(pids) > 1:  # how the server's CPU spread over its worker processes, busiest first
        used = [t1[p].ticks - t0[p].ticks for p in pids if p in t0 and p in t1]
        row["worker_shares"] = sorted(
            (round(100 * u / max(sum(used), 1)) for u in used), reverse=True
        )
    return row


def _pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return 1000 * ordered[k]


def _result(
    start: float, tallies: Sequence[Tally], before: dict[str, int], after: dict[str, int]
) -> dict[str, Any]:
    lat = [x for t in tallies for x in t.latencies]
    seconds = max(t.end for t in tallies) - start
    errors: Counter[str] = Counter()
    by_call: dict[str, list[float]] = defaultdict(list)
    for t in tallies:
        errors.update(t.errors)
        for k, v in t.by_call.items():
            by_call[k].extend(v)
    return {
        "calls": len(lat),
        "cycles": sum(t.cycles for t in tallies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "seconds": round(seconds, 3),
        "calls_per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(_pct(lat, 0.50), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "max_ms": round(1000 * max(lat, default=0), 1),
        "p50_by_call_ms": {k: round(_pct(v, 0.5), 2) for k, v in sorted(by_call.items())},
        "p99_by_call_ms": {k: round(_pct(v, 0.99), 2) for k, v in sorted(by_call.items())},
        "pool_exhausted": any(t.exhausted for t in tallies),
        "cpu": cpu_split(before, after, len(lat)),
    }
