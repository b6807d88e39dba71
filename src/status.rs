//! The status page's model: what the dataflow is, where each worker and partition stands,
//! throughput over the last minutes, the latest dead letters, late records and window
//! results. [`crate::http`] serves it as JSON at `/api/status` and draws it at `/`.
//!
//! Contract: writers are the worker loops (frontiers and durable offsets, a few times a
//! second), the source (its partitions a few times a second; rejects once per batch with
//! them) and the sink (once per acknowledged window write); every list is bounded, so
//! the board's size does not grow with the input.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::data::window::WindowResult;
use crate::spec::DataflowSpec;

/// How many recent rejects and window results the board keeps.
pub const RECENT: usize = 20;
/// Throughput samples kept (one a second: ten minutes).
pub const HISTORY: usize = 600;

/// The shared status of one process.
#[derive(Debug, Default)]
pub struct StatusBoard {
    board: Mutex<Board>,
}

#[derive(Clone, Debug, Default, Serialize)]
struct Board {
    dataflow: DataflowInfo,
    started_ms: u64,
    stopping: bool,
    /// Why the sink is retrying writes now, if it is.
    sink_retrying: Option<String>,
    workers: BTreeMap<usize, WorkerStatus>,
    /// Per worker, the join's state (dataflows with `[[inputs]]`).
    joins: BTreeMap<usize, JoinState>,
    recent_rejects: VecDeque<RejectEvent>,
    recent_windows: VecDeque<WindowEvent>,
    history: VecDeque<Sample>,
    #[serde(skip)]
    last_totals: Option<(u64, u64, u64, u64)>,
}

/// What runs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DataflowInfo {
    /// Dataflow name.
    pub name: String,
    /// Its file.
    pub file: String,
    /// The topic.
    pub topic: String,
    /// The source, in words.
    pub source: String,
    /// The sink, in words.
    pub sink: String,
    /// Workers per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// This process.
    pub process: usize,
    /// Its windows, dimensions and aggregates.
    #[serde(flatten)]
    pub names: WindowNames,
    /// What changed in the file since the stored progress was written, and what this start
    /// does about it (one line each; empty when nothing changed).
    pub changes: Vec<String>,
}

/// Where one worker stands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WorkerStatus {
    /// Global worker index.
    pub worker: usize,
    /// Event-time frontier of its source (epoch ms); `None` once its input ended.
    pub frontier_ms: Option<u64>,
    /// Everything below this event time is durable (epoch ms).
    pub durable_ms: Option<u64>,
    /// Its partitions.
    pub partitions: Vec<PartitionStatus>,
}

/// Where one partition stands.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PartitionStatus {
    /// Partition.
    pub partition: i32,
    /// Next offset to read.
    pub position: i64,
    /// The partition's end as last seen, when the source knows it.
    pub high_watermark: Option<i64>,
    /// High watermark minus position.
    pub lag: Option<i64>,
    /// Resume offset of the last durable progress record.
    pub durable_offset: Option<i64>,
    /// The partition's watermark (epoch ms).
    pub watermark_ms: u64,
    /// Messages read in this run.
    pub records: u64,
    /// Its bounded input has ended.
    pub finished: bool,
    /// Backfilling: replaying for added outputs until this offset (rows before it are not
    /// written again).
    pub backfill_until: Option<i64>,
    /// Why the partition cannot be read now (its broker is down, paused or not answering).
    pub stalled: Option<String>,
}

/// A dead letter or a late record.
#[derive(Clone, Debug, Serialize)]
pub struct RejectEvent {
    /// When it was read (epoch ms).
    pub at_ms: u64,
    /// `dead letter` or `late`.
    pub kind: &'static str,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why.
    pub reason: String,
    /// The start of the payload.
    pub payload: String,
}

/// A window result made durable.
#[derive(Clone, Debug, Serialize)]
pub struct WindowEvent {
    /// When it became durable (epoch ms).
    pub at_ms: u64,
    /// Window name.
    pub window: String,
    /// Window start (epoch ms).
    pub start_ms: u64,
    /// Window end (epoch ms).
    pub end_ms: u64,
    /// Dimension name.
    pub dimension: String,
    /// Dimension value.
    pub value: String,
    /// Aggregate name and value.
    pub aggregates: Vec<(String, String)>,
}

/// Throughput over one second.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// End of the second (epoch ms).
    pub at_ms: u64,
    /// Messages read per second.
    pub records_per_s: f64,
    /// Message bytes read per second.
    pub bytes_per_s: f64,
    /// Rows written per second.
    pub rows_per_s: f64,
    /// Window results written per second.
    pub windows_per_s: f64,
}

/// Everything `/api/status` returns.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    #[serde(flatten)]
    board: Board,
    now_ms: u64,
    totals: Totals,
}

/// The process's totals, as the status page shows them.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Totals {
    /// Messages read.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Dead letters.
    pub dead_letters: u64,
    /// Late records.
    pub late: u64,
    /// Rows acknowledged by the sink.
    pub rows_written: u64,
    /// Window results acknowledged by the sink.
    pub windows_written: u64,
    /// Progress records acknowledged by the sink.
    pub progress_written: u64,
    /// Retried sink writes.
    pub retries: u64,
    /// Rows submitted to the sink and not yet acknowledged.
    pub rows_in_flight: u64,
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, bound: usize) {
    if list.len() == bound {
        list.pop_front();
    }
    list.push_back(item);
}

impl StatusBoard {
    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Describes the dataflow; marks the start.
    pub fn set_dataflow(&self, info: DataflowInfo) {
        let mut board = self.lock();
        board.dataflow = info;
        board.started_ms = crate::time::now_ms();
    }

    /// The process is stopping at the next safe point.
    pub fn set_stopping(&self) {
        self.lock().stopping = true;
    }

    /// The sink is retrying a failed write (`Some(why)`), or its writes succeed again.
    pub fn set_sink_retrying(&self, why: Option<String>) {
        self.lock().sink_retrying = why;
    }

    /// Whether the process does its work now (`/readyz`): `Err` lists why not (not started
    /// yet, stopping, a partition that cannot be read, a sink retrying its writes).
    pub fn readiness(&self) -> std::result::Result<(), Vec<String>> {
        let board = self.lock();
        let mut why = Vec::new();
        if board.started_ms == 0 {
            why.push("the dataflow has not started".to_string());
        }
        if board.stopping {
            why.push("stopping".to_string());
        }
        for w in board.workers.values() {
            for p in &w.partitions {
                if let Some(reason) = &p.stalled {
                    why.push(format!("partition {} stalled: {reason}", p.partition));
                }
            }
        }
        if let Some(reason) = &board.sink_retrying {
            why.push(format!("sink retrying: {reason}"));
        }
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }

    fn worker(board: &mut Board, worker: usize) -> &mut WorkerStatus {
        board.workers.entry(worker).or_insert_with(|| WorkerStatus {
            worker,
            ..WorkerStatus::default()
        })
    }

    /// A worker's frontiers (from its loop).
    pub fn set_frontiers(&self, worker: usize, frontier_ms: Option<u64>, durable_ms: Option<u64>) {
        let mut board = self.lock();
        let status = Self::worker(&mut board, worker);
        status.frontier_ms = frontier_ms;
        status.durable_ms = durable_ms;
    }

    /// A worker's partitions (from its source); durable offsets already known are kept.
    pub fn set_partitions(&self, worker: usize, mut partitions: Vec<PartitionStatus>) {
        let mut board = self.lock();
        let status = Self::worker(&mut board, worker);
        for p in partitions.iter_mut() {
            if p.durable_offset.is_none() {
                p.durable_offset = status
                    .partitions
                    .iter()
                    .find(|q| q.partition == p.partition)
                    .and_then(|q| q.durable_offset);
            }
        }
        status.partitions = partitions;
    }

    /// Resume offsets that became durable (from the progress operator, via the worker loop).
    pub fn set_durable_offsets(&self, worker: usize, offsets: &[(i32, i64)]) {
        let mut board = self.lock();
        let status = Self::worker(&mut board, worker);
        for (partition, offset) in offsets {
            match status
                .partitions
                .iter_mut()
                .find(|p| p.partition == *partition)
            {
                Some(p) => p.durable_offset = Some(*offset),
                None => status.partitions.push(PartitionStatus {
                    partition: *partition,
                    durable_offset: Some(*offset),
                    ..PartitionStatus::default()
                }),
            }
        }
    }

    /// Adds recent rejects (the newest last).
    pub fn add_rejects(&self, events: impl IntoIterator<Item = RejectEvent>) {
        let mut board = self.lock();
        for event in events {
            push_bounded(&mut board.recent_rejects, event, RECENT);
        }
    }

    /// Adds window results that became durable.
    pub fn add_windows(&self, events: impl IntoIterator<Item = WindowEvent>) {
        let mut board = self.lock();
        for event in events {
            push_bounded(&mut board.recent_windows, event, RECENT);
        }
    }

    /// Takes a throughput sample from the totals; call about once a second.
    pub fn sample(&self, totals: Totals) {
        let now = crate::time::now_ms();
        let totals = (
            totals.records,
            totals.bytes,
            totals.rows_written,
            totals.windows_written,
        );
        let mut board = self.lock();
        let last_at = board.history.back().map_or(board.started_ms, |s| s.at_ms);
        let (r0, b0, w0, x0) = board.last_totals.unwrap_or_default();
        board.last_totals = Some(totals);
        let seconds = (now.saturating_sub(last_at) as f64 / 1000.0).max(0.001);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / seconds;
        let sample = Sample {
            at_ms: now,
            records_per_s: rate(totals.0, r0),
            bytes_per_s: rate(totals.1, b0),
            rows_per_s: rate(totals.2, w0),
            windows_per_s: rate(totals.3, x0),
        };
        push_bounded(&mut board.history, sample, HISTORY);
    }

    /// A worker's join state: what it keeps of the right input (live table keys, or right
    /// records that can still match) and the left records waiting for both frontiers.
    pub fn set_join_state(&self, worker: usize, kept: u64, pending: u64) {
        self.lock()
            .joins
            .insert(worker, JoinState { kept, pending });
    }

    /// A copy of everything, with the totals.
    pub fn snapshot(&self, totals: Totals) -> Snapshot {
        Snapshot {
            board: self.lock().clone(),
            now_ms: crate::time::now_ms(),
            totals,
        }
    }
}

/// One worker's join state.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct JoinState {
    kept: u64,
    pending: u64,
}

/// Names of windows, dimensions and aggregates, for the status page.
#[derive(Clone, Debug, Default, Serialize)]
pub struct WindowNames {
    /// Window names.
    pub windows: Vec<String>,
    /// Dimension names.
    pub dimensions: Vec<String>,
    /// Aggregate names.
    pub aggregates: Vec<String>,
}

impl WindowNames {
    /// The names in `spec`.
    pub fn new(spec: &DataflowSpec) -> Self {
        WindowNames {
            windows: spec.windows.iter().map(|w| w.name.clone()).collect(),
            dimensions: spec
                .dimensions
                .iter()
                .map(|d| spec.fields[*d].name.clone())
                .collect(),
            aggregates: spec.aggregates.iter().map(|a| a.name.clone()).collect(),
        }
    }

    /// A window result, named, for the status page.
    pub fn event(&self, w: &WindowResult) -> WindowEvent {
        let name = |names: &[String], i: u16| names.get(i as usize).cloned().unwrap_or_default();
        WindowEvent {
            at_ms: 0,
            window: name(&self.windows, w.window),
            start_ms: w.start,
            end_ms: w.end,
            dimension: name(&self.dimensions, w.dimension),
            value: w.value.clone(),
            aggregates: self
                .aggregates
                .iter()
                .zip(&w.aggregates)
                .map(|(n, v)| (n.clone(), v.to_string()))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_stay_bounded_and_samples_are_rates() {
        let board = StatusBoard::default();
        for i in 0..(RECENT as i64 + 5) {
            board.add_rejects([RejectEvent {
                at_ms: 0,
                kind: "late",
                partition: 0,
                offset: i,
                reason: String::new(),
                payload: String::new(),
            }]);
        }
        board.sample(Totals::default());
        let totals = Totals {
            records: 500,
            ..Totals::default()
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        board.sample(totals);
        let json = serde_json::to_value(board.snapshot(totals)).unwrap();
        let rejects = json["recent_rejects"].as_array().unwrap();
        assert_eq!(rejects.len(), RECENT);
        assert_eq!(rejects.last().unwrap()["offset"], RECENT as i64 + 4);
        let history = json["history"].as_array().unwrap();
        assert_eq!(history.len(), 2);
        assert!(history[1]["records_per_s"].as_f64().unwrap() > 0.0);
        assert_eq!(json["totals"]["records"], 500);
    }
}
