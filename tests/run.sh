#!/usr/bin/env bash
# The test command: set up .venv if missing, lint with ruff, then run the whole pytest suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
"$VENV/bin/ruff" check "$ROOT"  # lint (ruff.toml), then the tests
exec "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider --durations=15 "$@"
