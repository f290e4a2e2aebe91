#!/usr/bin/env bash
# Install memsizer-fairseq into an environment that already has torch (CPU or CUDA build), without
# replacing or upgrading that torch:
#
#   bash scripts/install_plugin.sh [PYTHON]      (default: python on PATH)
#
# 1. the pinned needs of the plugin, of fairseq and of the tools (requirements/plugin.txt,
#    requirements/tools.txt), under a constraint that keeps the installed torch;
# 2. fairseq-fixed==0.12.3.1, built without build isolation and without its declared
#    dependencies (they pull torchaudio and a CUDA torch);
# 3. the plugin from this checkout, editable (pip install -e): the checkout stays the plugin's
#    source, and --user-dir may name its memsizer_fairseq folder;
# then checks that torch, fairseq and memsizer_fairseq import and that torch is the same one.
# fla-core's kernels (the "cuda" extra) are not installed: add them with
#   PYTHON -m pip install fla-core==0.5.2 einops==0.8.2
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${1:-python}"
FAIRSEQ_SPEC="fairseq-fixed==0.12.3.1"

die() { echo "install_plugin.sh: $*" >&2; exit 1; }
log() { echo "[install_plugin] $*" >&2; }
TORCH_PROBE='import torch; from importlib.metadata import version; print(version("torch"), torch.__file__)'

# the interpreter's own path, so that the checks below can run away from the checkout
PY="$("$PY" -c 'import sys; print(sys.executable)' 2>/dev/null)" \
    || die "cannot run ${1:-python} (pass the interpreter: bash scripts/install_plugin.sh PYTHON)"
cd /  # neither this checkout nor the caller's folder may stand in for an installed package
"$PY" -c 'import torch' >/dev/null 2>&1 \
    || die "torch is not importable with $PY: install your torch (CPU or CUDA build) first, then rerun"
TORCH_BEFORE="$("$PY" -c "$TORCH_PROBE" 2>/dev/null)" \
    || die "torch imports with $PY but pip does not see it installed (no distribution metadata)"
"$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PY"
TORCH_VERSION="${TORCH_BEFORE%% *}"

CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINTS"
PIP=("$PY" -m pip --disable-pip-version-check install -q -c "$CONSTRAINTS")

log "keeping torch==$TORCH_VERSION; installing the pinned requirements"
"${PIP[@]}" -r "$ROOT/requirements/plugin.txt" -r "$ROOT/requirements/tools.txt" >&2
log "installing $FAIRSEQ_SPEC (a build of about 3 minutes unless pip has its wheel cached)"
"${PIP[@]}" --no-build-isolation --no-deps "$FAIRSEQ_SPEC" >&2
log "installing the plugin (editable) from $ROOT"
"${PIP[@]}" --no-build-isolation --no-deps -e "$ROOT" >&2

"$PY" -c 'import torch, fairseq, memsizer_fairseq' >&2 || die "the installed packages do not import"
TORCH_AFTER="$("$PY" -c "$TORCH_PROBE" 2>/dev/null)"
[ "$TORCH_AFTER" = "$TORCH_BEFORE" ] \
    || die "torch changed: was $TORCH_BEFORE, is now $TORCH_AFTER"
log "ready: torch $TORCH_VERSION (unchanged), fairseq, memsizer_fairseq"
