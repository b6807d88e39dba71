//! The command line (clap) and the resolved run configuration.
//!
//! One parser: timely's cluster flags (`-w`, `-n`, `-p`, `--hostfile`) are ours, turned into a
//! `timely::Config` here; the engine's argv is never handed to timely. Every engine flag can
//! also be set by a `WEIR_*` environment variable.
//!
//! Secrets (passwords, `--kafka-config` items) are held as [`Secret`]s from the moment clap
//! parses them, so `Debug` of these structs never shows one; their environment variables are
//! hidden from `--help`. Kafka's security flags are shared by `weir run` and `weir produce`
//! ([`KafkaSecurityArgs`]) and mapped onto librdkafka settings in `crate::security`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, Result};
use crate::producer::http::HttpConfig;
use crate::producer::kafka::KafkaSinkConfig;
use crate::producer::{ProduceConfig, ProduceSink, ProduceSource};
use crate::security::{KafkaSecurity, KafkaSettings, SaslMechanism, Secret, SecurityProtocol};
use crate::sink::cassandra::CassandraConfig;
use crate::source::generator::GeneratorConfig;
use crate::source::kafka::KafkaConfig;
use crate::source::StartAt;
use crate::spec::DataflowSpec;

/// Weir: Kafka -> timely dataflow -> Cassandra, with exactly-once-style output.
#[derive(Debug, Parser)]
#[command(name = "weir", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A subcommand; without one, Weir runs a dataflow.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the default command (run a dataflow).
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a dataflow (the default).
    Run(Box<RunArgs>),
    /// Validate dataflow files; errors name the file, line and field.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Write the built-in generator's users as JSON-lines files, one per partition (the
    /// layout of `--input`).
    Generate {
        /// Directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Generator settings (`--count` is required).
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Produce users to Kafka: from the randomuser.me API (default), the built-in generator
    /// (--synthetic) or a file (--from-file). Replaces the tutorial's Airflow DAG.
    Produce(Box<ProduceArgs>),
}

/// Logging format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// Which sink to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SinkKind {
    /// Cassandra when --cassandra is set, else SQLite.
    Auto,
    /// Cassandra or ScyllaDB (needs --cassandra).
    Cassandra,
    /// The embedded SQLite file (--sqlite).
    Sqlite,
    /// Discard everything (benchmarks; no progress is kept).
    Null,
}

/// The `--help` section of the Kafka security flags.
const KAFKA_SECURITY: &str = "Kafka security";

/// Kafka client settings shared by `weir run` and `weir produce`: security flags, a properties
/// file and `--kafka-config` passthrough.
#[derive(Clone, Debug, Default, Args)]
pub struct KafkaSecurityArgs {
    /// security.protocol. Default: sasl_ssl when SASL is configured, ssl when only TLS files
    /// are, else plaintext.
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_SECURITY_PROTOCOL", value_enum, value_name = "PROTOCOL")]
    pub kafka_security_protocol: Option<SecurityProtocol>,
    /// sasl.mechanism.
    #[arg(
        long,
        help_heading = KAFKA_SECURITY,
        env = "WEIR_KAFKA_SASL_MECHANISM",
        value_enum,
        ignore_case = true,
        value_name = "MECHANISM"
    )]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// sasl.username.
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_SASL_USERNAME", value_name = "USER")]
    pub kafka_sasl_username: Option<String>,
    /// sasl.password (prefer the environment variable or --kafka-sasl-password-file: a flag
    /// shows in the process list).
    #[arg(
        long,
        help_heading = KAFKA_SECURITY,
        env = "WEIR_KAFKA_SASL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub kafka_sasl_password: Option<Secret>,
    /// File holding the SASL password (trailing newline ignored).
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_SASL_PASSWORD_FILE", value_name = "FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,
    /// PEM file of the CA certificates that sign the brokers' certificates (ssl.ca.location;
    /// default: the system's CA bundle).
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_TLS_CA", value_name = "FILE")]
    pub kafka_tls_ca: Option<PathBuf>,
    /// Client certificate, PEM, for brokers that require one (ssl.certificate.location).
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_TLS_CERT", value_name = "FILE")]
    pub kafka_tls_cert: Option<PathBuf>,
    /// The client certificate's private key, PEM (ssl.key.location).
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_TLS_KEY", value_name = "FILE")]
    pub kafka_tls_key: Option<PathBuf>,
    /// librdkafka properties file: key=value lines, # comments. Applied first: the flags
    /// above and --kafka-config override it. Any setting, secrets included, can come from it.
    #[arg(long, help_heading = KAFKA_SECURITY, env = "WEIR_KAFKA_CONFIG_FILE", value_name = "FILE")]
    pub kafka_config_file: Option<PathBuf>,
    /// A librdkafka setting, key=value (repeatable; comma-separated in the variable). Applied
    /// last.
    #[arg(
        long = "kafka-config",
        help_heading = KAFKA_SECURITY,
        env = "WEIR_KAFKA_CONFIG",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "KEY=VALUE"
    )]
    pub kafka_config: Vec<Secret>,
}

impl KafkaSecurityArgs {
    /// Reads the password and properties files, checks that the files given exist, and
    /// returns the librdkafka settings to apply after the client's own.
    pub fn resolve(&self) -> Result<KafkaSettings> {
        let KafkaSecurityArgs {
            kafka_security_protocol,
            kafka_sasl_mechanism,
            kafka_sasl_username,
            kafka_sasl_password,
            kafka_sasl_password_file,
            kafka_tls_ca,
            kafka_tls_cert,
            kafka_tls_key,
            kafka_config_file,
            kafka_config,
        } = self;
        let password = secret_from(
            "the Kafka SASL password: --kafka-sasl-password (WEIR_KAFKA_SASL_PASSWORD) or --kafka-sasl-password-file",
            kafka_sasl_password,
            kafka_sasl_password_file,
            "--kafka-sasl-password-file",
        )?;
        for (flag, path) in [
            ("--kafka-tls-ca", kafka_tls_ca),
            ("--kafka-tls-cert", kafka_tls_cert),
            ("--kafka-tls-key", kafka_tls_key),
        ] {
            if let Some(path) = path {
                std::fs::File::open(path)
                    .map_err(|e| Error::Config(format!("{flag} {}: {e}", path.display())))?;
            }
        }
        let file = match kafka_config_file {
            None => KafkaSettings::default(),
            Some(path) => {
                let origin = path.display().to_string();
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("--kafka-config-file {origin}: {e}")))?;
                KafkaSettings::parse_properties(&origin, &text)?
            }
        };
        KafkaSecurity {
            protocol: *kafka_security_protocol,
            mechanism: *kafka_sasl_mechanism,
            username: kafka_sasl_username.clone(),
            password,
            tls_ca: kafka_tls_ca.clone(),
            tls_cert: kafka_tls_cert.clone(),
            tls_key: kafka_tls_key.clone(),
            file,
            extra: KafkaSettings::parse_items("--kafka-config", kafka_config)?,
        }
        .settings()
    }
}

/// A secret given at most once: as a value (flag or environment variable) or in a file
/// (trailing newline ignored; an empty file is an error).
fn secret_from(
    what: &str,
    value: &Option<Secret>,
    file: &Option<PathBuf>,
    file_flag: &str,
) -> Result<Option<Secret>> {
    match (value, file) {
        (Some(_), Some(_)) => Err(Error::Config(format!("set {what}, not both"))),
        (Some(value), None) => Ok(Some(value.clone())),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("{file_flag} {}: {e}", path.display())))?;
            let secret = text.trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                return Err(Error::Config(format!(
                    "{file_flag} {} is empty",
                    path.display()
                )));
            }
            Ok(Some(Secret::from(secret.to_string())))
        }
        (None, None) => Ok(None),
    }
}

/// Settings of the built-in generator.
#[derive(Clone, Debug, Args)]
pub struct GeneratorArgs {
    /// Generator seed: the same seed gives the same users.
    #[arg(long, env = "WEIR_SEED", default_value_t = 42)]
    pub seed: u64,
    /// Users per second (0: as fast as possible).
    #[arg(long, env = "WEIR_RATE", default_value_t = 10.0)]
    pub rate: f64,
    /// Stop after this many users (default: never).
    #[arg(long, env = "WEIR_COUNT")]
    pub count: Option<u64>,
    /// Partitions of the generated topic.
    #[arg(long, env = "WEIR_PARTITIONS", default_value_t = 4)]
    pub partitions: i32,
    /// Event time of the first user, RFC 3339 (default: now, to the minute; kept in progress).
    #[arg(long, env = "WEIR_EPOCH")]
    pub epoch: Option<String>,
    /// Per mille of users delivered twice.
    #[arg(long, default_value_t = 5)]
    pub duplicates: u64,
    /// Per mille of users a minute late.
    #[arg(long, default_value_t = 1)]
    pub late: u64,
    /// Per mille of malformed records.
    #[arg(long, default_value_t = 1)]
    pub malformed: u64,
}

impl GeneratorArgs {
    /// The generator configuration.
    pub fn resolve(&self) -> Result<GeneratorConfig> {
        if self.partitions < 1 {
            return Err(Error::Config("--partitions must be at least 1".into()));
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err(Error::Config(
                "--rate must be a number of users per second, 0 for unthrottled".into(),
            ));
        }
        let epoch_ms = match &self.epoch {
            Some(text) => crate::time::parse_rfc3339(text)
                .filter(|t| *t >= 0)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "--epoch {text:?} is not an RFC 3339 time like 2026-11-21T10:00:00Z"
                    ))
                })? as u64,
            None => crate::time::now_ms() / 60_000 * 60_000,
        };
        Ok(GeneratorConfig {
            seed: self.seed,
            partitions: self.partitions,
            count: self.count,
            rate: self.rate,
            epoch_ms,
            duplicates_per_mille: self.duplicates.min(1000),
            late_per_mille: self.late.min(1000),
            malformed_per_mille: self.malformed.min(1000),
        })
    }
}

/// Options for running a dataflow.
#[derive(Clone, Debug, Args)]
pub struct RunArgs {
    /// Worker threads per process.
    #[arg(short = 'w', long, env = "WEIR_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// Number of processes in the cluster.
    #[arg(short = 'n', long, env = "WEIR_PROCESSES", default_value_t = 1)]
    pub processes: usize,
    /// This process's index, 0..n.
    #[arg(short = 'p', long, env = "WEIR_PROCESS", default_value_t = 0)]
    pub process: usize,
    /// File with one `host:port` per process (needed with -n > 1).
    #[arg(long, env = "WEIR_HOSTFILE")]
    pub hostfile: Option<PathBuf>,

    /// The dataflow file.
    #[arg(
        long,
        env = "WEIR_DATAFLOW",
        default_value = "dataflows/users_created.toml"
    )]
    pub dataflow: PathBuf,
    /// Kafka bootstrap servers; without them, the built-in generator is the source.
    #[arg(long, env = "WEIR_BROKERS")]
    pub brokers: Option<String>,
    /// Read this topic instead of the dataflow's.
    #[arg(long, env = "WEIR_TOPIC")]
    pub topic: Option<String>,
    /// Consumer group for offset commits (lag tools only). Default: weir-<dataflow>.
    #[arg(long, env = "WEIR_GROUP")]
    pub group: Option<String>,
    /// Kafka security and librdkafka settings.
    #[command(flatten)]
    pub kafka: KafkaSecurityArgs,
    /// Where to start when no progress is stored: earliest, latest, or an RFC 3339 time.
    #[arg(long, env = "WEIR_START", default_value = "earliest")]
    pub start: String,
    /// Stop at the end: `end` (each partition's last offset at start) or an offset.
    #[arg(long, env = "WEIR_UNTIL")]
    pub until: Option<String>,
    /// Read JSON-lines files, one per partition, from this directory (offsets are byte
    /// positions).
    #[arg(long, env = "WEIR_INPUT", conflicts_with = "brokers")]
    pub input: Option<PathBuf>,

    /// Cassandra contact points, host:port[,host:port...]; without them, the SQLite sink.
    #[arg(long, env = "WEIR_CASSANDRA")]
    pub cassandra: Option<String>,
    /// Keyspace of every table.
    #[arg(long, env = "WEIR_KEYSPACE", default_value = "spark_streams")]
    pub keyspace: String,
    /// Replication of the keyspace, when Weir creates it.
    #[arg(
        long,
        env = "WEIR_REPLICATION",
        default_value = "{'class': 'SimpleStrategy', 'replication_factor': 1}"
    )]
    pub replication: String,
    /// Cassandra username.
    #[arg(long, env = "WEIR_CASSANDRA_USER")]
    pub cassandra_user: Option<String>,
    /// Cassandra password (prefer the environment variable or --cassandra-password-file: a
    /// flag shows in the process list).
    #[arg(long, env = "WEIR_CASSANDRA_PASSWORD", hide_env_values = true)]
    pub cassandra_password: Option<Secret>,
    /// File holding the Cassandra password (trailing newline ignored).
    #[arg(long, env = "WEIR_CASSANDRA_PASSWORD_FILE")]
    pub cassandra_password_file: Option<PathBuf>,
    /// Connect to Cassandra over TLS (system CA roots unless --cassandra-tls-ca).
    #[arg(long, env = "WEIR_CASSANDRA_TLS", value_parser = clap::builder::FalseyValueParser::new())]
    pub cassandra_tls: bool,
    /// PEM file of the CA certificates that sign Cassandra's certificates (implies TLS).
    #[arg(long, env = "WEIR_CASSANDRA_TLS_CA")]
    pub cassandra_tls_ca: Option<PathBuf>,
    /// Cassandra statements in flight per process.
    #[arg(long, env = "WEIR_CASSANDRA_CONCURRENCY", default_value_t = 64)]
    pub cassandra_concurrency: usize,
    /// Test servers without system.peers (kassandra): skip schema agreement. Tests only.
    #[arg(long, env = "WEIR_CASSANDRA_TEST_SERVER", hide = true, value_parser = clap::builder::FalseyValueParser::new())]
    pub cassandra_test_server: bool,
    /// The SQLite database file (the sink when no --cassandra is given).
    #[arg(long, env = "WEIR_SQLITE", default_value = "weir.db")]
    pub sqlite: PathBuf,
    /// Which sink to use.
    #[arg(long, env = "WEIR_SINK", value_enum, default_value_t = SinkKind::Auto)]
    pub sink: SinkKind,

    /// Generator settings (used when there are no --brokers and no --input).
    #[command(flatten)]
    pub generator: GeneratorArgs,

    /// Most messages a worker reads per activation.
    // 256 rather than 1024: a batch's records then stay in cache from parsing to the sink
    // (2M users, -w 1: 2.51 -> 2.36 s; -w 2: 1.22 -> 1.17 s; 128 and 512 were no better).
    #[arg(long, env = "WEIR_BATCH", default_value_t = 256)]
    pub batch: usize,
    /// Messages larger than this are dead letters.
    #[arg(long, env = "WEIR_MAX_RECORD_BYTES", default_value_t = crate::schema::DEFAULT_MAX_RECORD_BYTES)]
    pub max_record_bytes: usize,
    /// Pause reading while this many rows are unacknowledged.
    #[arg(long, env = "WEIR_MAX_IN_FLIGHT", default_value_t = 100_000)]
    pub max_in_flight: u64,
    /// Write progress records at most this often.
    #[arg(long, env = "WEIR_PROGRESS_INTERVAL", default_value = "100ms", value_parser = duration)]
    pub progress_interval: Duration,
    /// On shutdown, wait at most this long for open writes.
    #[arg(long, env = "WEIR_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub shutdown_timeout: Duration,
    /// Look for partitions added to the topic this often.
    #[arg(long, env = "WEIR_PARTITION_DISCOVERY", default_value = "10s", value_parser = duration)]
    pub partition_discovery: Duration,
    /// Give up connecting to Kafka or Cassandra after this long.
    #[arg(long, env = "WEIR_CONNECT_TIMEOUT", default_value = "10s", value_parser = duration)]
    pub connect_timeout: Duration,
    /// Do not print window results.
    #[arg(short, long, env = "WEIR_QUIET", value_parser = clap::builder::FalseyValueParser::new())]
    pub quiet: bool,
    /// Log format.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve the status page (/) and Prometheus metrics (/metrics) here, or `off`. With -n,
    /// process p listens on the port plus p. Use 0.0.0.0:9898 to be reachable from other hosts.
    #[arg(long, env = "WEIR_METRICS_ADDR", default_value = "127.0.0.1:9898")]
    pub metrics_addr: String,
}

/// The randomuser.me API.
pub const DEFAULT_API: &str = "https://randomuser.me/api/";

/// Options of `weir produce`.
#[derive(Clone, Debug, Args)]
pub struct ProduceArgs {
    /// Kafka bootstrap servers (not needed with --dry-run).
    #[arg(long, env = "WEIR_BROKERS")]
    pub brokers: Option<String>,
    /// The topic to produce to.
    #[arg(long, env = "WEIR_TOPIC", default_value = "users_created")]
    pub topic: String,
    /// Create the topic with this many partitions if it is missing.
    #[arg(long)]
    pub partitions: Option<i32>,
    /// Replication factor of a topic created by --partitions.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Kafka security and librdkafka settings.
    #[command(flatten)]
    pub kafka: KafkaSecurityArgs,
    /// Print the formatted users as JSON lines on stdout instead of producing them.
    #[arg(long)]
    pub dry_run: bool,

    /// Fetch users from this API: the default source, at https://randomuser.me/api/ unless a
    /// URL is given.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = DEFAULT_API,
          conflicts_with_all = ["synthetic", "from_file"])]
    pub api: Option<String>,
    /// Generate users offline with the built-in generator (deterministic for --seed).
    #[arg(long, conflicts_with = "from_file")]
    pub synthetic: bool,
    /// Replay a JSON-lines file of API responses, raw API users or formatted users.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,

    /// Stop after this many users.
    #[arg(long)]
    pub count: Option<u64>,
    /// Stop after this long, e.g. 1m (the DAG's run).
    #[arg(long = "for", value_name = "DURATION", value_parser = duration)]
    pub run_for: Option<Duration>,

    /// Users per API request (`?results=N`, at most 5000).
    #[arg(long, default_value_t = 10)]
    pub batch: usize,
    /// Start an API request this often (0s: back to back).
    #[arg(long, default_value = "1s", value_parser = duration)]
    pub every: Duration,
    /// API connect timeout.
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub connect_timeout: Duration,
    /// API request timeout, reading the body included.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
    /// Retries of a failed API request (connection errors, timeouts, 5xx, 429).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// First retry backoff; doubles per retry, with jitter.
    #[arg(long, default_value = "500ms", value_parser = duration)]
    pub backoff: Duration,
    /// Largest retry backoff.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub max_backoff: Duration,
    /// Consecutive failed API attempts that open the circuit breaker (0: never).
    #[arg(long, default_value_t = 5)]
    pub breaker_after: u32,
    /// How long an open circuit breaker pauses requests.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub breaker_pause: Duration,

    /// Generator seed (--synthetic): the same seed gives the same users.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Users per second (--synthetic; 0: unlimited). Also spaces their created_at.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// created_at of the first synthetic user, RFC 3339 (default: now, to the minute).
    #[arg(long)]
    pub epoch: Option<String>,
    /// Per mille of synthetic users sent twice (to exercise the pipeline).
    #[arg(long, default_value_t = 0)]
    pub duplicates: u64,
    /// Per mille of synthetic users a minute late.
    #[arg(long, default_value_t = 0)]
    pub late: u64,
    /// Per mille of deliberately malformed synthetic records (they are produced).
    #[arg(long, default_value_t = 0)]
    pub malformed: u64,

    /// How long Kafka may take to acknowledge a message before it counts as failed.
    #[arg(long, default_value = "60s", value_parser = duration)]
    pub delivery_timeout: Duration,
    /// Give up connecting to Kafka after this long.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub kafka_timeout: Duration,
    /// Without a terminal, print a progress line this often.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub log_every: Duration,
    /// No progress bar or lines (warnings and the summary still print).
    #[arg(short, long, env = "WEIR_QUIET", value_parser = clap::builder::FalseyValueParser::new())]
    pub quiet: bool,
    /// Log format.
    #[arg(long, env = "WEIR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

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
            };
            ProduceSource::Synthetic(generator.resolve()?)
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
            crate::producer::http::ApiClient::new(http.clone())?;
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

fn duration(text: &str) -> std::result::Result<Duration, String> {
    crate::spec::parse_duration(text)
}

/// Where records come from.
#[derive(Clone, Debug)]
pub enum SourceChoice {
    /// A Kafka topic.
    Kafka(KafkaConfig),
    /// The built-in generator.
    Generator(GeneratorConfig),
    /// JSON-lines files.
    Files(PathBuf),
}

/// Where results go.
#[derive(Clone, Debug)]
pub enum SinkChoice {
    /// Cassandra.
    Cassandra(CassandraConfig),
    /// SQLite file.
    Sqlite(PathBuf),
    /// Nowhere.
    Null,
}

/// A resolved, checked run configuration.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Worker threads per process.
    pub workers: usize,
    /// Processes.
    pub processes: usize,
    /// This process.
    pub process: usize,
    /// Addresses of all processes (cluster mode).
    pub addresses: Vec<String>,
    /// The dataflow, loaded (once) from its file.
    pub spec: DataflowSpec,
    /// Source.
    pub source: SourceChoice,
    /// Sink.
    pub sink: SinkChoice,
    /// Start position without progress.
    pub start: StartAt,
    /// Messages per activation.
    pub batch: usize,
    /// Oversize limit.
    pub max_record_bytes: usize,
    /// Backpressure threshold.
    pub max_in_flight: u64,
    /// Progress write interval.
    pub progress_interval: Duration,
    /// Partition discovery interval (Kafka).
    pub partition_discovery: Duration,
    /// Shutdown bound.
    pub shutdown_timeout: Duration,
    /// Print no window results.
    pub quiet: bool,
    /// Where to serve the status page and metrics (`None`: nowhere).
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl RunArgs {
    /// Checks the flags and resolves them into a [`RunConfig`].
    pub fn resolve(&self) -> Result<RunConfig> {
        let RunArgs {
            workers,
            processes,
            process,
            hostfile,
            dataflow,
            brokers,
            topic,
            group,
            kafka,
            start,
            until,
            input,
            cassandra,
            keyspace,
            replication,
            cassandra_user,
            cassandra_password,
            cassandra_password_file,
            cassandra_tls,
            cassandra_tls_ca,
            cassandra_concurrency,
            cassandra_test_server,
            sqlite,
            sink,
            generator,
            batch,
            max_record_bytes,
            max_in_flight,
            progress_interval,
            shutdown_timeout,
            connect_timeout,
            partition_discovery,
            quiet,
            log_format: _,
            metrics_addr,
        } = self;
        if *workers == 0 || *processes == 0 {
            return Err(Error::Config("-w and -n must be at least 1".into()));
        }
        if process >= processes {
            return Err(Error::Config(format!(
                "-p {process} is out of range for -n {processes} (use 0..{})",
                processes - 1
            )));
        }
        let addresses = match (hostfile, *processes) {
            (_, 1) => Vec::new(),
            (None, n) => {
                return Err(Error::Config(format!(
                    "-n {n} needs --hostfile FILE with one host:port per process"
                )))
            }
            (Some(path), n) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::Config(format!("--hostfile {}: {e}", path.display())))?;
                let addresses: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from)
                    .collect();
                if addresses.len() < n {
                    return Err(Error::Config(format!(
                        "--hostfile {} lists {} addresses but -n is {n}; list one host:port per process",
                        path.display(),
                        addresses.len()
                    )));
                }
                addresses.into_iter().take(n).collect()
            }
        };
        let spec = DataflowSpec::load(dataflow)?;
        let timeout = *connect_timeout;
        let start = match start.as_str() {
            "earliest" => StartAt::Earliest,
            "latest" => StartAt::Latest,
            text => StartAt::Time(crate::time::parse_rfc3339(text).ok_or_else(|| {
                Error::Config(format!("--start {text:?}: use earliest, latest or an RFC 3339 time like 2026-11-21T10:00:00Z"))
            })?),
        };
        let (until_end, until_offset) = match until.as_deref() {
            None => (false, None),
            Some("end") => (true, None),
            Some(text) => match text.parse::<i64>() {
                Ok(o) if o >= 0 => (false, Some(o)),
                _ => {
                    return Err(Error::Config(format!(
                        "--until {text:?}: use `end` or an offset"
                    )))
                }
            },
        };
        let source = match (brokers, input) {
            (Some(brokers), _) => {
                crate::security::no_credentials_in("--brokers", brokers)?;
                let settings = kafka.resolve()?;
                SourceChoice::Kafka(KafkaConfig {
                    brokers: brokers.clone(),
                    topic: topic.clone().unwrap_or_else(|| spec.topic.clone()),
                    group: group
                        .clone()
                        .unwrap_or_else(|| format!("weir-{}", spec.name)),
                    settings,
                    until_end,
                    until_offset,
                    timeout,
                })
            }
            (None, Some(dir)) => SourceChoice::Files(dir.clone()),
            (None, None) => {
                if until.is_some() {
                    return Err(Error::Config(
                        "--until applies to Kafka; bound the generator with --count".into(),
                    ));
                }
                SourceChoice::Generator(generator.resolve()?)
            }
        };
        let password = secret_from(
            "the Cassandra password: --cassandra-password (WEIR_CASSANDRA_PASSWORD) or --cassandra-password-file",
            cassandra_password,
            cassandra_password_file,
            "--cassandra-password-file",
        )?;
        let credentials = match (cassandra_user, password) {
            (Some(u), Some(p)) => Some((u.clone(), p)),
            (None, None) => None,
            _ => return Err(Error::Config("set both --cassandra-user and a password (WEIR_CASSANDRA_PASSWORD or --cassandra-password-file)".into())),
        };
        let cassandra_config = |nodes: &str| CassandraConfig {
            nodes: nodes
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            keyspace: keyspace.clone(),
            replication: replication.clone(),
            credentials: credentials.clone(),
            concurrency: (*cassandra_concurrency).max(1),
            max_attempts: 8,
            timeout,
            test_server: *cassandra_test_server,
            tls: (*cassandra_tls || cassandra_tls_ca.is_some()).then(|| {
                crate::sink::cassandra::CassandraTls {
                    ca: cassandra_tls_ca.clone(),
                }
            }),
        };
        let sink = match (sink, cassandra) {
            (SinkKind::Null, _) => SinkChoice::Null,
            (SinkKind::Sqlite, _) | (SinkKind::Auto, None) => SinkChoice::Sqlite(sqlite.clone()),
            (SinkKind::Cassandra | SinkKind::Auto, Some(nodes)) => {
                crate::security::no_credentials_in("--cassandra", nodes)?;
                SinkChoice::Cassandra(cassandra_config(nodes))
            }
            (SinkKind::Cassandra, None) => {
                return Err(Error::Config(
                    "--sink cassandra needs --cassandra host:port".into(),
                ))
            }
        };
        if let SinkChoice::Cassandra(CassandraConfig { tls: Some(tls), .. }) = &sink {
            tls.client_config()?;
        }
        if let SinkChoice::Cassandra(c) = &sink {
            let valid =
                |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && !s.is_empty();
            if !valid(&c.keyspace) {
                return Err(Error::Config(format!(
                    "--keyspace {:?}: use letters, digits and _",
                    c.keyspace
                )));
            }
        }
        if *batch == 0 {
            return Err(Error::Config("--batch must be at least 1".into()));
        }
        let metrics_addr = match metrics_addr.as_str() {
            "off" | "" => None,
            text => {
                let mut addr: std::net::SocketAddr = text.parse().map_err(|_| {
                    Error::Config(format!(
                        "--metrics-addr {text:?}: use ip:port like 127.0.0.1:9898, or `off`"
                    ))
                })?;
                if addr.port() != 0 {
                    let port = addr.port() as usize + process;
                    let port = u16::try_from(port).map_err(|_| {
                        Error::Config(format!(
                            "--metrics-addr {text}: port + -p {process} is above 65535"
                        ))
                    })?;
                    addr.set_port(port);
                }
                Some(addr)
            }
        };
        Ok(RunConfig {
            workers: *workers,
            processes: *processes,
            process: *process,
            addresses,
            spec,
            source,
            sink,
            start,
            batch: *batch,
            max_record_bytes: *max_record_bytes,
            max_in_flight: *max_in_flight,
            progress_interval: *progress_interval,
            shutdown_timeout: *shutdown_timeout,
            partition_discovery: *partition_discovery,
            quiet: *quiet,
            metrics_addr,
        })
    }
}

impl RunConfig {
    /// The timely configuration for this process.
    pub fn timely_config(&self) -> Result<timely::Config> {
        use timely::CommunicationConfig;
        let communication = if self.processes == 1 {
            CommunicationConfig::Process(self.workers)
        } else {
            CommunicationConfig::Cluster {
                threads: self.workers,
                process: self.process,
                addresses: self.addresses.clone(),
                report: false,
                zerocopy: false,
            }
        };
        Ok(timely::Config {
            communication,
            worker: timely::WorkerConfig::default(),
        })
    }
}
