//! The command line and the resolved configuration of each subcommand.
//!
//! | module | what |
//! |---|---|
//! | [`cli`] | clap definitions only |
//! | [`run`] | a run's flags -> [`RunConfig`] (the dataflow file is loaded once, here) |
//! | [`produce`] | `weir produce`'s flags -> [`crate::producer::ProduceConfig`] |
//! | [`kafka`] | the Kafka security flags -> librdkafka settings |
//! | [`files`] | every file a flag names is read or checked here |
//!
//! One parser: timely's cluster flags (`-w`, `-n`, `-p`, `--hostfile`) are ours, turned into a
//! `timely::Config` here; the engine's argv is never handed to timely. Every engine flag can
//! also be set by a `WEIR_*` environment variable.
//!
//! Secrets (passwords, `--kafka-config` items) are held as
//! [`Secret`](crate::security::Secret)s from the moment clap parses them, so `Debug` of these
//! structs never shows one; their environment variables are hidden from `--help`. Kafka's security flags are shared by `weir run` and `weir produce`
//! ([`KafkaSecurityArgs`]) and mapped onto librdkafka settings in `crate::security`.

pub mod cli;
pub mod files;
pub mod kafka;
pub mod produce;
pub mod run;

pub use cli::{
    Cli, Command, GeneratorArgs, KafkaSecurityArgs, LogFormat, ProduceArgs, RunArgs, SinkKind,
};
pub use run::{RunConfig, SinkChoice, SourceChoice};
