//! What a process observes about itself: totals for the banner, the summary and backpressure
//! ([`Stats`]), the Prometheus metrics served at `/metrics` ([`Metrics`]), and the status
//! page's model ([`crate::status::StatusBoard`]).
//!
//! Contract: hot paths never touch a shared counter per record. The source adds its counts
//! once per batch and partition, the sink once per write; the source publishes its partitions'
//! gauges (positions, ends, lag) and the worker loop its frontiers, a few times a second. Label values are small integers and
//! table names, so the number of series is bounded by workers x partitions x tables.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::status::{StatusBoard, Totals};

/// Process-wide totals, the Prometheus metrics and the status board.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages read.
    pub messages: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Bad records.
    pub dead_letters: AtomicU64,
    /// Late records.
    pub late: AtomicU64,
    /// Rows acknowledged by the sink (records, rejects and window results).
    pub rows_written: AtomicU64,
    /// Window results acknowledged by the sink.
    pub windows_written: AtomicU64,
    /// Progress records acknowledged by the sink.
    pub progress_written: AtomicU64,
    /// Retried sink writes.
    pub retries: AtomicU64,
    /// Rows submitted to the sink and not yet acknowledged (the source pauses when too many).
    pub in_flight_rows: std::sync::Arc<AtomicU64>,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// What the status page shows.
    pub status: StatusBoard,
    /// When the source frontier passed each value, for window latency.
    pub frontier_clock: FrontierClock,
}

impl Stats {
    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{} messages ({} bytes) read, {} dead letters, {} late, {} rows and {} window results written, {} progress records",
            self.messages.load(Relaxed),
            self.bytes.load(Relaxed),
            self.dead_letters.load(Relaxed),
            self.late.load(Relaxed),
            self.rows_written.load(Relaxed),
            self.windows_written.load(Relaxed),
            self.progress_written.load(Relaxed),
        )
    }

    /// The totals, for the status page.
    pub fn totals(&self) -> Totals {
        Totals {
            records: self.messages.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            dead_letters: self.dead_letters.load(Relaxed),
            late: self.late.load(Relaxed),
            rows_written: self.rows_written.load(Relaxed),
            windows_written: self.windows_written.load(Relaxed),
            progress_written: self.progress_written.load(Relaxed),
            retries: self.retries.load(Relaxed),
            rows_in_flight: self.in_flight_rows.load(Relaxed),
        }
    }

    /// A sink write was retried.
    pub fn add_retry(&self) {
        self.retries.fetch_add(1, Relaxed);
        self.metrics.write_retries.inc();
    }
}

/// Labels of per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// Global worker index.
    pub worker: usize,
    /// Partition.
    pub partition: i32,
}

/// Labels of per-worker series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// Global worker index.
    pub worker: usize,
}

/// Labels of per-worker, per-table series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Global worker index.
    pub worker: usize,
    /// Table name.
    pub table: String,
}

/// Labels of per-table series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableOnly {
    /// Table name.
    pub table: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;
type Latency = Family<TableOnly, Histogram, fn() -> Histogram>;

/// The Prometheus metrics, all prefixed `weir_`. README "Operating" says what each means.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// `weir_records_read_total{worker,partition}`.
    pub records_read: Family<PartitionLabels, Counter>,
    /// `weir_bytes_read_total{worker,partition}`.
    pub bytes_read: Family<PartitionLabels, Counter>,
    /// `weir_parse_errors_total{worker,partition}`: dead letters.
    pub parse_errors: Family<PartitionLabels, Counter>,
    /// `weir_late_records_total{worker,partition}`.
    pub late_records: Family<PartitionLabels, Counter>,
    /// `weir_rows_written_total{worker,table}`: rows acknowledged by the store.
    pub rows_written: Family<TableLabels, Counter>,
    /// `weir_write_duration_seconds{table}`: from submitting a write to its acknowledgement.
    pub write_duration: Latency,
    /// `weir_write_rows_in_flight{worker}`: rows submitted and not yet acknowledged.
    pub write_rows_in_flight: Family<WorkerLabels, Gauge>,
    /// `weir_write_retries_total`.
    pub write_retries: Counter,
    /// `weir_event_time_frontier_seconds{worker}`: the source's low watermark.
    pub event_time_frontier: Family<WorkerLabels, FloatGauge>,
    /// `weir_frontier_lag_seconds{worker}`: wall clock minus the event-time frontier.
    pub frontier_lag: Family<WorkerLabels, FloatGauge>,
    /// `weir_durable_frontier_seconds{worker}`: everything below it is durable.
    pub durable_frontier: Family<WorkerLabels, FloatGauge>,
    /// `weir_join_kept{worker}`: what a join keeps of its right input (an as-of join's live
    /// table keys; an interval join's right records that can still match).
    pub join_kept: Family<WorkerLabels, Gauge>,
    /// `weir_join_pending{worker}`: left records waiting for both frontiers.
    pub join_pending: Family<WorkerLabels, Gauge>,
    /// `weir_kafka_high_watermark{worker,partition}`: the partition's end, as last seen.
    pub high_watermark: Family<PartitionLabels, Gauge>,
    /// `weir_source_position{worker,partition}`: the next offset to read.
    pub position: Family<PartitionLabels, Gauge>,
    /// `weir_consumer_lag_records{worker,partition}`: high watermark minus position.
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// `weir_backfill_remaining_offsets{worker,partition}`: how far a backfill's replay is
    /// from the offset where rows are written again (0 when not backfilling).
    pub backfill_remaining: Family<PartitionLabels, Gauge>,
    /// `weir_source_stalled{worker,partition}`: 1 while the partition cannot be read (its
    /// broker is down, paused or silent; the reason is on the status page and `/readyz`).
    pub source_stalled: Family<PartitionLabels, Gauge>,
    /// `weir_durable_offset{worker,partition}`: the resume offset of the last durable progress.
    pub durable_offset: Family<PartitionLabels, Gauge>,
    /// `weir_windows_written_total{worker}`: window results acknowledged.
    pub windows_written: Family<WorkerLabels, Counter>,
    /// `weir_progress_writes_total{worker}`: progress records acknowledged.
    pub progress_writes: Family<WorkerLabels, Counter>,
    /// `weir_record_latency_seconds`: from reading a record to its row being durable (per
    /// write, its oldest record).
    pub record_latency: Histogram,
    /// `weir_window_latency_seconds`: from the source frontier passing a window's end to the
    /// window's result being durable.
    pub window_latency: Histogram,
    /// `weir_record_latency_max_seconds`.
    pub record_latency_max: FloatGauge,
    /// `weir_window_latency_max_seconds`.
    pub window_latency_max: FloatGauge,
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

fn end_to_end_histogram() -> Histogram {
    // 0.5 ms to about 40 s in steps of 1.5x: fine enough to tell 97 ms from 146 ms.
    Histogram::new(exponential_buckets(0.0005, 1.5, 29))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("weir");
        macro_rules! metric {
            ($name:literal, $help:literal, $metric:expr) => {{
                let metric = $metric;
                registry.register($name, $help, metric.clone());
                metric
            }};
        }
        let metrics = Metrics {
            records_read: metric!("records_read", "Messages read", Family::default()),
            bytes_read: metric!("bytes_read", "Message bytes read", Family::default()),
            parse_errors: metric!(
                "parse_errors",
                "Messages that did not parse (dead letters)",
                Family::default()
            ),
            late_records: metric!(
                "late_records",
                "Records below their partition's watermark",
                Family::default()
            ),
            rows_written: metric!(
                "rows_written",
                "Rows acknowledged by the store",
                Family::default()
            ),
            write_duration: metric!(
                "write_duration_seconds",
                "Time from submitting a write to its acknowledgement",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram)
            ),
            write_rows_in_flight: metric!(
                "write_rows_in_flight",
                "Rows submitted to the store and not yet acknowledged",
                Family::default()
            ),
            write_retries: metric!("write_retries", "Retried store writes", Counter::default()),
            event_time_frontier: metric!(
                "event_time_frontier_seconds",
                "The source's event-time frontier (low watermark), unix seconds",
                Family::default()
            ),
            frontier_lag: metric!(
                "frontier_lag_seconds",
                "Wall clock minus the event-time frontier",
                Family::default()
            ),
            durable_frontier: metric!(
                "durable_frontier_seconds",
                "Event time below which every output is durable, unix seconds",
                Family::default()
            ),
            join_kept: metric!(
                "join_kept",
                "What a join keeps of its right input: live table keys (as-of), right records that can still match (interval)",
                Family::default()
            ),
            join_pending: metric!(
                "join_pending",
                "Left records of a join waiting for both inputs' frontiers",
                Family::default()
            ),
            high_watermark: metric!(
                "kafka_high_watermark",
                "The partition's high watermark, as last seen by the consumer",
                Family::default()
            ),
            position: metric!(
                "source_position",
                "The next offset to read",
                Family::default()
            ),
            consumer_lag: metric!(
                "consumer_lag_records",
                "High watermark minus the next offset to read",
                Family::default()
            ),
            backfill_remaining: metric!(
                "backfill_remaining_offsets",
                "Offsets a backfill still replays before rows are written again (0: not backfilling)",
                Family::default()
            ),
            source_stalled: metric!(
                "source_stalled",
                "1 while the partition cannot be read: its broker is down, paused or not answering",
                Family::default()
            ),
            durable_offset: metric!(
                "durable_offset",
                "Resume offset recorded by the last durable progress record",
                Family::default()
            ),
            windows_written: metric!(
                "windows_written",
                "Window results acknowledged by the store",
                Family::default()
            ),
            progress_writes: metric!(
                "progress_writes",
                "Progress records acknowledged by the store",
                Family::default()
            ),
            record_latency: metric!(
                "record_latency_seconds",
                "From reading a record to its row being durable (per write, its oldest record)",
                end_to_end_histogram()
            ),
            window_latency: metric!(
                "window_latency_seconds",
                "From the source frontier passing a window's end to its result being durable",
                end_to_end_histogram()
            ),
            record_latency_max: metric!(
                "record_latency_max_seconds",
                "Largest record latency since start",
                FloatGauge::default()
            ),
            window_latency_max: metric!(
                "window_latency_max_seconds",
                "Largest window latency since start",
                FloatGauge::default()
            ),
            registry: Mutex::new(Registry::default()),
        };
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        metrics
    }
}

impl Metrics {
    /// Registers `weir_build_info{version,dataflow,source,sink} 1`.
    pub fn set_build_info(&self, dataflow: &str, source: &str, sink: &str) {
        let info = Info::new(vec![
            ("version", env!("CARGO_PKG_VERSION").to_string()),
            ("dataflow", dataflow.to_string()),
            ("source", source.to_string()),
            ("sink", sink.to_string()),
        ]);
        self.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .register("build", "Weir's version and what this process runs", info);
    }

    /// The metrics in the Prometheus text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        text
    }
}

impl Metrics {
    /// A write's oldest record was read at `read_at_us` (process clock) and is now durable.
    pub fn record_durable(&self, read_at_us: u64) {
        let seconds = crate::time::process_us().saturating_sub(read_at_us) as f64 / 1e6;
        self.record_latency.observe(seconds);
        raise(&self.record_latency_max, seconds);
    }

    /// A window result whose window ended at `end` is durable; the source frontier passed
    /// `end` at `passed`.
    pub fn window_durable(&self, passed: Instant) {
        let seconds = passed.elapsed().as_secs_f64();
        self.window_latency.observe(seconds);
        raise(&self.window_latency_max, seconds);
    }
}

fn raise(gauge: &FloatGauge, value: f64) {
    let bits = gauge.inner();
    let mut current = bits.load(Relaxed);
    while f64::from_bits(current) < value {
        match bits.compare_exchange_weak(current, value.to_bits(), Relaxed, Relaxed) {
            Ok(_) => break,
            Err(seen) => current = seen,
        }
    }
}

/// When the source frontier (global: every worker's, as a probe sees it) passed each value, so
/// that a window's latency can be measured from the moment it became complete. Worker loops
/// note the frontier as they see it; entries older than a window could need are dropped.
#[derive(Debug, Default)]
pub struct FrontierClock {
    passed: Mutex<VecDeque<(u64, Instant)>>,
}

impl FrontierClock {
    const KEEP: usize = 100_000;

    /// The frontier is `frontier` now (noted only when it advanced).
    pub fn note(&self, frontier: u64) {
        let mut passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        if passed.back().is_none_or(|(f, _)| *f < frontier) {
            if passed.len() == Self::KEEP {
                passed.pop_front();
            }
            passed.push_back((frontier, Instant::now()));
        }
    }

    /// When the frontier first reached `end` or beyond.
    pub fn passed(&self, end: u64) -> Option<Instant> {
        let passed = self.passed.lock().unwrap_or_else(|e| e.into_inner());
        let i = passed.partition_point(|(f, _)| *f < end);
        passed.get(i).map(|(_, at)| *at)
    }
}

/// A partition's counters, held by the source and added to once per batch.
#[derive(Clone, Debug)]
pub struct PartitionMeters {
    records: Counter,
    bytes: Counter,
    parse_errors: Counter,
    late: Counter,
    /// Counts of the current batch.
    pending: [u64; 4],
}

impl PartitionMeters {
    /// The counters of `partition` read by `worker`.
    pub fn new(metrics: &Metrics, worker: usize, partition: i32) -> Self {
        let labels = PartitionLabels { worker, partition };
        PartitionMeters {
            records: metrics.records_read.get_or_create_owned(&labels),
            bytes: metrics.bytes_read.get_or_create_owned(&labels),
            parse_errors: metrics.parse_errors.get_or_create_owned(&labels),
            late: metrics.late_records.get_or_create_owned(&labels),
            pending: [0; 4],
        }
    }

    /// A message of `bytes` was read.
    #[inline]
    pub fn read(&mut self, bytes: usize) {
        self.pending[0] += 1;
        self.pending[1] += bytes as u64;
    }

    /// The message was a dead letter.
    #[inline]
    pub fn dead_letter(&mut self) {
        self.pending[2] += 1;
    }

    /// The message was late.
    #[inline]
    pub fn late(&mut self) {
        self.pending[3] += 1;
    }

    /// Adds the batch's counts to the metrics and the process totals.
    pub fn flush(&mut self, stats: &Stats) {
        let [records, bytes, errors, late] = std::mem::take(&mut self.pending);
        if records == 0 {
            return;
        }
        self.records.inc_by(records);
        self.bytes.inc_by(bytes);
        stats.messages.fetch_add(records, Relaxed);
        stats.bytes.fetch_add(bytes, Relaxed);
        if errors > 0 {
            self.parse_errors.inc_by(errors);
            stats.dead_letters.fetch_add(errors, Relaxed);
        }
        if late > 0 {
            self.late.inc_by(late);
            stats.late.fetch_add(late, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_reach_the_exposition_and_the_totals() {
        let stats = Stats::default();
        stats.metrics.set_build_info("users", "generator", "null");
        let mut meters = PartitionMeters::new(&stats.metrics, 1, 3);
        meters.read(100);
        meters.read(50);
        meters.dead_letter();
        meters.flush(&stats);
        meters.flush(&stats);
        let text = stats.metrics.encode();
        assert!(text.contains("weir_records_read_total{worker=\"1\",partition=\"3\"} 2"));
        assert!(text.contains("weir_bytes_read_total{worker=\"1\",partition=\"3\"} 150"));
        assert!(text.contains("weir_parse_errors_total{worker=\"1\",partition=\"3\"} 1"));
        assert!(text.contains("weir_build_info{"), "{text}");
        assert_eq!(stats.messages.load(Relaxed), 2);
        assert_eq!(stats.dead_letters.load(Relaxed), 1);
    }
}
