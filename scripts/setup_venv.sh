#!/usr/bin/env bash
# Create the project's virtual environment in .venv/ (or $MEMSIZER_VENV) when it is missing or
# out of date, with every version pinned; reuse it otherwise. Prints the venv's path.
#
#   MEMSIZER_TORCH   torch requirement (default: torch==2.13.0, whose CPU wheel this machine
#                    kind has on disk; on a GPU machine install your CUDA torch first and set
#                    MEMSIZER_TORCH=skip, see README).
#   PYTHON           interpreter to build the venv from (default: python3, 3.10 or 3.11).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEMSIZER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${MEMSIZER_TORCH:-torch==2.13.0}"
FAIRSEQ_SPEC="fairseq-fixed==0.12.3.1"
STAMP="$VENV/.memsizer-setup"
WANT="$(cat "$ROOT/requirements/base.txt" "$ROOT/scripts/setup_venv.sh" | sha256sum | cut -c1-16) $TORCH_SPEC"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "$VENV"
    exit 0
fi

log() { echo "[setup] $*" >&2; }
log "creating virtual environment in $VENV (about 5 minutes on 2 cores)"
"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 9), "Python >= 3.9 is needed"' >&2
"$PYTHON" -m venv "$VENV" >&2
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip==24.3.1" >&2
if [ "$TORCH_SPEC" != "skip" ]; then
    # Installed alone and pinned, so nothing later can swap in a CUDA build.
    log "installing $TORCH_SPEC"
    "${PIP[@]}" install -q "$TORCH_SPEC" >&2
fi
log "installing pinned dependencies"
"${PIP[@]}" install -q -r "$ROOT/requirements/base.txt" >&2
# fairseq declares torchaudio (which would pull a CUDA torch) and an old omegaconf pin: install
# it without its dependencies, after the ones it really needs (requirements/base.txt).
log "building $FAIRSEQ_SPEC (about 3 minutes)"
"${PIP[@]}" install -q --no-build-isolation --no-deps "$FAIRSEQ_SPEC" >&2
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT" >&2
"$VENV/bin/python" -c 'import torch, fairseq, memsizer_fairseq' >&2
echo "$WANT" > "$STAMP"
log "ready: $VENV"
echo "$VENV"
