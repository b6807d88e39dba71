#!/usr/bin/env bash
# The Cassandra sink, two ways. Files (the end-to-end benchmark's users) -> Weir, full users
# dataflow -> Cassandra sink:
#
# 1. into the CQL test server as it is (testbed/cql-server, on kassandra: in memory, one mutex),
#    at -w 1 and -w 2: what the tests' server takes, not what a cluster takes;
# 2. into a simulated cluster: the CQL test server with `--writes discard` (INSERTs and batches
#    acknowledged without being stored) behind testbed's fault-proxy, which delays every
#    response by LATENCY ms (Tokio's timer rounds that up to the next millisecond tick, so
#    "1 ms" is 1-2 ms per round trip). For each latency and each in-flight budget
#    (--cassandra-max-in-flight-rows) at -w 2: rows written per second (records, window rows,
#    dead letters and progress) and records per second.
#
#   bash scripts/bench-cassandra.sh                            # 500,000 users
#   COUNT=20000 LATENCIES=1 BUDGETS=1024 bash scripts/bench-cassandra.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
count="${COUNT:-500000}"
latencies="${LATENCIES:-0 1 5}"
budgets="${BUDGETS:-128 512 1024 4096}"
data="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}/users-$count"
# The test servers: the running ones when scripts/test.sh started them, else our own.
if [ -z "${WEIR_TEST_CASSANDRA:-}" ]; then
    # shellcheck source=scripts/test-servers.sh
    source scripts/test-servers.sh
fi
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
cargo build --release --locked --quiet --bin weir
weir=target/release/weir
build_testbed
if [ ! -d "$data" ]; then
    "$weir" generate --out "$data" --count "$count" --partitions 4 --rate 500 \
        --epoch 2026-11-21T10:00:00Z --duplicates 5 --late 0 --malformed 5 >/dev/null
fi
bytes=$(cat "$data"/*.jsonl | wc -c)
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-cassandra.XXXXXX")"
bench_pids=()
trap 'kill "${bench_pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT

# Runs Weir into Cassandra at $1 with flags $3...; prints seconds and rows written.
run_weir() { # addr workers [flags...]
    local addr="$1" workers="$2"
    shift 2
    local start end
    start=$(date +%s.%N)
    "$weir" -q -w "$workers" --input "$data" --cassandra "$addr" --cassandra-test-server \
        --keyspace "bench_$(date +%s%N)" --metrics-addr off "$@" 2>"$dir/weir.log" ||
        { cat "$dir/weir.log" >&2; exit 1; }
    end=$(date +%s.%N)
    local rows
    rows=$(sed -n 's/.* \([0-9]*\) rows and [0-9]* window results written.*/\1/p' "$dir/weir.log" | tail -1)
    [ -n "$rows" ] || { echo "bench-cassandra: no summary line from weir:" >&2; cat "$dir/weir.log" >&2; exit 1; }
    echo "$(echo "$end - $start" | bc) $rows"
}

echo "| run | records/s | MB/s |"
echo "|---|---|---|"
for w in 1 2; do
    # Through a file, not a process substitution: a failed run then stops the script.
    run_weir "$WEIR_TEST_CASSANDRA" "$w" >"$dir/run"
    read -r seconds _ <"$dir/run"
    echo "| weir -w $w, Cassandra sink (CQL test server, storing) | $(echo "scale=0; $count / $seconds" | bc) | $(echo "scale=0; $bytes / $seconds / 1000000" | bc) |"
done

# The simulated cluster: a discarding CQL server behind the fault proxy.
start_simulated_cluster "$dir" 0

echo
echo "| latency per round trip | in-flight budget (rows) | rows/s | records/s |"
echo "|---|---|---|---|"
for latency in $latencies; do
    set_cluster_latency "$latency"
    for budget in $budgets; do
        run_weir "$cluster_addr" 2 --cassandra-max-in-flight-rows "$budget" >"$dir/run"
        read -r seconds rows <"$dir/run"
        echo "| $latency ms | $budget | $(echo "scale=0; $rows / $seconds" | bc) | $(echo "scale=0; $count / $seconds" | bc) |"
    done
done
