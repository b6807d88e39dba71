//! The runtime: connects the store, reads progress, starts the timely cluster, builds the
//! dataflow on every worker and drives it, writing progress records as the durable frontier
//! advances.
//!
//! ```text
//!  source ──observations──► windows ──results──┐
//!    │   └──records────────────────────────────┼──► sink ──► durable (probe) ──► progress writer
//!    └─────rejects─────────────────────────────┘                                  (worker loop)
//! ```
//!
//! Stopping. Bounded input ends when every source has dropped its capabilities: the final
//! frontier closes every window, the sink writes them, the durable frontier becomes empty, each
//! worker writes its final progress and returns. On a shutdown request the sources stop
//! reading but keep their capabilities (open windows must not look complete); each worker
//! waits until everything below the source frontier is durable, writes its final progress,
//! and the process exits 0 without tearing the dataflow down.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use crate::config::{RunConfig, SinkChoice, SourceChoice};
use crate::error::{Error, Result};
use crate::metrics::{PartitionLabels, Stats, WorkerLabels};
use crate::progress::{PartitionLedger, PartitionProgress};
use crate::schema::Schema;
use crate::sink::cassandra::CassandraStore;
use crate::sink::sqlite::SqliteStore;
use crate::sink::{NullStore, Store, TableSet};
use crate::source::generator::GeneratorReader;
use crate::source::{file::FileReader, kafka::KafkaReader, Reader, SourceParts};
use crate::spec::DataflowSpec;
use crate::status::{DataflowInfo, PartitionStatus, WindowNames, WorkerStatus};

/// What a finished run did.
#[derive(Debug)]
pub struct Summary {
    /// Counters.
    pub stats: Arc<Stats>,
}

/// Logs an infrastructure error and ends the process without releasing anything: no
/// capability is dropped, so nothing downstream mistakes the failure for completion, and
/// no progress covers unacknowledged writes. A restart resumes from the stored progress.
pub fn fatal(error: &Error) -> ! {
    tracing::error!("{error}");
    eprintln!("weir: {error}");
    std::process::exit(error.exit_code().max(1))
}

fn connect_store(config: &RunConfig, stats: &Arc<Stats>) -> Result<Arc<dyn Store>> {
    Ok(match &config.sink {
        SinkChoice::Null => Arc::new(NullStore),
        SinkChoice::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        SinkChoice::Cassandra(c) => {
            Arc::new(CassandraStore::connect(c.clone(), Arc::clone(stats))?)
        }
    })
}

/// A stable name for the source, stored with its progress.
fn source_id(config: &RunConfig) -> String {
    match &config.source {
        SourceChoice::Kafka(k) => format!("kafka:{}", k.topic),
        SourceChoice::Generator(g) => format!(
            "generator:seed={},partitions={},rate={}",
            g.seed, g.partitions, g.rate
        ),
        SourceChoice::Files(dir) => {
            format!(
                "file:{}",
                std::fs::canonicalize(dir)
                    .unwrap_or_else(|_| dir.clone())
                    .display()
            )
        }
    }
}

/// Runs a dataflow until its input ends or `shutdown` is set.
pub fn run(config: RunConfig, shutdown: Arc<AtomicBool>) -> Result<Summary> {
    let spec = DataflowSpec::load(&config.dataflow)?;
    let stats = Arc::new(Stats::default());
    let store = connect_store(&config, &stats)?;
    let tables = Arc::new(TableSet::new(&spec));
    store.prepare(&tables)?;
    let source = source_id(&config);
    let restored: HashMap<i32, PartitionProgress> = store
        .read_progress(&spec.name, &source)?
        .into_iter()
        .map(|p| (p.partition, p))
        .collect();
    let suppress_below = restored
        .values()
        .map(|p| p.durable_frontier)
        .max()
        .unwrap_or(0);

    // The generator's time origin is part of its data: keep the stored one.
    let mut config = config;
    if let SourceChoice::Generator(g) = &mut config.source {
        if let Some(stored) = restored.values().map(|p| p.epoch).max().filter(|e| *e > 0) {
            g.epoch_ms = stored as u64;
        }
    }
    let epoch = match &config.source {
        SourceChoice::Generator(g) => g.epoch_ms as i64,
        _ => 0,
    };
    if let SourceChoice::Kafka(k) = &config.source {
        // Fail fast, with one line, when the broker or topic is not there.
        KafkaReader::connect(k.clone())?;
    }
    if let SourceChoice::Files(dir) = &config.source {
        crate::source::file::partition_files(dir)?;
    }

    let source_text = match &config.source {
        SourceChoice::Kafka(k) => format!("kafka {} topic {}", k.brokers, k.topic),
        SourceChoice::Generator(g) => format!(
            "built-in generator (seed {}, {} partitions, {}, {})",
            g.seed,
            g.partitions,
            if g.rate > 0.0 {
                format!("{} users/s", g.rate)
            } else {
                "unthrottled".into()
            },
            g.count
                .map_or("unbounded".to_string(), |n| format!("{n} users"))
        ),
        SourceChoice::Files(dir) => format!("files {}", dir.display()),
    };
    let resumed = if restored.is_empty() {
        "no stored progress".to_string()
    } else {
        format!("resuming {} partitions", restored.len())
    };
    // Neither description contains a credential: they name brokers, contact points, topic
    // and keyspace only, and host lists with credentials are refused at start
    // (`security::no_credentials_in`; tested in tests/security.rs).
    stats
        .metrics
        .set_build_info(&spec.name, &source_text, &store.describe());
    stats.status.set_dataflow(DataflowInfo {
        name: spec.name.clone(),
        file: spec.path.display().to_string(),
        topic: spec.topic.clone(),
        source: source_text.clone(),
        sink: store.describe(),
        workers: config.workers,
        processes: config.processes,
        process: config.process,
        names: WindowNames::new(&spec),
    });
    let status_url = match config.metrics_addr {
        Some(addr) => {
            let bound = crate::http::serve(addr, Arc::clone(&stats))?;
            format!("http://{bound}/ (metrics at /metrics)")
        }
        None => "off".to_string(),
    };
    tracing::info!(
        dataflow = %spec.name,
        file = %spec.path.display(),
        source = %source_text,
        sink = %store.describe(),
        workers = config.workers,
        processes = config.processes,
        status = %status_url,
        "start ({resumed})"
    );

    let timely_config = config.timely_config()?;
    let local_workers = config.workers;
    let parked = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new(Shared {
        spec,
        store,
        tables,
        stats: Arc::clone(&stats),
        restored,
        suppress_below,
        source_id: source,
        epoch,
        shutdown,
        parked,
        local_workers,
        config,
    });
    let guards = timely::execute(timely_config, move |worker| {
        let shared = Arc::clone(&shared);
        run_worker(worker, &shared)
    })
    .map_err(Error::Cluster)?;
    for result in guards.join() {
        result.map_err(|e| Error::Cluster(format!("a worker failed: {e}")))??;
    }
    Ok(Summary { stats })
}

/// What every worker shares.
struct Shared {
    spec: DataflowSpec,
    store: Arc<dyn Store>,
    tables: Arc<TableSet>,
    stats: Arc<Stats>,
    restored: HashMap<i32, PartitionProgress>,
    suppress_below: u64,
    source_id: String,
    epoch: i64,
    shutdown: Arc<AtomicBool>,
    /// Workers of this process that reached a safe point after a shutdown request.
    parked: Arc<AtomicUsize>,
    local_workers: usize,
    config: RunConfig,
}

fn make_reader(config: &RunConfig) -> Result<Box<dyn Reader>> {
    Ok(match &config.source {
        SourceChoice::Kafka(k) => Box::new(KafkaReader::connect(k.clone())?),
        SourceChoice::Generator(g) => Box::new(GeneratorReader::new(g.clone())),
        SourceChoice::Files(dir) => Box::new(FileReader::new(dir)?),
    })
}

fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<()> {
    let ledgers: Rc<RefCell<BTreeMap<i32, PartitionLedger>>> = Rc::default();
    let reader = Rc::new(RefCell::new(make_reader(&shared.config)?));
    let start = shared.config.start;
    let durable_probe = ProbeHandle::new();
    let source_probe = ProbeHandle::new();
    // Unknown until the window operator first runs: no limit before then.
    let windows_input = Rc::new(std::cell::Cell::new(u64::MAX));
    worker.dataflow::<u64, _, _>(|scope| {
        let parts = SourceParts {
            spec: shared.spec.clone(),
            schema: Schema::new(&shared.spec, shared.config.max_record_bytes),
            reader: Rc::clone(&reader),
            restored: shared.restored.clone(),
            start,
            batch: shared.config.batch,
            stop: Arc::clone(&shared.shutdown),
            ledgers: Rc::clone(&ledgers),
            stats: Arc::clone(&shared.stats),
            discovery_interval: matches!(shared.config.source, SourceChoice::Kafka(_))
                .then_some(shared.config.partition_discovery),
            max_in_flight: shared.config.max_in_flight,
            windows_input: Rc::clone(&windows_input),
        };
        let source = crate::source::render(scope, parts);
        let records = source.records.probe_with(&source_probe);
        let rejects = source.rejects;
        let windows = crate::operators::window::render(
            source.observations,
            &shared.spec,
            shared.suppress_below,
            !shared.config.quiet,
            windows_input,
        );
        crate::sink::render(
            records,
            rejects,
            windows,
            Arc::clone(&shared.store),
            Arc::clone(&shared.tables),
            Arc::clone(&shared.stats),
            &shared.spec,
        )
        .probe_with(&durable_probe);
    });

    let mut progress = ProgressWriter::new(shared, worker.index());
    let mut publisher = StatusPublisher::new(worker.index());
    let mut shutdown_since: Option<Instant> = None;
    loop {
        worker.step_or_park(Some(Duration::from_millis(20)));
        let durable = durable_probe.with_frontier(|f| f.first().copied());
        progress.poll(&reader);
        if durable.is_none() {
            // Bounded input: everything is written.
            progress.write_final(&ledgers, None, &reader);
            return Ok(());
        }
        progress.maybe_write(&ledgers, durable, false);
        if let Some(frontier) = source_probe.with_frontier(|f| f.first().copied()) {
            shared.stats.frontier_clock.note(frontier);
        }
        publisher.maybe_publish(
            shared,
            &ledgers,
            &reader,
            &source_probe,
            durable,
            &progress.durable,
        );
        if shared.shutdown.load(Ordering::Relaxed) {
            if shutdown_since.is_none() {
                tracing::info!(
                    worker = worker.index(),
                    "shutdown requested: stopped reading, writing what the frontier completed"
                );
                shared.stats.status.set_stopping();
            }
            let since = *shutdown_since.get_or_insert_with(Instant::now);
            let source = source_probe.with_frontier(|f| f.first().copied());
            let drained =
                source == durable && shared.stats.in_flight_rows.load(Ordering::Relaxed) == 0;
            if drained || since.elapsed() > shared.config.shutdown_timeout {
                progress.write_final(&ledgers, durable, &reader);
                let parked = shared.parked.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::info!(worker = worker.index(), "stopped at a safe point");
                // Keep stepping (peers may need this worker to close their windows) until every
                // worker of this process is parked; then exit without dropping the dataflow:
                // dropping it would release capabilities and make open windows look complete.
                while shared.parked.load(Ordering::Acquire) < shared.local_workers {
                    worker.step_or_park(Some(Duration::from_millis(5)));
                }
                if parked == shared.local_workers {
                    eprintln!("weir: stopped cleanly; {}", shared.stats.summary());
                    std::process::exit(0);
                }
                loop {
                    worker.step_or_park(Some(Duration::from_millis(50)));
                }
            }
        }
    }
}

/// Publishes a worker's frontiers, positions and lag to the metrics and the status board, a
/// few times a second.
struct StatusPublisher {
    worker: usize,
    last: Option<Instant>,
}

impl StatusPublisher {
    const EVERY: Duration = Duration::from_millis(250);

    fn new(worker: usize) -> Self {
        StatusPublisher { worker, last: None }
    }

    fn maybe_publish(
        &mut self,
        shared: &Shared,
        ledgers: &Rc<RefCell<BTreeMap<i32, PartitionLedger>>>,
        reader: &Rc<RefCell<Box<dyn Reader>>>,
        source_probe: &ProbeHandle<u64>,
        durable: Option<u64>,
        durable_offsets: &BTreeMap<i32, i64>,
    ) {
        if self.last.is_some_and(|at| at.elapsed() < Self::EVERY) {
            return;
        }
        self.last = Some(Instant::now());
        let metrics = &shared.stats.metrics;
        let worker = WorkerLabels {
            worker: self.worker,
        };
        // Time 0 is the source's initial capability, before it has read anything.
        let frontier = source_probe
            .with_frontier(|f| f.first().copied())
            .filter(|t| *t > 0);
        let durable = durable.filter(|t| *t > 0);
        let now = crate::time::now_ms();
        if let Some(f) = frontier {
            metrics
                .event_time_frontier
                .get_or_create(&worker)
                .set(f as f64 / 1000.0);
            metrics
                .frontier_lag
                .get_or_create(&worker)
                .set(now.saturating_sub(f) as f64 / 1000.0);
        }
        if let Some(d) = durable {
            metrics
                .durable_frontier
                .get_or_create(&worker)
                .set(d as f64 / 1000.0);
        }
        let reader = reader.borrow();
        let mut partitions = Vec::new();
        for (partition, ledger) in ledgers.borrow().iter() {
            let labels = PartitionLabels {
                worker: self.worker,
                partition: *partition,
            };
            // At least the position: statistics may be a second old.
            let high_watermark = reader
                .high_watermark(*partition)
                .map(|h| h.max(ledger.next_offset));
            let lag = high_watermark.map(|h| (h - ledger.next_offset).max(0));
            metrics
                .position
                .get_or_create(&labels)
                .set(ledger.next_offset);
            if let (Some(h), Some(l)) = (high_watermark, lag) {
                metrics.high_watermark.get_or_create(&labels).set(h);
                metrics.consumer_lag.get_or_create(&labels).set(l);
            }
            partitions.push(PartitionStatus {
                partition: *partition,
                position: ledger.next_offset,
                high_watermark,
                lag,
                durable_offset: durable_offsets.get(partition).copied(),
                watermark_ms: ledger.clock.watermark,
                records: metrics.records_read.get_or_create(&labels).get(),
                finished: ledger.finished,
            });
        }
        shared.stats.status.set_worker(WorkerStatus {
            worker: self.worker,
            frontier_ms: frontier,
            durable_ms: durable,
            partitions,
        });
    }
}

/// (partition, resume offset) pairs.
type Offsets = Vec<(i32, i64)>;

/// Writes this worker's progress records, one write in flight at a time.
struct ProgressWriter<'a> {
    shared: &'a Shared,
    worker: usize,
    written: HashMap<i32, (i64, u64)>,
    /// Set by the store when the write in flight is durable: the offsets it recorded.
    in_flight: Arc<Mutex<Option<Offsets>>>,
    busy: bool,
    last: Instant,
    /// Resume offsets of the last durable progress record, per partition.
    durable: BTreeMap<i32, i64>,
    /// When progress was last logged at info level.
    logged: Option<Instant>,
}

impl<'a> ProgressWriter<'a> {
    fn new(shared: &'a Shared, worker: usize) -> Self {
        ProgressWriter {
            shared,
            worker,
            written: HashMap::new(),
            in_flight: Arc::default(),
            busy: false,
            last: Instant::now(),
            durable: BTreeMap::new(),
            logged: None,
        }
    }

    /// Notices an acknowledged progress write and commits its offsets to Kafka.
    fn poll(&mut self, reader: &Rc<RefCell<Box<dyn Reader>>>) {
        let acknowledged = self
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(offsets) = acknowledged {
            self.busy = false;
            reader.borrow().commit(&offsets);
            let metrics = &self.shared.stats.metrics;
            for (partition, offset) in &offsets {
                self.durable.insert(*partition, *offset);
                let labels = PartitionLabels {
                    worker: self.worker,
                    partition: *partition,
                };
                metrics.durable_offset.get_or_create(&labels).set(*offset);
            }
            metrics
                .progress_writes
                .get_or_create(&WorkerLabels {
                    worker: self.worker,
                })
                .inc();
            // One line a minute per worker; every write at debug level.
            if self
                .logged
                .is_none_or(|at| at.elapsed() >= Duration::from_secs(60))
            {
                self.logged = Some(Instant::now());
                tracing::info!(worker = self.worker, offsets = ?self.durable, "progress written");
            } else {
                tracing::debug!(worker = self.worker, offsets = ?offsets, "progress written");
            }
        }
    }

    /// Writes the records that changed, at most every `progress_interval`.
    fn maybe_write(
        &mut self,
        ledgers: &Rc<RefCell<BTreeMap<i32, PartitionLedger>>>,
        durable: Option<u64>,
        force: bool,
    ) -> bool {
        if self.busy || (!force && self.last.elapsed() < self.shared.config.progress_interval) {
            return false;
        }
        self.last = Instant::now();
        let mut changed = Vec::new();
        for (partition, ledger) in ledgers.borrow_mut().iter_mut() {
            let (resume_offset, watermark) = ledger.resume_point(durable);
            // The final write always carries the latest durable frontier, so that a restart
            // does not recompute windows that are already written.
            if force || self.written.get(partition) != Some(&(resume_offset, watermark)) {
                changed.push(PartitionProgress {
                    partition: *partition,
                    resume_offset,
                    watermark,
                    // Windows ending below the stored frontiers were durable before this run
                    // started, and records before a restored resume offset retired under those
                    // frontiers: the stored frontier never goes back (see crate::progress).
                    durable_frontier: durable
                        .map_or(u64::MAX, |d| d.max(self.shared.suppress_below)),
                    epoch: self.shared.epoch,
                });
            }
        }
        if changed.is_empty() {
            return false;
        }
        crate::failpoint::hit("progress.before_write");
        let rows = changed
            .iter()
            .map(|p| self.shared.tables.progress_cells(&self.shared.source_id, p))
            .collect();
        for p in &changed {
            self.written
                .insert(p.partition, (p.resume_offset, p.watermark));
        }
        let offsets: Vec<(i32, i64)> = changed
            .iter()
            .map(|p| (p.partition, p.resume_offset))
            .collect();
        let (slot, stats) = (Arc::clone(&self.in_flight), Arc::clone(&self.shared.stats));
        let count = changed.len() as u64;
        self.busy = true;
        self.shared.store.write(
            TableSet::PROGRESS,
            rows,
            Box::new(move || {
                crate::failpoint::hit("progress.after_write");
                stats.progress_written.fetch_add(count, Ordering::Relaxed);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(offsets);
            }),
        );
        true
    }

    /// Writes the final records and waits until they are durable.
    fn write_final(
        &mut self,
        ledgers: &Rc<RefCell<BTreeMap<i32, PartitionLedger>>>,
        durable: Option<u64>,
        reader: &Rc<RefCell<Box<dyn Reader>>>,
    ) {
        while self.busy {
            self.poll(reader);
            std::thread::sleep(Duration::from_millis(1));
        }
        // The final progress is a lifecycle event: always at info.
        self.logged = None;
        if self.maybe_write(ledgers, durable, true) {
            while self.busy {
                self.poll(reader);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}
