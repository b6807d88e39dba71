//! Producing formatted users (or the generator's events and tombstones) to Kafka: keyed by id,
//! idempotent, `acks=all`, compressed, stamped with `created_at`, every delivery counted.
//!
//! Security settings (SASL, TLS, properties file, `--kafka-config`) come resolved in
//! [`KafkaSinkConfig::settings`], the same as the consumer's (`crate::security`), and apply to
//! the admin client that creates the topic too. The producer's context keeps librdkafka's last
//! connection error, so that a refused login or a failed TLS handshake is named in the one
//! error line.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use super::{Reporter, Stats};
use crate::error::{Error, Result};
use crate::security::{kafka_error, ClientErrors, KafkaSettings};

/// Where and how to produce.
#[derive(Clone, Debug)]
pub struct KafkaSinkConfig {
    /// bootstrap.servers
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Create the topic with this many partitions if it is missing.
    pub partitions: Option<i32>,
    /// Replication factor of a created topic.
    pub replication: i32,
    /// Security and extra librdkafka settings, applied after Weir's own.
    pub settings: KafkaSettings,
    /// How long to wait for the broker at start.
    pub connect_timeout: Duration,
    /// How long a message may take to be acknowledged before it counts as failed.
    pub delivery_timeout: Duration,
}

impl KafkaSinkConfig {
    /// The librdkafka configuration, with a reason for every non-default option.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers)
            // Retries inside the client never duplicate or reorder a partition's messages.
            .set("enable.idempotence", "true")
            // A message counts as produced only once every in-sync replica has it (idempotence
            // needs it anyway; said here so nobody "tunes" it away).
            .set("acks", "all")
            // JSON users shrink about 3x; lz4 costs little CPU on both ends.
            .set("compression.type", "lz4")
            // A mistyped --topic is an error, not a new topic; --partitions creates one on
            // purpose.
            .set("allow.auto.create.topics", "false")
            // A broker that never acknowledges fails the message (counted) within this bound
            // instead of the default 5 minutes.
            .set(
                "message.timeout.ms",
                self.delivery_timeout.as_millis().max(1).to_string(),
            )
            // Fail fast at start instead of retrying an unreachable broker for minutes.
            .set(
                "socket.connection.setup.timeout.ms",
                self.connect_timeout.as_millis().max(1000).to_string(),
            );
        self.settings.apply(&mut c);
        c
    }
}

/// Counts deliveries as librdkafka reports them.
pub struct Deliveries {
    stats: Arc<Stats>,
    reporter: Reporter,
    errors: ClientErrors,
}

/// Delivery errors reported one by one; later ones are only counted.
const REPORTED_DELIVERY_ERRORS: u64 = 10;

impl ClientContext for Deliveries {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.record(&error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.stats.produced.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => self.failed(format!("delivery failed: {e}")),
        }
    }
}

impl Deliveries {
    /// Counts a message that will never be acknowledged, and reports the first few.
    fn failed(&self, line: String) {
        let n = self.stats.failed_deliveries.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= REPORTED_DELIVERY_ERRORS {
            self.reporter.note(&line);
        }
        if n == REPORTED_DELIVERY_ERRORS {
            self.reporter
                .note("further delivery failures are counted, not shown");
        }
        *self
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = line;
    }
}

/// A connected producer.
pub struct KafkaSink {
    producer: ThreadedProducer<Deliveries>,
    topic: String,
    delivery_timeout: Duration,
}

impl KafkaSink {
    /// Connects, creates the topic when asked and it is missing, and checks that it exists.
    pub async fn connect(
        config: &KafkaSinkConfig,
        stats: Arc<Stats>,
        reporter: Reporter,
    ) -> Result<Self> {
        let client_config = config.client_config();
        let errors = ClientErrors::default();
        let producer: ThreadedProducer<Deliveries> = client_config
            .create_with_context(Deliveries {
                stats,
                reporter,
                errors: errors.clone(),
            })
            .map_err(|e| {
                Error::Kafka(format!(
                    "cannot create a producer for {}: {}; check --brokers and the Kafka settings",
                    config.brokers,
                    kafka_error(&e)
                ))
            })?;
        if let Some(partitions) = config.partitions {
            // After the producer: its polling thread records the connection errors that
            // explain a failure here (the admin client serves no error events).
            create_topic(config, &client_config, partitions, &errors).await?;
        }
        // Blocking, at start, before anything else runs on this thread.
        let metadata = producer
            .client()
            .fetch_metadata(Some(&config.topic), config.connect_timeout)
            .map_err(|e| {
                Error::Kafka(format!(
                    "cannot reach Kafka at {} within {}: {e}{}",
                    config.brokers,
                    humantime::format_duration(config.connect_timeout),
                    errors.explain_or("; check --brokers")
                ))
            })?;
        let missing = metadata
            .topics()
            .iter()
            .find(|t| t.name() == config.topic)
            .is_none_or(|t| t.error().is_some() || t.partitions().is_empty());
        if missing {
            return Err(Error::Kafka(format!(
                "topic {} does not exist at {}; create it, or pass --partitions N to create it",
                config.topic, config.brokers
            )));
        }
        Ok(KafkaSink {
            producer,
            topic: config.topic.clone(),
            delivery_timeout: config.delivery_timeout,
        })
    }

    /// Hands one message to the producer, waiting while its queue is full. A message the
    /// client refuses outright (too large, say) is counted as a failed delivery. `payload`
    /// `None` is a Kafka tombstone (a null value, not an empty one).
    pub async fn send(&self, key: Option<&[u8]>, payload: Option<&[u8]>, timestamp_ms: i64) {
        loop {
            let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).timestamp(timestamp_ms);
            if let Some(payload) = payload {
                record = record.payload(payload);
            }
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.producer.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => {
                    let id = key.map_or("(no key)".into(), String::from_utf8_lossy);
                    let what = if payload.is_some() {
                        "the message"
                    } else {
                        "the tombstone"
                    };
                    return self
                        .producer
                        .context()
                        .failed(format!("cannot produce {what} keyed {id}: {e}"));
                }
            }
        }
    }

    /// Waits for every message to be acknowledged or to fail; returns the number still
    /// unacknowledged when the delivery timeout ran out.
    pub fn flush(self) -> u64 {
        // Blocking, at the end, when nothing else is left to do.
        let _ = self
            .producer
            .flush(self.delivery_timeout + Duration::from_secs(1));
        self.producer.in_flight_count().max(0) as u64
    }
}

async fn create_topic(
    config: &KafkaSinkConfig,
    client_config: &ClientConfig,
    partitions: i32,
    errors: &ClientErrors,
) -> Result<()> {
    let admin: AdminClient<_> = client_config.create().map_err(|e| {
        Error::Kafka(format!(
            "cannot create an admin client for {}: {}; check the Kafka settings",
            config.brokers,
            kafka_error(&e)
        ))
    })?;
    let topic = NewTopic::new(
        &config.topic,
        partitions,
        TopicReplication::Fixed(config.replication),
    );
    let options = AdminOptions::new()
        .operation_timeout(Some(config.connect_timeout))
        .request_timeout(Some(config.connect_timeout));
    let results = admin.create_topics([&topic], &options).await.map_err(|e| {
        Error::Kafka(format!(
            "cannot create topic {} at {}: {e}{}",
            config.topic,
            config.brokers,
            errors.explain_or("; check --brokers")
        ))
    })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Kafka(format!(
                    "cannot create topic {name} with {partitions} partitions: {code}"
                )))
            }
        }
    }
    Ok(())
}
