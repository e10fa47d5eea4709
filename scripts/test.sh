#!/usr/bin/env bash
# Set up and run every check: ruff, mypy, and the tests on SQLite and PostgreSQL.
# PostgreSQL: TEST_DATABASE_URL, else 127.0.0.1:5432 (user postgres), else a throwaway cluster
# started from the PostgreSQL binaries on this machine; the run fails if none works.
# The browser tests need Chromium and a CJK font: installed here when missing (Debian, as root or
# with password-less sudo); otherwise one line says how, and the run fails
# (DANGJIAN_NO_BROWSER=1 runs without them: the browser tests then skip, or fail under CI).
source "$(dirname "$0")/_env.sh"
ensure_venv "dev"
ensure_browser
echo "== ruff check"; .venv/bin/ruff check .
echo "== ruff format --check"; .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
# Two processes (one per core here), a test file to a process: DANGJIAN_TEST_WORKERS=0 runs in one.
echo "== pytest (SQLite + PostgreSQL, ${DANGJIAN_TEST_WORKERS:-auto} workers)"
.venv/bin/pytest -n "${DANGJIAN_TEST_WORKERS:-auto}" --dist loadfile "$@"
