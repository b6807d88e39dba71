//! Resolution of the flags of a run (`weir` and `weir run`) into a [`RunConfig`]: what to read,
//! the dataflow (loaded once, here), where to write, and the cluster's shape.

use std::path::PathBuf;

use super::cli::{GeneratorArgs, RunArgs, SinkKind};
use super::files::secret_from;
use crate::error::{Error, Result};
use crate::runtime::Settings;
use crate::sink::cassandra::CassandraConfig;
use crate::source::generator::{GeneratedTopic, GeneratorConfig};
use crate::source::kafka::KafkaConfig;
use crate::source::StartAt;
use crate::spec::DataflowSpec;

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
    /// How the engine behaves (start position, batch, bounds, intervals).
    pub settings: Settings,
    /// Where to serve the status page and metrics (`None`: nowhere).
    pub metrics_addr: Option<std::net::SocketAddr>,
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
            topic: GeneratedTopic::Users,
            tombstones_per_mille: 0,
            events_per_user: self.events_per_user,
        })
    }
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
            cassandra_max_in_flight_rows,
            cassandra_max_in_flight_bytes,
            cassandra_consistency,
            cassandra_request_timeout,
            store_retry_timeout,
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
            source_stall_timeout,
            quiet,
            reset_progress,
            backfill_from_retention,
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
            (Some(path), n) => super::files::hostfile(path, n)?,
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
            // A dataflow with inputs reads one directory per topic under DIR.
            (None, Some(dir)) => match spec.join {
                None => SourceChoice::Files(dir.clone()),
                Some(_) => SourceChoice::Files(dir.join(&spec.topic)),
            },
            (None, None) => {
                if until.is_some() {
                    return Err(Error::Config(
                        "--until applies to Kafka; bound the generator with --count".into(),
                    ));
                }
                let generated = generator.resolve()?;
                // A dataflow with inputs reads the generator of its stream input's topic (and
                // the runtime asks for its other topics; `Input::for_topic`).
                match spec.join {
                    None => SourceChoice::Generator(generated),
                    Some(_) => SourceChoice::Generator(generated.for_topic(&spec.topic).ok_or_else(|| {
                        Error::Config(format!(
                            "the built-in generator makes topics users_created and user_events, not {:?}; read it from Kafka (--brokers)",
                            spec.topic
                        ))
                    })?),
                }
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
            max_in_flight_rows: *cassandra_max_in_flight_rows as usize,
            max_in_flight_bytes: usize::try_from(*cassandra_max_in_flight_bytes)
                .unwrap_or(usize::MAX),
            consistency: scylla_consistency(*cassandra_consistency),
            retry_timeout: *store_retry_timeout,
            request_timeout: *cassandra_request_timeout,
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
            settings: Settings {
                start,
                batch: *batch,
                max_record_bytes: *max_record_bytes,
                max_in_flight: *max_in_flight,
                progress_interval: *progress_interval,
                partition_discovery: *partition_discovery,
                shutdown_timeout: *shutdown_timeout,
                print_windows: !*quiet,
                reset_progress: *reset_progress,
                backfill_from_retention: *backfill_from_retention,
                source_stall_timeout: *source_stall_timeout,
            },
            metrics_addr,
        })
    }
}

/// The store `weir check --against STORE` compares with: an existing SQLite file, or
/// Cassandra contact points (`host:port[,host:port]`) with the run's Cassandra settings from
/// the environment.
pub fn against(store: &str, keyspace: &str, dataflow: &std::path::Path) -> Result<SinkChoice> {
    let path = std::path::Path::new(store);
    let hosts = store.split(',').all(|h| {
        h.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    });
    if path.exists() || !hosts {
        return Ok(SinkChoice::Sqlite(path.to_path_buf()));
    }
    use clap::Parser;
    let dataflow = dataflow.to_string_lossy();
    let cli = super::cli::Cli::try_parse_from([
        "weir",
        "--cassandra",
        store,
        "--keyspace",
        keyspace,
        "--dataflow",
        &dataflow,
        "--metrics-addr",
        "off",
    ])
    .map_err(|e| Error::Config(format!("--against {store}: {}", e.to_string().trim())))?;
    cli.run.resolve().map(|c| c.sink)
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

/// The driver's name for a consistency level.
fn scylla_consistency(c: super::cli::WriteConsistency) -> scylla::statement::Consistency {
    use super::cli::WriteConsistency as W;
    use scylla::statement::Consistency as C;
    match c {
        W::LocalQuorum => C::LocalQuorum,
        W::LocalOne => C::LocalOne,
        W::One => C::One,
        W::Two => C::Two,
        W::Three => C::Three,
        W::Quorum => C::Quorum,
        W::EachQuorum => C::EachQuorum,
        W::All => C::All,
    }
}
