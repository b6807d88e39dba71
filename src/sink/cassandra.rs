//! The Cassandra (or ScyllaDB) store, through the `scylla` driver.
//!
//! Writes are prepared `INSERT`s (upserts), marked idempotent (writing a row twice is writing
//! it once, so the driver may retry or speculate them) and sent at `--cassandra-consistency`
//! (default `LOCAL_QUORUM`) with the driver's default token-aware load balancing: each
//! statement goes straight to a replica of its partition.
//!
//! **Units.** A `write` is cut into units. Rows of a table whose partition key is its whole
//! primary key (the records table) are one statement each. Rows of the other tables are
//! grouped by partition key, in arrival order, into unlogged batches of at most
//! [`BATCH_ROWS`] rows and [`BATCH_BYTES`] bytes: one partition per batch, so a batch is one
//! mutation on one replica set, which is what an unlogged batch is good for (spreading a batch
//! over partitions only moves the fan-out onto the coordinator).
//!
//! **Budget and order.** [`DISPATCHERS`] dispatcher tasks (one per client thread; the driver's
//! per-request work runs inside them) each own a share of the units in flight, chosen by the
//! unit's chain. Each starts units while its rows and bytes in flight stay within its share of
//! `--cassandra-max-in-flight-rows` and `--cassandra-max-in-flight-bytes` (a unit larger than
//! the share still goes alone, so nothing can wedge), so the cluster sees a bounded number of
//! requests whatever the dataflow's rate. Units of one partition (same table and partition
//! key) form a chain, always in one dispatcher: at most one of them is in flight and the next
//! starts only after it is acknowledged. Two writes of one primary key therefore reach
//! Cassandra in the order they were submitted, so the later version of a record wins, as in
//! the source partition, while different partitions proceed concurrently. (Each worker
//! submits its own partitions' writes in order, and the channel to a dispatcher keeps that
//! order.) Tables whose keys are written at most once per run (window results, dead letters,
//! late records: [`super::Table::written_once`]) need no order, so each of their units is a
//! chain of its own; otherwise the dead letters of one Kafka partition, one partition key,
//! would go one batch per round trip.
//!
//! **Failures.** A unit that fails transiently (a timeout, an unavailable or overloaded node,
//! a broken connection: [`error_class`]) is retried with exponential backoff, holding its
//! chain; a permanent failure (syntax, invalid query, authentication, authorization) or one
//! still failing after `--store-retry-timeout` stops its dispatcher: the error goes to the engine's
//! [`FirstError`] (the run then stops with it), and the failed write and everything that
//! dispatcher holds are never acknowledged, so no progress covers them and a restart replays
//! them. Writes the other dispatcher acknowledges are durable, so that is no lie.
//!
//! Tables made by an older Weir lack the columns added since (`reason_kind`): when an insert
//! does not prepare, the missing columns are added with `ALTER TABLE` and it is prepared again.
//! A table with a TTL in the dataflow file (`[tables.ttl]`) is written `USING TTL`.
//!
//! Security: a username and password (PasswordAuthenticator, SASL PLAIN inside the CQL
//! handshake) and TLS through rustls, trusting the system's CA roots or `--cassandra-tls-ca`.
//! The password is a [`Secret`]: `Debug` of the configuration shows `***`, and
//! [`Store::describe`] names only the contact points and the keyspace.

use std::collections::hash_map::Entry;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::stream::FuturesUnordered;
use futures::{StreamExt, TryStreamExt};
use rustc_hash::FxHashMap;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::errors::ExecutionError;
use scylla::frame::response::result::ColumnType;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::serialize::value::SerializeValue;
use scylla::serialize::writers::{CellWriter, WrittenCellProof};
use scylla::serialize::SerializationError;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::Consistency;
use scylla::value::CqlTimestamp;
use tokio::sync::mpsc;

use super::tables::DELETE;
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
    /// Rows in flight per process (the budget; see the module doc).
    pub max_in_flight_rows: usize,
    /// Bytes of values in flight per process.
    pub max_in_flight_bytes: usize,
    /// Consistency level of every statement.
    pub consistency: Consistency,
    /// How long a failing write is retried before the sink stops; `None`: for ever.
    pub retry_timeout: Option<Duration>,
    /// How long one request may take before it counts as failed.
    pub request_timeout: Duration,
    /// Connect timeout.
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

/// Client threads, and dispatchers (one each).
pub const DISPATCHERS: usize = 2;

/// Most rows in one unlogged batch.
pub const BATCH_ROWS: usize = 64;
/// Most bytes of values in one unlogged batch: below Cassandra's default
/// `batch_size_warn_threshold` (5 KiB), so a batch never fills the nodes' logs with warnings.
pub const BATCH_BYTES: usize = 4 * 1024;

/// A row's bound values: its cells, serialized by the driver as they are (no copy).
type Values = Vec<Cell>;

/// The rows of one statement or batch, cut from a write.
struct Cut {
    /// Table and partition key: units of one chain are applied one after another.
    chain: u64,
    /// Values of each row; one row is a plain statement.
    rows: Vec<Values>,
    /// About the bytes of the values.
    bytes: usize,
}

/// One statement, or one unlogged batch of rows of one partition, on its way.
struct Unit {
    table: usize,
    cut: Cut,
    job: Arc<Job>,
}

/// One `write`: acknowledged when its last unit is.
struct Job {
    remaining: AtomicUsize,
    ack: Mutex<Option<Ack>>,
}

impl Job {
    fn unit_done(&self) {
        crate::failpoint::hit("sink.mid_batch");
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            crate::failpoint::hit("sink.after_data_write");
            if let Some(ack) = self.ack.lock().unwrap_or_else(|e| e.into_inner()).take() {
                ack();
            }
        }
    }
}

/// What a dispatcher needs to execute units.
struct Writer {
    session: Arc<Session>,
    prepared: Arc<Vec<PreparedStatement>>,
    /// Per table: its delete by primary key (rows tables only; a table input's tombstones).
    deletes: Arc<Vec<Option<PreparedStatement>>>,
    stats: Arc<Stats>,
    retry_timeout: Option<Duration>,
}

impl Writer {
    /// Executes a unit, retrying transient failures; `Err` is the error for [`FirstError`].
    async fn run(&self, unit: &Unit) -> std::result::Result<(), Error> {
        let statement =
            match (unit.table & DELETE != 0).then(|| self.deletes[unit.table & !DELETE].as_ref()) {
                None => &self.prepared[unit.table],
                Some(Some(delete)) => delete,
                Some(None) => {
                    return Err(Error::Sink(format!(
                        "cassandra: a delete for table {} which has no delete statement",
                        unit.table & !DELETE
                    )))
                }
            };
        let rows = &unit.cut.rows;
        let batch = (rows.len() > 1).then(|| {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in rows {
                batch.append_statement(statement.clone());
            }
            // Upserts of content-keyed rows: replaying a batch changes nothing.
            batch.set_is_idempotent(true);
            batch
        });
        let mut attempt = 0;
        let mut failing_since: Option<std::time::Instant> = None;
        loop {
            attempt += 1;
            let result = match &batch {
                None => self
                    .session
                    .execute_unpaged(statement, &rows[0])
                    .await
                    .map(drop),
                Some(batch) => self.session.batch(batch, rows).await.map(drop),
            };
            match result {
                Ok(()) => {
                    if attempt > 1 {
                        self.stats.status.set_sink_retrying(None);
                    }
                    return Ok(());
                }
                Err(e)
                    if error_class(&e) == ErrorClass::Transient
                        && self.retry_timeout.is_none_or(|limit| {
                            failing_since
                                .get_or_insert_with(std::time::Instant::now)
                                .elapsed()
                                < limit
                        }) =>
                {
                    self.stats.add_retry();
                    self.stats
                        .status
                        .set_sink_retrying(Some(format!("cassandra (attempt {attempt}): {e}")));
                    let backoff =
                        Duration::from_millis(50 << attempt.min(7)).min(Duration::from_secs(5));
                    tracing::warn!(attempt, ?backoff, "cassandra write failed, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                }
                Err(e) => {
                    let class = error_class(&e);
                    let what = match class {
                        ErrorClass::Transient => format!(
                            "writes failed for {} s ({attempt} attempts, --store-retry-timeout)",
                            failing_since.map_or(0, |t| t.elapsed().as_secs())
                        ),
                        ErrorClass::Permanent => "write refused".to_string(),
                    };
                    return Err(Error::Store {
                        message: format!(
                            "cassandra: {what}: {e}; a restart resumes from the stored progress"
                        ),
                        class,
                    });
                }
            }
        }
    }
}

/// The in-flight budget.
#[derive(Clone, Copy, Debug)]
struct Budget {
    rows: usize,
    bytes: usize,
}

/// The dispatcher's bookkeeping (see the module doc), apart from the I/O so that it can be
/// tested alone: which units may start now, within the budget and one per chain.
#[derive(Default)]
struct Scheduler {
    /// A chain is present while one of its units is ready or in flight; it holds the units
    /// submitted behind that one, oldest first.
    chains: FxHashMap<u64, VecDeque<Unit>>,
    /// Units at the head of their chain, waiting for budget, oldest first.
    ready: VecDeque<Unit>,
    /// Rows and bytes in flight.
    rows: usize,
    bytes: usize,
    in_flight: usize,
}

impl Scheduler {
    /// A unit submitted: ready at once if its chain is idle, else queued behind it.
    fn submit(&mut self, unit: Unit) {
        match self.chains.entry(unit.cut.chain) {
            Entry::Occupied(mut waiting) => waiting.get_mut().push_back(unit),
            Entry::Vacant(chain) => {
                chain.insert(VecDeque::new());
                self.ready.push_back(unit);
            }
        }
    }

    /// The next unit to start, if the budget allows it. A unit larger than the whole budget
    /// starts when nothing else is in flight.
    fn start(&mut self, budget: Budget) -> Option<Unit> {
        let cut = &self.ready.front()?.cut;
        let fits =
            self.rows + cut.rows.len() <= budget.rows && self.bytes + cut.bytes <= budget.bytes;
        if !fits && self.in_flight > 0 {
            return None;
        }
        let unit = self.ready.pop_front()?;
        self.rows += unit.cut.rows.len();
        self.bytes += unit.cut.bytes;
        self.in_flight += 1;
        Some(unit)
    }

    /// A started unit acknowledged: frees its budget and readies its chain's next unit.
    fn complete(&mut self, unit: &Unit) {
        self.rows -= unit.cut.rows.len();
        self.bytes -= unit.cut.bytes;
        self.in_flight -= 1;
        match self
            .chains
            .get_mut(&unit.cut.chain)
            .and_then(VecDeque::pop_front)
        {
            Some(next) => self.ready.push_back(next),
            None => {
                self.chains.remove(&unit.cut.chain);
            }
        }
    }

    fn idle(&self) -> bool {
        self.in_flight == 0 && self.ready.is_empty()
    }
}

/// Owns every unit from submission to acknowledgement: starts what the [`Scheduler`] allows,
/// executes it, and acknowledges it.
async fn dispatch(
    mut incoming: mpsc::UnboundedReceiver<Unit>,
    writer: Writer,
    budget: Budget,
    failed: FirstError,
) {
    let mut scheduler = Scheduler::default();
    let mut in_flight = FuturesUnordered::new();
    let mut open = true;
    let mut received = Vec::new();
    loop {
        while let Some(unit) = scheduler.start(budget) {
            let writer = &writer;
            in_flight.push(async move {
                let result = writer.run(&unit).await;
                (unit, result)
            });
        }
        if !open && scheduler.idle() {
            return;
        }
        tokio::select! {
            // Completions first: they free budget and chains.
            biased;
            Some((unit, result)) = in_flight.next(), if !in_flight.is_empty() => {
                if let Err(e) = result {
                    // Stop without acknowledging: the sink keeps the write's capability and
                    // the runtime returns the error.
                    failed.report(e);
                    return;
                }
                scheduler.complete(&unit);
                unit.job.unit_done();
            }
            count = incoming.recv_many(&mut received, 1024), if open => {
                if count == 0 {
                    open = false;
                }
                for unit in received.drain(..) {
                    scheduler.submit(unit);
                }
            }
        }
    }
}

/// A Cassandra session with prepared statements and a write dispatcher.
pub struct CassandraStore {
    config: CassandraConfig,
    runtime: tokio::runtime::Runtime,
    session: Arc<Session>,
    /// Set by `prepare`: the dispatchers' queues and the tables they write.
    dispatchers: OnceLock<(Vec<mpsc::UnboundedSender<Unit>>, TableSet, FirstError)>,
    /// Numbers the chains of written-once tables' units.
    unique_chains: AtomicU64,
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
            .worker_threads(DISPATCHERS)
            .thread_name("cassandra")
            .enable_all()
            .build()
            .map_err(|e| Error::Sink(format!("cannot start the Cassandra client runtime: {e}")))?;
        // Every statement at the configured consistency, and `--cassandra-request-timeout`
        // (12 s; the driver's 30 s would hold each attempt at a paused node for half a minute
        // before Weir's own retry, which owns the time budget); the rest of the profile is the
        // driver's default (token-aware load balancing, its retry policy for idempotent
        // statements).
        let profile = ExecutionProfile::builder()
            .consistency(config.consistency)
            .request_timeout(Some(config.request_timeout))
            .build();
        let mut builder = SessionBuilder::new()
            .known_nodes(&config.nodes)
            .default_execution_profile_handle(profile.into_handle())
            // Client-side write timestamps, increasing per process: the later of two writes of
            // one key (chained, so sent after the first is acknowledged) always wins, whichever
            // coordinator and clock each one met. The driver's default is the server's clock.
            .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
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
            dispatchers: OnceLock::new(),
            unique_chains: AtomicU64::new(0),
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

    /// A stable hash of a row's partition key, seeded with its table: the row's chain.
    fn chain_of(row: &[Cell], table_index: usize, table: &super::Table) -> u64 {
        Self::hash_columns(row, table_index, table.partition_key.iter().copied())
    }

    /// A stable hash of a row's primary key, seeded with its table.
    fn key_of(row: &[Cell], table_index: usize, table: &super::Table) -> u64 {
        Self::hash_columns(row, table_index, table.primary_key())
    }

    fn hash_columns(row: &[Cell], table_index: usize, columns: impl Iterator<Item = usize>) -> u64 {
        use crate::data::hash::{fnv1a, mix64};
        let seed = mix64(table_index as u64 + 1);
        columns.fold(seed, |h, i| {
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
        let (prepared, deletes): (Vec<PreparedStatement>, Vec<Option<PreparedStatement>>) =
            self.runtime.block_on(async {
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
                let mut deletes = Vec::new();
                for table in &tables.tables {
                    session
                        .query_unpaged(table.cql_create(ks), ())
                        .await
                        .map_err(|e| {
                            cassandra_error(&format!("cannot create table {ks}.{}", table.name), e)
                        })?;
                    let insert = insert_statement(ks, table);
                    let mut statement = match session.prepare(insert.as_str()).await {
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
                    // Upserts of content-keyed rows: executing one twice changes nothing, so the
                    // driver may retry it after a timeout.
                    statement.set_is_idempotent(true);
                    prepared.push(statement);
                    // Rows tables (one key column, no clustering) can be told to delete a key.
                    let delete = match (table.clustering.is_empty(), table.primary_key().next()) {
                        (true, Some(key)) => {
                            let text = format!(
                                "DELETE FROM {ks}.{} WHERE {} = ?",
                                table.name, table.columns[key].0
                            );
                            let mut delete = session.prepare(text).await.map_err(|e| {
                                cassandra_error(
                                    &format!("cannot prepare a delete from {}", table.name),
                                    e,
                                )
                            })?;
                            // Deleting a key twice leaves it deleted.
                            delete.set_is_idempotent(true);
                            Some(delete)
                        }
                        _ => None,
                    };
                    deletes.push(delete);
                }
                Ok::<_, Error>((prepared, deletes))
            })?;
        let prepared = Arc::new(prepared);
        let deletes = Arc::new(deletes);
        // Each dispatcher's share of the budget (at least one row and one byte).
        let budget = Budget {
            rows: self.config.max_in_flight_rows.div_ceil(DISPATCHERS).max(1),
            bytes: self.config.max_in_flight_bytes.div_ceil(DISPATCHERS).max(1),
        };
        let mut senders = Vec::new();
        for _ in 0..DISPATCHERS {
            let (sender, receiver) = mpsc::unbounded_channel::<Unit>();
            let writer = Writer {
                session: Arc::clone(&self.session),
                prepared: Arc::clone(&prepared),
                deletes: Arc::clone(&deletes),
                stats: Arc::clone(&self.stats),
                retry_timeout: self.config.retry_timeout,
            };
            self.runtime
                .spawn(dispatch(receiver, writer, budget, failed.clone()));
            senders.push(sender);
        }
        self.dispatchers
            .set((senders, tables.clone(), failed.clone()))
            .map_err(|_| Error::Sink("cassandra store prepared twice".into()))?;
        Ok(())
    }

    fn write(&self, table: usize, rows: Vec<Vec<Cell>>, ack: Ack) {
        let Some((senders, tables, failed)) = self.dispatchers.get() else {
            // A programming error, not an input one; nothing is acknowledged.
            tracing::error!("cassandra store used before prepare");
            return;
        };
        let units = if table & DELETE != 0 {
            // A delete's row is the key alone; its chain is the key's upserts' chain (the
            // rows table's partition key is its one key column), so they stay in order.
            rows.into_iter()
                .map(|row| Cut {
                    chain: Self::hash_columns(&row, table & !DELETE, std::iter::once(0)),
                    bytes: row.iter().map(cell_bytes).sum::<usize>(),
                    rows: vec![row],
                })
                .collect()
        } else {
            units(table, &tables.tables[table], rows, &self.unique_chains)
        };
        if units.is_empty() {
            ack();
            return;
        }
        let job = Arc::new(Job {
            remaining: AtomicUsize::new(units.len()),
            ack: Mutex::new(Some(ack)),
        });
        for cut in units {
            let unit = Unit {
                table,
                cut,
                job: Arc::clone(&job),
            };
            let shard = (unit.cut.chain % senders.len() as u64) as usize;
            if senders[shard].send(unit).is_err() {
                // The dispatcher stopped after reporting its error; this write stays
                // unacknowledged.
                failed.report(Error::Sink(
                    "cassandra: the write dispatcher stopped".into(),
                ));
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

/// The prepared upsert of a table: `INSERT INTO ks.t (...) VALUES (?, ...) [USING TTL n]`.
fn insert_statement(keyspace: &str, table: &super::Table) -> String {
    let marks = vec!["?"; table.columns.len()].join(", ");
    let ttl = table
        .ttl_seconds
        .map(|s| format!(" USING TTL {s}"))
        .unwrap_or_default();
    format!(
        "INSERT INTO {keyspace}.{} ({}) VALUES ({marks}){ttl}",
        table.name,
        table.column_list()
    )
}

/// Cuts one write's rows into units. A table whose partition key is its whole primary key gets
/// a statement per row; others a batch per partition, bounded by [`BATCH_ROWS`] and
/// [`BATCH_BYTES`], rows in their submitted order. A batch never holds two rows of one primary
/// key: its statements share one write timestamp, and Cassandra breaks that tie by value, not
/// by order; the second row starts the partition's next batch, which its chain applies after
/// this one. A unit of a table whose keys are written once per run
/// ([`super::Table::written_once`]) has a chain of its own (a number from `unique`): it waits
/// for nothing.
fn units(index: usize, table: &super::Table, rows: Vec<Vec<Cell>>, unique: &AtomicU64) -> Vec<Cut> {
    let mut units = cut_rows(index, table, rows);
    if table.written_once {
        for unit in &mut units {
            unit.chain = crate::data::hash::mix64(unique.fetch_add(1, Ordering::Relaxed));
        }
    }
    units
}

/// [`units`] before the written-once tables' chains: every chain is the partition's.
fn cut_rows(index: usize, table: &super::Table, rows: Vec<Vec<Cell>>) -> Vec<Cut> {
    let row_cut = |row: Vec<Cell>| Cut {
        chain: CassandraStore::chain_of(&row, index, table),
        bytes: row.iter().map(cell_bytes).sum::<usize>(),
        rows: vec![row],
    };
    if table.clustering.is_empty() {
        return rows.into_iter().map(row_cut).collect();
    }
    let mut units: Vec<Cut> = Vec::new();
    // The open batch of each partition, and the batch each primary key was last put in
    // (indices into `units`).
    let mut open: FxHashMap<u64, usize> = FxHashMap::default();
    let mut key_in: FxHashMap<u64, usize> = FxHashMap::default();
    for row in rows {
        let key = CassandraStore::key_of(&row, index, table);
        let mut cut = row_cut(row);
        let joins = open.get(&cut.chain).copied().filter(|&i| {
            let unit = &units[i];
            unit.rows.len() < BATCH_ROWS
                && unit.bytes + cut.bytes <= BATCH_BYTES
                && key_in.get(&key) != Some(&i)
        });
        let i = match joins {
            Some(i) => {
                units[i].rows.append(&mut cut.rows);
                units[i].bytes += cut.bytes;
                i
            }
            None => {
                open.insert(cut.chain, units.len());
                units.push(cut);
                units.len() - 1
            }
        };
        key_in.insert(key, i);
    }
    units
}

/// About what a cell costs on the wire.
fn cell_bytes(cell: &Cell) -> usize {
    4 + match cell {
        Cell::Null => 0,
        Cell::Text(s) => s.len(),
        Cell::Blob(b) => b.len(),
        Cell::Uuid(_) => 16,
        Cell::Int(_) => 4,
        Cell::Bigint(_) | Cell::Timestamp(_) | Cell::Double(_) => 8,
        Cell::Boolean(_) => 1,
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

/// A cell as a bound value, serialized straight from the row (a text cell is not copied into
/// a `String` first); each arm is the driver's own serializer for that Rust type, which checks
/// the column's CQL type.
impl SerializeValue for Cell {
    fn serialize<'b>(
        &self,
        typ: &ColumnType,
        writer: CellWriter<'b>,
    ) -> std::result::Result<WrittenCellProof<'b>, SerializationError> {
        match self {
            Cell::Null => None::<i32>.serialize(typ, writer),
            Cell::Text(s) => s.as_str().serialize(typ, writer),
            Cell::Int(i) => i.serialize(typ, writer),
            Cell::Bigint(i) => i.serialize(typ, writer),
            Cell::Double(f) => f.serialize(typ, writer),
            Cell::Boolean(b) => b.serialize(typ, writer),
            Cell::Uuid(u) => uuid::Uuid::from_u128(*u).serialize(typ, writer),
            Cell::Timestamp(t) => CqlTimestamp(*t).serialize(typ, writer),
            Cell::Blob(b) => b.serialize(typ, writer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scylla::errors::{DbError, RequestAttemptError};

    fn db(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "message".into()))
    }

    fn users_tables() -> TableSet {
        let spec =
            crate::spec::DataflowSpec::load(std::path::Path::new("dataflows/users_created.toml"))
                .unwrap();
        TableSet::new(&spec)
    }

    /// A by_window row: partition (dataflow, window, dimension, start), clustered by value.
    fn window_row(table: &super::super::Table, start: i64, value: &str, count: i64) -> Vec<Cell> {
        table
            .columns
            .iter()
            .map(|(name, _)| match name.as_str() {
                "window_start" => Cell::Timestamp(start),
                "window_end" => Cell::Timestamp(start + 60_000),
                "value" => Cell::Text(value.into()),
                "dataflow" | "window_name" | "dimension" => Cell::Text("x".into()),
                _ => Cell::Bigint(count),
            })
            .collect()
    }

    fn count_of(values: &Values) -> Option<i64> {
        match values.last() {
            Some(Cell::Bigint(n)) => Some(*n),
            _ => None,
        }
    }

    #[test]
    fn window_rows_are_batched_by_partition_and_never_twice_one_key_in_a_batch() {
        let tables = users_tables();
        let table = &tables.tables[TableSet::BY_WINDOW];
        // Two partitions interleaved; value "a" of partition 0 written twice.
        let rows = vec![
            window_row(table, 0, "a", 1),
            window_row(table, 60_000, "a", 2),
            window_row(table, 0, "b", 3),
            window_row(table, 0, "a", 4),
            window_row(table, 60_000, "b", 5),
        ];
        let cuts = cut_rows(TableSet::BY_WINDOW, table, rows);
        let counts: Vec<(u64, Vec<Option<i64>>)> = cuts
            .iter()
            .map(|c| (c.chain, c.rows.iter().map(count_of).collect()))
            .collect();
        let big = Some;
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert_eq!(
            counts[0].1,
            [big(1), big(3)],
            "partition 0 up to the repeated key"
        );
        assert_eq!(counts[1].1, [big(2), big(5)], "partition 1");
        assert_eq!(
            counts[2].1,
            [big(4)],
            "the second version of (0, a) in a later batch"
        );
        assert_eq!(counts[0].0, counts[2].0, "one partition, one chain");
        assert_ne!(counts[0].0, counts[1].0);

        // A long run of one partition is cut at BATCH_ROWS (and BATCH_BYTES).
        let rows = (0..BATCH_ROWS * 2 + 1)
            .map(|i| window_row(table, 0, &format!("v{i}"), i as i64))
            .collect();
        let cuts = units(TableSet::BY_WINDOW, table, rows, &AtomicU64::new(0));
        assert!(cuts.len() >= 3);
        let chains: std::collections::HashSet<u64> = cuts.iter().map(|c| c.chain).collect();
        assert_eq!(
            chains.len(),
            cuts.len(),
            "window rows are written once: no chain waits"
        );
        assert!(cuts
            .iter()
            .all(|c| c.rows.len() <= BATCH_ROWS && c.bytes <= BATCH_BYTES));
        let all: Vec<_> = cuts
            .iter()
            .flat_map(|c| c.rows.iter().map(count_of))
            .collect();
        let expected: Vec<_> = (0..BATCH_ROWS as i64 * 2 + 1).map(big).collect();
        assert_eq!(all, expected, "every row once, in order");
    }

    #[test]
    fn a_table_with_a_ttl_is_written_using_ttl() {
        let mut tables = users_tables();
        let table = &mut tables.tables[TableSet::DEAD_LETTERS];
        assert!(!insert_statement("ks", table).contains("TTL"));
        table.ttl_seconds = Some(86_400);
        let insert = insert_statement("ks", table);
        assert!(insert.starts_with(&format!("INSERT INTO ks.{} (", table.name)));
        assert!(insert.ends_with(") USING TTL 86400"), "{insert}");
    }

    #[test]
    fn records_are_one_statement_each() {
        let tables = users_tables();
        let table = &tables.tables[TableSet::ROWS];
        let row = |id: u128| {
            table
                .columns
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { Cell::Uuid(id) } else { Cell::Null })
                .collect::<Vec<_>>()
        };
        let cuts = units(
            TableSet::ROWS,
            table,
            vec![row(1), row(2), row(1)],
            &AtomicU64::new(0),
        );
        assert_eq!(cuts.len(), 3);
        assert!(cuts.iter().all(|c| c.rows.len() == 1));
        assert_eq!(cuts[0].chain, cuts[2].chain, "one key, one chain");
        assert_ne!(cuts[0].chain, cuts[1].chain);
    }

    /// Random submissions and completions: every unit is acknowledged once; units of a chain
    /// start one at a time in submission order; rows in flight stay within the budget unless
    /// one oversized unit runs alone.
    #[test]
    fn the_scheduler_keeps_chain_order_and_the_budget() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        for round in 0..200 {
            let budget = Budget {
                rows: 1 + random(20),
                bytes: 1 + random(2000),
            };
            let chains = 1 + random(6);
            let job = Arc::new(Job {
                remaining: AtomicUsize::new(usize::MAX),
                ack: Mutex::new(None),
            });
            let mut scheduler = Scheduler::default();
            let mut in_flight: Vec<Unit> = Vec::new();
            let mut submitted: Vec<Vec<usize>> = vec![Vec::new(); chains];
            let mut started: Vec<Vec<usize>> = vec![Vec::new(); chains];
            let mut next_id = 0;
            let total = 50;
            while next_id < total || !scheduler.idle() {
                if next_id < total && random(3) > 0 {
                    let chain = random(chains);
                    let rows = 1 + random(8);
                    scheduler.submit(Unit {
                        table: next_id, // the unit's id, for this test
                        cut: Cut {
                            chain: chain as u64,
                            rows: vec![Vec::new(); rows],
                            bytes: rows * (1 + random(200)),
                        },
                        job: Arc::clone(&job),
                    });
                    submitted[chain].push(next_id);
                    next_id += 1;
                }
                while let Some(unit) = scheduler.start(budget) {
                    let chain = unit.cut.chain as usize;
                    assert!(
                        in_flight.iter().all(|u| u.cut.chain != unit.cut.chain),
                        "round {round}: two units of chain {chain} in flight"
                    );
                    started[chain].push(unit.table);
                    in_flight.push(unit);
                    let rows: usize = in_flight.iter().map(|u| u.cut.rows.len()).sum();
                    let bytes: usize = in_flight.iter().map(|u| u.cut.bytes).sum();
                    assert!(
                        in_flight.len() == 1 || (rows <= budget.rows && bytes <= budget.bytes),
                        "round {round}: {rows} rows, {bytes} bytes in flight over {budget:?}"
                    );
                }
                if !in_flight.is_empty() && random(2) == 0 {
                    let unit = in_flight.swap_remove(random(in_flight.len()));
                    scheduler.complete(&unit);
                }
            }
            assert_eq!(started, submitted, "round {round}: chain order");
        }
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
