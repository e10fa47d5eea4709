"""Timed work: Prefect flows (`flows`), their Prefect-free jobs (`jobs`), deployments (`deploy`)
and a managed local Prefect server (`local_server`).

Importing the package fills in Prefect's defaults (analytics and telemetry off; see `settings`)
before any of its modules imports Prefect; settings already in the environment win.
"""

from workflows.settings import apply_defaults

apply_defaults()
