//! Weir: a Kafka -> timely dataflow -> Cassandra stream processor whose output stays exact
//! through crashes.
//!
//! | module | role |
//! |---|---|
//! | [`config`] | command line (clap) and the resolved run configuration |
//! | [`spec`] | dataflow files (`dataflows/*.toml`): schema, windows, aggregates, tables |
//! | [`schema`] | message bytes -> typed record, or the reason it is a bad record |
//! | [`time`] | window arithmetic and per-partition watermarks |
//! | [`source`] | the source operator; Kafka, generator and file readers; partition assignment |
//! | [`operators`] | the window operator (frontier-gated aggregates) |
//! | [`sink`] | the sink operator; Cassandra, SQLite and null stores; table layouts |
//! | [`progress`] | resume offsets, and the argument that output is exactly once |
//! | [`runtime`] | starts the cluster, builds the dataflow, writes progress, stops cleanly |
//! | [`producer`] | `weir produce`: randomuser.me API, generator or file -> formatted users -> Kafka |
//! | [`metrics`] | totals and Prometheus metrics |
//! | [`status`] | the status page's model: workers, partitions, throughput, recent events |
//! | [`http`] | serves `/` (status page), `/api/status`, `/metrics`, `/healthz` |
//! | [`security`] | Kafka SASL/TLS flags -> librdkafka settings; secrets and their redaction |
//! | [`failpoint`] | crash points for tests |
//! | [`error`] | infrastructure errors |
#![deny(missing_docs)]

pub mod config;
pub mod error;
pub mod failpoint;
pub mod http;
pub mod metrics;
pub mod operators;
pub mod producer;
pub mod progress;
pub mod runtime;
pub mod schema;
pub mod security;
pub mod sink;
pub mod source;
pub mod spec;
pub mod status;
pub mod time;

pub use error::{Error, Result};
