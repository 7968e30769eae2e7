#!/usr/bin/env bash
# The Python bindings (python/): build them into a fresh virtual environment with maturin and run
# pytest. Needs python3 (with venv) and PyPI (maturin, numpy, pytest). Runs after `cargo test
# --workspace`, whose target/debug/remask the cross-checks against `remask inspect masking --json`
# call, and whose compiled dependencies the build reuses (same target directory and profile).
#
# Tests marked `torch` (attention against PyTorch's SDPA, torch tensors, DataLoader workers) are
# deselected here, and said so: PyTorch is a ~5 GB install. Run them where torch is installed:
#   python3 -m venv --system-site-packages .venv && .venv/bin/pip install maturin pytest
#   .venv/bin/maturin develop -m python/Cargo.toml && .venv/bin/pytest python/tests
set -euo pipefail
cd "$(dirname "$0")/.."
command -v python3 >/dev/null || { echo "ci: python3 not found: the Python tests need it" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check maturin numpy pytest
export VIRTUAL_ENV="$work/venv" PATH="$work/venv/bin:$PATH" CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
maturin develop -q -m python/Cargo.toml
n_torch=$(pytest python/tests -q --collect-only -m torch -p no:cacheprovider 2>/dev/null | grep -c '::' || true)
echo "ci: deselecting $n_torch Python tests marked 'torch' (PyTorch is not installed in CI; see .ci/python-tests.sh to run them)"
pytest python/tests -m "not torch" -p no:cacheprovider
