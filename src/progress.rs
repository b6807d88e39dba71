//! Progress: where each partition resumes after a restart, and the dataflow stage that records
//! it once the data it covers is durable.
//!
//! ```text
//!  source ──records, rejects, observations──► windows ──► sink ──durable (frontier D)──┐
//!    │                                                                                 ▼
//!    └──notes: per partition, (retire time r, first offset, watermark before) ──► Progress
//!       and the read position                                          │ owns the ledgers
//!                                                                      ▼
//!                                  progress record (resume offset, watermark, D) ──► log
//!                                  then, once durable, consumer-group commit (lag tools)
//! ```
//!
//! The source emits, as data, what each offset it reads *retires*: the time `r` by which all
//! of the message's outputs are durable (its row at once; its windows at their ends, the
//! latest being `r`). The [`render`]ed operator keeps a [`PartitionLedger`] per partition of
//! its worker, reads the durable frontier `D` from its second input (the sink's "durable"
//! stream), and writes [`PartitionProgress`] records through a [`ProgressLog`]; when one is
//! durable it commits the same offsets to the consumer group. Nothing is shared with other
//! operators: the notes and the frontier are its only inputs.
//!
//! Correctness argument. Every record is emitted at a time `c` not above its event time, and
//! contributes to windows whose results are emitted at their end times, all at most `r`. The
//! sink holds a capability for every write until it is acknowledged, so `D` passes `r` only
//! when the record's row and every window it belongs to are durable. A ledger records, as the
//! resume offset, the first offset whose note has `r >= D`, or, when every noted offset is
//! covered, the next offset after the last note. A note that has not reached the operator yet
//! is for an offset at or after that next offset, so however notes and frontier updates
//! interleave the resume offset never passes a message whose outputs are not all durable.
//! Replaying from there with the stored watermark decides lateness as the first run did (see
//! [`crate::time::PartitionClock`]). A record is written before the offsets it follows are
//! committed to the consumer group, so the group never runs ahead of the stored progress.
//!
//! A restarted run's own durable frontier starts low again. Each record stores, per window
//! output (unit: a window and a dimension), the larger of `D` and the frontier restored for
//! it, so that "records before the resume offset have all their windows of that unit below
//! its frontier" stays true for offsets that retired in an earlier run; `durable_frontier` is
//! the least of them. It also stores `rows_from`, the larger of the restored one and the
//! resume offset (records before it have their rows durable), the start of the partition's
//! history, and the fingerprint and definition of the file that wrote it
//! ([`crate::fingerprint`]). What a start does with them is [`crate::resume`]'s.
//!
//! Windows of a unit that ended below its stored frontier were durable when that record was
//! written; the window operator does not emit them again on replay (their records before the
//! resume offset are not replayed, so a recomputation would be partial). Windows ending at or
//! above it have all their records at or after every partition's resume offset (a record
//! before it has `r < D`, and `r` is at least the end of each of its windows), so they are
//! recomputed whole. A unit added since has no stored frontier: the partitions replay from
//! the start of their history and every one of its windows is computed whole. Hence the
//! tables after any crash and restart equal those of one uninterrupted run.
//!
//! Where wall-clock time enters. With an `idle_timeout`, a partition silent for that long has
//! its watermark raised (see [`crate::source`]); which of its later records are late then
//! depends on when they arrived, not only on the topic. The raised watermark is stored with
//! the progress, so a replay from a stored record decides as the run that wrote it did, but
//! two uninterrupted runs over the same topic may differ. Tests of determinism run without it.
//!
//! Stopping. Bounded input ends when both inputs' frontiers are empty: the final record (with
//! `D` = everything) is written and, once durable, [`ProgressEvent::Final`] is sent. On a
//! shutdown request the sources stop reading but keep their capabilities; the operator waits
//! until `D` reaches the source frontier (everything read is durable) or the shutdown timeout
//! passes, then writes its final record the same way.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::Stream;

/// The progress record of one partition, as stored in the sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// The partition.
    pub partition: i32,
    /// First offset whose outputs are not all durable: where reading resumes.
    pub resume_offset: i64,
    /// The partition's watermark just before `resume_offset`.
    pub watermark: u64,
    /// The durable frontier when the record was written (`u64::MAX`: everything).
    pub durable_frontier: u64,
    /// The source's epoch (the generator's time origin; 0 for Kafka and files).
    pub epoch: i64,
    /// Where this partition's history starts: the offset its first run began at (a backfill
    /// replays from here). `None` in records written before fingerprints.
    pub start_offset: Option<i64>,
    /// Records before this offset have their rows, dead letters and late records durable
    /// (`i64::MIN`: none); a replay from earlier does not write them again.
    pub rows_from: i64,
    /// Per window output ([`crate::fingerprint::Unit`] id): its windows ending below this are
    /// durable. Empty in records written before fingerprints (then `durable_frontier` holds
    /// for all of them).
    pub units: BTreeMap<String, u64>,
    /// The fingerprint of the definition that wrote it, and the definition (JSON); `None` in
    /// records written before fingerprints.
    pub definition: Option<(String, String)>,
}

impl PartitionProgress {
    /// A record that says "no progress": written by `--reset-progress` over every stored
    /// record, and read back as absent.
    pub fn reset(partition: i32) -> Self {
        PartitionProgress {
            partition,
            resume_offset: RESET,
            watermark: 0,
            durable_frontier: 0,
            epoch: 0,
            start_offset: None,
            rows_from: i64::MIN,
            units: BTreeMap::new(),
            definition: None,
        }
    }

    /// Whether this is a reset marker.
    pub fn is_reset(&self) -> bool {
        self.resume_offset == RESET
    }
}

/// The resume offset of a reset marker.
const RESET: i64 = -1;

/// What the source read of one partition since its last note: the data the progress
/// operator derives resume points from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionNote {
    /// The partition.
    pub partition: i32,
    /// For the messages read since the last note, per retire time (when all of a message's
    /// outputs are durable): the first offset retiring then and the watermark before it.
    pub retiring: Vec<(u64, i64, u64)>,
    /// The next offset to read.
    pub next_offset: i64,
    /// The partition's watermark after these messages.
    pub watermark: u64,
}

/// A partition's read position and watermark as noted, and the offsets still waiting to
/// become durable.
#[derive(Clone, Debug)]
pub struct PartitionLedger {
    /// The offset this run started reading the partition at.
    pub start_offset: i64,
    /// Next offset to read, as last noted.
    pub next_offset: i64,
    /// The watermark at `next_offset`.
    pub watermark: u64,
    /// Retire time -> (first offset retiring then, watermark before that offset).
    pending: BTreeMap<u64, (i64, u64)>,
}

impl PartitionLedger {
    /// A partition read from `next_offset`, with watermark `watermark`.
    pub fn new(next_offset: i64, watermark: u64) -> Self {
        PartitionLedger {
            start_offset: next_offset,
            next_offset,
            watermark,
            pending: BTreeMap::new(),
        }
    }

    /// Takes in a note of this partition.
    pub fn note(&mut self, note: &PartitionNote) {
        for (retire, offset, watermark_before) in &note.retiring {
            self.pending
                .entry(*retire)
                .or_insert((*offset, *watermark_before));
        }
        self.next_offset = note.next_offset;
        self.watermark = note.watermark;
    }

    /// The (resume offset, watermark) that may be recorded when the durable frontier is
    /// `durable` (`None`: the frontier is empty, everything is durable).
    pub fn resume_point(&mut self, durable: Option<u64>) -> (i64, u64) {
        match durable {
            None => self.pending.clear(),
            Some(d) => self.pending = self.pending.split_off(&d),
        }
        self.pending
            .values()
            .min_by_key(|(offset, _)| *offset)
            .copied()
            .unwrap_or((self.next_offset, self.watermark))
    }
}

/// Where progress records go: the sink's progress table, then the consumer group.
pub trait ProgressLog {
    /// Writes `records`; calls `done` once they are durable. Must not block for long.
    fn write(&self, records: Vec<PartitionProgress>, done: Box<dyn FnOnce() + Send>);
    /// Commits resume offsets to the consumer group (lag tools only), after they are durable.
    fn commit(&self, offsets: &[(i32, i64)]);
}

/// What the progress operator tells its worker loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A progress record is durable: these partitions resume at these offsets.
    Durable(Vec<(i32, i64)>),
    /// The final record is durable (input ended, or a shutdown reached its safe point).
    Final,
}

/// How the progress operator behaves.
#[derive(Clone, Debug)]
pub struct ProgressSettings {
    /// Write changed records at most this often.
    pub interval: Duration,
    /// Per window output of this dataflow (id), its restored frontier: windows ending below
    /// it were durable before this run ([`crate::resume`]).
    pub units: Vec<(String, u64)>,
    /// Per partition with stored progress: (start of its history, rows durable before).
    pub restored: HashMap<i32, (Option<i64>, i64)>,
    /// (fingerprint, definition JSON) stored with every record.
    pub definition: (String, String),
    /// The source's epoch, stored with every record.
    pub epoch: i64,
    /// Set on shutdown.
    pub stop: Arc<AtomicBool>,
    /// How long a shutdown waits for what was read to become durable.
    pub shutdown_timeout: Duration,
    /// Rows submitted to the store and not yet durable (see [`crate::operators::flow`]): a
    /// shutdown's safe point waits for none.
    pub rows_in_flight: Arc<AtomicU64>,
}

/// A write in flight, acknowledged from a store thread.
type Acknowledged = Arc<Mutex<Option<Vec<(i32, i64)>>>>;

/// Renders the progress operator: `notes` from this worker's source, `durable` from the sink.
/// Events go to `events` (the worker loop).
pub fn render<'s>(
    notes: Stream<'s, u64, Vec<PartitionNote>>,
    durable: Stream<'s, u64, Vec<()>>,
    log: Box<dyn ProgressLog>,
    settings: ProgressSettings,
    events: mpsc::Sender<ProgressEvent>,
) {
    let scope = notes.scope();
    let worker = scope.index();
    let mut builder = OperatorBuilder::new("Progress".to_string(), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(Rc::clone(&info.address));
    let waker = Arc::new(scope.worker().sync_activator_for(info.address.to_vec()));
    let mut notes_in = builder.new_input(notes, Pipeline);
    let mut durable_in = builder.new_input(durable, Pipeline);
    // An output that carries nothing: its capability keeps the dataflow alive until the final
    // record is durable (a dataflow with no capability left is retired, and this operator
    // would never see the acknowledgement).
    let (_output, _alive) = builder.new_output::<Vec<()>>();
    builder.build(move |initial| {
        let mut alive = Some(initial);
        let mut ledgers: BTreeMap<i32, PartitionLedger> = BTreeMap::new();
        let mut written: HashMap<i32, (i64, u64)> = HashMap::new();
        let acknowledged: Acknowledged = Arc::default();
        let mut busy = false;
        let mut last = Instant::now();
        let mut stop_since: Option<Instant> = None;
        let mut final_written = false;
        let mut done = false;
        move |frontiers| {
            if done {
                return;
            }
            notes_in.for_each(|_, data| {
                for note in data.drain(..) {
                    ledgers
                        .entry(note.partition)
                        .or_insert_with(|| PartitionLedger::new(note.next_offset, note.watermark))
                        .note(&note);
                }
            });
            durable_in.for_each(|_, _| {});
            let taken = acknowledged
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(offsets) = taken {
                busy = false;
                log.commit(&offsets);
                let _ = events.send(ProgressEvent::Durable(offsets));
                if final_written {
                    tracing::debug!(worker, "final progress written");
                    let _ = events.send(ProgressEvent::Final);
                    done = true;
                    drop(alive.take());
                    return;
                }
            }
            let source = frontiers[0].frontier().first().copied();
            let durable = frontiers[1].frontier().first().copied();
            let finish = if source.is_none() && durable.is_none() {
                true
            } else if settings.stop.load(Ordering::Relaxed) {
                let since = *stop_since.get_or_insert_with(Instant::now);
                let drained =
                    source == durable && settings.rows_in_flight.load(Ordering::Relaxed) == 0;
                drained || since.elapsed() > settings.shutdown_timeout
            } else {
                false
            };
            if !busy && !final_written {
                let force = finish;
                if force || last.elapsed() >= settings.interval {
                    last = Instant::now();
                    let changed =
                        changed_records(&mut ledgers, &mut written, durable, force, &settings);
                    if changed.is_empty() && force {
                        // Nothing to record (this worker read no partition).
                        let _ = events.send(ProgressEvent::Final);
                        done = true;
                        drop(alive.take());
                        return;
                    }
                    if !changed.is_empty() {
                        crate::failpoint::hit("progress.before_write");
                        let offsets: Vec<(i32, i64)> = changed
                            .iter()
                            .map(|p| (p.partition, p.resume_offset))
                            .collect();
                        let (slot, waker) = (Arc::clone(&acknowledged), Arc::clone(&waker));
                        busy = true;
                        final_written = force;
                        log.write(
                            changed,
                            Box::new(move || {
                                crate::failpoint::hit("progress.after_write");
                                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(offsets);
                                let _ = waker.activate();
                            }),
                        );
                    }
                }
            }
            // Look again for the next interval (or the shutdown's safe point).
            activator.activate_after(settings.interval.min(Duration::from_millis(50)));
        }
    });
}

/// The records that changed since they were last written (all of them when `force`: the final
/// write always carries the latest durable frontier, so that a restart does not recompute
/// windows that are already written).
fn changed_records(
    ledgers: &mut BTreeMap<i32, PartitionLedger>,
    written: &mut HashMap<i32, (i64, u64)>,
    durable: Option<u64>,
    force: bool,
    settings: &ProgressSettings,
) -> Vec<PartitionProgress> {
    let mut changed = Vec::new();
    // Windows of a unit ending below its restored frontier were durable before this run
    // started, and records before a restored resume offset retired under it: a unit's stored
    // frontier never goes back. (A unit added since has frontier 0, and every partition whose
    // record lacks it replays from the start of its history; see crate::resume.)
    let d = durable.unwrap_or(u64::MAX);
    let units: BTreeMap<String, u64> = settings
        .units
        .iter()
        .map(|(id, restored)| (id.clone(), d.max(*restored)))
        .collect();
    let durable_frontier = units.values().copied().min().unwrap_or(d);
    for (partition, ledger) in ledgers.iter_mut() {
        let (resume_offset, watermark) = ledger.resume_point(durable);
        if force || written.get(partition) != Some(&(resume_offset, watermark)) {
            written.insert(*partition, (resume_offset, watermark));
            let (start_offset, rows_from) = settings
                .restored
                .get(partition)
                .copied()
                .unwrap_or((None, i64::MIN));
            changed.push(PartitionProgress {
                partition: *partition,
                resume_offset,
                watermark,
                durable_frontier,
                epoch: settings.epoch,
                start_offset: start_offset.or(Some(ledger.start_offset)),
                // Records before the resume offset retired below D: their rows are durable.
                rows_from: rows_from.max(resume_offset),
                units: units.clone(),
                definition: Some(settings.definition.clone()),
            });
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(partition: i32, retiring: &[(u64, i64, u64)], next: i64, wm: u64) -> PartitionNote {
        PartitionNote {
            partition,
            retiring: retiring.to_vec(),
            next_offset: next,
            watermark: wm,
        }
    }

    #[test]
    fn resume_point_waits_for_the_latest_window_of_each_record() {
        let mut l = PartitionLedger::new(0, 0);
        // A record whose last window ends at 60; one ending at 120; one at 60 again (offset 0
        // stays the first for 60).
        l.note(&note(0, &[(60, 0, 0), (120, 1, 10)], 2, 20));
        l.note(&note(0, &[(60, 2, 20)], 3, 20));
        assert_eq!(l.resume_point(Some(0)), (0, 0));
        assert_eq!(
            l.resume_point(Some(60)),
            (0, 0),
            "60 is not durable until D > 60"
        );
        assert_eq!(l.resume_point(Some(61)), (1, 10));
        l.note(&note(0, &[], 3, 195));
        assert_eq!(l.resume_point(Some(121)), (3, 195));
        l.note(&note(0, &[(300, 3, 195)], 4, 195));
        assert_eq!(l.resume_point(None), (4, 195));
    }

    /// Records what it is asked to write and acknowledges at once.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl ProgressLog for Recorder {
        fn write(&self, records: Vec<PartitionProgress>, done: Box<dyn FnOnce() + Send>) {
            for r in records {
                self.0.lock().unwrap().push(format!(
                    "write {} {} {}",
                    r.partition, r.resume_offset, r.durable_frontier
                ));
            }
            done();
        }
        fn commit(&self, offsets: &[(i32, i64)]) {
            self.0.lock().unwrap().push(format!("commit {offsets:?}"));
        }
    }

    #[test]
    fn progress_follows_the_durable_frontier_and_commits_after_writing() {
        use timely::dataflow::operators::Input;
        let log = Recorder::default();
        let seen = log.clone();
        let inner = log.clone();
        let (sender, events) = mpsc::channel();
        timely::execute_directly(move |worker| {
            let (mut notes, mut durable) = worker.dataflow::<u64, _, _>(|scope| {
                let (notes_handle, notes) = scope.new_input::<Vec<PartitionNote>>();
                let (durable_handle, durable) = scope.new_input::<Vec<()>>();
                let settings = ProgressSettings {
                    interval: Duration::ZERO,
                    units: vec![("1m/gender".into(), 0)],
                    restored: HashMap::new(),
                    definition: ("f".into(), "{}".into()),
                    epoch: 0,
                    stop: Arc::default(),
                    shutdown_timeout: Duration::from_secs(1),
                    rows_in_flight: Arc::default(),
                };
                render(notes, durable, Box::new(log), settings, sender);
                (notes_handle, durable_handle)
            });
            notes.send(note(3, &[(60, 0, 0), (120, 5, 7)], 9, 100));
            notes.advance_to(50);
            durable.advance_to(61);
            for _ in 0..10 {
                worker.step();
            }
            let log = inner.0.lock().unwrap().clone();
            assert!(
                log.ends_with(&["write 3 5 61".to_string(), "commit [(3, 5)]".to_string()]),
                "offsets 0-4 retired at 60 are durable once D > 60: {log:?}"
            );
            for (i, entry) in log.iter().enumerate() {
                if let Some(offset) = entry.strip_prefix("commit [(3, ") {
                    let offset = offset.trim_end_matches(")]");
                    assert!(
                        i > 0 && log[i - 1].starts_with(&format!("write 3 {offset} ")),
                        "a commit follows the durable write of the same offset: {log:?}"
                    );
                }
            }
            notes.close();
            durable.close();
            for _ in 0..10 {
                worker.step();
            }
        });
        assert_eq!(
            seen.0.lock().unwrap().last().map(String::as_str),
            Some("commit [(3, 9)]")
        );
        let events: Vec<ProgressEvent> = events.try_iter().collect();
        assert_eq!(events.last(), Some(&ProgressEvent::Final));
    }
}
