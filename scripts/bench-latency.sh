#!/usr/bin/env bash
# Open-loop latency: the built-in generator offers users at a fixed rate, paced by the wall
# clock whatever Weir does; Weir (-w 2) runs the users dataflow with 1 s, 10 s and 1 minute
# windows into the embedded SQLite sink. For each rate, after SECONDS seconds, it reads
# Weir's own histograms from /metrics:
#   record latency: from reading a record to its row being durable (per write, its oldest);
#   window latency: from the source frontier passing a window's end to its result being durable.
# "achieved" below "offered" means the sink could not keep up (the source then waits).
#
#   bash scripts/bench-latency.sh                  # 10k, 100k and 500k users/s, 30 s each
#   RATES="1000" SECONDS_PER_RATE=5 bash scripts/bench-latency.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
rates="${RATES:-10000 100000 500000}"
seconds="${SECONDS_PER_RATE:-30}"
workers="${WORKERS:-2}"
cargo build --release --locked --quiet --bin weir
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-latency.XXXXXX")"
trap 'rm -rf "$dir"' EXIT
windows_dataflow "$dir/users_latency.toml" 1s=1s 10s=10s 1m=1m
echo "| offered users/s | achieved | record p50 | record p99 | record max | window p50 | window p99 | window max |"
echo "|---|---|---|---|---|---|---|---|"
for rate in $rates; do
    port="$(free_port)"
    ./target/release/weir -q -w "$workers" --dataflow "$dir/users_latency.toml" --rate "$rate" \
        --sqlite "$dir/latency-$rate.db" --metrics-addr "127.0.0.1:$port" 2>"$dir/weir.log" &
    pid=$!
    wait_http "127.0.0.1:$port" /healthz
    sleep "$seconds"
    latency_row "127.0.0.1:$port" "$rate"
    kill -TERM "$pid"
    wait "$pid" || { echo "bench: weir failed:" >&2; cat "$dir/weir.log" >&2; exit 1; }
    rm -f "$dir/latency-$rate.db"*
done
