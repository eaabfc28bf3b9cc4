#!/usr/bin/env bash
# The one install script: every step that puts minivess into a Python environment. The Dockerfile
# runs it (CPU and CUDA images), `make setup` runs it through .ci/bootstrap.sh, SkyPilot node setup
# runs it, and the slow test tests/e2e/test_wheel_install.py runs it on a built wheel in a fresh
# venv, so the image's install is tested where no image can be built.
#
# Steps: (1) a venv, (2) torch pinned to TORCH_VERSION from the variant's index (with pip, so the
# machine's pip configuration applies: a mirror, a local wheel folder), (3) minivess with EXTRAS,
# pinned by CONSTRAINTS (with uv when it can be had: ~1 min with bytecode, where pip takes ~4 min
# for the ~300 packages on 2 cores), (4) a check that the installed torch is the variant asked for.
#
# Environment (all optional):
#   PYTHON         interpreter for the venv (default python3.11, else python3; needs >= 3.11)
#   VENV           venv to create or reuse (default .venv)
#   PACKAGE        what to install: a checkout folder or a built wheel (default: this checkout)
#   EDITABLE       1 = `pip install -e` (default for a checkout), 0 = a regular install
#   EXTRAS         extras to install (default dev; the image uses all; see pyproject.toml)
#   TORCH_VERSION  default 2.13.0
#   TORCH_VARIANT  auto (default: CUDA build when nvidia-smi sees a GPU, else CPU when the PyTorch
#                  CPU index is reachable, else what the configured pip indexes serve),
#                  cpu (the CPU build; verified after install), cuda (PyPI's default CUDA build)
#   TORCH_INDEX    force an index URL for torch (e.g. a mirror of download.pytorch.org/whl/cpu)
#   CONSTRAINTS    pins (default .ci/constraints.txt next to this script; empty = resolve freely)
#   INSTALLER      step (3)'s installer: auto (default: uv from the venv or PATH, else uv pinned by
#                  CONSTRAINTS pip-installed into the venv; pip when uv cannot be had or fails),
#                  uv (uv or fail), pip. uv reads no pip configuration: give a mirror to uv with
#                  its own variables (UV_INDEX_URL, UV_FIND_LINKS), or use INSTALLER=pip.
#   BYTECODE       1 (default): pip and uv write .pyc files at install, so a read-only image does
#                  not compile on every start; 0: neither does (pip --no-compile, uv without
#                  --compile-bytecode), and Python compiles what a process imports when it
#                  imports it. Not PIP_NO_COMPILE: pip reads PIP_NO_COMPILE=1 as "compile".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)

VENV=${VENV:-.venv}
PACKAGE=${PACKAGE:-$root}
EXTRAS=${EXTRAS:-dev}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCH_VARIANT=${TORCH_VARIANT:-auto}
INSTALLER=${INSTALLER:-auto}
BYTECODE=${BYTECODE:-1}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
CONSTRAINTS=${CONSTRAINTS-$here/constraints.txt}
CPU_INDEX=https://download.pytorch.org/whl/cpu
if [ -d "$PACKAGE" ]; then EDITABLE=${EDITABLE:-1}; else EDITABLE=${EDITABLE:-0}; fi

say() { echo "install: $*"; }
# The choices, checked before any work.
case "$TORCH_VARIANT" in
  auto|cpu|cuda) ;;
  *) echo "install: TORCH_VARIANT=$TORCH_VARIANT; use auto, cpu or cuda" >&2; exit 2 ;;
esac
case "$INSTALLER" in
  auto|uv|pip) ;;
  *) echo "install: INSTALLER=$INSTALLER; use auto, uv or pip" >&2; exit 2 ;;
esac
case "$BYTECODE" in
  1) pip_compile=(); uv_compile=(--compile-bytecode) ;;
  0) pip_compile=(--no-compile); uv_compile=() ;;
  *) echo "install: BYTECODE=$BYTECODE; use 1 or 0" >&2; exit 2 ;;
esac

# (1) the venv
"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "minivess needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q "${pip_compile[@]}")

# (2) torch, pinned, from the variant's index
case "$TORCH_VARIANT" in
  cpu)
    say "CPU torch==$TORCH_VERSION from ${TORCH_INDEX:-$CPU_INDEX}"
    torch_args=(--index-url "${TORCH_INDEX:-$CPU_INDEX}" --extra-index-url https://pypi.org/simple)
    ;;
  cuda)
    say "CUDA torch==$TORCH_VERSION from ${TORCH_INDEX:-PyPI}"
    torch_args=(${TORCH_INDEX:+--index-url "$TORCH_INDEX"})
    ;;
  auto)
    if [ -n "${TORCH_INDEX:-}" ]; then
      torch_args=(--index-url "$TORCH_INDEX")
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
      say "NVIDIA GPU found, installing CUDA torch==$TORCH_VERSION"
      torch_args=()
    elif curl -fsS -m 5 -o /dev/null "$CPU_INDEX/" 2>/dev/null; then
      say "no GPU, installing CPU torch==$TORCH_VERSION from the PyTorch CPU index"
      torch_args=(--index-url "$CPU_INDEX" --extra-index-url https://pypi.org/simple)
    else
      say "no GPU, installing torch==$TORCH_VERSION from the configured pip indexes"
      torch_args=()
    fi
    ;;
esac
"${pip[@]}" "${torch_args[@]}" "torch==$TORCH_VERSION"

# (3) minivess with its extras, pinned by the constraints (torch stays what step 2 installed)
if [ "$EDITABLE" = 1 ]; then
  target=(-e "$PACKAGE[$EXTRAS]")
else
  target=("$PACKAGE[$EXTRAS]")
fi
deps=(${CONSTRAINTS:+-c "$CONSTRAINTS"} "${target[@]}" "torch==$TORCH_VERSION")

# uv's path, or nothing: the venv's, PATH's, or uv pip-installed into the venv (pinned).
find_uv() {
  if [ -x "$VENV/bin/uv" ]; then echo "$VENV/bin/uv"; return; fi
  if command -v uv >/dev/null 2>&1; then command -v uv; return; fi
  if "${pip[@]}" ${CONSTRAINTS:+-c "$CONSTRAINTS"} uv >/dev/null 2>&1 && [ -x "$VENV/bin/uv" ]; then
    echo "$VENV/bin/uv"
  fi
}

uv=
[ "$INSTALLER" = pip ] || uv=$(find_uv)
if [ -z "$uv" ] && [ "$INSTALLER" = uv ]; then
  echo "install: INSTALLER=uv, but uv is not on PATH and pip could not install it" >&2
  exit 2
fi
if [ -n "$uv" ]; then
  say "installing minivess[$EXTRAS] with $("$uv" --version)"
  if ! "$uv" pip install -q "${uv_compile[@]}" --python "$VENV/bin/python" "${deps[@]}"; then
    [ "$INSTALLER" = auto ] || exit 1
    say "uv could not install it (above); trying pip"
    uv=
  fi
fi
if [ -z "$uv" ]; then
  say "installing minivess[$EXTRAS] with pip"
  "${pip[@]}" "${deps[@]}"
fi

# (4) the variant really is what was asked for
"$VENV/bin/python" - "$TORCH_VARIANT" <<'PY'
import sys

import torch

variant, cuda = sys.argv[1], torch.version.cuda
if variant == "cpu" and cuda is not None:
    sys.exit(f"install: TORCH_VARIANT=cpu but torch {torch.__version__} is a CUDA {cuda} build")
if variant == "cuda" and cuda is None:
    sys.exit(f"install: TORCH_VARIANT=cuda but torch {torch.__version__} is a CPU build")
print(f"install: torch {torch.__version__} ({'CUDA ' + cuda if cuda else 'CPU'})")
PY
"$VENV/bin/minivess" --help >/dev/null
say "$VENV ready (minivess${EXTRAS:+[$EXTRAS]})"
