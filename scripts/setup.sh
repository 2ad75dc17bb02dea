#!/usr/bin/env bash
# Set up a virtual environment in .venv with a CPU build of torch, the package (editable, with its
# C++ extension compiled against the installed torch) and the test and benchmark tools.
# Idempotent: a second run reinstalls only when the build inputs (setup.py, pyproject.toml,
# csrc/*) or torch changed since the last build (a stamp in .venv/ records them); otherwise it
# only checks that the package imports. On a machine with CUDA, use the torch that is already
# installed instead: `pip install -e ".[test,bench]" --no-build-isolation`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch 2.13.0 (CPU build) into .venv ..."
  "$VPY" -m pip install -q --upgrade pip
  "$VPY" -m pip install -q "torch==2.13.0"
fi
STAMP=.venv/.eoflow_fast_build
want=$( { "$VPY" -c "import torch; print(torch.__version__)"; echo "EOFLOW_FAST_NO_EXT=${EOFLOW_FAST_NO_EXT:-}";
          cat setup.py pyproject.toml csrc/*; } | sha256sum | cut -d' ' -f1)
probe="import eoflow_fast"; [ "${EOFLOW_FAST_NO_EXT:-}" = "1" ] || probe="import torch, eoflow_fast._C"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VPY" -c "$probe" 2>/dev/null; then
  echo "setup: build inputs unchanged since the last build; nothing to reinstall"
else
  "$VPY" -m pip install -q "setuptools>=77" wheel pybind11 ninja
  if [ "${EOFLOW_FAST_NO_EXT:-}" = "1" ]; then
    echo "setup: installing eoflow_fast without the C++ extension (EOFLOW_FAST_NO_EXT=1) ..."
  else
    n=$(ls csrc/*.cpp | wc -l)
    echo "setup: installing eoflow_fast and compiling its C++ extension ($n files in csrc/;" \
         "about 1 min per file on one core, 2-4 min in all on 2 cores; MAX_JOBS=N limits parallel compilers) ..."
  fi
  t0=$(date +%s)
  "$VPY" -m pip install -q --no-build-isolation -e ".[test,bench]"
  echo "setup: installed in $(( $(date +%s) - t0 )) s"
  echo "$want" > "$STAMP"
fi
"$VPY" -c "import torch, eoflow_fast.ops._dispatch as d; print('eoflow_fast ready; C++ extension:', 'built' if d.cpp_ops() else d._cpp_error())"
