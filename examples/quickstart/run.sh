#!/usr/bin/env bash
# The main job: set up .venv if missing, then train and compare on a built-in toy task.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
# one thread per process: faster for the tiny models on small machines (set it for real runs)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$VENV/bin/python" "$ROOT/examples/quickstart/quickstart.py" "$@"
