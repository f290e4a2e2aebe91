#!/usr/bin/env bash
# Memsizer against the Transformer, side by side (see README.md in this folder). Examples:
#   bash examples/compare/run.sh --budget tiny               # minutes, synthetic corpora
#   bash examples/compare/run.sh --budget small --seeds 1 2  # d 128, minutes a run
#   bash examples/compare/run.sh --uptrain translation      # ../shared/data, as in the README
#   bash examples/compare/run.sh --tasks translation --raw-dir /path/to/raw
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$(bash "$ROOT/scripts/setup_venv.sh")"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$VENV/bin/python" -m memsizer_fairseq.tools.compare "$@"
