//! Resolution of `weir produce`'s flags into a [`ProduceConfig`].

use super::cli::{GeneratorArgs, ProduceArgs, DEFAULT_API};
use crate::error::{Error, Result};
use crate::producer::http::HttpConfig;
use crate::producer::kafka::KafkaSinkConfig;
use crate::producer::{ProduceConfig, ProduceSink, ProduceSource};

impl ProduceArgs {
    /// Checks the flags and resolves them into a [`ProduceConfig`].
    pub fn resolve(&self) -> Result<ProduceConfig> {
        let ProduceArgs {
            brokers,
            topic,
            partitions,
            replication_factor,
            kafka,
            dry_run,
            api,
            synthetic,
            synthetic_topic,
            from_file,
            count,
            run_for,
            batch,
            every,
            connect_timeout,
            timeout,
            retries,
            backoff,
            max_backoff,
            breaker_after,
            breaker_pause,
            seed,
            rate,
            epoch,
            duplicates,
            late,
            malformed,
            tombstones_per_mille,
            delivery_timeout,
            kafka_timeout,
            log_every,
            quiet,
            log_format: _,
        } = self;
        let source = if *synthetic {
            let generator = GeneratorArgs {
                seed: *seed,
                rate: *rate,
                count: *count,
                // One partition: the generator's messages in their global order (the same
                // users as any partition count when nothing is duplicated).
                partitions: 1,
                epoch: epoch.clone(),
                duplicates: *duplicates,
                late: *late,
                malformed: *malformed,
                events_per_user: 1,
            };
            let users = generator.resolve()?;
            // The generated topic: --synthetic-topic, else --topic when it names one, else the
            // users (what --synthetic made before there were other topics).
            let named = synthetic_topic.as_deref().unwrap_or(topic);
            let mut generated = users.for_topic(named).unwrap_or(users);
            // Events look their users up with the users topic's shares, tombstones included.
            generated.tombstones_per_mille = (*tombstones_per_mille).min(1000);
            ProduceSource::Synthetic(generated)
        } else if let Some(path) = from_file {
            ProduceSource::File(path.clone())
        } else {
            if !(1..=5000).contains(batch) {
                return Err(Error::Config(format!(
                    "--batch {batch}: the API serves 1 to 5000 users per request"
                )));
            }
            let url = api.clone().unwrap_or_else(|| DEFAULT_API.to_string());
            let http = HttpConfig {
                url,
                connect_timeout: *connect_timeout,
                timeout: *timeout,
                retries: *retries,
                backoff: *backoff,
                max_backoff: (*max_backoff).max(*backoff),
                breaker_after: *breaker_after,
                breaker_pause: *breaker_pause,
            };
            // Checks the URL now, so a typo fails before anything connects.
            http.checked_url()?;
            ProduceSource::Api {
                http,
                batch: *batch,
                every: *every,
            }
        };
        let sink = match (brokers, dry_run) {
            (_, true) => ProduceSink::Print,
            (None, false) => {
                return Err(Error::Config(
                    "weir produce needs --brokers HOST:PORT (or --dry-run to print the users)"
                        .into(),
                ))
            }
            (Some(brokers), false) => {
                crate::security::no_credentials_in("--brokers", brokers)?;
                if partitions.is_some_and(|p| p < 1) || *replication_factor < 1 {
                    return Err(Error::Config(
                        "--partitions and --replication-factor must be at least 1".into(),
                    ));
                }
                ProduceSink::Kafka(KafkaSinkConfig {
                    brokers: brokers.clone(),
                    topic: topic.clone(),
                    partitions: *partitions,
                    replication: *replication_factor,
                    settings: kafka.resolve()?,
                    connect_timeout: *kafka_timeout,
                    delivery_timeout: *delivery_timeout,
                })
            }
        };
        Ok(ProduceConfig {
            source,
            sink,
            count: *count,
            duration: *run_for,
            progress: crate::producer::progress_mode(*quiet, *log_every),
        })
    }
}
