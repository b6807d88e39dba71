//! The Kafka source: an rdkafka `BaseConsumer` per worker, with explicit `assign()` and offsets.
//!
//! Never `subscribe()`: the group coordinator would move partitions between workers at will,
//! and Weir's progress lives in the sink, not in consumer-group offsets. The group id is only
//! used to commit offsets after the sink's progress record, so that lag tools work.
//!
//! Security settings (SASL, TLS, properties file, `--kafka-config`) come resolved in
//! [`KafkaConfig::settings`] and are applied after Weir's own options (`crate::security`).
//! The client context keeps librdkafka's last connection error, so that a refused login or a
//! failed TLS handshake is named in the one error line instead of a bare timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message as _;
use rdkafka::{ClientContext, Offset, Statistics, TopicPartitionList};

use super::{Message, Reader, StartAt};
use crate::error::{Error, Result};
use crate::security::{kafka_error, ClientErrors, KafkaSettings};

/// How to reach and read the topic.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// bootstrap.servers
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Consumer group, for offset commits only.
    pub group: String,
    /// Security and extra librdkafka settings, applied after Weir's own.
    pub settings: KafkaSettings,
    /// Stop each partition at the high watermark seen when it is assigned.
    pub until_end: bool,
    /// Stop each partition at this offset (exclusive).
    pub until_offset: Option<i64>,
    /// How long to wait for the broker at start.
    pub timeout: Duration,
}

impl KafkaConfig {
    /// The librdkafka client configuration, with a reason for every non-default option.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group)
            // Offsets are committed by Weir, after the sink's progress record, for lag tools only.
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // A stored offset that retention deleted restarts at the earliest data, not the end:
            // losing data silently is worse than re-reading it.
            .set("auto.offset.reset", "earliest")
            // End of partition is detected from high watermarks; EOF events would be noise.
            .set("enable.partition.eof", "false")
            // Fail fast at start instead of retrying an unreachable broker forever.
            .set(
                "socket.connection.setup.timeout.ms",
                (self.timeout.as_millis().max(1000)).to_string(),
            )
            // Statistics once a second carry each partition's high watermark, for the
            // consumer-lag metric, without a request to the broker.
            .set("statistics.interval.ms", "1000");
        self.settings.apply(&mut c);
        c
    }
}

/// Keeps what librdkafka's statistics report once a second: the high watermarks (for the lag
/// metric) and whether the assigned partitions can be read ([`stall_reason`]); and the
/// client's last errors (quoted when connecting fails, e.g. a refused login).
#[derive(Default)]
pub struct WatermarkContext {
    topic: String,
    high: Arc<Mutex<HashMap<i32, i64>>>,
    stalled: Arc<Mutex<Option<String>>>,
    errors: ClientErrors,
}

/// How long a partition's leader may send nothing before the partition counts as stalled. A
/// broker that works answers a consumer's fetch at least every `fetch.wait.max.ms` (500 ms by
/// default), so ten seconds of silence is a paused, blackholed or dying broker, not a quiet
/// topic.
const SILENT_BROKER: Duration = Duration::from_secs(10);

/// Why the assigned partitions of `topic` cannot be read now, from one statistics report: no
/// known leader, a leader whose connection is not up (down, connecting, or stuck in the
/// handshake), or a leader that has not answered for [`SILENT_BROKER`]. `None` when every
/// assigned partition's leader is up and answering.
pub fn stall_reason(statistics: &Statistics, topic: &str) -> Option<String> {
    let topic = statistics.topics.get(topic)?;
    let mut assigned: Vec<_> = topic
        .partitions
        .values()
        .filter(|p| p.partition >= 0 && p.desired)
        .collect();
    assigned.sort_by_key(|p| p.partition);
    for p in assigned {
        let partition = p.partition;
        let Some(leader) = statistics
            .brokers
            .values()
            .find(|b| b.nodeid == p.leader && p.leader >= 0)
        else {
            return Some(format!("partition {partition} has no known leader"));
        };
        if !matches!(leader.state.as_str(), "UP" | "UPDATE") {
            return Some(format!(
                "broker {} is {}",
                leader.name,
                leader.state.to_lowercase()
            ));
        }
        let silent = Duration::from_micros(u64::try_from(leader.rxidle).unwrap_or(0));
        if silent >= SILENT_BROKER {
            return Some(format!(
                "broker {} has not answered for {} s",
                leader.name,
                silent.as_secs()
            ));
        }
    }
    None
}

impl ClientContext for WatermarkContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.errors.record(&error, reason);
    }

    fn stats(&self, statistics: Statistics) {
        *self.stalled.lock().unwrap_or_else(|e| e.into_inner()) =
            stall_reason(&statistics, &self.topic);
        let Some(topic) = statistics.topics.get(&self.topic) else {
            return;
        };
        let mut high = self.high.lock().unwrap_or_else(|e| e.into_inner());
        for p in topic
            .partitions
            .values()
            .filter(|p| p.partition >= 0 && p.hi_offset >= 0)
        {
            high.insert(p.partition, p.hi_offset);
        }
    }
}

impl ConsumerContext for WatermarkContext {}

/// Reads this worker's partitions of one topic.
pub struct KafkaReader {
    config: KafkaConfig,
    /// Shared with the [`KafkaCommitter`] (the same consumer commits, on the same worker).
    consumer: Arc<BaseConsumer<WatermarkContext>>,
    high_watermarks: Arc<Mutex<HashMap<i32, i64>>>,
    /// Why the partitions cannot be read, as of the last statistics.
    stalled: Arc<Mutex<Option<String>>>,
    /// Exclusive end per partition, for bounded runs.
    ends: HashMap<i32, i64>,
    /// Next offset to read per assigned partition.
    positions: HashMap<i32, i64>,
}

/// The longest a partition discovery may hold its worker once partitions are being read (the
/// connect timeout applies before): a broker that works answers a metadata request in
/// milliseconds, and while it does not, the worker should go on serving the client's
/// statistics and its other operators.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);

impl KafkaReader {
    /// Connects, and checks that the topic exists.
    pub fn connect(config: KafkaConfig) -> Result<Self> {
        let high_watermarks: Arc<Mutex<HashMap<i32, i64>>> = Arc::default();
        let stalled: Arc<Mutex<Option<String>>> = Arc::default();
        let context = WatermarkContext {
            topic: config.topic.clone(),
            high: Arc::clone(&high_watermarks),
            stalled: Arc::clone(&stalled),
            errors: ClientErrors::default(),
        };
        let consumer: BaseConsumer<WatermarkContext> = config
            .client_config()
            .create_with_context(context)
            .map_err(|e| {
                Error::Kafka(format!(
                    "cannot create a consumer for {}: {}; check --brokers and the Kafka settings",
                    config.brokers,
                    kafka_error(&e)
                ))
            })?;
        let mut reader = KafkaReader {
            config,
            consumer: Arc::new(consumer),
            high_watermarks,
            stalled,
            ends: HashMap::new(),
            positions: HashMap::new(),
        };
        let partitions = reader.partitions()?;
        if partitions.is_empty() {
            return Err(Error::Kafka(format!(
                "topic {:?} does not exist on {}; create it (e.g. `weir produce --partitions 4`) or fix the dataflow's topic",
                reader.config.topic, reader.config.brokers
            )));
        }
        Ok(reader)
    }

    /// How long a metadata request may take: the connect timeout until partitions are read,
    /// then at most [`DISCOVERY_TIMEOUT`].
    fn metadata_timeout(&self) -> Duration {
        if self.positions.is_empty() {
            self.config.timeout
        } else {
            self.config.timeout.min(DISCOVERY_TIMEOUT)
        }
    }

    /// What commits this reader's offsets to the consumer group.
    pub fn kafka_committer(&self) -> KafkaCommitter {
        KafkaCommitter {
            consumer: Arc::clone(&self.consumer),
            topic: self.config.topic.clone(),
        }
    }

    /// Serves librdkafka's pending events, so that the context records the connection errors
    /// among them (a consumer reports them only through `poll`). Only while nothing is
    /// assigned: then `poll` cannot return, and so lose, a message.
    fn serve_error_events(&self) {
        if self.positions.is_empty() {
            // `None` also stands for an event served inside (a statistics event, say), so
            // this does not stop at the first one.
            for _ in 0..64 {
                let _ = self.consumer.poll(Duration::ZERO);
            }
        }
    }

    fn start_offset(&self, partition: i32, start: &StartAt) -> Result<i64> {
        let topic = &self.config.topic;
        let kafka_err = |e| Error::Kafka(format!("{topic}/{partition}: {e}"));
        let (low, high) = self
            .consumer
            .fetch_watermarks(topic, partition, self.config.timeout)
            .map_err(kafka_err)?;
        Ok(match start {
            StartAt::Offset(o) if *o < low => {
                tracing::warn!(
                    partition,
                    stored = o,
                    earliest = low,
                    "stored offset is gone (retention); resuming at the earliest offset"
                );
                low
            }
            StartAt::Offset(o) => *o,
            StartAt::Earliest => low,
            StartAt::Latest => high,
            StartAt::Time(ms) => {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(topic, partition, Offset::Offset(*ms))
                    .map_err(kafka_err)?;
                let found = self
                    .consumer
                    .offsets_for_times(tpl, self.config.timeout)
                    .map_err(kafka_err)?;
                match found.find_partition(topic, partition).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                }
            }
        })
    }
}

/// Commits resume offsets to the consumer group, for lag tools only: Weir reads its
/// progress from the sink, never from the group.
pub struct KafkaCommitter {
    consumer: Arc<BaseConsumer<WatermarkContext>>,
    topic: String,
}

impl crate::source::Committer for KafkaCommitter {
    fn commit(&self, offsets: &[(i32, i64)]) {
        let mut tpl = TopicPartitionList::new();
        for (p, o) in offsets {
            let _ = tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o));
        }
        crate::failpoint::hit("progress.before_commit");
        if let Err(e) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!("consumer-group commit failed (lag tools only): {e}");
        }
    }
}

impl Reader for KafkaReader {
    fn partitions(&mut self) -> Result<Vec<i32>> {
        let metadata = self
            .consumer
            .fetch_metadata(Some(&self.config.topic), self.metadata_timeout())
            .map_err(|e| {
                self.serve_error_events();
                Error::Kafka(format!(
                    "cannot reach the brokers at {} ({e}){}",
                    self.config.brokers,
                    self.consumer
                        .context()
                        .errors
                        .explain_or("; check --brokers")
                ))
            })?;
        let mut partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == self.config.topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        partitions.sort_unstable();
        Ok(partitions)
    }

    /// All or nothing: on an error (a broker outage) nothing is assigned, and the same
    /// partitions can be assigned again later.
    fn assign(&mut self, partitions: &[(i32, StartAt)]) -> Result<Vec<(i32, i64)>> {
        let mut positions = Vec::new();
        let mut ends = Vec::new();
        let mut added = TopicPartitionList::new();
        for (partition, start) in partitions {
            let offset = self.start_offset(*partition, start)?;
            if self.config.until_end {
                let (_, high) = self
                    .consumer
                    .fetch_watermarks(&self.config.topic, *partition, self.config.timeout)
                    .map_err(|e| Error::Kafka(format!("{}/{partition}: {e}", self.config.topic)))?;
                ends.push((*partition, high));
            } else if let Some(end) = self.config.until_offset {
                ends.push((*partition, end));
            }
            added
                .add_partition_offset(&self.config.topic, *partition, Offset::Offset(offset))
                .map_err(|e| Error::Kafka(e.to_string()))?;
            positions.push((*partition, offset));
        }
        // Incremental: partitions already assigned keep their positions.
        self.consumer.incremental_assign(&added).map_err(|e| {
            Error::Kafka(format!(
                "cannot assign partitions of {}: {e}",
                self.config.topic
            ))
        })?;
        self.ends.extend(ends);
        self.positions.extend(positions.iter().copied());
        Ok(positions)
    }

    fn read(&mut self, max: usize, emit: &mut dyn FnMut(Message<'_>)) -> Result<usize> {
        let mut read = 0;
        while read < max {
            let Some(result) = self.consumer.poll(Duration::ZERO) else {
                break;
            };
            let message = match result {
                Ok(m) => m,
                Err(e) => {
                    // Transient broker errors are retried by librdkafka itself.
                    tracing::warn!("kafka: {e}");
                    break;
                }
            };
            let partition = message.partition();
            let offset = message.offset();
            if self.ends.get(&partition).is_some_and(|end| offset >= *end) {
                continue;
            }
            self.positions.insert(partition, offset + 1);
            emit(Message {
                partition,
                offset,
                next_offset: offset + 1,
                payload: message.payload().unwrap_or(&[]),
                timestamp: message.timestamp().to_millis(),
                key: message.key(),
                tombstone: message.payload().is_none(),
            });
            read += 1;
        }
        Ok(read)
    }

    fn finished(&self, partition: i32) -> bool {
        match (self.ends.get(&partition), self.positions.get(&partition)) {
            (Some(end), Some(position)) => position >= end,
            _ => false,
        }
    }

    fn idle_wait(&self) -> Option<Duration> {
        Some(Duration::from_millis(5))
    }

    fn committer(&self) -> Box<dyn crate::source::Committer> {
        Box::new(self.kafka_committer())
    }

    fn high_watermark(&self, partition: i32) -> Option<i64> {
        // From the last statistics (once a second): no broker round trip.
        self.high_watermarks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&partition)
            .copied()
    }

    fn stalled(&self) -> Option<String> {
        let reason = self
            .stalled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(format!(
            "{reason}{}",
            self.consumer.context().errors.explain_or("")
        ))
    }

    fn kind(&self) -> &'static str {
        "kafka"
    }
}
impl crate::source::Input for KafkaConfig {
    fn id(&self) -> String {
        format!("kafka:{}", self.topic)
    }
    fn describe(&self) -> String {
        format!("kafka {} topic {}", self.brokers, self.topic)
    }
    fn check(&self) -> Result<()> {
        KafkaReader::connect(self.clone()).map(drop)
    }
    fn for_topic(&self, topic: &str) -> Result<Box<dyn crate::source::Input>> {
        Ok(Box::new(KafkaConfig {
            topic: topic.to_string(),
            ..self.clone()
        }))
    }
    fn grows(&self) -> bool {
        true
    }
    fn earliest_offsets(&self) -> Result<std::collections::BTreeMap<i32, i64>> {
        let mut reader = KafkaReader::connect(self.clone())?;
        let mut earliest = std::collections::BTreeMap::new();
        for partition in reader.partitions()? {
            let (low, _) = reader
                .consumer
                .fetch_watermarks(&self.topic, partition, self.timeout)
                .map_err(|e| Error::Kafka(format!("{}/{partition}: {e}", self.topic)))?;
            earliest.insert(partition, low);
        }
        Ok(earliest)
    }
    fn reader(&self) -> Result<Box<dyn Reader>> {
        Ok(Box::new(KafkaReader::connect(self.clone())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::statistics::{Broker, Partition, Topic};

    /// Statistics with one broker (node 1) in `state`, silent for `rxidle_us`, leading the
    /// assigned partitions 0 and 1 of topic `t` (partition 1's leader is `leader_of_1`).
    fn report(state: &str, rxidle_us: i64, leader_of_1: i32) -> Statistics {
        let partition = |id: i32, leader: i32| Partition {
            partition: id,
            leader,
            desired: true,
            ..Default::default()
        };
        let mut partitions: HashMap<i32, Partition> =
            [(0, partition(0, 1)), (1, partition(1, leader_of_1))].into();
        // librdkafka's internal "unassigned" partition, never desired.
        partitions.insert(
            -1,
            Partition {
                partition: -1,
                leader: -1,
                ..Default::default()
            },
        );
        let broker = Broker {
            name: "127.0.0.1:9092/1".into(),
            nodeid: 1,
            state: state.into(),
            rxidle: rxidle_us,
            ..Default::default()
        };
        let coordinator = Broker {
            name: "GroupCoordinator".into(),
            nodeid: -1,
            state: "UP".into(),
            rxidle: 60_000_000,
            ..Default::default()
        };
        Statistics {
            brokers: [("b1".to_string(), broker), ("gc".to_string(), coordinator)].into(),
            topics: [(
                "t".to_string(),
                Topic {
                    topic: "t".into(),
                    partitions,
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn partitions_are_stalled_when_their_leader_is_down_silent_or_unknown() {
        assert_eq!(stall_reason(&report("UP", 200_000, 1), "t"), None);
        // The group coordinator's silence and the unassigned partition do not count.
        assert_eq!(stall_reason(&report("UPDATE", 9_000_000, 1), "t"), None);
        assert_eq!(
            stall_reason(&report("DOWN", 0, 1), "t").as_deref(),
            Some("broker 127.0.0.1:9092/1 is down")
        );
        assert_eq!(
            stall_reason(&report("APIVERSION_QUERY", 0, 1), "t").as_deref(),
            Some("broker 127.0.0.1:9092/1 is apiversion_query")
        );
        assert_eq!(
            stall_reason(&report("UP", 12_500_000, 1), "t").as_deref(),
            Some("broker 127.0.0.1:9092/1 has not answered for 12 s")
        );
        assert_eq!(
            stall_reason(&report("UP", 0, -1), "t").as_deref(),
            Some("partition 1 has no known leader")
        );
        // Another topic's statistics say nothing about this one.
        assert_eq!(stall_reason(&report("DOWN", 0, 1), "other"), None);
    }
}
