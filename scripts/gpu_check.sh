#!/usr/bin/env bash
# The one command for a lent GPU: bash scripts/gpu_check.sh --out DIR [--dry-run] [--only a,b]
# Installs wheels carried in .whl/ (no network there; scripts/gpu_wheels.sh prepares them here),
# then runs scripts/gpu_check.py with the machine's python3 (its torch and triton). Never stops at
# the first failure; DIR/summary.md and DIR/<stage>.json say what ran, failed or timed out.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && [[ " $* " == *" --dry-run "* ]]; then PY=.venv/bin/python; fi
if compgen -G ".whl/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/eoflow_site .whl/*.whl \
    && export PYTHONPATH=/tmp/eoflow_site${PYTHONPATH:+:$PYTHONPATH}
fi
exec "$PY" scripts/gpu_check.py "$@"
