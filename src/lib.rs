//! Weir: a Kafka -> timely dataflow -> Cassandra stream processor whose output stays exact
//! through crashes.
//!
//! # Layers
//!
//! Each module belongs to one layer and imports only from its own layer and those below it
//! (`tests/layers.rs` reads every `use crate::` and fails when one does not; it reads this
//! table).
//!
//! | layer | modules | what |
//! |---|---|---|
//! | 0 data | [`data`], [`failpoint`] | records, values, keys, rejects, window results, hashing, users' formatting; crash points |
//! | 1 logic | [`time`], [`spec`], [`schema`], [`error`], [`fingerprint`] | window math and watermarks, dataflow files, bytes -> record, typed errors, what outputs depend on |
//! | 2 operators | [`operators`], [`progress`], [`resume`] | windows, flow control, the cluster's control channel, the progress stage and its correctness argument, what a start does with stored progress |
//! | 3 io | [`source`], [`sink`], [`metrics`], [`status`], [`security`], [`producer`] | readers and the source operator; stores and the sink operator; counters; Kafka security; `weir produce` |
//! | 4 runtime | [`runtime`], [`http`] | the engine: starts the cluster, builds and drives the dataflow; the status page server |
//! | 5 app | [`config`], [`app`] | the command line, resolved once; a resolved run -> an engine |
//!
//! # Modules
//!
//! | module | role |
//! |---|---|
//! | [`data`] | the ground floor: plain data, no I/O |
//! | [`failpoint`] | crash points for tests |
//! | [`time`] | window arithmetic and per-partition watermarks |
//! | [`spec`] | dataflow files (`dataflows/*.toml`): schema, windows, aggregates, tables |
//! | [`schema`] | message bytes -> typed record, or the typed reason it is a bad record |
//! | [`error`] | infrastructure errors with a retry class; the first error a thread reports |
//! | [`operators`] | the window operator (frontier-gated aggregates); flow control; the control channel (a cluster stops as one) |
//! | [`fingerprint`] | what a dataflow's outputs depend on, and how two versions of a file differ |
//! | [`progress`] | the progress stage: resume offsets, and the argument that output is exactly once |
//! | [`resume`] | a start's plan: resume, backfill added outputs, or refuse a change |
//! | [`source`] | the source operator; Kafka, generator, file and in-memory readers; partition assignment |
//! | [`sink`] | the sink operator; Cassandra, SQLite, null and in-memory stores; table layouts |
//! | [`metrics`] | totals and Prometheus metrics |
//! | [`status`] | the status page's model: workers, partitions, throughput, recent events |
//! | [`security`] | Kafka SASL/TLS flags -> librdkafka settings; secrets and their redaction |
//! | [`producer`] | `weir produce`: randomuser.me API, generator or file -> formatted users -> Kafka |
//! | [`runtime`] | [`runtime::run`]: the engine, started with its input, store and shutdown as values |
//! | [`http`] | serves `/` (status page), `/api/status`, `/metrics`, `/healthz`, `/readyz` |
//! | [`config`] | command line (clap) and the resolved run configuration |
//! | [`app`] | a resolved run configuration -> the engine's values, and run |
#![deny(missing_docs)]

pub mod app;
pub mod config;
pub mod data;
pub mod error;
pub mod failpoint;
pub mod fingerprint;
pub mod http;
pub mod metrics;
pub mod operators;
pub mod producer;
pub mod progress;
pub mod resume;
pub mod runtime;
pub mod schema;
pub mod security;
pub mod sink;
pub mod source;
pub mod spec;
pub mod status;
pub mod time;

pub use error::{Error, Result};
