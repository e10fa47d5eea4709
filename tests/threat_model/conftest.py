"""Fixtures shared by the threat-model probes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.threat_model.live import Server, serve


@pytest.fixture(scope="module")
def server(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server process on a migrated SQLite file with an organiser of B (see live.py)."""
    yield from serve(sqlite_template, tmp_path_factory.mktemp("live-server"))
