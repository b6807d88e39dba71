#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts the test servers it needs,
# then checks formatting and lints, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# Debian packages: Chromium and ChromeDriver (the status page's browser test), bc and GNU time
# (the benchmark smoke run).
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v bc >/dev/null || need+=(bc)
[ -x /usr/bin/time ] || need+=(time)
if [ ${#need[@]} -gt 0 ]; then
    echo "test: installing ${need[*]} with apt-get" >&2
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
# shellcheck source=scripts/test-servers.sh
source scripts/test-servers.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
bash scripts/validate-deploy.sh   # docker-compose.yaml, Dockerfile, deploy/: offline
cargo test --locked "$@"
# Benchmarks still build and run (smoke runs on small inputs, not measurements).
cargo test --locked --bench kernels
COUNT=20000 RUNS=1 bash scripts/bench.sh
COUNT=20000 PAIRS=1 bash scripts/bench-pair.sh target/release/weir target/release/weir
COUNTS=20000 bash scripts/bench-memory.sh
RATES=2000 CASSANDRA_RATES=2000 SECONDS_PER_RATE=3 bash scripts/bench-latency.sh
COUNT=5000 bash scripts/bench-kafka.sh
COUNT=5000 LATENCIES=1 BUDGETS=1024 bash scripts/bench-cassandra.sh
USERS=5000 EVENTS_PER_USER=4 RUNS=1 bash scripts/bench-joins.sh
