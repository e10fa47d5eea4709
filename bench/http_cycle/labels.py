"""How server variants and figures are named in BENCHMARKS.md."""

from __future__ import annotations

LABELS = {
    "+nodelay": " + TCP_NODELAY fix",
    "+reuseport": ", SO_REUSEPORT",
    "+serve": ", `dangjian serve`",
}


def _wl(spec: str | None) -> str:
    """A table label for a server spec: "1", "2", "2, SO_REUSEPORT", "2 + TCP_NODELAY fix"."""
    if not spec:
        return "–"
    for suffix, label in LABELS.items():
        spec = spec.replace(suffix, label)
    return spec


def _who(spec: str | None) -> str:
    """The same in prose: "1 worker", "2 workers", "2 processes on SO_REUSEPORT"."""
    if not spec:
        return "the SQL baseline"
    n = int(spec.split("+")[0])
    if spec.endswith("+reuseport"):
        return f"{n} processes on SO_REUSEPORT"
    if spec.endswith("+serve"):
        return f"`dangjian serve --workers {n}`"
    words = f"{n} worker" + ("s" if n > 1 else "")
    return words + (" + TCP_NODELAY fix" if spec.endswith("+nodelay") else "")


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"
