#!/usr/bin/env bash
# Create .venv and install minivess with its dev extra. Idempotent: a stamp file keyed on the
# pyproject's hash skips the work when nothing changed.
#   - NVIDIA GPU present (nvidia-smi works): the default CUDA build of torch from PyPI.
#   - No GPU: the CPU build of torch (PyTorch's CPU index when reachable, else whatever the
#     configured pip indexes serve for TORCH_VERSION).
# Versions are pinned by .ci/constraints.txt (the lock the suite is tested with, torch aside), which
# also spares pip a long backtracking search; CONSTRAINTS= (empty) resolves from pyproject alone.
# Environment: PYTHON (interpreter, default python3.11 or python3), VENV (default .venv),
#              TORCH_VERSION (default 2.13.0), TORCH_INDEX (force an index URL for torch),
#              CONSTRAINTS (default .ci/constraints.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
STAMP="$VENV/.minivess-installed"
CONSTRAINTS=${CONSTRAINTS-.ci/constraints.txt}
want=$(cat pyproject.toml .ci/bootstrap.sh ${CONSTRAINTS:+"$CONSTRAINTS"} | sha256sum | cut -c1-16)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "minivess needs Python >= 3.11"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)

if [ -n "${TORCH_INDEX:-}" ]; then
  torch_args=(--index-url "$TORCH_INDEX")
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "bootstrap: NVIDIA GPU found, installing CUDA torch==$TORCH_VERSION"
  torch_args=()
elif curl -fsS -m 5 -o /dev/null https://download.pytorch.org/whl/cpu/ 2>/dev/null; then
  echo "bootstrap: no GPU, installing CPU torch==$TORCH_VERSION from the PyTorch CPU index"
  torch_args=(--index-url https://download.pytorch.org/whl/cpu --extra-index-url https://pypi.org/simple)
else
  echo "bootstrap: no GPU, installing torch==$TORCH_VERSION from the configured pip indexes"
  torch_args=()
fi
"${pip[@]}" "${torch_args[@]}" "torch==$TORCH_VERSION"
"${pip[@]}" ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e '.[dev]' "torch==$TORCH_VERSION"
echo "$want" > "$STAMP"
echo "bootstrap: $VENV ready"
