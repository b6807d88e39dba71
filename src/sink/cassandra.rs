//! The Cassandra (or ScyllaDB) store, through the `scylla` driver.
//!
//! Writes are prepared `INSERT`s (upserts), spread over `concurrency` lanes by a hash of the
//! row's primary key. Each lane executes one statement at a time, so two writes of the same
//! key are applied in the order they were submitted (the later version of a record wins, as
//! in the source partition), while different keys proceed concurrently: concurrency is bounded
//! by the number of lanes. A statement that fails transiently (a timeout, an unavailable or
//! overloaded node, a broken connection: [`error_class`]) is retried with exponential backoff;
//! a permanent failure (syntax, invalid query, authentication, authorization) or one still
//! failing after `max_attempts` stops the store: the error goes to the engine's
//! [`FirstError`], the write is never acknowledged, so no progress covers it and a restart
//! replays it.
//!
//! Tables made by an older Weir lack the columns added since (`reason_kind`): when an insert
//! does not prepare, the missing columns are added with `ALTER TABLE` and it is prepared again.
//!
//! Security: a username and password (PasswordAuthenticator, SASL PLAIN inside the CQL
//! handshake) and TLS through rustls, trusting the system's CA roots or `--cassandra-tls-ca`.
//! The password is a [`Secret`]: `Debug` of the configuration shows `***`, and
//! [`Store::describe`] names only the contact points and the keyspace.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::TryStreamExt;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};
use tokio::sync::mpsc;

use super::{Ack, Cell, Store, TableSet};
use crate::error::{Error, ErrorClass, FirstError, Result};
use crate::metrics::Stats;
use crate::progress::PartitionProgress;
use crate::security::Secret;

/// How to reach Cassandra.
#[derive(Clone, Debug)]
pub struct CassandraConfig {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// Keyspace of every table.
    pub keyspace: String,
    /// Replication clause for `CREATE KEYSPACE`, e.g. `{'class': 'SimpleStrategy', 'replication_factor': 1}`.
    pub replication: String,
    /// Username and password.
    pub credentials: Option<(String, Secret)>,
    /// Statements in flight per process.
    pub concurrency: usize,
    /// Attempts per statement before giving up.
    pub max_attempts: u32,
    /// Connect and request timeout.
    pub timeout: Duration,
    /// Test servers without `system.peers` (kassandra): skip schema agreement and metadata.
    pub test_server: bool,
    /// TLS, if any.
    pub tls: Option<CassandraTls>,
}

/// TLS to Cassandra (rustls).
#[derive(Clone, Debug)]
pub struct CassandraTls {
    /// PEM file of the CA certificates to trust; the system's roots when `None`.
    pub ca: Option<std::path::PathBuf>,
}

impl CassandraTls {
    /// The rustls client configuration.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        use rustls::pki_types::{pem::PemObject, CertificateDer};
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(path) => {
                let bad = |e: &dyn std::fmt::Display| {
                    Error::Config(format!(
                        "--cassandra-tls-ca {}: {e}; pass a PEM file of CA certificates",
                        path.display()
                    ))
                };
                for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                    roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
                }
                if roots.is_empty() {
                    return Err(bad(&"no certificate in the file"));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                for cert in native.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(Error::Config(
                        "--cassandra-tls: no system CA certificates found; pass --cassandra-tls-ca FILE".into(),
                    ));
                }
            }
        }
        Ok(rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth())
    }
}

struct Row {
    table: usize,
    values: Vec<Option<CqlValue>>,
    job: Arc<Job>,
}

struct Job {
    remaining: AtomicUsize,
    ack: Mutex<Option<Ack>>,
}

/// A Cassandra session with prepared statements and write lanes.
pub struct CassandraStore {
    config: CassandraConfig,
    runtime: tokio::runtime::Runtime,
    session: Arc<Session>,
    /// Set by `prepare`: the write lanes and the tables they write.
    lanes: OnceLock<(Vec<mpsc::UnboundedSender<Row>>, TableSet, FirstError)>,
    stats: Arc<Stats>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn cassandra_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Sink(format!("cassandra: {what}: {e}"))
}

/// Whether a failed statement is worth retrying.
pub fn error_class(e: &ExecutionError) -> ErrorClass {
    use scylla::errors::{DbError, RequestAttemptError};
    match e {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::Unprepared { .. }
            | DbError::ServerError
            | DbError::RateLimitReached { .. }
            | DbError::TruncateError,
            _,
        ))
        | ExecutionError::LastAttemptError(
            RequestAttemptError::BrokenConnectionError(_)
            | RequestAttemptError::UnableToAllocStreamId,
        )
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::EmptyPlan => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

impl CassandraStore {
    /// Connects (bounded by the timeout).
    pub fn connect(config: CassandraConfig, stats: Arc<Stats>) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cassandra")
            .enable_all()
            .build()
            .map_err(|e| Error::Sink(format!("cannot start the Cassandra client runtime: {e}")))?;
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .connection_timeout(config.timeout);
        if let Some((user, password)) = &config.credentials {
            builder = builder.user(user, password.expose());
        }
        if let Some(tls) = &config.tls {
            builder = builder.tls_context(Some(Arc::new(tls.client_config()?)));
        }
        if config.test_server {
            // kassandra has no system.peers: schema agreement and metadata fetches fail there.
            builder = builder
                .auto_await_schema_agreement(false)
                .fetch_schema_metadata(false);
        }
        let nodes = config.nodes.join(",");
        let session = runtime
            .block_on(async { tokio::time::timeout(config.timeout * 2, builder.build()).await })
            .map_err(|_| {
                Error::Sink(format!(
                    "cassandra: no answer from {nodes} within {:?}; check --cassandra",
                    config.timeout * 2
                ))
            })?
            .map_err(|e| {
                Error::Sink(format!(
                    "cassandra: cannot connect to {nodes} ({e}); {}",
                    connect_hint(&e.to_string(), &config)
                ))
            })?;
        Ok(CassandraStore {
            config,
            runtime,
            session: Arc::new(session),
            lanes: OnceLock::new(),
            stats,
        })
    }

    /// Every row a query selects (paged), typed.
    fn select<R, V>(&self, query: String, values: V) -> std::result::Result<Vec<R>, BoxError>
    where
        R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm> + Send + 'static,
        V: scylla::serialize::row::SerializeRow,
    {
        let session = Arc::clone(&self.session);
        self.runtime.block_on(async move {
            session
                .query_iter(query, values)
                .await?
                .rows_stream::<R>()?
                .try_collect()
                .await
                .map_err(Into::into)
        })
    }

    /// A stable hash of a row's primary key: rows of one key always share a lane.
    fn lane_of(row: &[Cell], table: &super::Table) -> u64 {
        use crate::data::hash::{fnv1a, mix64};
        table.primary_key().fold(0, |h, i| {
            mix64(
                h ^ match &row[i] {
                    Cell::Text(s) => fnv1a(s.as_bytes()),
                    Cell::Uuid(u) => mix64(*u as u64 ^ (*u >> 64) as u64),
                    Cell::Int(v) => mix64(*v as u64),
                    Cell::Bigint(v) | Cell::Timestamp(v) => mix64(*v as u64),
                    Cell::Boolean(b) => *b as u64,
                    Cell::Double(f) => mix64(f.to_bits()),
                    Cell::Blob(b) => fnv1a(b),
                    Cell::Null => 0,
                },
            )
        })
    }
}

impl Store for CassandraStore {
    fn prepare(&self, tables: &TableSet, failed: &FirstError) -> Result<()> {
        let ks = &self.config.keyspace;
        let session = Arc::clone(&self.session);
        let prepared: Vec<PreparedStatement> = self.runtime.block_on(async {
            session
                .query_unpaged(
                    format!(
                        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {}",
                        self.config.replication
                    ),
                    (),
                )
                .await
                .map_err(|e| cassandra_error(&format!("cannot create keyspace {ks}"), e))?;
            let mut prepared = Vec::new();
            for table in &tables.tables {
                session
                    .query_unpaged(table.cql_create(ks), ())
                    .await
                    .map_err(|e| {
                        cassandra_error(&format!("cannot create table {ks}.{}", table.name), e)
                    })?;
                let marks = vec!["?"; table.columns.len()].join(", ");
                let insert = format!(
                    "INSERT INTO {ks}.{} ({}) VALUES ({marks})",
                    table.name,
                    table.column_list()
                );
                let statement = match session.prepare(insert.as_str()).await {
                    Ok(statement) => statement,
                    Err(_) => {
                        // A table of an older Weir: add the columns it lacks (adding one that
                        // exists fails, harmlessly), then prepare again.
                        for (column, ty) in &table.columns {
                            let alter = format!(
                                "ALTER TABLE {ks}.{} ADD {column} {}",
                                table.name,
                                ty.cql()
                            );
                            if session.query_unpaged(alter, ()).await.is_ok() {
                                tracing::info!(table = %table.name, column, "column added");
                            }
                        }
                        session.prepare(insert).await.map_err(|e| {
                            cassandra_error(
                                &format!("cannot prepare an insert into {}", table.name),
                                e,
                            )
                        })?
                    }
                };
                prepared.push(statement);
            }
            Ok::<_, Error>(prepared)
        })?;
        let prepared = Arc::new(prepared);
        let mut lanes = Vec::new();
        for _ in 0..self.config.concurrency.max(1) {
            let (sender, mut receiver) = mpsc::unbounded_channel::<Row>();
            let (session, prepared, stats) = (
                Arc::clone(&self.session),
                Arc::clone(&prepared),
                Arc::clone(&self.stats),
            );
            let max_attempts = self.config.max_attempts;
            let failed = failed.clone();
            self.runtime.spawn(async move {
                while let Some(row) = receiver.recv().await {
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        match session
                            .execute_unpaged(&prepared[row.table], &row.values)
                            .await
                        {
                            Ok(_) => break,
                            Err(e)
                                if attempt < max_attempts
                                    && error_class(&e) == ErrorClass::Transient =>
                            {
                                stats.add_retry();
                                let backoff = Duration::from_millis(50 << attempt.min(7))
                                    .min(Duration::from_secs(5));
                                tracing::warn!(
                                    attempt,
                                    ?backoff,
                                    "cassandra write failed, retrying: {e}"
                                );
                                tokio::time::sleep(backoff).await;
                            }
                            Err(e) => {
                                // Stop this lane without acknowledging: the sink keeps the
                                // write's capability and the runtime returns the error.
                                let class = error_class(&e);
                                let what = match class {
                                    ErrorClass::Transient => {
                                        format!("write failed after {attempt} attempts")
                                    }
                                    ErrorClass::Permanent => "write refused".to_string(),
                                };
                                failed.report(Error::Store {
                                    message: format!(
                                        "cassandra: {what}: {e}; a restart resumes from the stored progress"
                                    ),
                                    class,
                                });
                                return;
                            }
                        }
                    }
                    crate::failpoint::hit("sink.mid_batch");
                    if row.job.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                        crate::failpoint::hit("sink.after_data_write");
                        if let Some(ack) =
                            row.job.ack.lock().unwrap_or_else(|e| e.into_inner()).take()
                        {
                            ack();
                        }
                    }
                }
            });
            lanes.push(sender);
        }
        self.lanes
            .set((lanes, tables.clone(), failed.clone()))
            .map_err(|_| Error::Sink("cassandra store prepared twice".into()))?;
        Ok(())
    }

    fn write(&self, table: usize, rows: Vec<Vec<Cell>>, ack: Ack) {
        let Some((lanes, tables, failed)) = self.lanes.get() else {
            // A programming error, not an input one; nothing is acknowledged.
            tracing::error!("cassandra store used before prepare");
            return;
        };
        let job = Arc::new(Job {
            remaining: AtomicUsize::new(rows.len()),
            ack: Mutex::new(Some(ack)),
        });
        for row in rows {
            let lane = (Self::lane_of(&row, &tables.tables[table]) % lanes.len() as u64) as usize;
            let values: Vec<Option<CqlValue>> = row.into_iter().map(cql_value).collect();
            if lanes[lane]
                .send(Row {
                    table,
                    values,
                    job: Arc::clone(&job),
                })
                .is_err()
            {
                // The lane stopped after reporting its error; this write stays unacknowledged.
                failed.report(Error::Sink("cassandra: a write lane stopped".into()));
                return;
            }
        }
    }

    fn read_progress(&self, dataflow: &str, source: &str) -> Result<Vec<PartitionProgress>> {
        let query = format!(
            "SELECT {} FROM {}.{} WHERE dataflow = ? AND source = ?",
            TableSet::PROGRESS_COLUMNS,
            self.config.keyspace,
            super::tables::PROGRESS_TABLE
        );
        type ProgressRow = (
            String,
            String,
            i32,
            i64,
            i64,
            i64,
            i64,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<ProgressRow> = self
            .select(query, (dataflow, source))
            .map_err(|e| cassandra_error("cannot read progress", e))?;
        let text = |t: Option<String>| t.map_or(Cell::Null, |t| Cell::Text(t.into()));
        let int = |v: Option<i64>| v.map_or(Cell::Null, Cell::Bigint);
        Ok(rows
            .into_iter()
            .filter_map(|(_, _, p, o, w, d, e, start, rows_from, units, f, def)| {
                let cells = [
                    Cell::Null,
                    Cell::Null,
                    Cell::Int(p),
                    Cell::Bigint(o),
                    Cell::Bigint(w),
                    Cell::Bigint(d),
                    Cell::Bigint(e),
                    int(start),
                    int(rows_from),
                    text(units),
                    text(f),
                    text(def),
                ];
                TableSet::progress_from_cells(&cells)
            })
            .collect())
    }

    fn progress_sources(&self, dataflow: &str) -> Result<Vec<String>> {
        // The progress table is small (dataflows x sources x partitions): read it whole rather
        // than ask for ALLOW FILTERING.
        let query = format!(
            "SELECT dataflow, source FROM {}.{}",
            self.config.keyspace,
            super::tables::PROGRESS_TABLE
        );
        let rows: Vec<(String, String)> = self.select(query, ()).map_err(|e| {
            cassandra_error(
                &format!(
                    "cannot read {}.{} (was a dataflow ever run against this keyspace?)",
                    self.config.keyspace,
                    super::tables::PROGRESS_TABLE
                ),
                e,
            )
        })?;
        let mut sources: Vec<String> = rows
            .into_iter()
            .filter(|(d, _)| d == dataflow)
            .map(|(_, s)| s)
            .collect();
        sources.sort();
        sources.dedup();
        Ok(sources)
    }

    fn describe(&self) -> String {
        format!(
            "cassandra {} keyspace {}",
            self.config.nodes.join(","),
            self.config.keyspace
        )
    }
}

/// What to check after a failed connection, from the driver's error text.
fn connect_hint(error: &str, config: &CassandraConfig) -> &'static str {
    if error.contains("Authentication") || error.contains("bad credentials") {
        "check --cassandra-user and the password (WEIR_CASSANDRA_PASSWORD or --cassandra-password-file)"
    } else if error.contains("certificate") || error.contains("UnknownIssuer") {
        "check --cassandra-tls-ca (the CA that signs the nodes' certificates)"
    } else if config.tls.is_none() && error.contains("early eof") {
        "check --cassandra, and whether the nodes require TLS (--cassandra-tls)"
    } else {
        "check --cassandra, the credentials and TLS settings"
    }
}

fn cql_value(cell: Cell) -> Option<CqlValue> {
    Some(match cell {
        Cell::Null => return None,
        Cell::Text(s) => CqlValue::Text(s.into_string()),
        Cell::Int(i) => CqlValue::Int(i),
        Cell::Bigint(i) => CqlValue::BigInt(i),
        Cell::Double(f) => CqlValue::Double(f),
        Cell::Boolean(b) => CqlValue::Boolean(b),
        Cell::Uuid(u) => CqlValue::Uuid(uuid::Uuid::from_u128(u)),
        Cell::Timestamp(t) => CqlValue::Timestamp(CqlTimestamp(t)),
        Cell::Blob(b) => CqlValue::Blob(b),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{DbError, RequestAttemptError};

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "message".into()))
    }

    #[test]
    fn timeouts_and_overload_are_retried_refusals_are_not() {
        assert_eq!(error_class(&db(DbError::Overloaded)), ErrorClass::Transient);
        assert_eq!(
            error_class(&db(DbError::ServerError)),
            ErrorClass::Transient
        );
        assert_eq!(
            error_class(&ExecutionError::RequestTimeout(Duration::from_secs(1))),
            ErrorClass::Transient
        );
        for permanent in [
            DbError::SyntaxError,
            DbError::Invalid,
            DbError::Unauthorized,
            DbError::AuthenticationError,
        ] {
            assert_eq!(error_class(&db(permanent)), ErrorClass::Permanent);
        }
    }
}
