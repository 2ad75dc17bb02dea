#!/usr/bin/env bash
# Prepare .whl/ here (with network) for scripts/gpu_check.sh on a GPU machine without one:
# FrEIA and normflows (pure Python: the EOFlow-step and compat comparisons need FrEIA). .whl/ is
# git-ignored; name it in the device tool's carry list.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
mkdir -p .whl
"$PY" -m pip wheel -q --no-deps -w .whl "FrEIA==0.2" "normflows==1.7.3"
ls -la .whl
