#!/usr/bin/env bash
# Set up ./.venv (pack, TorchServe, Triton) and run the test suite. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh tests/unit                       # the unit tier (in-process, under 30 s)
#   bash scripts/test.sh tests/integration -m "not slow"  # the CLI, builds and servers, without the big models
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"
