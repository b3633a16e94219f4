#!/usr/bin/env bash
# The project's whole check: lint, types, Rust tests, Python tests. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/cluster.sh install  # Debian postgresql-15 + redis-server, the [cluster] extra (tests/test_cluster*.py)
export PYO3_PYTHON="$PWD/.venv/bin/python"

echo "== rust: fmt, clippy, tests"
cargo fmt --all --check
cargo clippy --workspace --all-targets --release --quiet -- -D warnings
cargo test -p rangebar_core --release --quiet

echo "== python: ruff, mypy, stubtest, import-linter"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/python -m mypy.stubtest rangebar_pipeline._core
.venv/bin/lint-imports --no-cache  # the layers of docs/architecture.md

echo "== python: tests"
# loadfile: the tests of one module share one worker (the cluster tests share one cluster; xdist's
# loadgroup did not keep the module's xdist_group together here)
.venv/bin/python -m pytest -n 2 --dist loadfile -q "$@"
