#!/usr/bin/env bash
# Set up everything pack needs in ./.venv (idempotent): Python packages, then each server's setup script.
# Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.pack-setup-$(cat setup.cfg constraints.txt scripts/setup*.sh | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing pack and its dependencies into $VENV (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  # torch/torchvision first, at the releases constraints.txt pins; every install after it keeps them
  "$VENV/bin/python" -m pip install -q -c constraints.txt torch torchvision >&2
  "$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[all]' >&2
  for extra in scripts/setup-*.sh; do
    [ -f "$extra" ] && bash "$extra" >&2
  done
  rm -f "$VENV"/.pack-setup-*
  touch "$stamp"
fi
# Byte-compile pack's own modules: an editable install has no .pyc files, and where PYTHONDONTWRITEBYTECODE is set
# every command would compile them again (a tenth of a second of each `pack` command). Stale ones are rewritten.
"$VENV/bin/python" -m compileall -q packager handlers >&2
