#!/usr/bin/env bash
# Prepare .whl/ (git-ignored) with the packages the GPU machine lacks, for scripts/gpu_check.sh to
# install offline (pip --no-index --target /tmp/site). Today: FrEIA 0.2, a pure-Python sdist, built
# into a py3 wheel here; its needs (numpy, scipy, torch) are on the GPU machine already.
# Carry it with the call: run(carry=[".whl"], command="scripts/gpu_check.sh --out $OUT").
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && PY=.venv/bin/python
mkdir -p .whl
"$PY" -m pip wheel -q --no-deps FrEIA==0.2 -w .whl
ls -l .whl
