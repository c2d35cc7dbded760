#!/bin/sh
# EpilogSlurmctld for aipm: stores each recorded job's energy in its AdminComment, so that
#   sacct -j JOBID -o JobID,State,AdminComment%80
# shows `aipm:v1 energy_wh=… cpu_wh=… dram_wh=… gpu_wh=… tag=exclusive`.
#
#   install -m 0755 contrib/aipm-epilog-slurmctld.sh /usr/local/lib/aipm/
#   slurm.conf:  EpilogSlurmctld=/usr/local/lib/aipm/aipm-epilog-slurmctld.sh
#
# Runs as SlurmUser. Needs slurmdbd, and the recordings readable there by SlurmUser: the
# store (store=, where each node publishes at the job's end; docs/storage.md) or a shared
# spool, with reader_group= set to SlurmUser's group. It never fails or delays the job: the work runs detached, bounded
# by `timeout`, and this script exits 0 at once. Jobs without a recording are left alone.
ANALYZE=${AIPM_ANALYZE:-/usr/local/bin/aipm-analyze}
LOGFILE=${AIPM_EPILOG_LOG:-/dev/null}
[ -n "${SLURM_JOB_ID:-}" ] || exit 0
# The plugin marks a recorded job at submission (Slurm hands the mark to this epilog as
# SPANK_AIPM_RECORDED): every other job costs nothing here, no process and no wait.
[ -n "${SPANK_AIPM_RECORDED:-}" ] || exit 0
setsid timeout 60 "$ANALYZE" slurm-comment "$SLURM_JOB_ID" --wait 20s \
	${SLURM_JOB_NODELIST:+--nodes "$SLURM_JOB_NODELIST"} \
	${SLURM_JOB_UID:+--uid "$SLURM_JOB_UID"} \
	${SLURM_JOB_RESTART_COUNT:+--restart-count "$SLURM_JOB_RESTART_COUNT"} \
	</dev/null >>"$LOGFILE" 2>&1 &
exit 0
