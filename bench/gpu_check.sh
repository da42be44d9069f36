#!/usr/bin/env bash
# The CUDA path end to end on a machine with one NVIDIA GPU, one table, under
# 5 minutes (bench/gpu_check.py says what it measures). Needs the CUDA build of
# torch in .venv (README: Using a GPU). Arguments go to gpu_check.py
# (--device cuda:1, --quick, --skip-tests).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="$here/../.venv/bin/python"
[ -x "$python" ] || { echo "gpu_check: no $python: run make venv first" >&2; exit 2; }
exec "$python" "$here/gpu_check.py" "$@"
