#!/usr/bin/env bash
# The main job: set up .venv if missing, then train and compare on a built-in toy task.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
exec "$VENV/bin/python" "$ROOT/examples/quickstart/quickstart.py" "$@"
