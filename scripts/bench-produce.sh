#!/usr/bin/env bash
# Measures `weir produce --synthetic` into a fresh tansu broker (sqlite storage) on this
# machine: users/s from start to the last acknowledgement, release build.
#   bash scripts/bench-produce.sh [COUNT] [extra weir produce flags...]
# Needs tansu (installed by scripts/test-servers.sh into ~/.cache/weir).
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-200000}"
shift || true
tansu="${WEIR_CACHE:-$HOME/.cache/weir}/tansu-0.6.0/bin/tansu"
[ -x "$tansu" ] || { echo "bench: no tansu at $tansu; run: source scripts/test-servers.sh" >&2; exit 1; }
cargo build --release --locked --quiet
dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench.XXXXXX")"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
(cd "$dir" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "sqlite://tansu.db" \
    >"$dir/tansu.log" 2>&1) &
tansu_pid=$!
trap 'kill $tansu_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do
    "$tansu" topic list --broker "tcp://127.0.0.1:$port" >/dev/null 2>&1 && break
    sleep 0.1
done
start=$(date +%s.%N)
./target/release/weir produce --synthetic --count "$count" --brokers "127.0.0.1:$port" \
    --topic users_created --partitions 4 --kafka-config broker.address.family=v4 -q "$@"
end=$(date +%s.%N)
python3 -c "import sys; c, s, e = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]); print(f'bench: {c} users in {e - s:.2f} s = {c / (e - s):,.0f} users/s produced and acknowledged')" "$count" "$start" "$end"
