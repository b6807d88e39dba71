# Weir: a multi-stage build. The runtime image has the binary, the dataflows, curl for the
# compose health check, and nothing else.
FROM rust:1-bookworm AS build
WORKDIR /src
# rdkafka-sys builds librdkafka from source (configure + make) and, with rdkafka's
# ssl-vendored feature, OpenSSL too (perl + make): rust:1-bookworm has all of them. SQLite
# is bundled. Nothing here needs network access but cargo's own downloads.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Cargo checks every [[bench]] target in Cargo.toml exists, even to build the binary alone.
# (testbed/ is a separate crate, not a workspace member; tests/ is not needed for --bin.)
COPY benches ./benches
RUN cargo build --release --locked --bin weir

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
COPY dataflows /etc/weir/dataflows
WORKDIR /var/lib/weir
ENV WEIR_DATAFLOW=/etc/weir/dataflows/users_created.toml
# The status page, /metrics and /healthz. Weir listens on 127.0.0.1:9898 unless
# WEIR_METRICS_ADDR says otherwise: docker-compose.yaml sets 0.0.0.0:9898.
EXPOSE 9898
# Exec form: weir is PID 1 and gets `docker stop`'s SIGTERM itself, then writes completed
# windows and its progress and exits 0.
ENTRYPOINT ["weir"]
