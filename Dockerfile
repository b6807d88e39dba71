# Weir: a multi-stage build. The runtime image has the binary, the dataflows and nothing else.
FROM rust:1-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys (configure + make); SQLite is bundled.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin weir

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
COPY dataflows /etc/weir/dataflows
WORKDIR /var/lib/weir
ENV WEIR_DATAFLOW=/etc/weir/dataflows/users_created.toml
ENTRYPOINT ["weir"]
