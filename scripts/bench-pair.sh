#!/usr/bin/env bash
# Before and after: two weir binaries over the same generated files, runs alternating (A, B,
# A, B, ...) so the VM's drift hits both alike. Null sink; the 1m dataflow and the full
# users dataflow, at -w 1 and -w 2. Prints the median records/s of each and the ratio B/A.
#
#   bash scripts/bench-pair.sh OLD_WEIR NEW_WEIR            # 2,000,000 users, 5 pairs
#   COUNT=20000 PAIRS=1 bash scripts/bench-pair.sh A B      # a smoke run
# Build the old one from another checkout, e.g.
#   git worktree add /tmp/old REV && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#       cargo build --release --bin weir)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
[ $# -eq 2 ] || { echo "usage: bash scripts/bench-pair.sh OLD_WEIR NEW_WEIR" >&2; exit 2; }
a="$1" b="$2"
for bin in "$a" "$b"; do
    [ -x "$bin" ] || { echo "bench-pair: $bin is not an executable" >&2; exit 2; }
done
count="${COUNT:-2000000}"
pairs="${PAIRS:-5}"
data="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}/users-$count"
if [ ! -d "$data" ]; then
    # The same files as scripts/bench.sh.
    "$b" generate --out "$data" --count "$count" --partitions 4 --rate 500 \
        --epoch 2026-11-21T10:00:00Z --duplicates 5 --late 0 --malformed 5 >/dev/null
fi
flows="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-flows.XXXXXX")"
trap 'rm -rf "$flows"' EXIT
windows_dataflow "$flows/1m.toml" 1m=1m
cp dataflows/users_created.toml "$flows/full.toml"
seconds() { # weir flow workers -> wall seconds
    local start end
    start=$(date +%s.%N)
    "$1" -q --input "$data" --sink null -w "$3" --dataflow "$flows/$2.toml" \
        --metrics-addr off >/dev/null 2>&1
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
echo "| dataflow | -w | A records/s (median of $pairs) | B records/s | B / A |"
echo "|---|---|---|---|---|"
for flow in 1m full; do
    for w in 1 2; do
        ra=() rb=()
        for _ in $(seq 1 "$pairs"); do
            ra+=("$(echo "scale=0; $count / $(seconds "$a" "$flow" "$w")" | bc)")
            rb+=("$(echo "scale=0; $count / $(seconds "$b" "$flow" "$w")" | bc)")
        done
        ma=$(printf '%s\n' "${ra[@]}" | median)
        mb=$(printf '%s\n' "${rb[@]}" | median)
        echo "| $flow | $w | $ma | $mb | $(echo "scale=2; $mb / $ma" | bc) |"
    done
done
