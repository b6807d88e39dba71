//! Sources: the timely operator that reads partitions, parses records and decides lateness,
//! over the readers (Kafka, the built-in generator, JSON-lines files, and an in-memory topic
//! for tests).
//!
//! Contract of [`render`]:
//! - worker `w` reads exactly the partitions `p` with [`assign::owner`]`(topic, p, peers) == w`,
//!   starting where the start's [`crate::resume::Plan`] says (the stored progress, the start
//!   of the partition's history for a backfill, or `--start` when there is none);
//! - a message before its partition's `rows_from` (a backfill's replay of what is already
//!   written) feeds the windows only: its row, dead letter or late record is durable already
//!   and is not written again;
//! - each partition has a [`PartitionClock`]; a record below its partition's watermark is
//!   *late* and goes to the rejects stream, never to the windows;
//! - the operator's capability is the minimum watermark of its unfinished partitions, so every
//!   record it emits to the records stream has an event time at or above its timestamp;
//! - every record also goes, projected onto what the windows need
//!   ([`crate::operators::window::Observation`]), to a third output, so the record itself is
//!   never cloned;
//! - what each message retires goes, as [`PartitionNote`]s, to a fourth output, which only the
//!   progress operator ([`crate::progress`]) reads; the source keeps no ledger of its own;
//! - a worker that owns no partition drops its capabilities at once, so it never holds the
//!   frontier back; a worker whose partitions have all ended (bounded input) drops them then;
//!   on shutdown it keeps them (windows that are still open must not look complete) and stops
//!   reading;
//! - new partitions (a topic that grows) are found by every worker that still reads; each
//!   *announces* them to their owners on a fifth output that loops back into the operator
//!   (timely feedback, one millisecond later). An announcement carries a capability, so an
//!   owner that had none gets one at a time no earlier than the announcer's, and reads the
//!   partition from there: ownership stays the pure function, and no worker is left unable
//!   to read what it owns;
//! - at most `batch` messages are read per activation; the operator re-activates itself, and
//!   waits while [`FlowControl`] says so;
//! - a reader error is reported to the engine's [`FirstError`] and the operator stops reading
//!   *without* releasing its capabilities ("wedge, never lie"): nothing downstream mistakes
//!   the failure for completeness, and the runtime returns the error;
//! - a source whose partitions cannot be read ([`Reader::stalled`]: the broker is down,
//!   paused or silent; or a partition discovery failed while running) is *stalled*: it waits,
//!   holding its capabilities, publishes the reason (metrics, status page, `/readyz`), does
//!   not let its partitions count as idle (their silence says nothing about their data), and
//!   reports an error once the stall has lasted `stall_timeout`.

pub mod assign;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod memory;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::{Capability, ConnectLoop, Feedback};
use timely::dataflow::{Scope, Stream};

pub use crate::data::reject::{Reason, ReasonKind, Reject, RejectKind};
use crate::error::{FirstError, Result};
use crate::metrics::{PartitionLabels, PartitionMeters, Stats};
use crate::operators::flow::FlowControl;
use crate::operators::window::{observe, Observation};
use crate::progress::PartitionNote;
use crate::resume::PartitionPlan;
use crate::schema::{truncate_payload, Record, Schema};
use crate::spec::{DataflowSpec, InputKind};
use crate::status::{PartitionStatus, RejectEvent, RECENT};
use crate::time::PartitionClock;

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
    /// Bytes (empty for a tombstone).
    pub payload: &'a [u8],
    /// Message timestamp, epoch ms.
    pub timestamp: Option<i64>,
    /// The Kafka message key, if any.
    pub key: Option<&'a [u8]>,
    /// A tombstone: the Kafka value is null (`payload` is then empty).
    pub tombstone: bool,
}

/// A partitioned, offset-addressed input. Each worker has its own.
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
    /// What records offsets outside the sink, for monitoring only (Kafka consumer groups);
    /// the progress operator calls it after the sink's progress record is durable.
    fn committer(&self) -> Box<dyn Committer> {
        Box::new(NoCommitter)
    }
    /// The partition's end as last seen, without asking the broker (for lag metrics).
    fn high_watermark(&self, _partition: i32) -> Option<i64> {
        None
    }
    /// Why the assigned partitions cannot be read now (the broker is down, paused, or not
    /// answering), or `None` when they can. Cheap: it reads what the client last reported.
    fn stalled(&self) -> Option<String> {
        None
    }
    /// Short name for logs.
    fn kind(&self) -> &'static str;
}

/// Records resume offsets outside the sink (for lag tools; never read back by Weir).
pub trait Committer {
    /// Records `offsets` (partition, next offset to read).
    fn commit(&self, offsets: &[(i32, i64)]);
}

/// Commits nowhere (files, the generator).
pub struct NoCommitter;

impl Committer for NoCommitter {
    fn commit(&self, _offsets: &[(i32, i64)]) {}
}

/// What a dataflow reads: a stable identity (progress is stored under it), and a reader for
/// each worker.
pub trait Input: Send + Sync {
    /// A stable name, stored with the progress: a restart resumes the progress of the same
    /// name.
    fn id(&self) -> String;
    /// One line for the banner and the status page (no credentials).
    fn describe(&self) -> String;
    /// Fails fast, with one line, when the input is not there (broker, topic, directory).
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// The time origin stored with progress (the generator's); 0 for other inputs.
    fn epoch(&self) -> i64 {
        0
    }
    /// Resumes with the origin a previous run stored.
    fn restore_epoch(&mut self, _epoch: i64) {}
    /// Whether partitions can appear while the dataflow runs (Kafka topics can grow).
    fn grows(&self) -> bool {
        false
    }
    /// The first offset each partition still holds, where retention has removed earlier ones
    /// (partitions absent from the map hold everything from their first offset).
    fn earliest_offsets(&self) -> Result<BTreeMap<i32, i64>> {
        Ok(BTreeMap::new())
    }
    /// A reader for the calling worker.
    fn reader(&self) -> Result<Box<dyn Reader>>;
    /// The same kind of input reading another topic (the other inputs of a dataflow with
    /// `[[inputs]]`: same brokers and security, or the generator of that topic).
    fn for_topic(&self, topic: &str) -> Result<Box<dyn Input>> {
        Err(crate::error::Error::Config(format!(
            "{} reads one topic; the dataflow's input {topic:?} needs Kafka or the built-in generator",
            self.describe()
        )))
    }
}

/// Everything the source operator needs.
pub struct SourceParts {
    /// The dataflow.
    pub spec: DataflowSpec,
    /// The record parser.
    pub schema: Schema,
    /// This worker's reader.
    pub reader: Box<dyn Reader>,
    /// Where each partition with stored progress starts.
    pub restored: HashMap<i32, PartitionPlan>,
    /// Start position of partitions without progress.
    pub start: StartAt,
    /// Most messages per activation.
    pub batch: usize,
    /// Set on shutdown: stop reading, keep capabilities.
    pub stop: Arc<AtomicBool>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// How often to look for new partitions (Kafka).
    pub discovery_interval: Option<Duration>,
    /// When to pause.
    pub flow: FlowControl,
    /// Where a reader error goes.
    pub failed: FirstError,
    /// How long the partitions may stay unreadable ([`Reader::stalled`]) before the source
    /// stops with an error; `None` waits for the broker for ever.
    pub stall_timeout: Option<Duration>,
    /// This input is a side of a join: its records go to [`SourceStreams::joinable`] (not
    /// to `observations`), and, for a table input, a message with a null value is a
    /// tombstone ([`Schema::tombstone`]).
    pub join_side: Option<JoinSide>,
}

/// What a join takes of an input's records.
#[derive(Clone, Debug)]
pub struct JoinSide {
    /// Stream or table.
    pub kind: InputKind,
    /// The fields the join reads (its own, the input's `select` and the view's windows'), in
    /// the order of the joinable records' values: the join holds and moves no more.
    pub fields: Vec<usize>,
}

/// The source's streams.
pub struct SourceStreams<'s> {
    /// Records that parsed and are not late (to the sink).
    pub records: Stream<'s, u64, Vec<Record>>,
    /// Dead letters and late records (to the sink).
    pub rejects: Stream<'s, u64, Vec<Reject>>,
    /// The same records as `records`, projected for the windows.
    pub observations: Stream<'s, u64, Vec<Observation>>,
    /// What each offset retires, for the progress operator.
    pub notes: Stream<'s, u64, Vec<PartitionNote>>,
    /// A join side's records that are not late, replayed ones included (the join must see
    /// every record its results depend on), projected onto [`JoinSide::fields`]; empty for a
    /// dataflow without inputs.
    pub joinable: Stream<'s, u64, Vec<Record>>,
}

/// One partition being read.
struct Reading {
    next_offset: i64,
    /// Messages before this offset are replayed for the windows only (a backfill).
    rows_from: i64,
    clock: PartitionClock,
    finished: bool,
    /// When the partition last delivered a message (for the idle timeout).
    last_message: Instant,
    meter: PartitionMeters,
    /// What the messages read since the last note retire: (retire, first offset, watermark
    /// before), in order of first appearance; the same retire time is noted once.
    retiring: Vec<(u64, i64, u64)>,
    /// (next offset, watermark) as last noted.
    noted: Option<(i64, u64)>,
}

impl Reading {
    fn retire(&mut self, retire: u64, offset: i64, watermark_before: u64) {
        if !self.retiring.iter().any(|(r, _, _)| *r == retire) {
            self.retiring.push((retire, offset, watermark_before));
        }
    }

    /// A note of what changed since the last one, if anything did.
    fn take_note(&mut self, partition: i32) -> Option<PartitionNote> {
        let now = (self.next_offset, self.clock.watermark);
        if self.retiring.is_empty() && self.noted == Some(now) {
            return None;
        }
        self.noted = Some(now);
        Some(PartitionNote {
            partition,
            retiring: std::mem::take(&mut self.retiring),
            next_offset: now.0,
            watermark: now.1,
        })
    }
}

/// The source's outputs: records, rejects, observations, notes, announcements, joinable.
const OUTPUTS: usize = 6;

/// How often the source publishes its partitions to the status page and metrics.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Renders the source.
pub fn render<'s>(scope: Scope<'s, u64>, parts: SourceParts) -> SourceStreams<'s> {
    let SourceParts {
        spec,
        schema,
        mut reader,
        restored,
        start,
        batch,
        stop,
        stats,
        discovery_interval,
        flow,
        failed,
        stall_timeout,
        join_side,
    } = parts;
    let tombstones = join_side
        .as_ref()
        .is_some_and(|j| j.kind == InputKind::Table);
    let (worker, peers) = (scope.index(), scope.peers());
    // Announcements of new partitions to their owners, one millisecond later.
    let (loop_handle, announced) = scope.feedback::<Vec<i32>>(1);
    let mut builder = OperatorBuilder::new(format!("Source({})", spec.topic), scope);
    let info = builder.operator_info();
    let activator = scope.activator_for(Rc::clone(&info.address));
    let topic = spec.topic.clone();
    let mut announced_in = builder.new_input(
        announced,
        Exchange::new(move |p: &i32| assign::owner(&topic, *p, peers) as u64),
    );
    let (records_output, records) = builder.new_output::<Vec<Record>>();
    let (rejects_output, rejects) = builder.new_output::<Vec<Reject>>();
    let (observations_output, observations) = builder.new_output::<Vec<Observation>>();
    let (notes_output, notes) = builder.new_output::<Vec<PartitionNote>>();
    let (announce_output, announcements) = builder.new_output::<Vec<i32>>();
    let (joinable_output, joinable) = builder.new_output::<Vec<Record>>();
    announcements.connect_loop(loop_handle);
    let mut joinable_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(joinable_output);
    let mut records_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Record>>>::from(records_output);
    let mut rejects_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Reject>>>::from(rejects_output);
    let mut observations_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<Observation>>>::from(observations_output);
    let mut notes_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<PartitionNote>>>::from(notes_output);
    let mut announce_output =
        OutputBuilder::<_, CapacityContainerBuilder<Vec<i32>>>::from(announce_output);

    builder.build(move |capabilities| {
        // One capability per output, all at the same time: the least watermark.
        let mut capabilities: Option<Vec<Capability<u64>>> = Some(capabilities);
        let mut last_discovery: Option<Instant> = None;
        let mut readings: BTreeMap<i32, Reading> = BTreeMap::new();
        let mut announced: HashSet<i32> = HashSet::new();
        let mut recent_rejects: Vec<RejectEvent> = Vec::new();
        let mut published: Option<Instant> = None;
        let mut halted = false;
        // Since when, and why, the partitions cannot be read (see `Reader::stalled`).
        let mut stalled_since: Option<Instant> = None;
        let mut discovery_failed: Option<String> = None;
        move |_frontiers| {
            // Partitions announced to this worker: a capability to read them with.
            let mut offered: Option<Vec<Capability<u64>>> = None;
            announced_in.for_each(|cap, data| {
                if data.drain(..).any(|p| !readings.contains_key(&p)) && offered.is_none() {
                    let caps: Vec<_> = (0..OUTPUTS).filter_map(|i| cap.retain_least(i)).collect();
                    offered = (caps.len() == OUTPUTS).then_some(caps);
                }
            });
            if halted {
                return;
            }
            if capabilities.is_none() && offered.is_some() {
                // This worker owned nothing and is now told of a partition it owns: it reads
                // from the announced time on (discovery runs again now).
                capabilities = offered;
                last_discovery = None;
            }
            let Some(caps) = capabilities.as_mut() else { return };
            let fail = |e| {
                failed.report(e);
                true
            };

            // Assign new partitions: all of them at start, later ones as the topic grows.
            // No discovery while the broker is known to be away: nothing new can be found,
            // and the request would only hold the worker.
            let discover = match (last_discovery, discovery_interval) {
                (None, _) => true,
                (Some(at), Some(every)) => {
                    // After a failed one, soon again: until it succeeds the source counts as
                    // stalled.
                    let every = match discovery_failed {
                        Some(_) => every.min(Duration::from_secs(1)),
                        None => every,
                    };
                    at.elapsed() >= every && reader.stalled().is_none()
                }
                (Some(_), None) => false,
            };
            if discover {
                let first = last_discovery.is_none();
                last_discovery = Some(Instant::now());
                let found = match reader.partitions() {
                    Ok(found) => {
                        discovery_failed = None;
                        found
                    }
                    Err(e) if first => {
                        halted = fail(e);
                        return;
                    }
                    // A broker outage while running: the assigned partitions are read on when
                    // it is back, and new ones found then. Meanwhile the source is stalled.
                    Err(e) => {
                        discovery_failed = Some(e.to_string());
                        readings.keys().copied().collect()
                    }
                };
                let current = *caps[0].time();
                let mut announce = Vec::new();
                let mut new: Vec<(i32, StartAt)> = Vec::new();
                for p in found {
                    if assign::owner(&spec.topic, p, peers) == worker {
                        if !readings.contains_key(&p) {
                            new.push((p, restored.get(&p).and_then(|r| r.offset).map_or(start, StartAt::Offset)));
                        }
                    } else if announced.insert(p) && discovery_interval.is_some() {
                        announce.push(p);
                    }
                }
                if !announce.is_empty() {
                    announce_output.activate().session(&caps[4]).give_iterator(announce.into_iter());
                }
                if !new.is_empty() {
                    let positions = match reader.assign(&new) {
                        Ok(positions) => positions,
                        Err(e) if first => {
                            halted = fail(e);
                            return;
                        }
                        Err(e) => {
                            // Assigned at the next discovery (`assign` changes nothing when
                            // it fails).
                            discovery_failed = Some(e.to_string());
                            Vec::new()
                        }
                    };
                    let names: Vec<i32> = positions.iter().map(|(p, _)| *p).collect();
                    tracing::info!(worker, partitions = ?names, source = reader.kind(), "partitions assigned");
                    let mut notes_out = notes_output.activate();
                    let mut notes_session = notes_out.session(&caps[3]);
                    for (p, offset) in positions {
                        // A partition with progress resumes its clock; a new one starts at the
                        // current frontier, so nothing it sends can be below our capability.
                        let watermark = restored.get(&p).and_then(|r| r.watermark).map_or(current, |w| w.max(current));
                        let rows_from = restored.get(&p).map_or(i64::MIN, |r| r.rows_from);
                        if offset < rows_from {
                            tracing::info!(worker, partition = p, from = offset, rows_from, "backfill: replaying for the windows added since; rows before rows_from are not written again");
                        }
                        let mut reading = Reading {
                            next_offset: offset,
                            rows_from,
                            clock: PartitionClock::new(watermark, spec.allowed_lateness_ms),
                            finished: false,
                            last_message: Instant::now(),
                            meter: PartitionMeters::new(&stats.metrics, worker, p),
                            retiring: Vec::new(),
                            noted: None,
                        };
                        if let Some(note) = reading.take_note(p) {
                            notes_session.give(note);
                        }
                        readings.insert(p, reading);
                    }
                }
                if readings.is_empty() {
                    tracing::info!(worker, "owns no partition; releasing its capability until one is announced");
                    capabilities = None;
                    return;
                }
            }

            let time = *caps[0].time();
            let mut read = 0;
            let paused = flow.pause(time);
            if !stop.load(Ordering::Relaxed) && !paused {
                let mut records_out = records_output.activate();
                let mut rejects_out = rejects_output.activate();
                let mut records_session = records_out.session(&caps[0]);
                let mut rejects_session = rejects_out.session(&caps[1]);
                let mut observations_out = observations_output.activate();
                let mut observations_session = observations_out.session(&caps[2]);
                let mut joinable_out = joinable_output.activate();
                let mut joinable_session = joinable_out.session(&caps[5]);
                let now = Instant::now();
                let read_at_us = crate::time::process_us();
                let result = reader.read(batch, &mut |message| {
                    crate::failpoint::hit("source.parse");
                    let Some(reading) = readings.get_mut(&message.partition) else { return };
                    reading.last_message = now;
                    let watermark = reading.clock.watermark;
                    reading.meter.read(message.payload.len());
                    let replay = message.offset < reading.rows_from;
                    let tombstone = tombstones && message.tombstone;
                    let parsed = if tombstone {
                        schema.tombstone(message.key, message.timestamp)
                    } else {
                        schema.parse(message.payload, message.timestamp)
                    };
                    // The clock sees every parsed record once, replayed or not, so lateness
                    // is decided as in the run that first read it.
                    let late = matches!(&parsed, Ok(p) if reading.clock.observe(p.event_time));
                    let retire = match parsed {
                        Ok(parsed) if late => {
                            if !replay {
                                reading.meter.late();
                                note_reject(&mut recent_rejects, "late", &message, || format!("event time {} is below its partition's watermark {}", crate::time::rfc3339(parsed.event_time), crate::time::rfc3339(watermark)));
                                rejects_session.give(Reject {
                                    partition: message.partition,
                                    offset: message.offset,
                                    kind: RejectKind::Late { event_time: parsed.event_time, watermark },
                                    payload: truncate_payload(message.payload),
                                    size: message.payload.len(),
                                });
                            }
                            time
                        }
                        Ok(mut parsed) => {
                            let retire = spec.last_window_end(parsed.event_time).unwrap_or(time);
                            // A table input's declared delete marker deletes the key, as a
                            // tombstone does.
                            let deleted = tombstone
                                || spec.delete_marker.as_ref().is_some_and(|m| {
                                    let label = parsed.values[m.field].label();
                                    m.values.iter().any(|v| v.as_str() == label)
                                });
                            if deleted && !tombstone {
                                for (i, value) in parsed.values.iter_mut().enumerate() {
                                    if i != spec.key {
                                        *value = crate::data::record::Value::Null;
                                    }
                                }
                            }
                            let record = Record {
                                partition: message.partition,
                                offset: message.offset,
                                event_time: parsed.event_time,
                                key: parsed.key,
                                values: parsed.values,
                                deleted,
                                read_at_us,
                            };
                            match (&join_side, replay) {
                                (None, false) => {
                                    observations_session.give(observe(&spec, &record));
                                    records_session.give(record);
                                }
                                (None, true) => observations_session.give(observe(&spec, &record)),
                                (Some(join), false) => {
                                    joinable_session.give(record.projected(&join.fields));
                                    records_session.give(record);
                                }
                                (Some(join), true) => joinable_session.give(record.projected(&join.fields)),
                            }
                            retire
                        }
                        Err(_) if replay => time,
                        Err(reason) => {
                            reading.meter.dead_letter();
                            note_reject(&mut recent_rejects, "dead letter", &message, || reason.detail.clone());
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
                    reading.retire(retire, message.offset, watermark);
                    reading.next_offset = message.next_offset;
                });
                match result {
                    Ok(n) => read = n,
                    Err(e) => {
                        // What was read before the error was emitted whole: its notes go out
                        // below. Nothing is released.
                        halted = fail(e);
                    }
                }
                for reading in readings.values_mut() {
                    reading.meter.flush(&stats);
                }
                if !recent_rejects.is_empty() {
                    stats.status.add_rejects(recent_rejects.drain(..));
                }
            }

            // A stalled source waits for the broker, within `stall_timeout`. Its partitions
            // are not idle meanwhile: their silence says nothing about their data.
            let stall = reader.stalled().or_else(|| discovery_failed.clone());
            match (&stall, stalled_since) {
                (None, Some(_)) => {
                    stalled_since = None;
                    tracing::info!(worker, "source resumed: its partitions can be read again");
                }
                (Some(reason), None) => {
                    stalled_since = Some(Instant::now());
                    tracing::warn!(worker, reason = %reason, "source stalled: its partitions cannot be read; waiting for the broker");
                }
                (Some(reason), Some(since)) => {
                    if stall_timeout.is_some_and(|limit| since.elapsed() > limit) {
                        halted = fail(crate::error::Error::Kafka(format!(
                            "the partitions of {} could not be read for {} s ({reason}); stopping (--source-stall-timeout); fix the brokers and restart: Weir resumes from the stored progress",
                            spec.topic,
                            since.elapsed().as_secs()
                        )));
                    }
                }
                (None, None) => {}
            }
            if stall.is_some() {
                let now = Instant::now();
                for reading in readings.values_mut() {
                    reading.last_message = now;
                }
            }

            for (p, reading) in readings.iter_mut() {
                if !reading.finished && reader.finished(*p) {
                    reading.finished = true;
                    tracing::debug!(worker, partition = p, "partition ended");
                }
            }
            if let Some(idle) = spec.idle_timeout {
                advance_idle_partitions(&mut readings, idle);
            }
            {
                let mut notes_out = notes_output.activate();
                let mut notes_session = notes_out.session(&caps[3]);
                for (p, reading) in readings.iter_mut() {
                    if let Some(note) = reading.take_note(*p) {
                        notes_session.give(note);
                    }
                }
            }
            if published.is_none_or(|at| at.elapsed() >= PUBLISH_EVERY) {
                published = Some(Instant::now());
                publish(&stats, worker, &readings, reader.as_ref(), stall.as_deref());
            }
            if halted {
                return;
            }

            // The new capability: the least watermark of the partitions still being read.
            let low = readings.values().filter(|r| !r.finished).map(|r| r.clock.watermark).min();
            match low {
                None => {
                    tracing::info!(worker, "input ended");
                    publish(&stats, worker, &readings, reader.as_ref(), None);
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
                    } else if paused {
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
        notes,
        joinable,
    }
}

/// Publishes the partitions' positions, ends, lag and stall to the metrics and the status page.
fn publish(
    stats: &Stats,
    worker: usize,
    readings: &BTreeMap<i32, Reading>,
    reader: &dyn Reader,
    stall: Option<&str>,
) {
    let metrics = &stats.metrics;
    let mut partitions = Vec::new();
    for (partition, reading) in readings {
        let labels = PartitionLabels {
            worker,
            partition: *partition,
        };
        // At least the position: statistics may be a second old.
        let high_watermark = reader
            .high_watermark(*partition)
            .map(|h| h.max(reading.next_offset));
        let lag = high_watermark.map(|h| (h - reading.next_offset).max(0));
        metrics
            .position
            .get_or_create(&labels)
            .set(reading.next_offset);
        let backfill_until = (reading.next_offset < reading.rows_from).then_some(reading.rows_from);
        metrics
            .backfill_remaining
            .get_or_create(&labels)
            .set(backfill_until.map_or(0, |r| r - reading.next_offset));
        let stalled = stall.filter(|_| !reading.finished).map(str::to_string);
        metrics
            .source_stalled
            .get_or_create(&labels)
            .set(i64::from(stalled.is_some()));
        if let (Some(h), Some(l)) = (high_watermark, lag) {
            metrics.high_watermark.get_or_create(&labels).set(h);
            metrics.consumer_lag.get_or_create(&labels).set(l);
        }
        partitions.push(PartitionStatus {
            partition: *partition,
            position: reading.next_offset,
            high_watermark,
            lag,
            durable_offset: None,
            watermark_ms: reading.clock.watermark,
            records: metrics.records_read.get_or_create(&labels).get(),
            finished: reading.finished,
            backfill_until,
            stalled,
        });
    }
    stats.status.set_partitions(worker, partitions);
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
/// This is where wall-clock time decides lateness (see [`crate::progress`]).
fn advance_idle_partitions(readings: &mut BTreeMap<i32, Reading>, idle: Duration) {
    let is_idle = |r: &Reading| !r.finished && r.last_message.elapsed() >= idle;
    let active_low = readings
        .values()
        .filter(|r| !r.finished && !is_idle(r))
        .map(|r| r.clock.watermark)
        .min();
    let floor =
        active_low.unwrap_or_else(|| crate::time::now_ms().saturating_sub(idle.as_millis() as u64));
    for reading in readings.values_mut().filter(|r| is_idle(r)) {
        reading.clock.advance_to(floor);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::generator::GeneratorConfig;
    use crate::source::memory::MemoryTopic;
    use std::cell::RefCell;
    use timely::dataflow::operators::{Input as _, Inspect, Probe};

    fn users() -> DataflowSpec {
        DataflowSpec::load(std::path::Path::new("dataflows/users_created.toml")).unwrap()
    }

    /// `per_partition` generated users in each of `partitions` partitions.
    fn topic(partitions: i32, per_partition: i64) -> MemoryTopic {
        let generator = GeneratorConfig {
            seed: 1,
            partitions,
            count: None,
            rate: 0.0,
            epoch_ms: 1_795_255_200_000,
            duplicates_per_mille: 0,
            late_per_mille: 0,
            malformed_per_mille: 0,
            topic: crate::source::generator::GeneratedTopic::Users,
            tombstones_per_mille: 0,
            events_per_user: 1,
        };
        let topic = MemoryTopic::new(partitions as usize);
        let mut buf = Vec::new();
        for p in 0..partitions {
            for o in 0..per_partition {
                let ts = generator.message(p, o, &mut buf);
                topic.push(p, buf.clone(), Some(ts));
            }
        }
        topic
    }

    fn parts(topic: &MemoryTopic, batch: usize, flow: FlowControl) -> SourceParts {
        let spec = users();
        SourceParts {
            schema: Schema::new(&spec, 1 << 20),
            spec,
            reader: topic.reader().unwrap(),
            restored: HashMap::new(),
            start: StartAt::Earliest,
            batch,
            stop: Arc::new(AtomicBool::new(false)),
            stats: Arc::default(),
            discovery_interval: Some(Duration::ZERO),
            flow,
            failed: FirstError::default(),
            stall_timeout: None,
            join_side: None,
        }
    }

    #[test]
    fn a_source_waits_for_the_windows_of_every_worker() {
        timely::execute_directly(move |worker| {
            let seen: Rc<RefCell<usize>> = Rc::default();
            let topic = topic(1, 5);
            let flow = FlowControl::new(
                Arc::default(),
                u64::MAX,
                crate::operators::flow::MAX_AHEAD_MS,
            );
            let sink = Rc::clone(&seen);
            // The windows' input frontier, held by hand: at 0 until released.
            let windows = worker.dataflow::<u64, _, _>(|scope| {
                let (windows, stream) = scope.new_input::<Vec<()>>();
                stream.probe_with(&flow.windows);
                render(scope, parts(&topic, 2, flow.clone()))
                    .records
                    .inspect(move |_| *sink.borrow_mut() += 1);
                windows
            });
            for _ in 0..20 {
                worker.step();
            }
            assert_eq!(*seen.borrow(), 2, "one batch, then it waits");
            windows.close();
            // It looks again after a millisecond.
            for _ in 0..20 {
                worker.step_or_park(Some(Duration::from_millis(5)));
            }
            assert_eq!(*seen.borrow(), 5, "it reads on once the windows catch up");
            topic.end();
        });
    }

    #[test]
    fn partitions_added_while_running_are_assigned_and_read() {
        timely::execute_directly(move |worker| {
            let seen: Rc<RefCell<Vec<(i32, i64)>>> = Rc::default();
            let notes: Rc<RefCell<Vec<PartitionNote>>> = Rc::default();
            let topic = topic(1, 5);
            let flow = FlowControl::new(
                Arc::default(),
                u64::MAX,
                crate::operators::flow::MAX_AHEAD_MS,
            );
            let (sink, noted) = (Rc::clone(&seen), Rc::clone(&notes));
            worker.dataflow::<u64, _, _>(|scope| {
                let streams = render(scope, parts(&topic, 100, flow.clone()));
                streams
                    .records
                    .inspect(move |r| sink.borrow_mut().push((r.partition, r.offset)));
                streams
                    .notes
                    .inspect(move |n| noted.borrow_mut().push(n.clone()));
            });
            for _ in 0..20 {
                worker.step();
            }
            assert_eq!(seen.borrow().len(), 5, "partition 0 is read");
            topic.grow(2);
            let late = 1_795_255_200_000 + 3_600_000;
            for i in 0..3 {
                topic.push(1, format!(r#"{{"id":"6e4f4a8c-0d2a-4c9e-9b7e-00000000000{i}","gender":"male","created_at":"2026-11-21T11:00:0{i}.000Z"}}"#).into_bytes(), Some(late));
            }
            for _ in 0..20 {
                worker.step_or_park(Some(Duration::from_millis(5)));
            }
            assert!(
                notes
                    .borrow()
                    .iter()
                    .any(|n| n.partition == 1 && n.next_offset == 3),
                "the new partition is assigned and read to its end"
            );
            topic.end();
        });
    }
}
