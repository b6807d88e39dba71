#!/usr/bin/env bash
# Measures `weir produce --synthetic` into a fresh tansu broker (sqlite storage) on this
# machine: users/s from start to the last acknowledgement, release build.
#   bash scripts/bench-produce.sh [COUNT] [extra weir produce flags...]
# Needs tansu (installed by scripts/test-servers.sh into ~/.cache/weir).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
count="${1:-200000}"
shift || true
cargo build --release --locked --quiet
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")"
start_tansu "$dir"
trap 'kill $tansu_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
start=$(date +%s.%N)
./target/release/weir produce --synthetic --count "$count" --brokers "$brokers" \
    --topic users_created --partitions 4 --kafka-config broker.address.family=v4 -q "$@"
end=$(date +%s.%N)
python3 -c "import sys; c, s, e = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]); print(f'bench: {c} users in {e - s:.2f} s = {c / (e - s):,.0f} users/s produced and acknowledged')" "$count" "$start" "$end"
