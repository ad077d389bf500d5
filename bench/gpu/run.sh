#!/usr/bin/env bash
# One phase of the GPU programme per device job (bench/gpu/README.md):
#   bash bench/gpu/run.sh bench | data N | train [--dry-run] [--budget S] ...
# Installs the carried wheels (gpu-pack/wheels, from `make gpu-pack`) once per machine into
# $ARCHC_GPU_HOME/site (ARCHC_GPU_NO_WHEELS=1 skips that: make gpu-dry-run), then runs bench/gpu/run.py, whose last line is one JSON summary.
set -u
cd "$(dirname "$0")/../.."
export ARCHC_GPU_HOME="${ARCHC_GPU_HOME:-/tmp/archc-gpu}" PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
site="$ARCHC_GPU_HOME/site"
if [ -z "${ARCHC_GPU_NO_WHEELS:-}" ] && ls gpu-pack/wheels/*.whl >/dev/null 2>&1 && [ ! -f "$site/.installed" ]; then
  mkdir -p "$site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" gpu-pack/wheels/*.whl \
    && touch "$site/.installed" || echo "run.sh: installing gpu-pack/wheels failed; continuing without them" >&2
fi
[ -d "$site" ] && export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" bench/gpu/run.py "$@"
