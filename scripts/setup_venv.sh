#!/usr/bin/env bash
# Create the project's virtual environment in .venv/ (or $MEMSIZER_VENV) when it is missing or
# out of date, with every version pinned; reuse it otherwise. Prints the venv's path.
#
#   MEMSIZER_TORCH   torch requirement (default: torch==2.13.0+cpu, whose wheel this machine kind
#                    has on disk for Python 3.11). It must resolve to a CPU build (+cpu): the
#                    script refuses rather than fetch a multi-GB CUDA one. On a GPU machine install
#                    your CUDA torch into the venv first and set MEMSIZER_TORCH=skip (README), or
#                    use scripts/install_plugin.sh in your own environment.
#   PYTHON           interpreter to build the venv from (default: python3; with the default torch,
#                    one of $CPU_TORCH_PYTHONS below).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEMSIZER_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
DEFAULT_TORCH="torch==2.13.0+cpu"
CPU_TORCH_PYTHONS="3.11"  # the Pythons with a CPU wheel of $DEFAULT_TORCH at hand (cp311 only)
TORCH_SPEC="${MEMSIZER_TORCH:-$DEFAULT_TORCH}"
FAIRSEQ_SPEC="fairseq-fixed==0.12.3.1"
STAMP="$VENV/.memsizer-setup"
# requirements/base.txt includes the other files of requirements/; the editable install reads
# pyproject.toml
WANT="$(cat "$ROOT"/requirements/*.txt "$ROOT/pyproject.toml" "$ROOT/scripts/setup_venv.sh" \
    | sha256sum | cut -c1-16) $TORCH_SPEC"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "$VENV"
    exit 0
fi

die() { echo "setup_venv.sh: $*" >&2; exit 1; }
# Before anything is created: an interpreter the pinned CPU torch has no wheel for would make pip
# fall back to a CUDA build of several GB.
PY_VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" \
    || die "cannot run PYTHON=$PYTHON"
if [ "$TORCH_SPEC" = "$DEFAULT_TORCH" ] && [[ " $CPU_TORCH_PYTHONS " != *" $PY_VERSION "* ]]; then
    die "Python $PY_VERSION ($PYTHON) is not supported: $DEFAULT_TORCH has a CPU wheel for" \
        "Python $CPU_TORCH_PYTHONS only; set PYTHON=python$CPU_TORCH_PYTHONS (or install your own" \
        "torch and run scripts/install_plugin.sh)"
fi

log() { echo "[setup] $*" >&2; }
log "creating virtual environment in $VENV (about 5 minutes on 2 cores)"
"$PYTHON" -m venv "$VENV" >&2
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip==24.3.1" >&2
if [ "$TORCH_SPEC" != "skip" ]; then
    # Resolved first without downloading anything: only a CPU build (+cpu) is installed, pinned
    # exactly and alone, so nothing later can swap in a CUDA build.
    TORCH_VERSION="$("${PIP[@]}" install -q --dry-run --no-deps --ignore-installed \
        --only-binary=:all: --report - "$TORCH_SPEC" 2>/dev/null | "$VENV/bin/python" -c \
        'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])')" \
        || die "no wheel of $TORCH_SPEC for Python $PY_VERSION is at hand"
    case "$TORCH_VERSION" in
        *+cpu) ;;
        *) die "$TORCH_SPEC resolves to torch $TORCH_VERSION, not a CPU build (+cpu); refusing" \
               "to fetch it (for a CUDA torch install it yourself and set MEMSIZER_TORCH=skip)" ;;
    esac
    log "installing torch==$TORCH_VERSION"
    "${PIP[@]}" install -q --only-binary=:all: "torch==$TORCH_VERSION" >&2
    "$VENV/bin/python" -c 'import torch; assert torch.version.cuda is None, torch.version.cuda' >&2
fi
# whatever torch the venv now has stays: a constraint for everything installed after it
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"$VENV/bin/python" -c 'from importlib.metadata import version; print("torch==" + version("torch"))' \
    > "$CONSTRAINTS" 2>/dev/null || : > "$CONSTRAINTS"
log "installing pinned dependencies"
"${PIP[@]}" install -q -c "$CONSTRAINTS" -r "$ROOT/requirements/base.txt" >&2
# fairseq declares torchaudio (which would pull a CUDA torch) and an old omegaconf pin: install
# it without its dependencies, after the ones it really needs (requirements/plugin.txt).
log "building $FAIRSEQ_SPEC (about 3 minutes)"
"${PIP[@]}" install -q --no-build-isolation --no-deps "$FAIRSEQ_SPEC" >&2
# the plugin, editable, through pyproject.toml (PEP 660)
"${PIP[@]}" install -q --no-build-isolation --no-deps -e "$ROOT" >&2
"$VENV/bin/python" -c 'import torch, fairseq, memsizer_fairseq, tensorboardX' >&2
echo "$WANT" > "$STAMP"
log "ready: $VENV"
echo "$VENV"
