#!/usr/bin/env bash
# Runs a recipe of one task: bash examples/recipe.sh TASK [RECIPE] (--tiny | --raw-dir DIR) ...
# (examples/<task>/run.sh call it). Sets up .venv when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
# one thread per process: faster for the tiny models on small machines (set it for real runs)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
TASK="$1"
shift
exec "$VENV/bin/python" -m memsizer_fairseq.tools.recipes --task "$TASK" "$@"
