#!/usr/bin/env bash
# Build everything and run every test: unit and property tests, then the end-to-end tests,
# which start a real single-node Slurm (tests/slurm/cluster.sh) with the freshly built plugin.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
export CARGO_TERM_COLOR=never
scripts/deps.sh
trap 'tests/slurm/cluster.sh stop >/dev/null 2>&1 || true' EXIT
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo build --workspace --all-targets
log=$(mktemp)
status=0
cargo test --workspace --no-fail-fast -- --test-threads=4 2>&1 | tee "$log" || status=$?
echo "test.sh: done in $(( SECONDS - started ))s"
# One closing line for the whole run (cargo prints one per test binary, doc-tests last).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
	END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
