#!/usr/bin/env bash
# Set up and serve the demo: a health bureau's organisation tree, its people and a campaign,
# on the embedded SQLite database (./.data). PORT and HOST change where it listens.
source "$(dirname "$0")/_env.sh"
ensure_venv ""
# Links in the demo's notices point at the address it is served on.
export DANGJIAN_BASE_URL="${DANGJIAN_BASE_URL:-http://127.0.0.1:${PORT:-8000}}"
.venv/bin/dangjian db upgrade
.venv/bin/dangjian demo  # ends with the table of every demo log-in (printed here only)
.venv/bin/dangjian notify send-pending --all >/dev/null  # the demo's notices into the inboxes
# With the worker (a local Prefect server, started and stopped with it: reminders, escalations
# and deliveries run on their own, quietly); DANGJIAN_NO_WORKER=1 serves the API alone;
# DANGJIAN_VERBOSE=1 shows the worker's Prefect log lines.
WORKER_FLAG="--with-worker"
if [ "${DANGJIAN_NO_WORKER:-}" = "1" ]; then WORKER_FLAG=""; fi
if [ "${DANGJIAN_VERBOSE:-}" = "1" ]; then WORKER_FLAG="${WORKER_FLAG} --verbose"; fi
exec .venv/bin/dangjian serve --host "${HOST:-127.0.0.1}" --port "${PORT:-8000}" ${WORKER_FLAG}
