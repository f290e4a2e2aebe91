#!/usr/bin/env bash
# translation recipes: see README.md in this folder. Examples:
#   bash examples/translation/run.sh wmt16_en_de --tiny
#   bash examples/translation/run.sh wmt16_en_de --raw-dir /path/to/raw --workers 8
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe.sh" translation "$@"
