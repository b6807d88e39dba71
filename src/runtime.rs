//! The runtime: prepares the store, reads progress, starts the timely cluster, builds the
//! dataflow on every worker and drives it until the input ends, a shutdown reaches its safe
//! point, or an infrastructure error stops it. It never ends the process: [`run`] returns a
//! [`Summary`] or the error, and the binary chooses the exit code.
//!
//! ```text
//!  source ──observations──► windows ──results──┐
//!    │   ├──records────────────────────────────┼──► sink ──durable──┐
//!    │   └──rejects────────────────────────────┘                    ▼
//!    └──notes (what each offset retires) ──────────────────────► progress ──► events ──► worker loop
//! ```
//!
//! A dataflow with `[[inputs]]` runs one source, sink and progress stage per input (the
//! left input first), all on one timely dataflow; the inputs' joinable records meet in the
//! join ([`crate::operators::asof`] or [`crate::operators::interval`]), whose view feeds the
//! windows; the left input's sink writes the window results and an inner join's unmatched
//! records; every progress stage follows the durable frontier of all the sinks:
//!
//! ```text
//!  left source ──joinable──┐                                  ┌──► left sink ──┐
//!                          ├──► join ──view──► windows ───────┘                 ├─durable─► progress (each input)
//!  right source ─joinable──┘                                     right sink ────┘
//! ```
//!
//! A table input (the right side of an as-of join) is read from its first offset on every
//! start: its state is its history.
//!
//! Everything the engine runs on comes in as a value ([`Engine`]): the dataflow, the timely
//! configuration, the [`Input`] (which makes each worker's reader), the [`Store`], the
//! counters and the shutdown flag. Tests start it in-process with an in-memory topic and
//! store ([`crate::source::memory`], [`crate::sink::memory`]).
//!
//! Stopping. Bounded input ends when every source has dropped its capabilities: the final
//! frontier closes every window, the sink writes them, the durable frontier becomes empty, and
//! each worker's progress operator writes its final record. On a shutdown request the sources
//! stop reading but keep their capabilities (open windows must not look complete); each
//! progress operator waits until everything read is durable (or the shutdown timeout), writes
//! its final record, and its worker parks, stepping until every worker of the process has,
//! then returns *without stepping again*: the dataflow is removed unscheduled
//! (`drop_dataflow`), so no capability it held is ever seen released and no open window is
//! emitted. An error reported to the
//! [`FirstError`] makes every worker return it at once, also without stepping again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;

use crate::error::{Error, FirstError, Result};
use crate::fingerprint::Definition;
use crate::metrics::{PartitionLabels, Stats, WorkerLabels};
use crate::operators::asof::JoinGauges;
use crate::operators::control::Control;
use crate::operators::flow::FlowControl;
use crate::operators::interval::IntervalGauges;
use crate::progress::{PartitionProgress, ProgressEvent, ProgressLog, ProgressSettings};
use crate::resume::Plan;
use crate::schema::Schema;
use crate::sink::{Store, TableSet};
use crate::source::{Committer, Input, JoinSide, SourceParts, StartAt};
use crate::spec::{DataflowSpec, InputKind, Join, JoinKind};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::core::Partition;
use timely::dataflow::operators::generic::operator::empty;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Concatenate;
use timely::dataflow::Stream;

use crate::data::record::{Key, Record, Value};
use crate::data::row::Row;
use crate::operators::asof::TableChange;
use crate::operators::window::{observe_fields, Observation};
use crate::status::{DataflowInfo, WindowNames};

/// Everything the engine runs on.
pub struct Engine {
    /// The dataflow.
    pub spec: DataflowSpec,
    /// Timely's configuration (threads, processes, addresses).
    pub timely: timely::Config,
    /// The shape of the cluster, for the status page and logs.
    pub cluster: Cluster,
    /// What the dataflow reads.
    pub input: Box<dyn Input>,
    /// Where its tables live.
    pub store: Arc<dyn Store>,
    /// Counters, metrics and the status page (the caller may serve them).
    pub stats: Arc<Stats>,
    /// Set to stop at the next safe point.
    pub shutdown: Arc<AtomicBool>,
    /// Tuning.
    pub settings: Settings,
}

/// The shape of the cluster.
#[derive(Clone, Copy, Debug)]
pub struct Cluster {
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// This process.
    pub process: usize,
}

/// How the engine behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Start position of partitions without progress.
    pub start: StartAt,
    /// Messages per activation.
    pub batch: usize,
    /// Larger messages are dead letters.
    pub max_record_bytes: usize,
    /// Sources pause above this many rows in flight.
    pub max_in_flight: u64,
    /// Changed progress records are written at most this often.
    pub progress_interval: Duration,
    /// How often sources look for new partitions (when the input can grow).
    pub partition_discovery: Duration,
    /// How long a shutdown waits for what was read to become durable.
    pub shutdown_timeout: Duration,
    /// Print a line per closed window and dimension.
    pub print_windows: bool,
    /// Discard the stored progress and replay from `start` (after a change that is refused).
    pub reset_progress: bool,
    /// A backfill whose start retention has removed starts at the earliest offset still held
    /// (recorded in `weir_backfills`) instead of stopping.
    pub backfill_from_retention: bool,
    /// How long the source may be unable to read (broker down, paused, silent) before the run
    /// stops with an error; `None` waits for ever.
    pub source_stall_timeout: Option<Duration>,
}

/// What a finished run did.
#[derive(Debug)]
pub struct Summary {
    /// Counters.
    pub stats: Arc<Stats>,
    /// A shutdown request stopped it (rather than the end of its input).
    pub stopped: bool,
}

/// Runs a dataflow until its input ends, `shutdown` is set, or an infrastructure error.
pub fn run(engine: Engine) -> Result<Summary> {
    let Engine {
        spec,
        timely,
        cluster,
        input,
        store,
        stats,
        shutdown,
        settings,
    } = engine;
    let failed = FirstError::default();
    let tables = Arc::new(TableSet::new(&spec));
    store.prepare(&tables, &failed)?;
    // Each input of the dataflow, as a single-input dataflow of its own: one without
    // [[inputs]] is its own only input.
    let mut opened: Vec<Opened> = Vec::new();
    match spec.join.as_deref() {
        None => opened.push((0, spec.clone(), None, input)),
        Some(join) => {
            for (i, side) in join.inputs.iter().enumerate() {
                if i != join.left {
                    let other = input.for_topic(&side.spec.topic)?;
                    opened.push((i, side.spec.clone(), Some(side.kind), other));
                }
            }
            let stream = &join.inputs[join.left];
            opened.insert(
                0,
                (join.left, stream.spec.clone(), Some(stream.kind), input),
            );
        }
    }
    let mut sides = Vec::new();
    let mut changes = Vec::new();
    let mut resumed = Vec::new();
    // The left input's stored time origin (the generator's): every input of the dataflow
    // shares it, a table input (which keeps no progress of its own) included.
    let mut left_epoch = None;
    for (index, side_spec, kind, mut input) in opened {
        let side_tables = Arc::new(tables.for_input(index));
        let source_id = input.id();
        let table = kind == Some(InputKind::Table);
        // A table input is read from its start on every run (its state is its history); its
        // stored progress only says which rows are durable already ([`Plan::table`]). The
        // stream input's outputs are the view's.
        let definition = Definition::of(if table { &side_spec } else { &spec }, &source_id);
        // (`--reset-progress` discards it as for any input.)
        let plan = if table && !settings.reset_progress {
            Plan::table(&definition, &store.read_progress(&spec.name, &source_id)?)
        } else {
            plan_start(
                &spec,
                &definition,
                input.as_ref(),
                &store,
                &side_tables,
                &settings,
                &failed,
            )?
        };
        // The generator's time origin is part of its data: keep the stored one (the left
        // input's, for every input).
        let epoch = if table {
            left_epoch.or(plan.epoch)
        } else {
            plan.epoch.or(left_epoch)
        };
        if sides.is_empty() {
            left_epoch = plan.epoch;
        }
        if let Some(stored) = epoch {
            input.restore_epoch(stored);
        }
        // Fail fast, with one line, when the broker, topic or files are not there.
        input.check()?;
        resumed.push(if table {
            match plan.partitions.len() {
                0 => format!("input {}: a table, read from its start", side_spec.topic),
                n => format!("input {}: a table, read from its start; its rows before the stored offsets of {n} partitions are durable and not written again", side_spec.topic),
            }
        } else {
            plan.summary(&spec.name)
        });
        changes.extend(plan.changes.iter().map(|c| c.line.clone()));
        sides.push(Side {
            epoch: input.epoch(),
            input: Arc::from(input),
            spec: side_spec,
            kind,
            tables: side_tables,
            definition: (definition.fingerprint(), definition.to_json()),
            source_id,
            plan,
        });
    }
    let resumed = resumed.join("; ");
    // Neither description contains a credential: they name brokers, contact points, topic
    // and keyspace only, and host lists with credentials are refused at start
    // (`security::no_credentials_in`; tested in tests/security.rs).
    let source_text = sides
        .iter()
        .map(|s| s.input.describe())
        .collect::<Vec<_>>()
        .join(" + ");
    stats
        .metrics
        .set_build_info(&spec.name, &source_text, &store.describe());
    stats.status.set_dataflow(DataflowInfo {
        name: spec.name.clone(),
        file: spec.path.display().to_string(),
        topic: sides
            .iter()
            .map(|s| s.spec.topic.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        source: source_text.clone(),
        sink: store.describe(),
        workers: cluster.workers,
        processes: cluster.processes,
        process: cluster.process,
        names: WindowNames::new(&spec),
        changes,
    });
    tracing::info!(
        dataflow = %spec.name,
        file = %spec.path.display(),
        source = %source_text,
        sink = %store.describe(),
        workers = cluster.workers,
        processes = cluster.processes,
        "start: {resumed}"
    );

    let suppress = sides[0].plan.suppress(&spec);
    let shared = Arc::new(Shared {
        suppress,
        spec,
        sides,
        store,
        stats: Arc::clone(&stats),
        shutdown,
        failed: failed.clone(),
        settings,
    });
    let (results, collected) = mpsc::channel();
    let guards = timely::execute(timely, move |worker| {
        // A panic (a bug) stops the peers of this process as an error does, instead of leaving
        // them waiting for this worker.
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_worker(worker, &shared)))
                .unwrap_or_else(|panic| {
                    let what = panic_message(panic.as_ref());
                    match cluster_panic(what) {
                        Some(_) => Err(Error::PeerLost(
                            "the connection to another process broke (it stopped or died)".into(),
                        )),
                        None => Err(Error::Cluster(format!("a worker panicked: {what}"))),
                    }
                });
        // Timely would go on stepping a dataflow that has not completed (sources that stopped
        // keep their capabilities): remove it unscheduled instead, so that nothing it holds is
        // seen released and nothing more is written.
        for dataflow in worker.installed_dataflows() {
            worker.drop_dataflow(dataflow);
        }
        let result = match outcome {
            Ok(stopped) => Ok(stopped),
            Err(error) => {
                // The peers of this process stop too: they look at the same FirstError. (An
                // error that came from it is already there; the first one reported wins.)
                shared.failed.report(error);
                Err(())
            }
        };
        let _ = results.send(result);
    })
    .map_err(Error::Cluster)?;
    let mut stopped = false;
    for _ in 0..cluster.workers {
        match collected.recv() {
            Ok(Ok(worker_stopped)) => stopped |= worker_stopped,
            Ok(Err(())) => {}
            Err(_) => failed.report(Error::Cluster(
                "a worker thread ended without a result".into(),
            )),
        }
    }
    if let Some(error) = failed.take() {
        // Worker threads have returned; with several processes the network threads may wait
        // for peers that are still running, so they are not joined here (the process ends).
        if cluster.processes > 1 {
            std::mem::forget(guards);
        }
        return Err(error);
    }
    if cluster.processes > 1 {
        std::mem::forget(guards);
    } else {
        for result in guards.join() {
            result.map_err(|e| Error::Cluster(format!("a worker failed: {e}")))?;
        }
    }
    Ok(Summary { stats, stopped })
}

/// A panic's message (empty when it is not text).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("")
}

/// What a panic of timely's says about the cluster, by its message (timely 0.32's wording).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterPanic {
    /// A network thread's: a connection to another process broke (it stopped or died).
    ConnectionBroke,
    /// A worker's, after that: the queue it shared with the network thread is poisoned.
    Poisoned,
}

/// Whether `message` is one of the panics a broken connection to another process causes.
pub fn cluster_panic(message: &str) -> Option<ClusterPanic> {
    if message.starts_with("timely communication error") {
        Some(ClusterPanic::ConnectionBroke)
    } else if message.contains("poisoned") {
        Some(ClusterPanic::Poisoned)
    } else {
        None
    }
}

/// How long a start waits for the store to acknowledge what it writes before the dataflow
/// starts (reset markers, the backfill log).
const START_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the stored progress and decides what this start does ([`crate::resume`]): resume,
/// backfill what was added (checking the history is still there), reset, or refuse. Logs one
/// line per change.
fn plan_start(
    spec: &DataflowSpec,
    definition: &Definition,
    input: &dyn Input,
    store: &Arc<dyn Store>,
    tables: &TableSet,
    settings: &Settings,
    failed: &FirstError,
) -> Result<Plan> {
    let source_id = input.id();
    let stored = store.read_progress(&spec.name, &source_id)?;
    let mut plan = Plan::new(definition, &stored);
    for change in &plan.changes {
        tracing::warn!(dataflow = %spec.name, "{}", change.line);
    }
    if settings.reset_progress {
        let live: Vec<&PartitionProgress> = stored.iter().filter(|p| !p.is_reset()).collect();
        tracing::warn!(
            dataflow = %spec.name,
            partitions = live.len(),
            "--reset-progress: the stored progress is discarded; every partition replays from --start and its outputs are written again"
        );
        if !live.is_empty() {
            let rows = live
                .iter()
                .map(|p| tables.progress_cells(&source_id, &PartitionProgress::reset(p.partition)))
                .collect();
            write_and_wait(
                store,
                failed,
                TableSet::PROGRESS,
                rows,
                "reset the stored progress",
            )?;
        }
        return Ok(Plan::new(definition, &[]));
    }
    let refused = plan.refused();
    if !refused.is_empty() {
        let lines: Vec<&str> = refused.iter().map(|c| c.line.as_str()).collect();
        return Err(Error::Changed(format!(
            "{} ({}); nothing was written",
            plan.summary(&spec.name),
            lines.join("; ")
        )));
    }
    let backfills = plan.backfills();
    if backfills.is_empty() {
        return Ok(plan);
    }
    let earliest = input.earliest_offsets()?;
    let changes: Vec<&str> = plan.changes.iter().map(|c| c.line.as_str()).collect();
    let changes = changes.join("; ");
    let mut log = Vec::new();
    for partition in backfills {
        let Some(p) = plan.partitions.get_mut(&partition) else {
            continue;
        };
        let wanted = p.offset;
        if let (Some(w), Some(low)) = (wanted, earliest.get(&partition).copied()) {
            if low > w {
                if !settings.backfill_from_retention {
                    return Err(Error::Changed(format!(
                        "dataflow {}: the backfill of partition {partition} needs its history from offset {w}, but the topic now starts at {low} (retention removed the rest); start with --backfill-from-retention to accept outputs computed from offset {low} on (recorded in {}), or start the file under a new dataflow name; nothing was written",
                        spec.name,
                        crate::sink::tables::BACKFILLS_TABLE
                    )));
                }
                tracing::warn!(partition, wanted = w, from = low, "--backfill-from-retention: partial backfill, from the earliest offset still held");
                p.offset = Some(low);
                p.start_offset = Some(low);
            }
        }
        log.push(tables.backfill_cells(
            &source_id,
            partition,
            wanted,
            p.offset,
            p.rows_from,
            &changes,
        ));
    }
    write_and_wait(
        store,
        failed,
        TableSet::BACKFILLS,
        log,
        "record the backfill",
    )?;
    Ok(plan)
}

/// Writes `rows` and waits (bounded) until they are durable.
fn write_and_wait(
    store: &Arc<dyn Store>,
    failed: &FirstError,
    table: usize,
    rows: Vec<Vec<crate::sink::Cell>>,
    what: &str,
) -> Result<()> {
    let (done, acked) = mpsc::channel();
    store.write(
        table,
        rows,
        Box::new(move || {
            let _ = done.send(());
        }),
    );
    let deadline = Instant::now() + START_WRITE_TIMEOUT;
    loop {
        if let Some(error) = failed.take() {
            return Err(error);
        }
        match acked.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => return Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
            Err(_) => {
                return Err(Error::Sink(format!(
                    "the store did not acknowledge the write to {what} within {START_WRITE_TIMEOUT:?}; check the store and start again"
                )))
            }
        }
    }
}

/// An input being opened: its index in the file, its spec, its kind and the input itself.
type Opened = (usize, DataflowSpec, Option<InputKind>, Box<dyn Input>);

/// What every worker shares.
struct Shared {
    /// The dataflow (with inputs: the join's view).
    spec: DataflowSpec,
    /// Its inputs, the stream input first.
    sides: Vec<Side>,
    store: Arc<dyn Store>,
    stats: Arc<Stats>,
    /// Per window and dimension: windows ending below were written before this run.
    suppress: Vec<Vec<u64>>,
    shutdown: Arc<AtomicBool>,
    /// Workers of this process that reached a safe point after their final progress.
    failed: FirstError,
    settings: Settings,
}

/// One input of the dataflow, and what this start does with its stored progress.
struct Side {
    /// The input as a single-input dataflow (topic, schema, lateness, its tables).
    spec: DataflowSpec,
    /// Stream or table, for an input of a dataflow with `[[inputs]]`.
    kind: Option<InputKind>,
    input: Arc<dyn Input>,
    /// Its rows, dead-letter and late tables ([`TableSet::for_input`]).
    tables: Arc<TableSet>,
    /// What this start does with the stored progress.
    plan: Plan,
    /// (fingerprint, definition JSON), stored with its progress.
    definition: (String, String),
    source_id: String,
    epoch: i64,
}

/// Progress records go to the store's progress table; offsets then to the consumer group.
struct StoreProgressLog {
    store: Arc<dyn Store>,
    tables: Arc<TableSet>,
    source_id: String,
    committer: Box<dyn Committer>,
    stats: Arc<Stats>,
}

impl ProgressLog for StoreProgressLog {
    fn write(&self, records: Vec<PartitionProgress>, done: Box<dyn FnOnce() + Send>) {
        let rows = records
            .iter()
            .map(|p| self.tables.progress_cells(&self.source_id, p))
            .collect();
        let (stats, count) = (Arc::clone(&self.stats), records.len() as u64);
        self.store.write(
            TableSet::PROGRESS,
            rows,
            Box::new(move || {
                stats.progress_written.fetch_add(count, Ordering::Relaxed);
                done();
            }),
        );
    }

    fn commit(&self, offsets: &[(i32, i64)]) {
        self.committer.commit(offsets);
    }
}

/// Builds the dataflow on one worker and drives it; `Ok(true)` when a shutdown stopped it.
fn run_worker(worker: &mut timely::worker::Worker, shared: &Shared) -> Result<bool> {
    let settings = &shared.settings;
    let mut readers = Vec::new();
    for side in &shared.sides {
        readers.push(side.input.reader()?);
    }
    let durable_probe = ProbeHandle::new();
    let source_probe = ProbeHandle::new();
    let flow = FlowControl::new(
        Arc::clone(&shared.stats.in_flight_rows),
        settings.max_in_flight,
        match shared.spec.join {
            Some(_) => crate::operators::flow::JOIN_MAX_AHEAD_MS,
            None => crate::operators::flow::MAX_AHEAD_MS,
        },
    );
    // What the join carries of each input (the left input is the first side).
    let columns = shared
        .spec
        .join
        .as_deref()
        .map(|join| ViewColumns::new(&shared.spec, join));
    let (events, progress_events) = mpsc::channel();
    // Built first on every worker, so that its dataflow has the same identity everywhere.
    let mut control = Control::new(worker);
    let gauges = Gauges::default();
    worker.dataflow::<u64, _, _>(|scope| {
        let mut sources = Vec::new();
        for (i, (side, reader)) in shared.sides.iter().zip(readers).enumerate() {
            let committer = reader.committer();
            let parts = SourceParts {
                spec: side.spec.clone(),
                schema: Schema::new(&side.spec, settings.max_record_bytes),
                reader,
                restored: side.plan.partitions.clone(),
                start: match side.kind {
                    Some(InputKind::Table) => StartAt::Earliest,
                    _ => settings.start,
                },
                batch: settings.batch,
                stop: Arc::clone(&shared.shutdown),
                stats: Arc::clone(&shared.stats),
                discovery_interval: side.input.grows().then_some(settings.partition_discovery),
                flow: flow.clone(),
                failed: shared.failed.clone(),
                stall_timeout: settings.source_stall_timeout,
                join_side: side.kind.map(|kind| JoinSide {
                    kind,
                    fields: columns
                        .as_ref()
                        .map(|c| if i == 0 { &c.left } else { &c.right })
                        .map(|c| c.kept.clone())
                        .unwrap_or_default(),
                }),
            };
            sources.push((crate::source::render(scope, parts), committer));
        }
        let (observations, unmatched) = match shared.spec.join.as_deref().zip(columns) {
            None => (sources[0].0.observations.clone(), None),
            Some((join, columns)) => {
                let (observations, unmatched) = join_view(
                    sources[0].0.joinable.clone(),
                    sources[1].0.joinable.clone(),
                    &shared.spec,
                    join,
                    columns,
                    &gauges,
                );
                let tables = Arc::clone(&shared.sides[0].tables);
                let cells = unmatched.zip(tables.unmatched()).map(|(unmatched, table)| {
                    unmatched
                        .map(move |(record, key)| (table, tables.unmatched_cells(&record, &key)))
                });
                (observations, cells)
            }
        };
        let windows = crate::operators::window::render(
            observations,
            &shared.spec,
            shared.suppress.clone(),
            settings.print_windows,
            &flow.windows,
        );
        let mut durables = Vec::new();
        let mut notes = Vec::new();
        for (i, (side, (source, committer))) in shared.sides.iter().zip(sources).enumerate() {
            let records = source.records.probe_with(&source_probe);
            let (windows, cells) = if i == 0 {
                (
                    windows.clone(),
                    unmatched.clone().unwrap_or_else(|| empty(scope)),
                )
            } else {
                (empty(scope), empty(scope))
            };
            durables.push(crate::sink::render(
                crate::sink::Writes {
                    records,
                    rejects: source.rejects,
                    windows,
                    cells,
                },
                Arc::clone(&shared.store),
                Arc::clone(&side.tables),
                Arc::clone(&shared.stats),
                &shared.spec,
            ));
            notes.push((source.notes, committer));
        }
        let durable = scope.concatenate(durables).probe_with(&durable_probe);
        for (side, (notes, committer)) in shared.sides.iter().zip(notes) {
            let log = StoreProgressLog {
                store: Arc::clone(&shared.store),
                tables: Arc::clone(&side.tables),
                source_id: side.source_id.clone(),
                committer,
                stats: Arc::clone(&shared.stats),
            };
            crate::progress::render(
                notes,
                durable.clone(),
                Box::new(log),
                ProgressSettings {
                    interval: settings.progress_interval,
                    units: side.plan.units.clone(),
                    restored: side
                        .plan
                        .partitions
                        .iter()
                        .map(|(p, plan)| (*p, (plan.start_offset, plan.rows_from)))
                        .collect(),
                    definition: side.definition.clone(),
                    epoch: side.epoch,
                    stop: Arc::clone(&shared.shutdown),
                    shutdown_timeout: settings.shutdown_timeout,
                    rows_in_flight: Arc::clone(&shared.stats.in_flight_rows),
                },
                events.clone(),
            );
        }
    });
    drop(events);
    let mut finals = 0;

    let index = worker.index();
    let mut published: Option<Instant> = None;
    let mut stopping = false;
    let mut logged: Option<Instant> = None;
    loop {
        worker.step_or_park(Some(Duration::from_millis(20)));
        if shared.failed.is_set() {
            return Err(stopped_by_error());
        }
        if let Some(f) = source_probe.with_frontier(|f| f.first().copied()) {
            shared.stats.frontier_clock.note(f);
        }
        let mut finished = false;
        for event in progress_events.try_iter() {
            match event {
                ProgressEvent::Durable(offsets) => {
                    note_durable(shared, index, &offsets, &mut logged);
                }
                // Every input's progress stage writes its final record.
                ProgressEvent::Final => {
                    finals += 1;
                    finished = finals == shared.sides.len();
                }
            }
        }
        if published.is_none_or(|at| at.elapsed() >= Duration::from_millis(250)) {
            published = Some(Instant::now());
            publish_frontiers(shared, index, &source_probe, &durable_probe);
            if shared.spec.join.is_some() {
                let (kept, pending) = gauges.state();
                shared.stats.status.set_join_state(index, kept, pending);
                let labels = WorkerLabels { worker: index };
                let metrics = &shared.stats.metrics;
                metrics.join_kept.get_or_create(&labels).set(kept as i64);
                metrics
                    .join_pending
                    .get_or_create(&labels)
                    .set(pending as i64);
            }
        }
        // A stop requested in any process reaches every worker of the cluster.
        if shared.shutdown.load(Ordering::Relaxed) {
            control.stop();
        }
        if control.stop_requested() && !shared.shutdown.load(Ordering::Relaxed) {
            tracing::info!(worker = index, "another process is stopping: stopping too");
            shared.shutdown.store(true, Ordering::Relaxed);
        }
        if shared.shutdown.load(Ordering::Relaxed) && !stopping {
            stopping = true;
            tracing::info!(
                worker = index,
                "shutdown requested: stopped reading, writing what the frontier completed"
            );
            shared.stats.status.set_stopping();
        }
        if finished {
            break;
        }
    }
    publish_frontiers(shared, index, &source_probe, &durable_probe);
    // Keep stepping (peers may need this worker to close their windows) until every worker of
    // the cluster has written its final progress; then return without stepping again. No
    // process leaves while another still needs it.
    control.finished();
    if stopping {
        tracing::info!(worker = index, "stopped at a safe point");
    }
    let deadline = Instant::now() + settings.shutdown_timeout + PEER_FINISH_GRACE;
    while !control.all_finished() {
        worker.step_or_park(Some(Duration::from_millis(5)));
        if shared.failed.is_set() {
            return Err(stopped_by_error());
        }
        if Instant::now() > deadline {
            shared.failed.report(Error::PeerLost(format!(
                "another process did not reach its safe point within {:?} of this one",
                settings.shutdown_timeout + PEER_FINISH_GRACE
            )));
            return Err(stopped_by_error());
        }
    }
    Ok(stopping)
}

/// One worker's join gauges (whichever join the dataflow has).
#[derive(Default)]
struct Gauges {
    as_of: Arc<JoinGauges>,
    interval: Arc<IntervalGauges>,
}

impl Gauges {
    /// (keys or records kept for the right side, left records waiting for the frontiers).
    fn state(&self) -> (u64, u64) {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        (
            load(&self.as_of.table_keys) + load(&self.interval.right_kept),
            load(&self.as_of.pending_events) + load(&self.interval.left_pending),
        )
    }
}

/// The join's view: each left record meets the right input's version of its key as of its
/// event time ([`crate::operators::asof`]), or the right records of its key within the
/// interval ([`crate::operators::interval`]: one joined record per match). Returns the joined
/// records projected for the windows (the view's fields: the left's, then the right's, nulls
/// where nothing matched in a left join), and an inner join's unmatched left records with
/// their join key's text.
fn join_view<'s>(
    left: Stream<'s, u64, Vec<Record>>,
    right: Stream<'s, u64, Vec<Record>>,
    view: &DataflowSpec,
    join: &Join,
    columns: ViewColumns,
    gauges: &Gauges,
) -> JoinStreams<'s> {
    let (on, right_on) = (columns.left.at(join.on), columns.right.at(join.right_on));
    let left = selected(left, join.inputs[join.left].select.clone(), &columns.left);
    let right = selected(
        right,
        join.inputs[join.right].select.clone(),
        &columns.right,
    );
    let events = left.map(move |r: Record| (join_key(&r.values[on]), r.event_time, r));
    let joined: Stream<'s, u64, Vec<(Record, Option<Row>)>> = match join.kind {
        JoinKind::AsOf => {
            let changes = right.map(move |r: Record| TableChange {
                key: r.key,
                time: r.event_time,
                order: (r.partition, r.offset),
                row: (!r.deleted).then_some(Row(r.values)),
            });
            crate::operators::asof::render(events, changes, Key::route, Arc::clone(&gauges.as_of))
        }
        JoinKind::Interval { lower_ms, upper_ms } => {
            let records = right.flat_map(move |r: Record| {
                let key = join_key(&r.values[right_on])?;
                Some((key, r.event_time, Row(r.values)))
            });
            crate::operators::interval::render(
                events,
                records,
                (lower_ms, upper_ms),
                Key::route,
                Arc::clone(&gauges.interval),
            )
            .flat_map(|(event, matches): (Record, Vec<Row>)| {
                if matches.is_empty() {
                    return vec![(event, None)];
                }
                matches
                    .into_iter()
                    .map(|row| (event.clone(), Some(row)))
                    .collect()
            })
        }
    };
    let view = view.clone();
    let observe_joined = move |(event, row): (Record, Option<Row>)| {
        let key = join_key(&event.values[on])?;
        Some(observe_fields(&view, event.event_time, key, |f| {
            columns.value(&event, row.as_ref(), f)
        }))
    };
    if !join.inner {
        return (joined.flat_map(observe_joined), None);
    }
    // An inner join: the events without a version go to their own table (moved, not cloned).
    let mut parts = joined
        .partition::<CapacityContainerBuilder<Vec<_>>, _, _>(2, |(event, row)| {
            (u64::from(row.is_none()), (event, row))
        })
        .into_iter();
    let (Some(matched), Some(unmatched)) = (parts.next(), parts.next()) else {
        unreachable!("partition(2) makes two streams");
    };
    let unmatched = unmatched.map(move |(event, _): (Record, Option<Row>)| {
        let key = event.values[on].label().to_string();
        (event, key)
    });
    (matched.flat_map(observe_joined), Some(unmatched))
}

/// One input's fields a join carries: the join's own field, the input's `select` field and
/// the fields of the view's dimensions and aggregates that are the input's. Its source
/// projects its joinable records onto them ([`JoinSide::fields`]), so the join holds, moves
/// and clones no more than it reads.
#[derive(Clone, Debug)]
struct Columns {
    /// The input's fields kept, in order.
    kept: Vec<usize>,
    /// The input's field -> its position in the projected values.
    slot: Vec<Option<usize>>,
}

impl Columns {
    fn new(width: usize, fields: impl Iterator<Item = usize>) -> Self {
        let mut kept: Vec<usize> = fields.filter(|f| *f < width).collect();
        kept.sort_unstable();
        kept.dedup();
        let mut slot = vec![None; width];
        for (position, field) in kept.iter().enumerate() {
            slot[*field] = Some(position);
        }
        Columns { kept, slot }
    }

    /// Where the kept field `f` sits in a projected record. `f` is one the join reads, so it
    /// was kept (the constructor's fields say which).
    fn at(&self, f: usize) -> usize {
        match self.slot.get(f).copied().flatten() {
            Some(position) => position,
            None => unreachable!("field {f} is read by the join, so it is kept"),
        }
    }
}

/// Both inputs' [`Columns`], and how the joined view's fields map onto them.
#[derive(Clone, Debug)]
struct ViewColumns {
    /// The view's fields below this are the left input's.
    left_width: usize,
    left: Columns,
    right: Columns,
}

impl ViewColumns {
    fn new(view: &DataflowSpec, join: &Join) -> Self {
        let left_width = join.inputs[join.left].spec.fields.len();
        let right_width = join.inputs[join.right].spec.fields.len();
        let read: Vec<usize> = view
            .dimensions
            .iter()
            .copied()
            .chain(view.aggregates.iter().filter_map(|a| a.function.field()))
            .collect();
        let select = |input: usize| join.inputs[input].select.as_ref().map(|s| s.field);
        let left = Columns::new(
            left_width,
            read.iter()
                .copied()
                .chain([join.on])
                .chain(select(join.left)),
        );
        let right = Columns::new(
            right_width,
            read.iter()
                .filter_map(|f| f.checked_sub(left_width))
                .chain([join.right_on])
                .chain(select(join.right)),
        );
        ViewColumns {
            left_width,
            left,
            right,
        }
    }

    /// The joined view's field `f`: the event's, or the version's (null without one).
    fn value<'a>(&self, event: &'a Record, row: Option<&'a Row>, f: usize) -> &'a Value {
        static NULL: Value = Value::Null;
        match f.checked_sub(self.left_width) {
            None => &event.values[self.left.at(f)],
            Some(right) => match row {
                Some(row) => &row.0[self.right.at(right)],
                None => &NULL,
            },
        }
    }
}

/// The records an input's `select` lets take part in the join (all when it has none).
fn selected<'s>(
    records: Stream<'s, u64, Vec<Record>>,
    select: Option<crate::spec::Select>,
    columns: &Columns,
) -> Stream<'s, u64, Vec<Record>> {
    match select {
        None => records,
        Some(select) => {
            let field = columns.at(select.field);
            records.flat_map(move |r: Record| {
                let label = r.values[field].label();
                select
                    .values
                    .iter()
                    .any(|v| v.as_str() == label)
                    .then_some(r)
            })
        }
    }
}

/// The joined records for the windows, and (an inner join's) the unmatched stream records
/// with their key.
type JoinStreams<'s> = (
    Stream<'s, u64, Vec<Observation>>,
    Option<Stream<'s, u64, Vec<(Record, String)>>>,
);

/// A join field's value as the table's key (`None` for null: it meets no version).
fn join_key(value: &Value) -> Option<Key> {
    match value {
        Value::Uuid(u) => Some(Key::Uuid(*u)),
        Value::Int(i) => Some(Key::Int(*i)),
        Value::Text(t) => Some(Key::Text(t.to_string())),
        _ => None,
    }
}

/// How much longer than `--shutdown-timeout` a worker that has written its final progress
/// waits for the other workers of the cluster to write theirs.
const PEER_FINISH_GRACE: Duration = Duration::from_secs(30);

/// What a worker returns when an error reported to the [`FirstError`] stops it (`run` returns
/// the reported error itself).
fn stopped_by_error() -> Error {
    Error::Cluster("stopped by an error reported by another thread".into())
}

/// A progress record became durable: metrics, status page, and a log line a minute.
fn note_durable(
    shared: &Shared,
    worker: usize,
    offsets: &[(i32, i64)],
    logged: &mut Option<Instant>,
) {
    let metrics = &shared.stats.metrics;
    for (partition, offset) in offsets {
        let labels = PartitionLabels {
            worker,
            partition: *partition,
        };
        metrics.durable_offset.get_or_create(&labels).set(*offset);
    }
    metrics
        .progress_writes
        .get_or_create(&WorkerLabels { worker })
        .inc();
    shared.stats.status.set_durable_offsets(worker, offsets);
    if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
        *logged = Some(Instant::now());
        tracing::info!(worker, offsets = ?offsets, "progress written");
    } else {
        tracing::debug!(worker, offsets = ?offsets, "progress written");
    }
}

/// Publishes a worker's frontiers to the metrics and the status board.
fn publish_frontiers(
    shared: &Shared,
    worker: usize,
    source_probe: &ProbeHandle<u64>,
    durable_probe: &ProbeHandle<u64>,
) {
    let metrics = &shared.stats.metrics;
    let labels = WorkerLabels { worker };
    // Time 0 is the source's initial capability, before it has read anything.
    let frontier = source_probe
        .with_frontier(|f| f.first().copied())
        .filter(|t| *t > 0);
    let durable = durable_probe
        .with_frontier(|f| f.first().copied())
        .filter(|t| *t > 0);
    if let Some(f) = frontier {
        let now = crate::time::now_ms();
        metrics
            .event_time_frontier
            .get_or_create(&labels)
            .set(f as f64 / 1000.0);
        metrics
            .frontier_lag
            .get_or_create(&labels)
            .set(now.saturating_sub(f) as f64 / 1000.0);
    }
    if let Some(d) = durable {
        metrics
            .durable_frontier
            .get_or_create(&labels)
            .set(d as f64 / 1000.0);
    }
    shared.stats.status.set_frontiers(worker, frontier, durable);
}
