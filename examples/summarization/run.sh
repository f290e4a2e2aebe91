#!/usr/bin/env bash
# summarization recipes: see README.md in this folder. Examples:
#   bash examples/summarization/run.sh cnn_dm --tiny
#   bash examples/summarization/run.sh cnn_dm --raw-dir /path/to/raw --workers 8
exec bash "$(dirname "${BASH_SOURCE[0]}")/../recipe.sh" summarization "$@"
