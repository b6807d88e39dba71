#!/usr/bin/env bash
# Helpers shared by the benchmark scripts (sourced, not run).

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# build_testbed: builds testbed/cql-server (the CQL test server, the TLS and fault proxies,
# test-certs) and sets testbed to the directory of its binaries (testbed/cql-server/target,
# or CARGO_TARGET_DIR if that is set).
build_testbed() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    (cd "$root/testbed/cql-server" && cargo build --release --locked --quiet >&2)
    testbed="$(cd "$root/testbed/cql-server" && cargo metadata --format-version 1 --no-deps --locked |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release"
}

# first_line FILE PREFIX: waits (30 s at most) for a line starting with PREFIX in FILE and
# prints the rest of it (the test servers' readiness lines, e.g. `listening 127.0.0.1:9042`).
first_line() {
    for _ in $(seq 1 300); do
        if grep -q "^$2" "$1" 2>/dev/null; then
            sed -n "s/^$2//p" "$1" | head -1
            return 0
        fi
        sleep 0.1
    done
    echo "bench: no '$2' line in $1 within 30 s" >&2
    return 1
}

# start_simulated_cluster DIR LATENCY_MS: a simulated Cassandra cluster for the sink
# benchmarks: the CQL test server with `--writes discard` (INSERTs and batches acknowledged
# without being stored) behind testbed's fault-proxy delaying every response by LATENCY_MS
# (0: none). Needs build_testbed first. Sets cluster_addr (the proxy) and cluster_control (its
# control port; see set_cluster_latency) and appends both pids to bench_pids.
start_simulated_cluster() {
    local discard proxy_port
    "$testbed/cql-server" --listen 127.0.0.1:0 --writes discard >"$1/cql.out" 2>"$1/cql.log" &
    bench_pids+=("$!")
    discard="$(first_line "$1/cql.out" "listening ")"
    proxy_port="$(free_port)"
    cluster_control="$(free_port)"
    "$testbed/fault-proxy" --listen "127.0.0.1:$proxy_port" --to "$discard" \
        --control "127.0.0.1:$cluster_control" >"$1/proxy.out" 2>"$1/proxy.log" &
    bench_pids+=("$!")
    first_line "$1/proxy.out" "control " >/dev/null
    cluster_addr="127.0.0.1:$proxy_port"
    set_cluster_latency "$2"
}

# set_cluster_latency MS: the simulated cluster's added latency per round trip (0: none).
set_cluster_latency() {
    local answer command="latency $1"
    [ "$1" = 0 ] && command=pass
    exec 4<>"/dev/tcp/127.0.0.1/$cluster_control"
    echo "$command" >&4
    read -r answer <&4
    exec 4>&-
    [ "$answer" = ok ] || { echo "bench: fault-proxy answered '$answer' to '$command'" >&2; exit 1; }
}

# start_tansu DIR: a fresh tansu broker (sqlite storage in DIR) on a free port; sets
# tansu_pid and brokers (127.0.0.1:PORT) and waits until it answers. Needs tansu, installed by
# scripts/test-servers.sh into ~/.cache/weir.
start_tansu() {
    local tansu="${WEIR_CACHE:-$HOME/.cache/weir}/tansu-0.6.0/bin/tansu" port
    [ -x "$tansu" ] || { echo "bench: no tansu at $tansu; run: source scripts/test-servers.sh" >&2; exit 1; }
    port="$(free_port)"
    (cd "$1" && exec "$tansu" broker --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine "sqlite://tansu.db" \
        >"$1/tansu.log" 2>&1) &
    tansu_pid=$!
    brokers="127.0.0.1:$port"
    for _ in $(seq 1 300); do
        "$tansu" topic list --broker "tcp://$brokers" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "bench: tansu did not start (see $1/tansu.log)" >&2
    exit 1
}

# windows_dataflow OUT NAME=SIZE[/SLIDE]...: dataflows/users_created.toml with only these
# windows (the same schema, dimensions, aggregates and tables).
windows_dataflow() {
    python3 - "$@" <<'PY'
import sys
out, specs = sys.argv[1], sys.argv[2:]
text = open("dataflows/users_created.toml").read()
start, end = text.index("[[windows]]"), text.index("[[aggregates]]")
windows = ""
for spec in specs:
    name, size = spec.split("=")
    size, _, slide = size.partition("/")
    windows += f'[[windows]]\nname = "{name}"\nsize = "{size}"\n'
    windows += f'slide = "{slide}"\n\n' if slide else "\n"
open(out, "w").write(text[:start] + windows + text[end:])
PY
}

# wait_http ADDR PATH: until ADDR answers PATH with 200 (30 s at most).
wait_http() {
    python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
for _ in range(300):
    try:
        if urllib.request.urlopen(f"http://{sys.argv[1]}{sys.argv[2]}", timeout=1).status == 200:
            sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(f"bench: http://{sys.argv[1]}{sys.argv[2]} did not answer")
PY
}

# latency_row ADDR RATE: one Markdown row from a running weir's /metrics and /api/status:
# offered and achieved rate, record latency p50/p99/max, window latency p50/p99/max.
# Percentiles are bucket upper bounds (buckets grow by 1.5x; capped by the maximum), so they
# never flatter.
latency_row() {
    python3 - "$1" "$2" <<'PY'
import json, sys, urllib.request
addr, offered = sys.argv[1], float(sys.argv[2])
text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
status = json.load(urllib.request.urlopen(f"http://{addr}/api/status", timeout=10))
def histogram(name):
    buckets, total = [], 0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
        if line.startswith(name + "_count "):
            total = float(line.rsplit(" ", 1)[1])
    return buckets, total
def gauge(name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return float("nan")
def quantile(buckets, total, q):
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")
def ms(seconds):
    return "-" if seconds != seconds else f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
seconds = (status["now_ms"] - status["started_ms"]) / 1000
achieved = status["totals"]["records"] / seconds
cells = [f"{offered:,.0f}", f"{achieved:,.0f}"]
for name in ("weir_record_latency_seconds", "weir_window_latency_seconds"):
    buckets, total = histogram(name)
    top = gauge(name.replace("_seconds", "_max_seconds"))
    cells += [ms(min(quantile(buckets, total, q), top)) for q in (0.5, 0.99)] + [ms(top)]
print("| " + " | ".join(cells) + " |")
PY
}
