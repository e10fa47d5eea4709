#!/bin/bash
# Survey answer posts, before and after, with the raw_sql baseline around each (one invocation):
#   bench/survey_compare.sh BEFORE_COMMIT
# Needs the baselines' venv (/tmp/baseline-venv, see ../shared/baselines/README.md) and a
# database baseline_raw_sql. The older commit is checked out in a throwaway worktree and run
# with this checkout's .venv.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
before=${1:?usage: bench/survey_compare.sh BEFORE_COMMIT}
dsn="host=127.0.0.1 port=5432 user=postgres dbname=baseline_raw_sql"
wt=$(mktemp -d)/before
git -C "$here" worktree add -q --detach "$wt" "$before"
trap 'git -C "$here" worktree remove --force "$wt"' EXIT
raw() { BASELINE_DSN="$dsn" /tmp/baseline-venv/bin/python "$here/../shared/baselines/raw_sql.py" --n 1500 --conns 4; }
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg)"
for tree in "$wt" "$here"; do
  raw
  echo "== survey posts on $(git -C "$tree" rev-parse --short HEAD)"
  (cd "$tree" && PYTHONPATH="$tree" "$here/.venv/bin/python" -m bench.survey --posts 2000 \
    --rounds 3 --clients 16 --workers 2 2>&1 | grep -o '"median": {[^}]*}')
done
raw
