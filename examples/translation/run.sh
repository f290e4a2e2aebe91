#!/usr/bin/env bash
# translation recipes: see README.md in this folder. Examples:
#   bash examples/translation/run.sh wmt16_en_de --tiny
#   bash examples/translation/run.sh wmt16_en_de --raw-dir /path/to/raw --workers 8
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
# one thread per process: faster for the tiny models on small machines (set it for real runs)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m memsizer_fairseq.recipes --task translation "$@"
