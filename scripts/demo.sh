#!/usr/bin/env bash
# The whole path once, on this machine: build aipm, start a local single-node Slurm with the
# plugin, a simulated RAPL node (40 W package, 6 W DRAM) and two simulated GPUs (a stand-in
# NVML library; GPU 0 draws 300 W), submit a demo job with --energy-profile and one GPU,
# and print its report.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
scripts/deps.sh
cargo build --workspace
# The admin's default period on the demo node is 250 ms: the job below asks with the bare
# flag, as users do, and gets it.
AIPM_PLUGIN_ARGS="period=250ms ${AIPM_PLUGIN_ARGS:-}" tests/slurm/cluster.sh start
export AIPM_SPOOL=/var/spool/aipm-test
echo "== sbatch --energy-profile --gres=gpu:1 (a 4 s busy loop, then a 2 s srun step)"
job=$(cd /tmp && sbatch --parsable --wait --energy-profile --gres=gpu:1 -J aipm-demo -o /dev/null \
	--wrap 'timeout 4 sh -c "while :; do :; done"; srun -n1 sleep 2')
echo "== aipm-analyze job $job"
"$CARGO_TARGET_DIR/debug/aipm-analyze" job "$job"
echo
echo "The cluster is still running: try sbatch --energy-profile yourself, then"
echo "  AIPM_SPOOL=$AIPM_SPOOL $CARGO_TARGET_DIR/debug/aipm-analyze job JOBID"
echo "Stop it with: tests/slurm/cluster.sh stop"
