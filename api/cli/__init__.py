"""The `dangjian` command line, one module per command group (see `api.cli.base` for the root).

Importing this package registers every group on `main`.
"""

from __future__ import annotations

from api.cli import (  # noqa: F401  (each module registers its commands on `main`)
    audit,
    campaigns,
    db,
    demo,
    members,
    notify,
    orgs,
    serve,
    templates,
    timed,
    users,
)
from api.cli.base import main

__all__ = ["main"]
