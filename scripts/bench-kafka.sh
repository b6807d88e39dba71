#!/usr/bin/env bash
# The Kafka path: the end-to-end benchmark's files (one per partition, byte for byte) loaded
# into a fresh tansu broker (sqlite storage), then read to the end by a raw rdkafka consume
# loop (benches/kafka_consume.rs) and by Weir (full users dataflow, null sink), at 1 and 2
# consumers/workers. Prints a Markdown table with Weir's ratio to the raw loop.
#
#   bash scripts/bench-kafka.sh                 # 1,000,000 users
#   COUNT=20000 bash scripts/bench-kafka.sh     # a smoke run
# Needs tansu (installed by scripts/test-servers.sh into ~/.cache/weir).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
count="${COUNT:-1000000}"
data="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}/users-$count"
cargo build --release --locked --quiet --bin weir
weir=target/release/weir
if [ ! -d "$data" ]; then
    "$weir" generate --out "$data" --count "$count" --partitions 4 --rate 500 \
        --epoch 2026-11-21T10:00:00Z --duplicates 5 --late 0 --malformed 5 >/dev/null
fi
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-kafka.XXXXXX")"
start_tansu "$dir"
trap 'kill $tansu_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
cargo bench --quiet --bench kafka_consume -- produce "$brokers" users_created "$data" >&2
echo "| run | records/s | of raw consume |"
echo "|---|---|---|"
for w in 1 2; do
    raw=$(cargo bench --quiet --bench kafka_consume -- "$brokers" users_created "$w" |
        sed -n 's/.*records_per_s=\([0-9]*\).*/\1/p')
    start=$(date +%s.%N)
    "$weir" -q -w "$w" --brokers "$brokers" --until end --sink null --metrics-addr off \
        --kafka-config broker.address.family=v4 --group "weir-bench-$w" 2>"$dir/weir.log" ||
        { cat "$dir/weir.log" >&2; exit 1; }
    end=$(date +%s.%N)
    rate=$(echo "scale=0; $count / ($end - $start)" | bc)
    echo "| raw rdkafka consume loop, $w consumer(s) | $raw | 100% |"
    echo "| weir -w $w, Kafka source, null sink | $rate | $(echo "scale=0; 100 * $rate / $raw" | bc)% |"
done
