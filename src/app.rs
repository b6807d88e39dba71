//! The binary's library half: turns a resolved [`RunConfig`] into an [`Engine`] (the input,
//! the store, the timely configuration), serves the status page, and runs it. This is where
//! the command line meets the engine; nothing below it knows about flags.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::config::{RunConfig, SinkChoice, SourceChoice};
use crate::error::Result;
use crate::fingerprint::Definition;
use crate::metrics::Stats;
use crate::resume::Plan;
use crate::runtime::{Cluster, Engine, Summary};
use crate::sink::cassandra::CassandraStore;
use crate::sink::sqlite::SqliteStore;
use crate::sink::{NullStore, Store};
use crate::source::file::FileInput;
use crate::source::Input;
use crate::spec::DataflowSpec;

/// What starting `spec` against the store `against` would do, without starting it: one line
/// per source with stored progress and per change, and whether a start would be refused.
pub fn check_against(spec: &DataflowSpec, against: SinkChoice) -> Result<(Vec<String>, bool)> {
    let store: Box<dyn Store> = match against {
        SinkChoice::Sqlite(path) => Box::new(SqliteStore::open_existing(&path)?),
        SinkChoice::Cassandra(c) => Box::new(CassandraStore::connect(c, Arc::default())?),
        SinkChoice::Null => return Ok((vec!["the null store keeps no progress".into()], false)),
    };
    let sources = store.progress_sources(&spec.name)?;
    if sources.is_empty() {
        return Ok((
            vec![format!(
                "dataflow {}: no stored progress in {}; a start begins from --start",
                spec.name,
                store.describe()
            )],
            false,
        ));
    }
    let mut lines = Vec::new();
    let mut refused = false;
    for source in sources {
        let stored = store.read_progress(&spec.name, &source)?;
        let plan = Plan::new(&Definition::of(spec, &source), &stored);
        refused |= !plan.refused().is_empty();
        lines.push(format!("source {source}: {}", plan.summary(&spec.name)));
        lines.extend(plan.changes.iter().map(|c| format!("  {}", c.line)));
    }
    Ok((lines, refused))
}

/// Runs the dataflow that `config` describes until its input ends or `shutdown` is set.
pub fn run(config: RunConfig, shutdown: Arc<AtomicBool>) -> Result<Summary> {
    let timely = config.timely_config()?;
    let RunConfig {
        workers,
        processes,
        process,
        addresses: _,
        spec,
        source,
        sink,
        settings,
        metrics_addr,
    } = config;
    let stats = Arc::new(Stats::default());
    let store: Arc<dyn Store> = match sink {
        SinkChoice::Null => Arc::new(NullStore),
        SinkChoice::Sqlite(path) => Arc::new(SqliteStore::open(&path)?),
        SinkChoice::Cassandra(c) => Arc::new(CassandraStore::connect(c, Arc::clone(&stats))?),
    };
    let input: Box<dyn Input> = match source {
        SourceChoice::Kafka(k) => Box::new(k),
        SourceChoice::Generator(g) => Box::new(g),
        SourceChoice::Files(dir) => Box::new(FileInput { dir }),
    };
    if let Some(addr) = metrics_addr {
        let bound = crate::http::serve(addr, Arc::clone(&stats))?;
        tracing::info!("status page at http://{bound}/ (metrics at /metrics)");
    }
    crate::runtime::run(Engine {
        spec,
        timely,
        cluster: Cluster {
            workers,
            processes,
            process,
        },
        input,
        store,
        stats,
        shutdown,
        settings,
    })
}
