#!/usr/bin/env bash
# Peak RSS against input size: the same generated users (event times 2 ms apart, as in
# scripts/bench.sh) at 2 and 10 million records, through Weir -w 2 with the null sink, for the
# benchmark's one-minute dataflow and for the full users dataflow (whose 1 h window keeps
# every key of the open hour: 1.8 million users at this spacing). State is bounded by the open
# windows, so RSS should not grow with the input beyond that.
#
#   bash scripts/bench-memory.sh                      # 2M and 10M (about 5.7 GB of files)
#   COUNTS="20000 40000" bash scripts/bench-memory.sh # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
counts="${COUNTS:-2000000 10000000}"
cargo build --release --locked --quiet --bin weir
weir=target/release/weir
flows="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-flows.XXXXXX")"
trap 'rm -rf "$flows"' EXIT
windows_dataflow "$flows/1m.toml" 1m=1m
cp dataflows/users_created.toml "$flows/full.toml"
echo "| records | dataflow | seconds | peak RSS |"
echo "|---|---|---|---|"
for count in $counts; do
    data="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}/users-$count"
    if [ ! -d "$data" ]; then
        "$weir" generate --out "$data" --count "$count" --partitions 4 --rate 500 \
            --epoch 2026-11-21T10:00:00Z --duplicates 5 --late 0 --malformed 5 >/dev/null
    fi
    for flow in 1m full; do
        read -r seconds kb < <(/usr/bin/time -f "%e %M" "$weir" -q -w 2 --input "$data" --sink null \
            --dataflow "$flows/$flow.toml" --metrics-addr off 2>&1 >/dev/null | tail -1)
        echo "| $count | $flow | $seconds | $((kb / 1024)) MB |"
    done
done
