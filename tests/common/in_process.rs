//! The engine in-process: `weir::runtime::run` over an in-memory topic into an in-memory store,
//! in this process (as threads, or as a cluster of timely processes over loopback TCP).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use super::{Dataset, Msg, Tables};
use weir::runtime::{Cluster, Engine, Settings, Summary};
use weir::sink::memory::MemoryStore;
use weir::sink::TableSet;
use weir::source::memory::MemoryTopic;
use weir::source::StartAt;
use weir::spec::DataflowSpec;

pub fn settings() -> Settings {
    Settings {
        start: StartAt::Earliest,
        batch: 64,
        max_record_bytes: weir::schema::DEFAULT_MAX_RECORD_BYTES,
        max_in_flight: 100_000,
        progress_interval: Duration::from_millis(10),
        partition_discovery: Duration::from_millis(10),
        shutdown_timeout: Duration::from_secs(10),
        print_windows: false,
        reset_progress: false,
        backfill_from_retention: false,
        source_stall_timeout: None,
    }
}

/// The engine for `spec` over `topic` into `store`, as `cluster` describes it.
pub fn engine(
    spec: &DataflowSpec,
    topic: &MemoryTopic,
    store: &MemoryStore,
    timely: timely::Config,
    cluster: Cluster,
) -> Engine {
    Engine {
        spec: spec.clone(),
        timely,
        cluster,
        input: Box::new(topic.clone()),
        store: Arc::new(store.clone()),
        stats: Arc::default(),
        shutdown: Arc::new(AtomicBool::new(false)),
        settings: settings(),
    }
}

/// Runs `spec` over `topic` into `store` with `workers` threads, in this process.
pub fn run(
    spec: &DataflowSpec,
    topic: &MemoryTopic,
    store: &MemoryStore,
    workers: usize,
) -> weir::Result<Summary> {
    let cluster = Cluster {
        workers,
        processes: 1,
        process: 0,
    };
    let timely = timely::Config::process(workers);
    weir::runtime::run(engine(spec, topic, store, timely, cluster))
}

/// A topic holding `data`, ended.
pub fn topic_of(data: &Dataset) -> MemoryTopic {
    let topic = MemoryTopic::new(data.len());
    for (p, messages) in data {
        for m in messages {
            let payload = (!m.tombstone).then(|| m.payload.clone());
            topic.push_keyed(*p, m.key.clone(), payload, m.timestamp);
        }
    }
    topic.end();
    topic
}

/// The topic's messages as a data set (offsets are positions).
pub fn dataset_of(topic: &MemoryTopic) -> Dataset {
    topic
        .messages()
        .into_iter()
        .enumerate()
        .map(|(p, messages)| {
            let messages = messages
                .into_iter()
                .enumerate()
                .map(|(o, m)| Msg {
                    key: m.key,
                    tombstone: m.tombstone,
                    ..Msg::new(o as i64, m.payload, m.timestamp)
                })
                .collect();
            (p as i32, messages)
        })
        .collect()
}

/// Every table but progress, rendered as the other tests render stores.
pub fn tables_of(store: &MemoryStore, spec: &DataflowSpec) -> Tables {
    let layout = TableSet::new(spec);
    let contents = store.tables();
    layout
        .tables
        .iter()
        .enumerate()
        .filter(|(i, _)| ![TableSet::PROGRESS, TableSet::BACKFILLS].contains(i))
        .map(|(_, t)| {
            let rows = contents
                .get(&t.name)
                .map(|rows| rows.iter().map(|r| super::render_cells(r)).collect())
                .unwrap_or_default();
            (t.name.clone(), rows)
        })
        .collect()
}

/// Runs `spec` over `topic` into `store` as `processes` timely processes (a real cluster over
/// loopback TCP, each process a thread here) of `workers` threads; returns each one's result.
pub fn run_cluster(
    spec: &DataflowSpec,
    topic: &MemoryTopic,
    store: &MemoryStore,
    processes: usize,
    workers: usize,
) -> std::thread::JoinHandle<Vec<weir::Result<Summary>>> {
    if processes == 1 {
        let (spec, topic, store) = (spec.clone(), topic.clone(), store.clone());
        return std::thread::spawn(move || vec![run(&spec, &topic, &store, workers)]);
    }
    let addresses: Vec<String> = (0..processes)
        .map(|_| format!("127.0.0.1:{}", super::free_port()))
        .collect();
    let handles: Vec<_> = (0..processes)
        .map(|process| {
            let (spec, topic, store) = (spec.clone(), topic.clone(), store.clone());
            let addresses = addresses.clone();
            std::thread::spawn(move || {
                let timely = timely::Config {
                    communication: timely::CommunicationConfig::Cluster {
                        threads: workers,
                        process,
                        addresses,
                        report: false,
                        zerocopy: false,
                    },
                    worker: timely::WorkerConfig::default(),
                };
                let cluster = Cluster {
                    workers,
                    processes,
                    process,
                };
                weir::runtime::run(engine(&spec, &topic, &store, timely, cluster))
            })
        })
        .collect();
    std::thread::spawn(move || {
        handles
            .into_iter()
            .map(|h| h.join().expect("a process thread"))
            .collect()
    })
}
