#!/usr/bin/env bash
# Open-loop latency: the built-in generator offers users at a fixed rate, paced by the wall
# clock whatever Weir does; Weir (-w 2) runs the users dataflow with 1 s, 10 s and 1 minute
# windows into the embedded SQLite sink (RATES), then into the Cassandra sink against a
# simulated cluster (CASSANDRA_RATES: the CQL test server acknowledging writes without
# storing them, behind testbed's fault-proxy adding CLUSTER_LATENCY_MS per round trip; see
# scripts/bench-cassandra.sh). For each rate, after SECONDS_PER_RATE seconds, it reads Weir's
# own histograms from /metrics (which cover the whole run):
#   record latency: from reading a record to its row being durable (per write, its oldest);
#   window latency: from the source frontier passing a window's end to its result being durable.
# "achieved" below "offered" means the sink could not keep up (the source then waits).
#
#   bash scripts/bench-latency.sh   # SQLite at 10k and 50k users/s, Cassandra at 100k, 5 min each
#   RATES=1000 CASSANDRA_RATES=1000 SECONDS_PER_RATE=5 bash scripts/bench-latency.sh  # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
# Empty (RATES=) runs none.
rates="${RATES-10000 50000}"
cassandra_rates="${CASSANDRA_RATES-100000}"
cluster_latency="${CLUSTER_LATENCY_MS:-1}"
seconds="${SECONDS_PER_RATE:-300}"
workers="${WORKERS:-2}"
cargo build --release --locked --quiet --bin weir
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-latency.XXXXXX")"
bench_pids=()
trap 'kill "${bench_pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
windows_dataflow "$dir/users_latency.toml" 1s=1s 10s=10s 1m=1m
# Runs Weir at RATE users/s with these sink flags for $seconds; prints the row (labelled).
measure() { # label rate [sink flags...]
    local label="$1" rate="$2" port pid
    shift 2
    port="$(free_port)"
    ./target/release/weir -q -w "$workers" --dataflow "$dir/users_latency.toml" --rate "$rate" \
        --metrics-addr "127.0.0.1:$port" "$@" 2>"$dir/weir.log" &
    pid=$!
    wait_http "127.0.0.1:$port" /healthz
    sleep "$seconds"
    local row
    row="$(latency_row "127.0.0.1:$port" "$rate")"
    echo "| $label ${row#| }"
    kill -TERM "$pid"
    wait "$pid" || { echo "bench: weir failed:" >&2; cat "$dir/weir.log" >&2; exit 1; }
}
echo "| sink | offered users/s | achieved | record p50 | record p99 | record max | window p50 | window p99 | window max |"
echo "|---|---|---|---|---|---|---|---|---|"
for rate in $rates; do
    measure "SQLite |" "$rate" --sqlite "$dir/latency-$rate.db"
    rm -f "$dir/latency-$rate.db"*
done
if [ -n "$cassandra_rates" ]; then
    build_testbed
    start_simulated_cluster "$dir" "$cluster_latency"
    for rate in $cassandra_rates; do
        measure "Cassandra, $cluster_latency ms |" "$rate" --cassandra "$cluster_addr" \
            --cassandra-test-server --keyspace "latency_$rate"
    done
fi
