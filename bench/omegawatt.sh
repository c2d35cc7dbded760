#!/usr/bin/env bash
# Omegawatt read speed on a generated full-rate day: 24 plugs at 100 Hz for 24 h (about
# 2.4 GB of CSV in one daily zip), indexed by `aipm-analyze omegawatt index` (every frame
# into per-second statistics of every plug, written to the Parquet cache), against the
# fastest plain inflate of the same archive (`unpigz -c`), and against the Lab IA way (every
# 100th line, then Python's csv reader for one node); then `omegawatt node` for that day from
# the cache (median of 5 runs). Last line:
# `omegawatt: index_s=N inflate_s=N ratio=N peak_rss_mib=N node_ms=N labia_s=N`
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/aipm-target}
SECONDS_OF_DATA=${OMEGAWATT_BENCH_SECONDS:-86400}
WORK=${OMEGAWATT_BENCH_DIR:-/var/tmp/aipm-bench-omegawatt}
for p in pigz time unzip bc; do
	dpkg -s "$p" >/dev/null 2>&1 || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$p" >/dev/null; }
done
cargo build -q --release -p aipm-analyze
bin=$CARGO_TARGET_DIR/release/aipm-analyze
mkdir -p "$WORK/archives"
# Earlier versions kept the archive at the top of $WORK.
[ -f "$WORK/11_16_2023_USB0.zip" ] && mv "$WORK"/11_16_2023_USB0.zip* "$WORK/archives/"
zip="$WORK/archives/11_16_2023_USB0.zip"
if [ ! -f "$zip.$SECONDS_OF_DATA" ]; then
	echo "generating $SECONDS_OF_DATA s of 24 plugs at 100 Hz ..." >&2
	powers=()
	for p in $(seq 24); do powers+=(--power "$p=$(( 50 + 10 * p ))..$(( 300 - 5 * p ))"); done
	"$bin" omegawatt generate --plugs 24 --rate 100 --seconds "$SECONDS_OF_DATA" --start 1700114400 \
		--glued-header --invalid-every 997 --log-every 50021 --noise 3 "${powers[@]}" --zip "$zip"
	touch "$zip.$SECONDS_OF_DATA"
fi
ls -l "$zip" >&2
csv_bytes=$(unzip -l "$zip" | awk 'NR==4 {print $1}')
echo "archive: $(stat -c %s "$zip") bytes zipped, $csv_bytes bytes of CSV" >&2

now() { date +%s.%N; }
t0=$(now); unpigz -c "$zip" > /dev/null; t1=$(now)
inflate_s=$(echo "$t1 - $t0" | bc -l)

rm -rf "$WORK/cache"
/usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$bin" omegawatt index --archives "$WORK/archives" \
	--cache "$WORK/cache" --jobs 1 --force >&2
read -r index_s peak_kib < "$WORK/time.txt"
du -sh "$WORK/cache" >&2

# One node's day from the cache: the process from start to exit, median of 5.
printf '[nodes.n51]\nport = "USB0"\nchannels = [13, 19]\n' > "$WORK/map.toml"
node_runs=()
for _ in 1 2 3 4 5; do
	t0=$(now)
	TZ=UTC "$bin" omegawatt node n51 --map "$WORK/map.toml" --cache "$WORK/cache" \
		--from 1700114400 --to 1700200800 --format csv > "$WORK/node.csv"
	t1=$(now)
	node_runs+=("$(echo "($t1 - $t0) * 1000" | bc -l)")
done
node_ms=$(printf '%s\n' "${node_runs[@]}" | sort -n | sed -n 3p)
cat "$WORK/node.csv" >&2

# The Lab IA way: keep every 100th line, then Python's csv reader sums one node's 2 plugs.
t0=$(now)
unzip -p "$zip" | awk 'NR == 1 || NR == 2 || NR % 100 == 0' > "$WORK/subsample.csv"
python3 - "$WORK/subsample.csv" <<'PY'
import csv, sys
with open(sys.argv[1]) as f:
    rows = csv.reader(f)
    next(rows)
    header = next(rows)
    start = header.index("#timestamp") if "#timestamp" in header else 0
    cols = [header.index(f"#activepow{p}") - start for p in (13, 19)]
    values = []
    for row in rows:
        row = row[start:] if start else row
        if len(row) > 1 and row[1] == "true":
            values.append((float(row[0]), sum(float(row[c]) for c in cols)))
    energy = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in zip(values, values[1:]))
    print(f"Lab IA way: {len(values)} samples, {energy / 3600:.3f} Wh for plugs 13+19", file=sys.stderr)
PY
t1=$(now)
labia_s=$(echo "$t1 - $t0" | bc -l)

printf 'omegawatt: index_s=%.2f inflate_s=%.2f ratio=%.2f peak_rss_mib=%.0f node_ms=%.0f labia_s=%.2f\n' \
	"$index_s" "$inflate_s" "$(echo "$index_s / $inflate_s" | bc -l)" "$(echo "$peak_kib / 1024" | bc -l)" "$node_ms" "$labia_s"
