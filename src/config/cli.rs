//! The command line's definitions (clap): what each subcommand accepts, with its help text and
//! environment variables. No resolution and no I/O here; see the sibling modules.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::security::{SaslMechanism, Secret, SecurityProtocol};

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
    /// Validate dataflow files; errors name the file, line and field. With --against, also
    /// say what starting each file against that store would do (resume, backfill, refuse),
    /// without starting it.
    Check {
        /// Files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// A store to compare with: a SQLite file, or Cassandra contact points (host:port,
        /// comma separated; credentials and TLS from the WEIR_CASSANDRA_* variables, as for a
        /// run).
        #[arg(long, value_name = "STORE")]
        against: Option<String>,
        /// The keyspace, with Cassandra contact points.
        #[arg(long, env = "WEIR_KEYSPACE", default_value = "spark_streams")]
        keyspace: String,
    },
    /// Write the built-in generator's users (or their events) as JSON-lines files, one per
    /// partition (the layout of `--input`).
    Generate {
        /// Directory to write.
        #[arg(long)]
        out: PathBuf,
        /// Which generated topic: users_created (users) or user_events (events of the users
        /// the same flags make; --events-per-user of them per user).
        #[arg(long, default_value = "users_created", value_parser = ["users_created", "user_events"])]
        topic: String,
        /// Generator settings (`--count` is required).
        #[command(flatten)]
        generator: GeneratorArgs,
    },
    /// Produce users (or, with --synthetic-topic user_events, their events) to Kafka: from the
    /// randomuser.me API (default), the built-in generator (--synthetic) or a file
    /// (--from-file). Replaces the tutorial's Airflow DAG.
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

/// The consistency level of the Cassandra sink's writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WriteConsistency {
    /// A majority of the replicas in the coordinator's datacenter (survives one replica down
    /// at replication factor 3; reads at LOCAL_QUORUM then see every acknowledged write).
    #[value(name = "LOCAL_QUORUM")]
    LocalQuorum,
    /// One replica in the local datacenter: lower latency, but an acknowledged write can be
    /// lost with that replica before it reaches the others.
    #[value(name = "LOCAL_ONE")]
    LocalOne,
    /// One replica anywhere.
    #[value(name = "ONE")]
    One,
    /// Two replicas.
    #[value(name = "TWO")]
    Two,
    /// Three replicas.
    #[value(name = "THREE")]
    Three,
    /// A majority of all replicas, across datacenters.
    #[value(name = "QUORUM")]
    Quorum,
    /// A majority in every datacenter.
    #[value(name = "EACH_QUORUM")]
    EachQuorum,
    /// Every replica: a write fails while any replica is down.
    #[value(name = "ALL")]
    All,
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
    /// Events per user in the user_events topic (a dataflow joining events with users, or
    /// `weir generate --topic user_events`): that topic has this many times --count messages,
    /// at this many times --rate, over the same span of event time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub events_per_user: u64,
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
    /// positions); a dataflow with `[[inputs]]` reads DIR/TOPIC for each input.
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
    /// Rows the Cassandra sink keeps in flight per process, statements and batch rows alike
    /// (README: "How the sink writes, and sizing it for a cluster").
    #[arg(long, env = "WEIR_CASSANDRA_MAX_IN_FLIGHT_ROWS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub cassandra_max_in_flight_rows: u32,
    /// Bytes of values the Cassandra sink keeps in flight per process.
    #[arg(long, env = "WEIR_CASSANDRA_MAX_IN_FLIGHT_BYTES", default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub cassandra_max_in_flight_bytes: u64,
    /// Consistency level of the Cassandra sink's writes and progress reads.
    #[arg(long, env = "WEIR_CASSANDRA_CONSISTENCY", value_enum, ignore_case = true, default_value_t = WriteConsistency::LocalQuorum)]
    pub cassandra_consistency: WriteConsistency,
    /// How long one Cassandra request may take before it counts as failed (and is retried):
    /// a paused or unreachable node holds it this long.
    #[arg(long, env = "WEIR_CASSANDRA_REQUEST_TIMEOUT", default_value = "12s", value_parser = duration)]
    pub cassandra_request_timeout: Duration,
    /// Retry failing sink writes (timeouts, unavailable or overloaded nodes, broken
    /// connections) with backoff for this long, then stop with exit code 1 (a restart resumes
    /// exactly); `off` retries for ever. Writes the store refuses stop at once.
    #[arg(long, env = "WEIR_STORE_RETRY_TIMEOUT", default_value = "5m", value_parser = optional_duration)]
    // Spelled out so that clap takes the parser's `Option` as the value, not as "optional".
    pub store_retry_timeout: std::option::Option<Duration>,
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

    /// Discard this dataflow's stored progress and replay from --start, writing every output
    /// again (the way forward after a change Weir refuses; see README "Changing a dataflow").
    #[arg(long, env = "WEIR_RESET_PROGRESS", value_parser = clap::builder::FalseyValueParser::new())]
    pub reset_progress: bool,
    /// When a backfill needs offsets that retention has removed, start it from the earliest
    /// offset still held instead of stopping (the partial start is recorded in
    /// weir_backfills).
    #[arg(long, env = "WEIR_BACKFILL_FROM_RETENTION", value_parser = clap::builder::FalseyValueParser::new())]
    pub backfill_from_retention: bool,

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
    /// Stop with exit code 1 when the source cannot read its partitions (the broker is down,
    /// paused or not answering) for this long; `off` waits for ever. Until then Weir waits and
    /// resumes by itself; a restart after the stop resumes exactly.
    #[arg(long, env = "WEIR_SOURCE_STALL_TIMEOUT", default_value = "5m", value_parser = optional_duration)]
    // Spelled out so that clap takes the parser's `Option` as the value, not as "optional".
    pub source_stall_timeout: std::option::Option<Duration>,
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
    /// Print the formatted users (with --synthetic: the messages' values, a tombstone as the
    /// line `null`) as JSON lines on stdout instead of producing them.
    #[arg(long)]
    pub dry_run: bool,

    /// Fetch users from this API: the default source, at https://randomuser.me/api/ unless a
    /// URL is given.
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = DEFAULT_API,
          conflicts_with_all = ["synthetic", "from_file"])]
    pub api: Option<String>,
    /// Generate messages offline with the built-in generator (deterministic for --seed): the
    /// users of users_created, or, when --topic is user_events, their events (see
    /// --synthetic-topic for other topic names).
    #[arg(long, conflicts_with = "from_file")]
    pub synthetic: bool,
    /// Which generated topic --synthetic makes: users_created (users) or user_events (events
    /// of the users the same --seed, --count, --epoch, --rate, --duplicates, --malformed and
    /// --tombstones-per-mille produce). Default: --topic when it is one of them, else
    /// users_created.
    #[arg(long, value_name = "TOPIC", requires = "synthetic",
          value_parser = ["users_created", "user_events"])]
    pub synthetic_topic: Option<String>,
    /// Replay a JSON-lines file of API responses, raw API users or formatted users.
    #[arg(long, value_name = "FILE")]
    pub from_file: Option<PathBuf>,

    /// Stop after this many users (with --synthetic: messages, tombstones and events
    /// included).
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
    /// Per mille of synthetic users messages that are tombstones (null values keyed by the id
    /// of a user produced shortly before, stamped with their own event time): deletes for a
    /// table input. With user_events, give the value its users were produced with.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub tombstones_per_mille: u64,

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

fn duration(text: &str) -> std::result::Result<Duration, String> {
    crate::spec::parse_duration(text)
}

/// A duration, or `off` for none.
fn optional_duration(text: &str) -> std::result::Result<Option<Duration>, String> {
    match text {
        "off" => Ok(None),
        _ => duration(text).map(Some),
    }
}
