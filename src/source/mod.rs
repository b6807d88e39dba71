//! Sources: the timely operator that reads partitions, parses records and decides lateness,
//! over three readers (Kafka, the built-in generator, JSON-lines files).
//!
//! Contract of [`render`]:
//! - worker `w` reads exactly the partitions `p` with [`assign::owner`]`(topic, p, peers) == w`,
//!   starting at the stored progress (or `--start` when there is none);
//! - each partition has a [`PartitionClock`]; a record below its partition's watermark is
//!   *late* and goes to the rejects stream, never to the windows;
//! - the operator's capability is the minimum watermark of its unfinished partitions, so every
//!   record it emits to the records stream has an event time at or above its timestamp;
//! - every record also goes, projected onto what the windows need
//!   ([`crate::operators::window::Observation`]), to a third output, so the record itself is
//!   never cloned;
//! - a worker that owns no partition drops its capabilities at once; a worker whose partitions
//!   have all ended (bounded input) drops them then; on shutdown it keeps them (windows that
//!   are still open must not look complete) and stops reading;
//! - at most `batch` messages are read per activation; the operator re-activates itself;
//! - every message is noted in the partition's [`PartitionLedger`] with the time at which all
//!   its outputs are durable, from which the worker loop derives progress records.

pub mod assign;
pub mod file;
pub mod generator;
pub mod kafka;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::{Scope, Stream};

use crate::error::Result;
use crate::metrics::{PartitionMeters, Stats};
use crate::operators::window::{observe, Observation};
use crate::progress::{PartitionLedger, PartitionProgress};
use crate::schema::{truncate_payload, Record, Schema};
use crate::spec::DataflowSpec;
use crate::status::{RejectEvent, RECENT};
use crate::time::PartitionClock;
use rustc_hash::FxHashMap;

/// Where a partition starts when no progress is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// This offset.
    Offset(i64),
    /// The first offset.
    Earliest,
    /// The offset after the last message.
    Latest,
    /// The first message with a timestamp at or after this (epoch ms).
    Time(i64),
}

/// One message of a partition.
#[derive(Debug)]
pub struct Message<'a> {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The offset of the next message (offset + 1, or the next line's byte position).
    pub next_offset: i64,
    /// Bytes.
    pub payload: &'a [u8],
    /// Message timestamp, epoch ms.
    pub timestamp: Option<i64>,
}

/// A partitioned, offset-addressed input.
pub trait Reader {
    /// The partitions that exist now.
    fn partitions(&mut self) -> Result<Vec<i32>>;
    /// Starts reading these partitions; returns the concrete offset each starts at.
    fn assign(&mut self, partitions: &[(i32, StartAt)]) -> Result<Vec<(i32, i64)>>;
    /// Reads at most `max` messages. Returns how many were read.
    fn read(&mut self, max: usize, emit: &mut dyn FnMut(Message<'_>)) -> Result<usize>;
    /// Whether a bounded partition has been read to its end.
    fn finished(&self, partition: i32) -> bool;
    /// How long to wait before reading again after a read found nothing.
    fn idle_wait(&self) -> Option<Duration> {
        None
    }
    /// Records offsets outside the sink, for monitoring only (Kafka consumer groups).
    fn commit(&self, _offsets: &[(i32, i64)]) {}
    /// The partition's end as last seen, without asking the broker (for lag metrics).
    fn high_watermark(&self, _partition: i32) -> Option<i64> {
        None
    }
    /// Short name for logs.
    fn kind(&self) -> &'static str;
}

/// A message that did not become a record: a dead letter or a late record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why.
    pub kind: RejectKind,
    /// The payload, truncated to [`crate::schema::DEAD_LETTER_PAYLOAD_BYTES`].
    pub payload: Vec<u8>,
    /// The payload's full size.
    pub size: usize,
}

/// Why a message was rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RejectKind {
    /// The record did not parse.
    DeadLetter {
        /// What is wrong with it.
        reason: String,
    },
    /// The record parsed but is below its partition's watermark.
    Late {
        /// Its event time.
        event_time: u64,
        /// The partition's watermark when it arrived.
        watermark: u64,
    },
}

/// The partitions this worker reads and their ledgers, shared with the worker loop.
pub type Ledgers = Rc<RefCell<BTreeMap<i32, PartitionLedger>>>;

/// Everything the source operator needs.
pub struct SourceParts {
    /// The dataflow.
    pub spec: DataflowSpec,
    /// The record parser.
    pub schema: Schema,
    /// The reader, shared with the worker loop (which commits offsets through it).
    pub reader: Rc<RefCell<Box<dyn Reader>>>,
    /// Stored progress of every partition.
    pub restored: HashMap<i32, PartitionProgress>,
    /// Start position of partitions without progress.
    pub start: StartAt,
    /// Most messages per activation.
    pub batch: usize,
    /// Set on shutdown: stop reading, keep capabilities.
    pub stop: Arc<AtomicBool>,
    /// Ledgers, filled by the operator.
    pub ledgers: Ledgers,
    /// Counters.
    pub stats: Arc<Stats>,
    /// How often to look for new partitions (Kafka).
    pub discovery_interval: Option<Duration>,
    /// Pause reading while the sink has more rows than this unacknowledged.
    pub max_in_flight: u64,
    /// The frontier of observations the windows of every worker have taken in (set by the
    /// window operator; see [`MAX_AHEAD_MS`]).
    pub windows_input: Rc<std::cell::Cell<u64>>,
}

/// How far (event time) a worker's source may run ahead of the observations the windows of
/// every worker have taken in. Timely's channels between workers are unbounded: without this,
/// a worker that reads faster than another's windows consume queues observations for it, and
/// memory grows with the input rather than with the open windows.
pub const MAX_AHEAD_MS: u64 = 60_000;

/// The source's streams.
pub struct SourceStreams<'s> {
    /// Records that parsed and are not late (to the sink).
    pub records: Stream<'s, u64, Vec<Record>>,
    /// Dead letters and late records (to the sink).
    pub rejects: Stream<'s, u64, Vec<Reject>>,
    /// The same records as `records`, projected for the windows.
    pub observations: Stream<'s, u64, Vec<Observation>>,
}

/// Renders the source.
pub fn render<'s>(scope: Scope<'s, u64>, parts: SourceParts) -> SourceStreams<'s> {
    let SourceParts {
        spec,
        schema,
        reader,
        restored,
        start,
        batch,
        stop,
        ledgers,
        stats,
        discovery_interval,
        max_in_flight,
        windows_input,
    } = parts;
    let (worker, peers) = (scope.index(), scope.peers());
    let mut builder = OperatorBuilder::new(format!("Source({})", spec.topic), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(Rc::clone(&info.address));
    let (records_output, records) = builder.new_output::<Vec<Record>>();
    let (rejects_output, rejects) = builder.new_output::<Vec<Reject>>();
    let (observations_output, observations) = builder.new_output::<Vec<Observation>>();
    let mut records_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(records_output);
    let mut rejects_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Reject>>>::from(rejects_output);
    let mut observations_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Observation>>>::from(observations_output);

    builder.build(move |capabilities| {
        let mut capabilities = Some(capabilities);
        let mut last_discovery: Option<Instant> = None;
        let mut owned_any = false;
        let mut meters: FxHashMap<i32, PartitionMeters> = FxHashMap::default();
        let mut recent_rejects: Vec<RejectEvent> = Vec::new();
        move |_frontiers| {
            let Some(caps) = capabilities.as_mut() else { return };
            let mut reader = reader.borrow_mut();
            let mut ledgers = ledgers.borrow_mut();

            // Assign new partitions: all of them at start, later ones as the topic grows.
            let discover = match (last_discovery, discovery_interval) {
                (None, _) => true,
                (Some(at), Some(every)) => at.elapsed() >= every,
                (Some(_), None) => false,
            };
            if discover {
                last_discovery = Some(Instant::now());
                let found = reader.partitions().unwrap_or_else(|e| crate::runtime::fatal(&e));
                let current = *caps[0].time();
                let new: Vec<(i32, StartAt)> = found
                    .into_iter()
                    .filter(|p| assign::owner(&spec.topic, *p, peers) == worker && !ledgers.contains_key(p))
                    .map(|p| (p, restored.get(&p).map_or(start, |r| StartAt::Offset(r.resume_offset))))
                    .collect();
                if !new.is_empty() {
                    let positions = reader.assign(&new).unwrap_or_else(|e| crate::runtime::fatal(&e));
                    let names: Vec<i32> = positions.iter().map(|(p, _)| *p).collect();
                    tracing::info!(worker, partitions = ?names, source = reader.kind(), "partitions assigned");
                    for (p, offset) in positions {
                        // A partition with progress resumes its clock; a new one starts at the
                        // current frontier, so nothing it sends can be below our capability.
                        let watermark = restored.get(&p).map_or(current, |r| r.watermark.max(current));
                        ledgers.insert(p, PartitionLedger::new(offset, PartitionClock::new(watermark, spec.allowed_lateness_ms)));
                        meters.insert(p, PartitionMeters::new(&stats.metrics, worker, p));
                    }
                    owned_any = true;
                }
                if !owned_any {
                    tracing::info!(worker, "owns no partition; releasing its capability");
                    capabilities = None;
                    return;
                }
            }

            let time = *caps[0].time();
            let mut read = 0;
            let backpressure = stats.in_flight_rows.load(Ordering::Relaxed) > max_in_flight
                || time.saturating_sub(windows_input.get()) > MAX_AHEAD_MS;
            if !stop.load(Ordering::Relaxed) && !backpressure {
                let mut records_out = records_output.activate();
                let mut rejects_out = rejects_output.activate();
                let mut records_session = records_out.session(&caps[0]);
                let mut rejects_session = rejects_out.session(&caps[1]);
                let mut observations_out = observations_output.activate();
                let mut observations_session = observations_out.session(&caps[2]);
                let now = Instant::now();
                let read_at_us = crate::time::process_us();
                read = reader
                    .read(batch, &mut |message| {
                        crate::failpoint::hit("source.parse");
                        let Some(ledger) = ledgers.get_mut(&message.partition) else { return };
                        let Some(meter) = meters.get_mut(&message.partition) else { return };
                        ledger.last_message = now;
                        let watermark = ledger.clock.watermark;
                        meter.read(message.payload.len());
                        let retire = match schema.parse(message.payload, message.timestamp) {
                            Ok(parsed) if ledger.clock.observe(parsed.event_time) => {
                                meter.late();
                                note_reject(&mut recent_rejects, "late", &message, || format!("event time {} is below its partition's watermark {}", crate::time::rfc3339(parsed.event_time), crate::time::rfc3339(watermark)));
                                rejects_session.give(Reject {
                                    partition: message.partition,
                                    offset: message.offset,
                                    kind: RejectKind::Late { event_time: parsed.event_time, watermark },
                                    payload: truncate_payload(message.payload),
                                    size: message.payload.len(),
                                });
                                time
                            }
                            Ok(parsed) => {
                                let retire = spec.last_window_end(parsed.event_time).unwrap_or(time);
                                let record = Record {
                                    partition: message.partition,
                                    offset: message.offset,
                                    event_time: parsed.event_time,
                                    key: parsed.key,
                                    values: parsed.values,
                                    read_at_us,
                                };
                                observations_session.give(observe(&spec, &record));
                                records_session.give(record);
                                retire
                            }
                            Err(reason) => {
                                meter.dead_letter();
                                note_reject(&mut recent_rejects, "dead letter", &message, || reason.clone());
                                rejects_session.give(Reject {
                                    partition: message.partition,
                                    offset: message.offset,
                                    kind: RejectKind::DeadLetter { reason },
                                    payload: truncate_payload(message.payload),
                                    size: message.payload.len(),
                                });
                                time
                            }
                        };
                        ledger.note(message.offset, message.next_offset, retire, watermark);
                    })
                    .unwrap_or_else(|e| crate::runtime::fatal(&e));
                for meter in meters.values_mut() {
                    meter.flush(&stats);
                }
                if !recent_rejects.is_empty() {
                    stats.status.add_rejects(recent_rejects.drain(..));
                }
            }

            // The new capability: the least watermark of the partitions still being read.
            for (p, ledger) in ledgers.iter_mut() {
                if !ledger.finished && reader.finished(*p) {
                    ledger.finished = true;
                    tracing::debug!(worker, partition = p, "partition ended");
                }
            }
            if let Some(idle) = spec.idle_timeout {
                advance_idle_partitions(&mut ledgers, idle);
            }
            let low = ledgers.values().filter(|l| !l.finished).map(|l| l.clock.watermark).min();
            match low {
                None => {
                    tracing::info!(worker, "input ended");
                    capabilities = None;
                }
                Some(low) => {
                    for cap in caps.iter_mut() {
                        if low > *cap.time() {
                            cap.downgrade(&low);
                        }
                    }
                    if read >= batch {
                        activator.activate();
                    } else if backpressure {
                        activator.activate_after(Duration::from_millis(1));
                    } else {
                        activator.activate_after(reader.idle_wait().unwrap_or(Duration::ZERO));
                    }
                }
            }
        }
    });
    SourceStreams {
        records,
        rejects,
        observations,
    }
}

/// Keeps the batch's first [`RECENT`] rejects for the status page; the rest of a batch (a
/// flood of bad records) costs nothing here.
fn note_reject(
    recent: &mut Vec<RejectEvent>,
    kind: &'static str,
    message: &Message<'_>,
    reason: impl FnOnce() -> String,
) {
    if recent.len() == RECENT {
        return;
    }
    let preview = &message.payload[..message.payload.len().min(120)];
    recent.push(RejectEvent {
        at_ms: crate::time::now_ms(),
        kind,
        partition: message.partition,
        offset: message.offset,
        reason: reason(),
        payload: String::from_utf8_lossy(preview).into_owned(),
    });
}

/// Idle timeout: a partition silent for `idle` no longer holds the frontier back. Its watermark
/// is raised to the least watermark of the active partitions (or, when every partition is
/// idle, to the wall clock minus the timeout), so a message it sends later below that is late.
fn advance_idle_partitions(ledgers: &mut BTreeMap<i32, PartitionLedger>, idle: Duration) {
    let is_idle = |l: &PartitionLedger| !l.finished && l.last_message.elapsed() >= idle;
    let active_low = ledgers
        .values()
        .filter(|l| !l.finished && !is_idle(l))
        .map(|l| l.clock.watermark)
        .min();
    let floor =
        active_low.unwrap_or_else(|| crate::time::now_ms().saturating_sub(idle.as_millis() as u64));
    for ledger in ledgers.values_mut().filter(|l| is_idle(l)) {
        ledger.clock.advance_to(floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::generator::GeneratorConfig;
    use std::sync::Mutex;
    use timely::dataflow::operators::Inspect;

    /// A topic whose partitions can grow, like `kafka-topics --alter --partitions`.
    struct GrowingTopic {
        partitions: Arc<Mutex<i32>>,
        generator: GeneratorConfig,
        positions: BTreeMap<i32, i64>,
        buf: Vec<u8>,
    }

    impl Reader for GrowingTopic {
        fn partitions(&mut self) -> Result<Vec<i32>> {
            Ok((0..*self.partitions.lock().unwrap()).collect())
        }
        fn assign(&mut self, partitions: &[(i32, StartAt)]) -> Result<Vec<(i32, i64)>> {
            for (p, _) in partitions {
                self.positions.insert(*p, 0);
            }
            Ok(partitions.iter().map(|(p, _)| (*p, 0)).collect())
        }
        fn read(&mut self, max: usize, emit: &mut dyn FnMut(Message<'_>)) -> Result<usize> {
            let mut read = 0;
            for (p, offset) in self.positions.iter_mut() {
                while *offset < 5 && read < max {
                    let ts = self.generator.message(*p, *offset, &mut self.buf);
                    emit(Message {
                        partition: *p,
                        offset: *offset,
                        next_offset: *offset + 1,
                        payload: &self.buf,
                        timestamp: Some(ts),
                    });
                    *offset += 1;
                    read += 1;
                }
            }
            Ok(read)
        }
        fn kind(&self) -> &'static str {
            "test topic"
        }
        fn finished(&self, partition: i32) -> bool {
            // Ends once the topic has grown and everything is read, so the dataflow completes.
            *self.partitions.lock().unwrap() == 2
                && self.positions.get(&partition).is_some_and(|o| *o >= 5)
        }
    }

    /// The users dataflow's source over a [`GrowingTopic`] of `partitions` (now) of the
    /// generator's `generated` partitions, starting with one partition.
    fn topic_source(
        partitions: &Arc<Mutex<i32>>,
        generated: i32,
        batch: usize,
        discovery_interval: Option<Duration>,
        ledgers: &Ledgers,
        windows_input: &Rc<std::cell::Cell<u64>>,
    ) -> SourceParts {
        let spec =
            DataflowSpec::load(std::path::Path::new("dataflows/users_created.toml")).unwrap();
        let generator = GeneratorConfig {
            seed: 1,
            partitions: generated,
            count: None,
            rate: 0.0,
            epoch_ms: 1_795_255_200_000,
            duplicates_per_mille: 0,
            late_per_mille: 0,
            malformed_per_mille: 0,
        };
        let reader: Box<dyn Reader> = Box::new(GrowingTopic {
            partitions: Arc::clone(partitions),
            generator,
            positions: BTreeMap::new(),
            buf: Vec::new(),
        });
        SourceParts {
            schema: Schema::new(&spec, 1 << 20),
            spec,
            reader: Rc::new(RefCell::new(reader)),
            restored: HashMap::new(),
            start: StartAt::Earliest,
            batch,
            stop: Arc::new(AtomicBool::new(false)),
            ledgers: Rc::clone(ledgers),
            stats: Arc::default(),
            discovery_interval,
            max_in_flight: u64::MAX,
            windows_input: Rc::clone(windows_input),
        }
    }

    #[test]
    fn a_source_waits_for_the_windows_of_every_worker() {
        timely::execute_directly(move |worker| {
            let seen: Rc<RefCell<usize>> = Rc::default();
            // The windows have taken in nothing yet: the source may read one batch (its
            // capability is then far ahead), and no more.
            let windows_input = Rc::new(std::cell::Cell::new(0));
            let partitions = Arc::new(Mutex::new(1));
            let parts = topic_source(&partitions, 1, 2, None, &Rc::default(), &windows_input);
            let sink = Rc::clone(&seen);
            worker.dataflow::<u64, _, _>(|scope| {
                render(scope, parts)
                    .records
                    .inspect(move |_| *sink.borrow_mut() += 1);
            });
            for _ in 0..20 {
                worker.step();
            }
            assert_eq!(*seen.borrow(), 2, "one batch, then it waits");
            windows_input.set(u64::MAX);
            // It looks again after a millisecond.
            for _ in 0..20 {
                worker.step_or_park(Some(Duration::from_millis(5)));
            }
            assert_eq!(*seen.borrow(), 5, "it reads on once the windows catch up");
            // Lets the topic end, so that the dataflow completes.
            *partitions.lock().unwrap() = 2;
        });
    }

    #[test]
    fn partitions_added_while_running_are_assigned_and_read() {
        let partitions = Arc::new(Mutex::new(1));
        let grow = Arc::clone(&partitions);
        timely::execute_directly(move |worker| {
            let seen: Rc<RefCell<Vec<(i32, i64)>>> = Rc::default();
            let ledgers: Ledgers = Rc::default();
            let no_limit = Rc::new(std::cell::Cell::new(u64::MAX));
            let parts = topic_source(&grow, 2, 100, Some(Duration::ZERO), &ledgers, &no_limit);
            let sink = Rc::clone(&seen);
            worker.dataflow::<u64, _, _>(|scope| {
                render(scope, parts)
                    .records
                    .inspect(move |r| sink.borrow_mut().push((r.partition, r.offset)));
            });
            for _ in 0..20 {
                worker.step();
            }
            assert_eq!(seen.borrow().len(), 5, "partition 0 is read");
            *grow.lock().unwrap() = 2;
            for _ in 0..20 {
                worker.step();
            }
            assert!(
                ledgers.borrow().contains_key(&1),
                "the new partition is assigned"
            );
            let from_new = seen.borrow().iter().filter(|(p, _)| *p == 1).count();
            assert!(
                from_new > 0,
                "the new partition is read (its records may be late: it starts at the frontier)"
            );
        });
    }
}
