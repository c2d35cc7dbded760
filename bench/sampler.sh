#!/usr/bin/env bash
# Sampler overhead: CPU µs per sample and resident memory for 1/64/1024 job processes and
# 0/4/8 stand-in GPUs (run as root to measure the cgroup path Slurm jobs use).
# Last line: `sampler: cpu_us_per_sample=N rss_kib=N` (64 processes, no GPU, cgroup).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
cargo bench -q -p aipm-sampler --bench sampler 2>&1 | grep -v '^$'
