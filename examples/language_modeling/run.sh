#!/usr/bin/env bash
# language_modeling recipes: see README.md in this folder. Examples:
#   bash examples/language_modeling/run.sh --tiny
#   bash examples/language_modeling/run.sh --raw-dir /path/to/raw --workers 8
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe.sh" language_modeling "$@"
