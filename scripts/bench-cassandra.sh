#!/usr/bin/env bash
# The Cassandra sink on the CQL test server (testbed/cql-server, on kassandra: in memory, one
# mutex, about 70k prepared inserts/s): the end-to-end benchmark's files -> Weir (full users
# dataflow) -> Cassandra sink, at -w 1 and -w 2. A real Cassandra or ScyllaDB cluster behaves
# differently; this measures Weir's sink against one CQL server on the same 2 cores.
#
#   bash scripts/bench-cassandra.sh               # 500,000 users
#   COUNT=20000 bash scripts/bench-cassandra.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
count="${COUNT:-500000}"
data="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}/users-$count"
# The CQL test server: the running one when scripts/test.sh started it, else our own.
if [ -z "${WEIR_TEST_CASSANDRA:-}" ]; then
    # shellcheck source=scripts/test-servers.sh
    source scripts/test-servers.sh
fi
cargo build --release --locked --quiet --bin weir
weir=target/release/weir
if [ ! -d "$data" ]; then
    "$weir" generate --out "$data" --count "$count" --partitions 4 --rate 500 \
        --epoch 2026-11-21T10:00:00Z --duplicates 5 --late 0 --malformed 5 >/dev/null
fi
bytes=$(cat "$data"/*.jsonl | wc -c)
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-cassandra.XXXXXX")"
echo "| run | records/s | MB/s |"
echo "|---|---|---|"
for w in 1 2; do
    start=$(date +%s.%N)
    "$weir" -q -w "$w" --input "$data" --cassandra "$WEIR_TEST_CASSANDRA" --cassandra-test-server \
        --keyspace "bench_${w}_$$" --metrics-addr off 2>"$dir/weir.log" ||
        { cat "$dir/weir.log" >&2; exit 1; }
    end=$(date +%s.%N)
    seconds=$(echo "$end - $start" | bc)
    echo "| weir -w $w, Cassandra sink (CQL test server) | $(echo "scale=0; $count / $seconds" | bc) | $(echo "scale=0; $bytes / $seconds / 1000000" | bc) |"
done
