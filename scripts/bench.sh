#!/usr/bin/env bash
# End-to-end throughput: the generator's users as files -> Weir (parse, windows, distinct
# users) -> a sink, at -w 1 and -w 2, against the ceiling loop (benches/ceiling.rs) on the
# same files. Prints a Markdown table. Two dataflows: `1m` is the benchmark's definition (one
# 1-minute window by gender and by nat: distinct users and records), `full` is
# dataflows/users_created.toml (1m, 5m, 1h and 10m-every-1m windows); `1h` and `1h_every_1m`
# (a tumbling hour and an hour sliding every minute, 60 windows per record) give the cost of a
# hopping window against a tumbling one of the same size, printed under the table.
#
#   bash scripts/bench.sh                 # 2,000,000 users (~950 MB of JSON lines)
#   COUNT=20000 bash scripts/bench.sh     # a smoke run
# Each Weir configuration runs RUNS times (default 3), each run right after a ceiling run: the
# table shows the median run's records/s, the slowest and fastest in brackets, the median of
# the runs' ratios to their ceiling run, and the largest peak RSS. Runs on a shared 2-core VM
# vary by up to 2x; medians are the figures to compare.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
count="${COUNT:-2000000}"
runs="${RUNS:-3}"
data="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}/users-$count"
cargo build --release --quiet --bin weir
weir=target/release/weir
if [ ! -d "$data" ]; then
    # 0.5% malformed, 0.5% duplicates, event times 2 ms apart with up to 2 s of disorder.
    "$weir" generate --out "$data" --count "$count" --partitions 4 --rate 500 \
        --epoch 2026-11-21T10:00:00Z --duplicates 5 --late 0 --malformed 5 >/dev/null
fi
bytes=$(cat "$data"/*.jsonl | wc -c)
rss() { # command... -> "seconds maxrss_kb"
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1
    else
        local start end; start=$(date +%s.%N); "$@" >/dev/null 2>&1; end=$(date +%s.%N)
        echo "$(echo "$end - $start" | bc) -"
    fi
}
ceiling_rate() {
    cargo bench --quiet --bench ceiling -- "$data" 2 | sed -n 's/.*records_per_s=\([0-9]*\).*/\1/p'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
flows="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-flows.XXXXXX")"
trap 'rm -rf "$flows"' EXIT
windows_dataflow "$flows/1m.toml" 1m=1m
cp dataflows/users_created.toml "$flows/full.toml"
windows_dataflow "$flows/1h.toml" 1h=1h
windows_dataflow "$flows/1h_every_1m.toml" 1h_every_1m=1h/1m
# The VM's speed drifts by up to 2x within minutes, so every Weir run is paired with a ceiling
# run just before it, and "of ceiling" is the median of the pairs' ratios.
rows=() all_ceilings=()
declare -A median_rate
for run in "1m null" "full null" "full sqlite" "1h null" "1h_every_1m null"; do
    read -r flow sink <<<"$run"
    for w in 1 2; do
        db="$flows/bench.db"
        rates=() ratios=() peak=0
        for _ in $(seq 1 "$runs"); do
            ceiling=$(ceiling_rate)
            all_ceilings+=("$ceiling")
            read -r seconds kb < <(rss "$weir" -q --input "$data" --sink "$sink" --sqlite "$db" -w "$w" \
                --dataflow "$flows/$flow.toml" --metrics-addr 127.0.0.1:0)
            rm -f "$db" "$db-wal" "$db-shm"
            rate=$(echo "scale=0; $count / $seconds" | bc)
            rates+=("$rate")
            ratios+=("$(echo "scale=0; 100 * $rate / $ceiling" | bc)")
            [ "$kb" = - ] || [ "$kb" -le "$peak" ] || peak=$kb
        done
        read -r low rate high < <(printf '%s\n' "${rates[@]}" | sort -n | awk '{v[NR]=$1} END {print v[1], v[int((NR+1)/2)], v[NR]}')
        ratio=$(printf '%s\n' "${ratios[@]}" | median)
        median_rate["$flow $w"]=$rate
        rows+=("| weir -w $w, $flow dataflow, $sink sink | $rate [$low, $high] | $(echo "scale=0; $rate * $bytes / $count / 1000000" | bc) | $ratio% | $((peak / 1024)) MB |")
    done
done
ceiling=$(printf '%s\n' "${all_ceilings[@]}" | median)
echo "| run | records/s (median [min, max]) | MB/s | of ceiling (median of paired runs) | peak RSS |"
echo "|---|---|---|---|---|"
echo "| ceiling loop, 2 threads | $ceiling | $(echo "scale=0; $ceiling * $bytes / $count / 1000000" | bc) | 100% | |"
printf '%s\n' "${rows[@]}"
echo
for w in 1 2; do
    echo "hopping 1h every 1m costs $(echo "scale=2; ${median_rate["1h $w"]} / ${median_rate["1h_every_1m $w"]}" | bc)x a tumbling 1h window at -w $w (records/s of the tumbling / of the hopping)"
done
