#!/usr/bin/env bash
# cim-dse's one entry point: sets up .venv (reused; reinstalls only when pyproject.toml or this
# file changed), then runs the main job (default), the test suite (`test`), or any cim-dse command.
#   ./run.sh                 main job
#   ./run.sh test [ARGS]     pytest (ARGS go to pytest)
#   ./run.sh COMMAND ...     cim-dse COMMAND ... (e.g. ./run.sh workload workloads/digits_cnn.onnx)
set -euo pipefail
cd "$(dirname "$0")"

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || {
    echo "run.sh: cim-dse needs Python >= 3.10 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
  }
  "$PY" -m venv .venv
fi

stamp=.venv/.cim-dse-installed
want=$(cat pyproject.toml run.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "run.sh: installing cim-dse and its dependencies into .venv ..." >&2
  # torch first and pinned: the local CPU wheel. pyproject's loose range is then already met,
  # so pip pulls no other torch build (and none of the CUDA packages).
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi

cmd=${1:-main}
[ $# -gt 0 ] && shift
case "$cmd" in
  test) exec .venv/bin/python -m pytest "$@" ;;
  main) exec .venv/bin/cim-dse explore spaces/demo.yaml "$@" ;;
  *)    exec .venv/bin/cim-dse "$cmd" "$@" ;;
esac
