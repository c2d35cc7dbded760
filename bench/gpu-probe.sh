#!/usr/bin/env bash
# The first checks on a real GPU node (issue 17, docs/nvml-real-drivers.md): the NVML probe
# (sampler/examples/gpu_probe.rs) as root, as an ordinary user, and inside a Slurm job as
# that user, one after the other. It prints the process list's entry size and pids, the
# energy counter's step and its agreement with integrated power, the per-process
# utilisation cadence, open latency and permissions, and the MIG handles.
#
#   sudo bench/gpu-probe.sh [USER] [--lib /path/to/libnvidia-ml.so.1]
#
# USER defaults to nobody. The job step needs a Slurm with gres/gpu on this node.
set -euo pipefail
user=${1:-nobody}
shift || true
cd "$(dirname "$0")/.."
target=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
CARGO_TARGET_DIR=$target cargo build --release -q -p aipm-sampler --example gpu_probe
dir=$(mktemp -d /tmp/aipm-gpu-probe.XXXXXX)
trap 'rm -rf "$dir"' EXIT
cp "$target/release/examples/gpu_probe" "$dir/"
chmod 755 "$dir" "$dir/gpu_probe"

echo "== as root"
"$dir/gpu_probe" "$@"
echo "== as $user"
runuser -u "$user" -- "$dir/gpu_probe" "$@" || echo "(failed: $?)"
if command -v srun >/dev/null; then
	echo "== inside a job, as $user (srun --gres=gpu:1)"
	runuser -u "$user" -- srun -n1 --gres=gpu:1 "$dir/gpu_probe" "$@" || echo "(failed: $?)"
fi
