#!/usr/bin/env bash
# summarization recipes: see README.md in this folder. Examples:
#   bash examples/summarization/run.sh cnn_dm --tiny
#   bash examples/summarization/run.sh cnn_dm --raw-dir /path/to/raw --workers 8
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
# one thread per process: faster for the tiny models on small machines (set it for real runs)
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m memsizer_fairseq.recipes --task summarization "$@"
