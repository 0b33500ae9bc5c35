#!/usr/bin/env bash
# Quick start: set up ./.venv and build the default built-in model (yolov8n), printing the summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pack build "${1:-yolov8n}" --force
