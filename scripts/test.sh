#!/usr/bin/env bash
# The project's whole check: lint, types, Rust tests, Python tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PYO3_PYTHON="$PWD/.venv/bin/python"

echo "== rust: fmt, clippy, tests"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release --quiet -- -D warnings
cargo test -p rangebar_core --release --quiet

echo "== python: ruff, mypy, stubtest"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m mypy.stubtest rangebar_pipeline._core

echo "== python: tests"
.venv/bin/python -m pytest -n 2 -q "$@"
