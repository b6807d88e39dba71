#!/usr/bin/env bash
# Joins: dataflows/user_activity.toml (events joined as of their time with the users table,
# events, distinct active users and revenue per 1 and 5 minutes by nat, gender and type) over
# the generator's users and their events as files, at -w 1 and -w 2, null and SQLite sinks.
# Prints a Markdown table: events/s (the events topic's messages over the run's wall time,
# the users read as well), and peak RSS. A last run with 5x the events per user, at the same
# events per second of event time (the users come 5x slower, so the stream spans 5x the
# time), shows whether the memory stays bounded by the live users and open windows: the same
# users, the same open windows, 5x the history.
#
#   bash scripts/bench-joins.sh                          # 200,000 users, 2,000,000 events
#   USERS=20000 EVENTS_PER_USER=10 bash scripts/bench-joins.sh   # a smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
users="${USERS:-200000}"
per_user="${EVENTS_PER_USER:-10}"
runs="${RUNS:-3}"
root="${BENCH_DIR:-${TMPDIR:-/tmp}/weir-bench}"
# WEIR_BIN: a binary already built (e.g. to measure one commit while the tree moves on).
if [ -n "${WEIR_BIN:-}" ]; then
    weir="$WEIR_BIN"
else
    cargo build --release --quiet --bin weir
    weir="${CARGO_TARGET_DIR:-target}/release/weir"
fi
data_for() { # events per user -> the data directory (made once)
    # 1,000 users/s of event time at 10 events per user (10,000 events/s): 200,000 users span
    # 200 s, so windows close as it runs. More events per user keep the events' rate.
    local rate=$((1000 * per_user / $1))
    local dir="$root/joins-$users-x$1-r$rate"
    if [ ! -d "$dir/user_events" ]; then
        local flags=(--count "$users" --partitions 4 --rate "$rate" --epoch 2026-11-21T10:00:00Z
            --duplicates 5 --late 0 --malformed 5 --events-per-user "$1")
        "$weir" generate --out "$dir/users_created" "${flags[@]}" >/dev/null
        "$weir" generate --out "$dir/user_events" --topic user_events "${flags[@]}" >/dev/null
    fi
    echo "$dir"
}
rss() { # command... -> "seconds maxrss_kb"
    /usr/bin/time -f "%e %M" "$@" 2>&1 >/dev/null | tail -1
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
db="$(mktemp -d "${TMPDIR:-/tmp}/weir-bench-joins.XXXXXX")/bench.db"
trap 'rm -rf "$(dirname "$db")"' EXIT
echo "| run | events/s (median [min, max]) | peak RSS |"
echo "|---|---|---|"
measure() { # events-per-user sink workers
    local dir events rates=() peak=0
    dir=$(data_for "$1")
    events=$((users * $1))
    for _ in $(seq 1 "$runs"); do
        read -r seconds kb < <(rss "$weir" -q --input "$dir" --sink "$2" --sqlite "$db" -w "$3" \
            --dataflow dataflows/user_activity.toml --metrics-addr 127.0.0.1:0)
        rm -f "$db" "$db-wal" "$db-shm"
        rates+=("$(echo "scale=0; $events / $seconds" | bc)")
        [ "$kb" -le "$peak" ] || peak=$kb
    done
    read -r low rate high < <(printf '%s\n' "${rates[@]}" | sort -n | awk '{v[NR]=$1} END {print v[1], v[int((NR+1)/2)], v[NR]}')
    echo "| user_activity, $users users x $1 events, $2 sink, -w $3 | $rate [$low, $high] | $((peak / 1024)) MB |"
}
for sink in null sqlite; do
    for w in 1 2; do
        measure "$per_user" "$sink" "$w"
    done
done
# Memory against history: 5x the events over the same users, at the same events' rate.
measure "$((per_user * 5))" null 2
