"""Prefect defaults, applied to the environment before Prefect is imported.

Prefect reads its settings from the environment when it is first imported, so every entry point
that starts Prefect (the `dangjian worker`/`sweep --via-prefect`/`deploy` commands, the managed
local server, `workflows.deploy`) calls `apply_defaults()` first. Only unset variables are
filled in: an operator's own `PREFECT_*` settings always win.

- Analytics and telemetry off: the server's analytics heartbeat also causes "database is locked"
  errors on SQLite; `DO_NOT_TRACK=1` is the general opt-out.
- No per-run resource metrics events (they only add writes to Prefect's database).
- The application's own loggers (`states`, `workflows`, `notifications`) go to Prefect's UI too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

#: Filled in when unset, in every process that may import Prefect.
DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
    "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
    "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "states,workflows,notifications",
    # A flow that logs outside a run (e.g. the direct jobs) should not warn about it.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}

#: Extra defaults for a Prefect *server* we start: keep its database from growing without end
#: (the delivery flow runs every 30 s); schedule at most 10 runs ahead per deployment, so that
#: after the worker was stopped a while only a few late runs pile up (CANCEL_NEW cancels them
#: all at once, a burst of writes SQLite answers with "database is locked"); never prompt.
SERVER_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "10",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
    "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(14 * 24 * 3600),
    "PREFECT_CLI_PROMPT": "false",
}


def apply_defaults(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Fill in the Prefect defaults that are not set (in `os.environ` unless `env` is given)."""
    target: MutableMapping[str, str] = os.environ if env is None else env
    for key, value in DEFAULTS.items():
        target.setdefault(key, value)
    return target


def server_env(
    home: Path, host: str, port: int, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a managed local Prefect server: SQLite under `home`, analytics off."""
    env = dict(os.environ if base is None else base)
    env.pop("PREFECT_API_URL", None)  # the server must not try to talk to another server
    apply_defaults(env)
    for key, value in SERVER_DEFAULTS.items():
        env.setdefault(key, value)
    home = home.resolve()
    env["PREFECT_HOME"] = str(home)
    env["PREFECT_SERVER_API_HOST"] = host
    env["PREFECT_SERVER_API_PORT"] = str(port)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env.setdefault(
        "PREFECT_SERVER_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{home / 'prefect.db'}"
    )
    return env


def prefect_imported() -> bool:
    """Whether Prefect is already imported (then environment changes come too late)."""
    import sys

    return "prefect" in sys.modules
