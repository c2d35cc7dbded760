#!/usr/bin/env bash
# How much aipm delays a job's completion: the time from a batch script's last command to
# Slurm marking the job COMPLETED, with and without --energy-profile, on the local cluster
# (tests/slurm/cluster.sh start). Jobs alternate so both see the same load.
# Last line: `completion: without_ms=N with_ms=N delta_ms=N runs=N`
set -euo pipefail
runs=${RUNS:-5}
now_ms() { date +%s%3N; }

one() { # one [OPTION] -> ms from script end to COMPLETED
	local job end state
	job=$(cd /tmp && sbatch --parsable -o /dev/null "$@" --wrap 'sleep 1; date +%s%3N > /tmp/aipm-bench-end-$SLURM_JOB_ID')
	while :; do
		state=$(scontrol show job -o "$job" | grep -o 'JobState=[A-Z_]*' | cut -d= -f2)
		[ "$state" = COMPLETED ] && break
		case "$state" in FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) echo "job $job $state" >&2; exit 1 ;; esac
		sleep 0.01
	done
	local done_ms; done_ms=$(now_ms)
	end=$(cat "/tmp/aipm-bench-end-$job"); rm -f "/tmp/aipm-bench-end-$job"
	echo $(( done_ms - end ))
}

without=0; with=0
for i in $(seq "$runs"); do
	a=$(one); b=$(one --energy-profile=200ms)
	echo "run $i: without ${a} ms, with ${b} ms" >&2
	without=$(( without + a )); with=$(( with + b ))
done
echo "completion: without_ms=$(( without / runs )) with_ms=$(( with / runs )) delta_ms=$(( (with - without) / runs )) runs=$runs"
