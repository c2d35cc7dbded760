#!/usr/bin/env bash
# Build everything and run every test: unit and property tests, then the end-to-end tests,
# which start a real single-node Slurm (tests/slurm/cluster.sh) with the freshly built plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
export CARGO_TERM_COLOR=never
scripts/deps.sh
trap 'tests/slurm/cluster.sh stop >/dev/null 2>&1 || true' EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
cargo test --workspace -- --test-threads=4
