#!/usr/bin/env bash
# Build the kernel extension of an earlier commit for side-by-side benchmarks:
#   bash benchmarks/build_baseline.sh ea29cfe     # -> benchmarks/.data/core-ea29cfe.abi3.so
#   .venv/bin/python benchmarks/bench_kernel_only.py --baseline benchmarks/.data/core-ea29cfe.abi3.so
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short "${1:?usage: build_baseline.sh COMMIT}")
out="benchmarks/.data/core-${commit}.abi3.so"
if [ -f "$out" ]; then echo "$out"; exit 0; fi
scratch=$(mktemp -d)
trap 'git worktree remove --force "$scratch/src" >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
git worktree add --detach "$scratch/src" "$commit" >/dev/null
.venv/bin/maturin build --release --quiet -m "$scratch/src/rangebar_core_py/Cargo.toml" -o "$scratch/wheels" >&2
mkdir -p benchmarks/.data
unzip -p "$scratch"/wheels/*.whl 'rangebar_pipeline/_core.abi3.so' > "$out"
echo "$out"
