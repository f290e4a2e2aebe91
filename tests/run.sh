#!/usr/bin/env bash
# The test command: set up .venv if missing, lint with ruff, then run the whole pytest suite.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
cd "$ROOT"
# two pytest workers (pytest-xdist), a test file each at a time, one thread each
WORKERS="${MEMSIZER_TEST_WORKERS:-2}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
"$VENV/bin/ruff" check "$ROOT"  # lint (ruff.toml), then the tests
exec "$VENV/bin/python" -m pytest tests -q -p no:cacheprovider --durations=15 \
    -n "$WORKERS" --dist loadfile "$@"
