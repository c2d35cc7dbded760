#!/usr/bin/env python3
"""Write a spool of aipm recordings for the report benchmarks (bench/report.sh).

gen_spool.py SPOOL long   : job 1, 24 h on 4 nodes (n1..n4), a sample a second, 2 CPU
                            packages, 2 DRAM zones and 2 GPUs (with their gauges) per node.
gen_spool.py SPOOL month  : jobs 100.., one user's month: 300 one-node jobs of 1 h, a sample
                            a second, the same sources.
"""
import json
import os
import sys
import time

GPUS = ["GPU-0a1b2c3d-0000", "GPU-0a1b2c3d-0001"]
GAUGES = ["power_mw", "util_pct", "mem_used_bytes", "job_procs", "other_procs"]


def header():
    cols = ["time_unix_ms", "job_cpu_ns", "job_mem_bytes", "job_mem_peak_bytes",
            "node_cpu_busy_ns", "node_cpu_total_ns", "node_mem_used_bytes", "node_jobs"]
    channels = ["rapl:package-0", "rapl:package-1", "rapl:package-0/dram", "rapl:package-1/dram"]
    channels += [f"nvml:{g}" for g in GPUS]
    for c in channels:
        cols += [f"{c}:energy_uj", f"{c}:raw"]
    for g in GPUS:
        cols += [f"nvml:{g}:{n}" for n in GAUGES]
    return ",".join(cols)


def utc(seconds):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(seconds))


def write_job(spool, job_id, user, node, start_s, seconds):
    d = os.path.join(spool, str(job_id))
    os.makedirs(d, exist_ok=True)
    watts = [120, 110, 15, 14, 250, 240]
    with open(os.path.join(d, f"{node}.samples.csv"), "w") as f:
        f.write(header() + "\n")
        for k in range(seconds + 1):
            t = (start_s + k) * 1000
            row = [t, k * 30_000_000_000, 8 << 30, 8 << 30, k * 32_000_000_000,
                   k * 64_000_000_000, 20 << 30, 1]
            for w in watts:
                e = k * w * 1_000_000
                row += [e, e % (1 << 32)]
            for w in watts[4:]:
                row += [w * 1000, 87, 30 << 30, 1, 0]
            f.write(",".join(map(str, row)) + "\n")
    meta = {
        "schema_version": 1, "aipm_version": "0.1.0", "job_id": job_id,
        "array_job_id": None, "array_task_id": None, "steps": ["batch"],
        "user": user, "uid": 1000, "gid": 1000, "job_name": "train", "node": node,
        "partition": "gpu", "cpus": 32, "mem_alloc_bytes": 64 << 30, "gpus": GPUS,
        "start_unix_ms": start_s * 1000, "start_utc": utc(start_s),
        "end_unix_ms": (start_s + seconds) * 1000, "end_utc": utc(start_s + seconds), "period_ms": 1000,
        "sources": [{"name": "rapl", "status": "found", "detail": "generated", "channels": []}],
        "sampler": {"samples": seconds + 1, "missed_deadlines": 0, "handovers": 0,
                    "read_errors": 0, "write_errors": 0, "counter_wraps": 0, "busy_us": 0},
    }
    with open(os.path.join(d, f"{node}.meta.json"), "w") as f:
        json.dump(meta, f)


def main():
    spool, kind = sys.argv[1], sys.argv[2]
    start = 1700118000  # 2023-11-16 07:00 UTC
    if kind == "long":
        for n in range(1, 5):
            write_job(spool, 1, "alice", f"n{n}", start, 86400)
    else:
        for i in range(300):
            write_job(spool, 100 + i, "alice", f"n{1 + i % 4}", start + i * 8000, 3600)


main()
