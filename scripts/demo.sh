#!/usr/bin/env bash
# The main job on the embedded default: install, then build range bars from the shared real trades.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/python examples/pipeline_demo.py "$@"
