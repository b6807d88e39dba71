#!/usr/bin/env bash
# Installs (once, cached) and starts the test servers on free ports on 127.0.0.1:
#   - tansu 0.6.0, a Kafka-compatible broker, with its sqlite storage engine:
#     WEIR_TEST_KAFKA (plaintext);
#     WEIR_TEST_KAFKA_SASL (a second broker requiring SASL SCRAM logins, sasl_plaintext);
#     WEIR_TEST_KAFKA_TLS (a third broker requiring SCRAM logins, behind testbed's tls-proxy:
#     sasl_ssl; the proxy checks a client certificate when one is presented). tansu 0.6 cannot
#     serve TLS itself. Both authenticated brokers know the users of WEIR_TEST_KAFKA_USERS,
#     "user:password:MECHANISM" separated by spaces (one SCRAM-SHA-256 and one SCRAM-SHA-512);
#   - testbed/cql-server, a CQL server on the kassandra library: WEIR_TEST_CASSANDRA (plain),
#     WEIR_TEST_CASSANDRA_SECURE (PasswordAuthenticator login WEIR_TEST_CASSANDRA_USER /
#     WEIR_TEST_CASSANDRA_PASSWORD, TLS only);
#   - certificates made fresh by testbed's test-certs in WEIR_TEST_TLS_DIR: ca.pem (also
#     WEIR_TEST_TLS_CA), server.pem/.key, client.pem/.key (signed by ca.pem);
#   - for the fault tests, which run servers of their own: the tansu binary (WEIR_TEST_TANSU)
#     and the directory of testbed's binaries (WEIR_TEST_TESTBED: cql-server, fault-proxy).
# Passwords are random per run. Source it: it exports the variables above and stops every
# server when the sourcing shell exits. Installs go to $WEIR_CACHE (default ~/.cache/weir),
# outside the repo.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
tansu_version=0.6.0
tansu="$cache/tansu-$tansu_version/bin/tansu"

# free_port, build_testbed
# shellcheck source=scripts/bench-lib.sh
source "$repo/scripts/bench-lib.sh"

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

echo "test servers: building the CQL test server, the TLS and fault proxies and test-certs" >&2
build_testbed

run_dir="$(mktemp -d "${TMPDIR:-/tmp}/weir-test-servers.XXXXXX")"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$run_dir"' EXIT

random_password() {
    python3 -c 'import secrets; print(secrets.token_hex(16))'
}

# Starts tansu in $run_dir/NAME (it resolves the sqlite path against its working directory; an
# absolute URL is mangled), listening on PORT and advertising ADVERTISED_PORT; sets tansu_pid.
start_test_tansu() { # name port advertised_port [broker flags...]
    local dir="$run_dir/$1" port="$2" advertised="$3"
    shift 3
    mkdir -p "$dir"
    (cd "$dir" && exec "$tansu" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$advertised" \
        --storage-engine "sqlite://tansu.db" "$@" >>"$dir/tansu.log" 2>&1) &
    tansu_pid=$!
    pids+=("$tansu_pid")
}

# Waits until an unauthenticated tansu answers the Kafka protocol.
wait_for_tansu() { # port
    wait_for_port 127.0.0.1 "$1" tansu
    for _ in $(seq 1 300); do
        if "$tansu" topic list --broker "tcp://127.0.0.1:$1" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
}

# A tansu that requires SASL logins, with the users of $kafka_users. An authenticated broker
# refuses `tansu user create` (it cannot log in), so the users are created by the same broker
# started once without --authentication on the same data directory.
start_sasl_test_tansu() { # name port advertised_port
    start_test_tansu "$1" "$2" "$2"
    wait_for_tansu "$2"
    local user name password mechanism
    for user in $kafka_users; do
        IFS=: read -r name password mechanism <<<"$user"
        "$tansu" user create "$name" "$password" --broker "tcp://127.0.0.1:$2" \
            --mechanism "$(echo "$mechanism" | sed 's/SCRAM-SHA-/scram/')" >/dev/null
    done
    kill "$tansu_pid"
    wait "$tansu_pid" 2>/dev/null || true
    start_test_tansu "$1" "$2" "$3" --authentication
    wait_for_port 127.0.0.1 "$2" tansu
}

# Starts a CQL server in $run_dir/NAME with these flags; sets cql_started_port.
start_cql() { # name [cql-server flags...]
    local dir="$run_dir/$1"
    shift
    mkdir -p "$dir"
    "$testbed/cql-server" --listen 127.0.0.1:0 --port-file "$dir/port" "$@" >"$dir/log" 2>&1 &
    pids+=("$!")
    for _ in $(seq 1 300); do [ -s "$dir/port" ] && break; sleep 0.1; done
    [ -s "$dir/port" ] || { echo "test servers: the CQL server did not start:" >&2; cat "$dir/log" >&2; return 1; }
    cql_started_port="$(cat "$dir/port")"
    wait_for_port 127.0.0.1 "$cql_started_port" cql-server
}

tls_dir="$run_dir/tls"
"$testbed/test-certs" "$tls_dir"
kafka_users="weir256:$(random_password):SCRAM-SHA-256 weir512:$(random_password):SCRAM-SHA-512"
cassandra_user=weir
cassandra_password="$(random_password)"

kafka_port="$(free_port)"
start_test_tansu kafka "$kafka_port" "$kafka_port"
wait_for_tansu "$kafka_port"

sasl_port="$(free_port)"
start_sasl_test_tansu kafka_sasl "$sasl_port" "$sasl_port"

# The TLS broker advertises the proxy's port, so every client connection goes through TLS.
tls_backend_port="$(free_port)"
tls_port="$(free_port)"
start_sasl_test_tansu kafka_tls "$tls_backend_port" "$tls_port"
"$testbed/tls-proxy" --listen "127.0.0.1:$tls_port" --to "127.0.0.1:$tls_backend_port" \
    --tls-cert "$tls_dir/server.pem" --tls-key "$tls_dir/server.key" \
    --client-ca "$tls_dir/ca.pem" >"$run_dir/tls-proxy.log" 2>&1 &
pids+=("$!")
wait_for_port 127.0.0.1 "$tls_port" tls-proxy

start_cql cql
cql_port="$cql_started_port"
start_cql cql_secure --auth "$cassandra_user:$cassandra_password" \
    --tls-cert "$tls_dir/server.pem" --tls-key "$tls_dir/server.key"
cql_secure_port="$cql_started_port"

export WEIR_TEST_KAFKA="127.0.0.1:$kafka_port"
export WEIR_TEST_KAFKA_SASL="127.0.0.1:$sasl_port"
export WEIR_TEST_KAFKA_TLS="127.0.0.1:$tls_port"
export WEIR_TEST_KAFKA_USERS="$kafka_users"
export WEIR_TEST_CASSANDRA="127.0.0.1:$cql_port"
export WEIR_TEST_CASSANDRA_SECURE="127.0.0.1:$cql_secure_port"
export WEIR_TEST_CASSANDRA_USER="$cassandra_user"
export WEIR_TEST_CASSANDRA_PASSWORD="$cassandra_password"
export WEIR_TEST_TLS_DIR="$tls_dir"
export WEIR_TEST_TLS_CA="$tls_dir/ca.pem"
# The fault tests start (and kill, pause and cut) brokers and CQL servers of their own.
export WEIR_TEST_TANSU="$tansu"
export WEIR_TEST_TESTBED="$testbed"
echo "test servers: kafka (tansu) at $WEIR_TEST_KAFKA, with SASL at $WEIR_TEST_KAFKA_SASL, with SASL and TLS at $WEIR_TEST_KAFKA_TLS; cql (kassandra) at $WEIR_TEST_CASSANDRA, with login and TLS at $WEIR_TEST_CASSANDRA_SECURE" >&2
