#!/usr/bin/env bash
# The GPU check in one command (see scripts/gpu_check.py for the stages, budgets and outputs):
#   scripts/gpu_check.sh --out DIR            on the GPU machine, ~8 minutes
#   scripts/gpu_check.sh --out DIR --dry-run  on a CPU (CI), about a minute
# Python: $PYTHON, else the checkout's .venv, else the GPU machine's /opt/torch/.venv, else python3.
set -u
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for candidate in .venv/bin/python /opt/torch/.venv/bin/python3 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
  done
fi
export PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_check.py "$@"
