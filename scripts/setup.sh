#!/usr/bin/env bash
# Set up a virtual environment in .venv with a CPU build of torch, the package (editable, with its
# C++ extension compiled against the installed torch) and the test and benchmark tools.
# Idempotent: a second run only rebuilds what changed. On a machine with CUDA, use the torch that
# is already installed instead: `pip install -e ".[test,bench]" --no-build-isolation`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" 2>/dev/null; then
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "torch==2.13.0"
fi
"$VPY" -m pip install -q "setuptools>=77" wheel pybind11 ninja
"$VPY" -m pip install -q --no-build-isolation -e ".[test,bench]"
"$VPY" -c "import torch, eoflow_fast.ops._dispatch as d; print('eoflow_fast ready; C++ extension:', 'built' if d.cpp_ops() else d._cpp_error())"
