//! Sinks: the timely operator that writes rows and window results, and the stores behind it
//! (Cassandra, embedded SQLite, a null store for benchmarks and an in-memory one for tests).
//!
//! Contract of [`render`]:
//! - rows (records, dead letters, late records) are idempotent upserts, submitted as soon as
//!   they arrive; window results arrive from the window operator only once final;
//! - for every submitted write the operator holds a capability at the write's timestamp until
//!   the store acknowledges it, so the frontier of the returned "durable" stream is the time
//!   below which everything is durable. Progress ([`crate::progress`]) follows that frontier;
//! - a store retries what can be retried; a write that cannot succeed is reported to the
//!   engine's [`FirstError`] and never acknowledged, so the capability is never released
//!   ("wedge, never lie"): progress never covers it, `run` returns the error, and a restart
//!   replays it.
//!
//! Stores see only tables and cells ([`Table`], [`Cell`]); the layouts are in [`tables`].

pub mod cassandra;
pub mod memory;
pub mod sqlite;
pub mod tables;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use crate::error::{FirstError, Result};
use crate::metrics::{Stats, TableLabels, TableOnly, WorkerLabels};
use crate::operators::window::WindowResult;
use crate::progress::PartitionProgress;
use crate::schema::Record;
use crate::source::Reject;
use crate::spec::DataflowSpec;
use crate::status::{WindowEvent, WindowNames, RECENT};
pub use tables::{Cell, ColumnType, Table, TableSet};

/// Called once a write is durable.
pub type Ack = Box<dyn FnOnce() + Send>;

/// A place where tables live.
pub trait Store: Send + Sync {
    /// Creates the keyspace (or file) and tables if missing, and prepares statements. A
    /// failure of a later write that retrying cannot fix goes to `failed`.
    fn prepare(&self, tables: &TableSet, failed: &FirstError) -> Result<()>;
    /// Upserts `rows` into table `table` (an index into the [`TableSet`]); calls `ack` when all
    /// are durable. Must not block for long: the caller is a timely worker.
    fn write(&self, table: usize, rows: Vec<Vec<Cell>>, ack: Ack);
    /// Reads the progress records of one dataflow and source.
    fn read_progress(&self, dataflow: &str, source: &str) -> Result<Vec<PartitionProgress>>;
    /// The sources a dataflow has stored progress for (`weir check --against`); works on a
    /// store that was never prepared (no tables: none).
    fn progress_sources(&self, _dataflow: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    /// One line for the banner, e.g. `sqlite weir.db`.
    fn describe(&self) -> String;
}

/// Discards everything, at once (benchmarks); remembers no progress.
pub struct NullStore;

impl Store for NullStore {
    fn prepare(&self, _tables: &TableSet, _failed: &FirstError) -> Result<()> {
        Ok(())
    }
    fn write(&self, _table: usize, _rows: Vec<Vec<Cell>>, ack: Ack) {
        ack()
    }
    fn read_progress(&self, _dataflow: &str, _source: &str) -> Result<Vec<PartitionProgress>> {
        Ok(Vec::new())
    }
    fn describe(&self) -> String {
        "null (rows and results are discarded)".into()
    }
}

/// What one sink operator writes.
pub struct Writes<'s> {
    /// An input's records (rows, or a table input's deletes).
    pub records: Stream<'s, u64, Vec<Record>>,
    /// Its dead letters and late records.
    pub rejects: Stream<'s, u64, Vec<Reject>>,
    /// Final window results.
    pub windows: Stream<'s, u64, Vec<WindowResult>>,
    /// Rows of other tables, by table index (an inner join's unmatched records).
    pub cells: Stream<'s, u64, Vec<(usize, Vec<Cell>)>>,
}

/// Renders the sink; returns the "durable" stream, which carries no data: its frontier is
/// the durable frontier.
pub fn render<'s>(
    writes: Writes<'s>,
    store: Arc<dyn Store>,
    tables: Arc<TableSet>,
    stats: Arc<Stats>,
    spec: &DataflowSpec,
) -> Stream<'s, u64, Vec<()>> {
    let Writes {
        records,
        rejects,
        windows,
        cells,
    } = writes;
    let scope = records.scope();
    let worker = scope.index();
    let meters: Vec<WriteMeters> = tables
        .tables
        .iter()
        .map(|t| WriteMeters::new(&stats, worker, &t.name))
        .collect();
    let windows_written = stats
        .metrics
        .windows_written
        .get_or_create_owned(&WorkerLabels { worker });
    let in_flight_rows = stats
        .metrics
        .write_rows_in_flight
        .get_or_create_owned(&WorkerLabels { worker });
    let names = WindowNames::new(spec);
    let mut builder = OperatorBuilder::new("Sink".to_string(), scope);
    let info = builder.operator_info();
    let activator = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
    let mut records_in = builder.new_input(records, Pipeline);
    let mut rejects_in = builder.new_input(rejects, Pipeline);
    let mut windows_in = builder.new_input(windows, Pipeline);
    let mut cells_in = builder.new_input(cells, Pipeline);
    let (_output, durable) = builder.new_output::<Vec<()>>();

    builder.build(move |initial| {
        drop(initial);
        let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
        let mut in_flight: HashMap<u64, Capability<u64>> = HashMap::new();
        let mut next_id = 0u64;
        let mut first_write = true;
        move |_frontiers| {
            for id in std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner())) {
                in_flight.remove(&id);
                if std::mem::take(&mut first_write) {
                    tracing::info!(worker, "first write acknowledged by the store");
                }
            }
            let mut submit = |table: usize,
                              rows: Vec<Vec<Cell>>,
                              capability: Option<Capability<u64>>,
                              latency: Latency| {
                let Some(capability) = capability.filter(|_| !rows.is_empty()) else {
                    return;
                };
                let id = next_id;
                next_id += 1;
                in_flight.insert(id, capability);
                let count = rows.len() as u64;
                stats.in_flight_rows.fetch_add(count, Relaxed);
                in_flight_rows.inc_by(count as i64);
                let (acked, activator, stats, meter, in_flight_rows, windows_written) = (
                    Arc::clone(&acked),
                    Arc::clone(&activator),
                    Arc::clone(&stats),
                    meters[table & !tables::DELETE].clone(),
                    in_flight_rows.clone(),
                    windows_written.clone(),
                );
                let submitted = std::time::Instant::now();
                store.write(
                    table,
                    rows,
                    Box::new(move || {
                        meter.written(count, submitted);
                        in_flight_rows.dec_by(count as i64);
                        stats.in_flight_rows.fetch_sub(count, Relaxed);
                        stats.rows_written.fetch_add(count, Relaxed);
                        match latency {
                            Latency::None => {}
                            Latency::Records { oldest_read_us } => {
                                stats.metrics.record_durable(oldest_read_us)
                            }
                            Latency::Windows { recent, ends } => {
                                stats.windows_written.fetch_add(count, Relaxed);
                                windows_written.inc_by(count);
                                for end in ends {
                                    if let Some(passed) = stats.frontier_clock.passed(end) {
                                        stats.metrics.window_durable(passed);
                                    }
                                }
                                stats.status.add_windows(recent.into_iter().map(|mut w| {
                                    w.at_ms = crate::time::now_ms();
                                    w
                                }));
                            }
                        }
                        acked.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                        let _ = activator.activate();
                    }),
                );
            };
            let roles = tables.roles;
            records_in.for_each(|cap, data| {
                let oldest_read_us = data.iter().map(|r| r.read_at_us).min().unwrap_or(0);
                // Upserts and a table input's deletes, in arrival order: each run of one kind
                // is one write, and the store applies writes to a table in submission order.
                let mut records = data.drain(..).peekable();
                while let Some(first) = records.next() {
                    let deleted = first.deleted;
                    let mut run = vec![first];
                    while let Some(next) = records.next_if(|r| r.deleted == deleted) {
                        run.push(next);
                    }
                    let latency = Latency::Records { oldest_read_us };
                    if deleted {
                        let keys = run.iter().map(|r| tables.key_cells(r)).collect();
                        submit(
                            roles.rows | tables::DELETE,
                            keys,
                            cap.retain_least(0),
                            latency,
                        );
                    } else {
                        let rows = run.into_iter().map(|r| tables.into_row_cells(r)).collect();
                        submit(roles.rows, rows, cap.retain_least(0), latency);
                    }
                }
            });
            rejects_in.for_each(|cap, data| {
                let (mut dead, mut late) = (Vec::new(), Vec::new());
                for reject in data.iter() {
                    match tables.reject_cells(reject) {
                        (true, cells) => dead.push(cells),
                        (false, cells) => late.push(cells),
                    }
                }
                submit(roles.dead_letters, dead, cap.retain_least(0), Latency::None);
                submit(roles.late, late, cap.retain_least(0), Latency::None);
            });
            // Rows for other tables (an inner join's unmatched records), by table.
            cells_in.for_each(|cap, data| {
                let mut by_table: std::collections::BTreeMap<usize, Vec<Vec<Cell>>> =
                    std::collections::BTreeMap::new();
                for (table, row) in data.drain(..) {
                    by_table.entry(table).or_default().push(row);
                }
                for (table, rows) in by_table {
                    submit(table, rows, cap.retain_least(0), Latency::None);
                }
            });
            windows_in.for_each(|cap, data| {
                let by_value = data.iter().map(|w| tables.by_value_cells(w)).collect();
                let by_window = data.iter().map(|w| tables.by_window_cells(w)).collect();
                let recent = data[data.len().saturating_sub(RECENT)..]
                    .iter()
                    .map(|w| names.event(w))
                    .collect();
                let mut ends: Vec<u64> = data.iter().map(|w| w.end).collect();
                ends.sort_unstable();
                ends.dedup();
                let latency = Latency::Windows { recent, ends };
                submit(TableSet::BY_VALUE, by_value, cap.retain_least(0), latency);
                submit(
                    TableSet::BY_WINDOW,
                    by_window,
                    cap.retain_least(0),
                    Latency::None,
                );
            });
        }
    });
    durable
}

/// What an acknowledged write tells the latency metrics and the status page.
enum Latency {
    /// Nothing.
    None,
    /// Rows of records; the oldest was read then (process clock).
    Records { oldest_read_us: u64 },
    /// Window results: the last few for the status page, and the window ends.
    Windows {
        recent: Vec<WindowEvent>,
        ends: Vec<u64>,
    },
}

/// One table's write metrics, for one worker.
#[derive(Clone)]
struct WriteMeters {
    rows: prometheus_client::metrics::counter::Counter,
    duration: prometheus_client::metrics::histogram::Histogram,
}

impl WriteMeters {
    fn new(stats: &Stats, worker: usize, table: &str) -> Self {
        let metrics = &stats.metrics;
        WriteMeters {
            rows: metrics.rows_written.get_or_create_owned(&TableLabels {
                worker,
                table: table.to_string(),
            }),
            duration: metrics.write_duration.get_or_create_owned(&TableOnly {
                table: table.to_string(),
            }),
        }
    }

    fn written(&self, rows: u64, submitted: std::time::Instant) {
        self.rows.inc_by(rows);
        self.duration.observe(submitted.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::record::{Key, Value};
    use timely::dataflow::operators::{Input, Probe};
    use timely::dataflow::ProbeHandle;

    /// Keeps every acknowledgement until the test releases them.
    #[derive(Default)]
    struct HeldStore {
        held: Mutex<Vec<(usize, usize, Ack)>>,
    }

    impl HeldStore {
        fn release(&self) -> Vec<(usize, usize)> {
            let held = std::mem::take(&mut *self.held.lock().unwrap());
            held.into_iter()
                .map(|(table, rows, ack)| {
                    ack();
                    (table, rows)
                })
                .collect()
        }
    }

    impl Store for HeldStore {
        fn prepare(&self, _tables: &TableSet, _failed: &FirstError) -> Result<()> {
            Ok(())
        }
        fn write(&self, table: usize, rows: Vec<Vec<Cell>>, ack: Ack) {
            self.held.lock().unwrap().push((table, rows.len(), ack));
        }
        fn read_progress(&self, _: &str, _: &str) -> Result<Vec<PartitionProgress>> {
            Ok(Vec::new())
        }
        fn describe(&self) -> String {
            "held".into()
        }
    }

    #[test]
    fn the_durable_frontier_waits_for_the_store_to_acknowledge() {
        let spec =
            DataflowSpec::load(std::path::Path::new("dataflows/users_created.toml")).unwrap();
        let store = Arc::new(HeldStore::default());
        let held = Arc::clone(&store);
        timely::execute_directly(move |worker| {
            let durable = ProbeHandle::new();
            let (mut records, mut rejects, mut windows) = worker.dataflow::<u64, _, _>(|scope| {
                let (records, r) = scope.new_input::<Vec<Record>>();
                let (rejects, j) = scope.new_input::<Vec<Reject>>();
                let (windows, w) = scope.new_input::<Vec<WindowResult>>();
                let c = timely::dataflow::operators::generic::operator::empty(scope);
                let tables = Arc::new(TableSet::new(&spec));
                let store: Arc<dyn Store> = held.clone();
                let writes = Writes {
                    records: r,
                    rejects: j,
                    windows: w,
                    cells: c,
                };
                render(writes, store, tables, Arc::default(), &spec).probe_with(&durable);
                (records, rejects, windows)
            });
            let mut values = vec![Value::Null; spec.fields.len()];
            values[spec.key] = Value::Uuid(7);
            records.advance_to(5);
            records.send(Record {
                partition: 0,
                offset: 0,
                event_time: 5,
                key: Key::Uuid(7),
                values,
                deleted: false,
                read_at_us: 0,
            });
            records.advance_to(10);
            rejects.advance_to(10);
            windows.advance_to(10);
            for _ in 0..20 {
                worker.step();
            }
            assert!(
                durable.less_equal(&5),
                "a row at 5 is not durable until the store says so"
            );
            assert_eq!(held.release(), [(TableSet::ROWS, 1)]);
            for _ in 0..20 {
                worker.step();
            }
            assert!(
                !durable.less_than(&10),
                "acknowledged: durable up to the inputs' frontier"
            );
            assert!(durable.less_equal(&10));
        });
    }
}
