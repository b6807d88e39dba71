#!/usr/bin/env bash
# Installs (once, cached) and starts the test servers on free ports on 127.0.0.1:
#   - tansu 0.6.0, a Kafka-compatible broker, with its sqlite storage engine;
#   - testbed/cql-server, a CQL server on the kassandra library.
# Source it: it exports WEIR_TEST_KAFKA and WEIR_TEST_CASSANDRA and stops both servers when the
# sourcing shell exits. Installs go to $WEIR_CACHE (default ~/.cache/weir), outside the repo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
tansu_version=0.6.0
tansu="$cache/tansu-$tansu_version/bin/tansu"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_for_port() { # host port what
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "test servers: $3 did not open $1:$2 within 30 s" >&2
    return 1
}

if ! { [ -x "$tansu" ] && "$tansu" --version 2>/dev/null | grep -q "$tansu_version" && "$tansu" --help 2>/dev/null | grep -q libsql; }; then
    echo "test servers: installing tansu $tansu_version (once; about 8 minutes on 2 cores)" >&2
    build_dir="$(mktemp -d)"
    cargo install tansu --version "$tansu_version" --locked --features libsql \
        --root "$cache/tansu-$tansu_version" --target-dir "$build_dir" >&2
    rm -rf "$build_dir"
fi

echo "test servers: building the CQL test server" >&2
(cd "$repo/testbed/cql-server" && cargo build --release --locked --quiet >&2)
cql_server="$repo/testbed/cql-server/target/release/cql-server"

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-test-servers.XXXXXX")"
kafka_port="$(free_port)"
# tansu resolves the sqlite path against its working directory (an absolute URL is mangled).
(cd "$run_dir" && exec "$tansu" broker \
    --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine "sqlite://tansu.db" >"$run_dir/tansu.log" 2>&1) &
tansu_pid=$!
"$cql_server" --listen 127.0.0.1:0 --port-file "$run_dir/cql.port" >"$run_dir/cql.log" 2>&1 &
cql_pid=$!
trap 'kill $tansu_pid $cql_pid 2>/dev/null || true; rm -rf "$run_dir"' EXIT

wait_for_port 127.0.0.1 "$kafka_port" tansu
for _ in $(seq 1 300); do
    if "$tansu" topic list --broker "tcp://127.0.0.1:$kafka_port" >/dev/null 2>&1; then break; fi
    sleep 0.1
done
for _ in $(seq 1 300); do [ -s "$run_dir/cql.port" ] && break; sleep 0.1; done
[ -s "$run_dir/cql.port" ] || { echo "test servers: the CQL server did not start:" >&2; cat "$run_dir/cql.log" >&2; exit 1; }
cql_port="$(cat "$run_dir/cql.port")"
wait_for_port 127.0.0.1 "$cql_port" cql-server

export WEIR_TEST_KAFKA="127.0.0.1:$kafka_port"
export WEIR_TEST_CASSANDRA="127.0.0.1:$cql_port"
echo "test servers: kafka (tansu) at $WEIR_TEST_KAFKA, cql (kassandra) at $WEIR_TEST_CASSANDRA" >&2
