#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs and starts the test servers it needs,
# then checks formatting and lints, and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/test-servers.sh
source scripts/test-servers.sh
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings
bash scripts/validate-deploy.sh   # docker-compose.yaml, Dockerfile, deploy/: offline
cargo test --locked "$@"
# Benchmarks still build and run (a smoke run, not a measurement).
cargo test --locked --bench kernels
COUNT=20000 bash scripts/bench.sh
