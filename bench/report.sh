#!/usr/bin/env bash
# Report speed: `aipm-analyze job` for a 24 h job on 4 nodes (a sample a second, 2 packages,
# 2 DRAM zones and 2 GPUs per node) with the wall meter's per-second cache present, and
# `aipm-analyze jobs` for a month of one user's jobs (300 one-hour jobs). Each the median of
# 5 runs of the whole process. Last line: `report: job_ms=N jobs_ms=N`
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
WORK=${REPORT_BENCH_DIR:-/var/tmp/aipm-bench-report}
cargo build -q --release -p aipm-analyze
bin=$CARGO_TARGET_DIR/release/aipm-analyze
export TZ=UTC
if [ ! -f "$WORK/ready" ]; then
	rm -rf "$WORK"; mkdir -p "$WORK/long" "$WORK/month" "$WORK/wall"
	echo "generating recordings and a day of wall data ..." >&2
	python3 bench/gen_spool.py "$WORK/long" long
	python3 bench/gen_spool.py "$WORK/month" month
	# The four nodes' PSUs (two each) on plugs 1-8, 07:00 to 07:00, one frame a second.
	"$bin" omegawatt generate --plugs 12 --rate 1 --seconds 86400 --start 1700118000 \
		--power 1=450 --power 2=440 --power 3=455 --power 4=445 --power 5=450 --power 6=452 \
		--power 7=447 --power 8=451 --zip "$WORK/wall/11_17_2023_USB0.zip"
	"$bin" omegawatt index --archives "$WORK/wall" --cache "$WORK/cache" >&2
	printf '[nodes.n%s]\nport = "USB0"\nchannels = [%s, %s]\n\n' 1 1 2 2 3 4 3 5 6 4 7 8 > "$WORK/map.toml"
	touch "$WORK/ready"
fi
du -sh "$WORK/long" "$WORK/month" "$WORK/cache" >&2

median_ms() {
	local runs=()
	for _ in 1 2 3 4 5; do
		local t0 t1
		t0=$(date +%s%N)
		"$@" > /dev/null
		t1=$(date +%s%N)
		runs+=($(( (t1 - t0) / 1000000 )))
	done
	printf '%s\n' "${runs[@]}" | sort -n | sed -n 3p
}
"$bin" job 1 --spool "$WORK/long" --wall-map "$WORK/map.toml" --wall-cache "$WORK/cache" | head -12 >&2
job_ms=$(median_ms "$bin" job 1 --spool "$WORK/long" --wall-map "$WORK/map.toml" --wall-cache "$WORK/cache")
"$bin" jobs --user alice --spool "$WORK/month" --from 2023-11-16 --to 2023-12-16 | tail -2 >&2
jobs_ms=$(median_ms "$bin" jobs --user alice --spool "$WORK/month" --from 2023-11-16 --to 2023-12-16)
echo "report: job_ms=$job_ms jobs_ms=$jobs_ms"
