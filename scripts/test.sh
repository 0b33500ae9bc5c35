#!/usr/bin/env bash
# Set up ./.venv (pack, TorchServe, Triton) and run the test suite. Extra arguments go to pytest, e.g.
#   bash scripts/test.sh tests/unit                       # the unit tier (in-process, under 20 s)
#   bash scripts/test.sh tests/integration -m "not slow"  # the CLI, builds and servers, without the big models
# The suite runs in PACK_TEST_WORKERS processes (default 3; pytest-xdist, one test module per worker at a time): most
# of its time is spent waiting on servers: on two cores, 3 workers took 9 min 24 s where 2 took 12 min and 1 took 15.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -n "${PACK_TEST_WORKERS:-3}" --dist loadscope "$@"
