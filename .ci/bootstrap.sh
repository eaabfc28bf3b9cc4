#!/usr/bin/env bash
# `make setup`: create .venv with minivess installed editable with its dev extra (everything), by
# running the one install script, .ci/install.sh (which the Dockerfile and CI also run).
# Idempotent: a stamp file keyed on the pyproject's, the scripts' and the constraints' hash skips
# the work when nothing changed.
# Environment: PYTHON (interpreter, default python3.11 or python3), VENV (default .venv), and
# everything .ci/install.sh reads (TORCH_VERSION, TORCH_VARIANT, TORCH_INDEX, CONSTRAINTS, EXTRAS).
# `bootstrap.sh --print-stamp` prints the stamp this checkout wants and exits (the rehearsal's
# --reuse-venv asks it, so the formula lives only here).
set -euo pipefail
cd "$(dirname "$0")/.."

export VENV=${VENV:-.venv}
export EXTRAS=${EXTRAS:-dev}
CONSTRAINTS=${CONSTRAINTS-.ci/constraints.txt}
export CONSTRAINTS
STAMP="$VENV/.minivess-installed"
want=$( (cat pyproject.toml setup.py .ci/bootstrap.sh .ci/install.sh ${CONSTRAINTS:+"$CONSTRAINTS"}; echo "$EXTRAS") \
  | sha256sum | cut -c1-16)

if [ "${1:-}" = "--print-stamp" ]; then
  echo "$want"
  exit 0
fi
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  exit 0
fi
PACKAGE="$PWD" EDITABLE=1 bash .ci/install.sh
echo "$want" > "$STAMP"
echo "bootstrap: $VENV ready"
