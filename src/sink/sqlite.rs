//! The embedded SQLite store: the same tables and the same progress protocol as Cassandra, in
//! one file, so the main job runs on a machine with nothing installed.
//!
//! One writer thread per process owns the connection; workers hand it writes through a
//! channel and it applies whatever has queued up in one transaction, then acknowledges. The
//! database is in WAL mode, so readers (people, tests, other processes) never block it, and a
//! second thread checkpoints the WAL beside the writer (while the writer runs).
//! Uuids are stored as canonical text and timestamps as epoch milliseconds.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{params_from_iter, Connection, OpenFlags, ToSql};

use super::tables::DELETE;
use super::{Ack, Cell, Store, TableSet};
use crate::error::{Error, FirstError, Result};
use crate::progress::PartitionProgress;

struct Job {
    table: usize,
    rows: Vec<Vec<Cell>>,
    ack: Ack,
}

/// A SQLite database file.
pub struct SqliteStore {
    path: PathBuf,
    connection: Mutex<Option<Connection>>,
    jobs: Mutex<Option<(mpsc::Sender<Job>, FirstError)>>,
}

fn sqlite_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Sink(format!(
        "sqlite {}: {e}; check --sqlite (a writable file path)",
        path.display()
    ))
}

/// A failed write, with what to do about it. The failed transaction is rolled back, so no
/// progress record covers it and a restart writes it again.
fn write_error(path: &Path, e: rusqlite::Error) -> Error {
    use rusqlite::ErrorCode;
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "the disk holding it is full: free space and restart",
        Some(ErrorCode::ReadOnly) => {
            "it cannot be written (a read-only file or filesystem): make it writable and restart"
        }
        Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied) => {
            "it cannot be opened for writing: check the file and its directory, and restart"
        }
        Some(ErrorCode::SystemIoFailure) => {
            "the disk failed to write it: check the disk, and restart"
        }
        _ => "check --sqlite (a writable file path), and restart",
    };
    Error::Sink(format!(
        "sqlite {}: {e}; {hint}: Weir resumes from the stored progress",
        path.display()
    ))
}

fn open(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
    // Several processes of one cluster may share the file: wait for each other's locks.
    connection
        .busy_timeout(Duration::from_secs(30))
        .map_err(|e| sqlite_error(path, e))?;
    // WAL: readers do not block the writer; NORMAL sync is durable across process crashes
    // (the crash model of the tests and of `restart: on-failure`), not across power loss.
    // A 64 MiB page cache (the default is 2 MiB) keeps the primary-key indexes of large
    // tables in memory: upserts with random uuid keys otherwise read index pages back from
    // the OS on every insert (1M users: 13.7 s -> 9.8 s).
    connection
        .execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
        )
        .map_err(|e| sqlite_error(path, e))?;
    Ok(connection)
}

impl SqliteStore {
    /// A read-only connection, when the progress table exists.
    fn progress_reader(&self) -> Result<Option<Connection>> {
        let connection = Connection::open_with_flags(&self.path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| sqlite_error(&self.path, e))?;
        let exists: bool = connection
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE name = ?1",
                [super::tables::PROGRESS_TABLE],
                |r| r.get(0),
            )
            .map_err(|e| sqlite_error(&self.path, e))?;
        Ok(exists.then_some(connection))
    }

    /// Opens an existing database file without creating anything (`weir check --against`).
    pub fn open_existing(path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Config(format!(
                "--against {}: no such SQLite file; pass the --sqlite file of the runs to compare with",
                path.display()
            )));
        }
        Self::open(path)
    }

    /// Opens (or creates) the database file.
    pub fn open(path: &Path) -> Result<Self> {
        let connection = open(path)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            connection: Mutex::new(Some(connection)),
            jobs: Mutex::new(None),
        })
    }
}

impl Store for SqliteStore {
    fn prepare(&self, tables: &TableSet, failed: &FirstError) -> Result<()> {
        for table in tables.tables.iter().filter(|t| t.ttl_seconds.is_some()) {
            tracing::warn!(
                table = %table.name,
                "[tables.ttl] is applied by Cassandra only: the SQLite sink keeps every row"
            );
        }
        let Some(connection) = self
            .connection
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            return Err(Error::Sink("sqlite store prepared twice".into()));
        };
        for table in &tables.tables {
            connection
                .execute_batch(&table.sql_create())
                .map_err(|e| sqlite_error(&self.path, e))?;
            add_missing_columns(&connection, table).map_err(|e| sqlite_error(&self.path, e))?;
        }
        // Multi-row upserts (32 rows per statement) measured no faster: one row per statement.
        let inserts: Vec<String> = tables
            .tables
            .iter()
            .map(|t| {
                let marks = vec!["?"; t.columns.len()].join(", ");
                format!(
                    "INSERT OR REPLACE INTO {} ({}) VALUES ({marks})",
                    t.name,
                    t.column_list()
                )
            })
            .collect();
        // Deletes (a table input's tombstones) by primary key; only rows tables get them.
        let deletes: Vec<String> = tables
            .tables
            .iter()
            .map(|t| {
                let key = t
                    .primary_key()
                    .next()
                    .map_or("rowid", |k| t.columns[k].0.as_str());
                format!("DELETE FROM {} WHERE {key} = ?", t.name)
            })
            .collect();
        for statement in inserts.iter().chain(&deletes) {
            connection
                .prepare_cached(statement)
                .map_err(|e| sqlite_error(&self.path, e))?;
        }
        let keys: Vec<usize> = tables
            .tables
            .iter()
            .map(|t| t.primary_key().next().unwrap_or(0))
            .collect();
        // Checkpoints (copying the WAL back into the database file, with an fsync) took a fifth
        // of the writer's time and stalled every write queued behind them: the writer does
        // none, a second connection does them beside it.
        connection
            .execute_batch("PRAGMA wal_autocheckpoint=0;")
            .map_err(|e| sqlite_error(&self.path, e))?;
        let checkpointer = open(&self.path)?;
        let (sender, receiver) = mpsc::channel::<Job>();
        // Dropped when the writer stops, which stops the checkpoints.
        let (writer_alive, writer_stopped) = mpsc::channel::<()>();
        let (path, writer_failed) = (self.path.clone(), failed.clone());
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let _alive = writer_alive;
                // On an error the batch is not acknowledged: the sink keeps its capabilities,
                // no progress covers it, and the runtime returns the error.
                if let Err(e) = write_loop(connection, &inserts, &deletes, &keys, receiver) {
                    writer_failed.report(write_error(&path, e));
                }
            })
            .map_err(|e| Error::Sink(format!("cannot start the sqlite writer thread: {e}")))?;
        let (path, checkpoint_failed) = (self.path.clone(), failed.clone());
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                if let Err(e) = checkpoint_loop(&checkpointer, &writer_stopped) {
                    checkpoint_failed.report(write_error(&path, e));
                }
            })
            .map_err(|e| Error::Sink(format!("cannot start the sqlite checkpoint thread: {e}")))?;
        *self.jobs.lock().unwrap_or_else(|e| e.into_inner()) = Some((sender, failed.clone()));
        Ok(())
    }

    fn write(&self, table: usize, rows: Vec<Vec<Cell>>, ack: Ack) {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let Some((sender, failed)) = jobs.as_ref() else {
            tracing::error!("sqlite store used before prepare");
            return;
        };
        if sender.send(Job { table, rows, ack }).is_err() {
            // The writer stopped after reporting its error; this write stays unacknowledged.
            failed.report(Error::Sink(format!(
                "sqlite {}: the writer thread has stopped",
                self.path.display()
            )));
        }
    }

    fn read_progress(&self, dataflow: &str, source: &str) -> Result<Vec<PartitionProgress>> {
        let Some(connection) = self.progress_reader()? else {
            return Ok(Vec::new());
        };
        // A table written before fingerprints lacks their columns: read those as null.
        let mut existing = std::collections::HashSet::new();
        {
            let mut info = connection
                .prepare(&format!(
                    "PRAGMA table_info({})",
                    super::tables::PROGRESS_TABLE
                ))
                .map_err(|e| sqlite_error(&self.path, e))?;
            let mut rows = info.query([]).map_err(|e| sqlite_error(&self.path, e))?;
            while let Some(row) = rows.next().map_err(|e| sqlite_error(&self.path, e))? {
                existing.insert(
                    row.get::<_, String>(1)
                        .map_err(|e| sqlite_error(&self.path, e))?,
                );
            }
        }
        let columns: Vec<String> = TableSet::PROGRESS_COLUMNS
            .split(", ")
            .map(|c| {
                if existing.contains(c) {
                    c.to_string()
                } else {
                    format!("NULL AS {c}")
                }
            })
            .collect();
        let mut statement = connection
            .prepare(&format!(
                "SELECT {} FROM {} WHERE dataflow = ?1 AND source = ?2",
                columns.join(", "),
                super::tables::PROGRESS_TABLE
            ))
            .map_err(|e| sqlite_error(&self.path, e))?;
        let rows = statement
            .query_map([dataflow, source], |r| {
                let int = |i: usize| r.get::<_, i64>(i).map(Cell::Bigint);
                let opt_int = |i: usize| {
                    r.get::<_, Option<i64>>(i)
                        .map(|v| v.map_or(Cell::Null, Cell::Bigint))
                };
                let text = |i: usize| {
                    r.get::<_, Option<String>>(i)
                        .map(|v| v.map_or(Cell::Null, |t| Cell::Text(t.into())))
                };
                Ok(vec![
                    Cell::Null,
                    Cell::Null,
                    int(2)?,
                    int(3)?,
                    int(4)?,
                    int(5)?,
                    int(6)?,
                    opt_int(7)?,
                    opt_int(8)?,
                    text(9)?,
                    text(10)?,
                    text(11)?,
                ])
            })
            .map_err(|e| sqlite_error(&self.path, e))?;
        let mut progress = Vec::new();
        for row in rows {
            let cells = row.map_err(|e| sqlite_error(&self.path, e))?;
            progress.extend(TableSet::progress_from_cells(&cells));
        }
        Ok(progress)
    }

    fn progress_sources(&self, dataflow: &str) -> Result<Vec<String>> {
        let Some(connection) = self.progress_reader()? else {
            return Ok(Vec::new());
        };
        let mut statement = connection
            .prepare(&format!(
                "SELECT DISTINCT source FROM {} WHERE dataflow = ?1 ORDER BY source",
                super::tables::PROGRESS_TABLE
            ))
            .map_err(|e| sqlite_error(&self.path, e))?;
        let sources = statement
            .query_map([dataflow], |r| r.get::<_, String>(0))
            .map_err(|e| sqlite_error(&self.path, e))?
            .collect::<rusqlite::Result<Vec<String>>>()
            .map_err(|e| sqlite_error(&self.path, e))?;
        Ok(sources)
    }

    fn describe(&self) -> String {
        format!("sqlite {}", self.path.display())
    }
}

/// The most rows one transaction takes from the queue (it may end a write past it).
///
/// Each commit appends to the WAL every page the transaction dirtied, and with random uuid
/// keys a small transaction dirties about one index page per row. Under load the workers hand
/// over many small writes (about 5 rows each at 100k users/s), so the former cap of 512 writes
/// kept transactions near 2,500 rows while a backlog built. Counted in rows, a backlog makes
/// transactions larger, which write fewer pages per row, and the writer catches up. The cap
/// only bounds one transaction's time and memory (about a second of the writer's work).
/// Measured 2026-12-01, alternating runs: 100k users/s offered, 92.6k and 92.8k users/s
/// achieved against 51-92k; 2M users from files, full dataflow, 20.7-22.2 s against
/// 22.3-25.2 s. A cap of 32,768 rows did about as well at 100k users/s (85-92k) but lost
/// 5-10% on the files.
const MAX_TRANSACTION_ROWS: usize = 131_072;

/// Applies whatever writes have queued up (up to [`MAX_TRANSACTION_ROWS`]) in one
/// transaction, then acknowledges them.
///
/// Within a transaction each table's rows are upserted in primary-key order (a stable sort on
/// the first key column, so two versions of one row keep their order and the last one wins,
/// as it would unsorted): with random uuid keys, neighbouring inserts then touch neighbouring
/// index pages.
fn write_loop(
    mut connection: Connection,
    inserts: &[String],
    deletes: &[String],
    keys: &[usize],
    jobs: mpsc::Receiver<Job>,
) -> rusqlite::Result<()> {
    while let Ok(first) = jobs.recv() {
        let mut rows = first.rows.len();
        let mut batch = vec![first];
        while rows < MAX_TRANSACTION_ROWS {
            match jobs.try_recv() {
                Ok(job) => {
                    rows += job.rows.len();
                    batch.push(job);
                }
                Err(_) => break,
            }
        }
        // Per table, (key cell, row, deletes); a delete's row is its key alone.
        let mut by_table: Vec<Vec<(&Cell, &Vec<Cell>, bool)>> = vec![Vec::new(); inserts.len()];
        for job in &batch {
            let (table, delete) = (job.table & !DELETE, job.table & DELETE != 0);
            let key = if delete { 0 } else { keys[table] };
            by_table[table].extend(job.rows.iter().map(|row| (&row[key], row, delete)));
        }
        let transaction = connection.transaction()?;
        for (table, rows) in by_table.iter_mut().enumerate() {
            // Stable: the writes of one key stay in submission order.
            rows.sort_by(|a, b| key_order(a.0, b.0));
            let mut insert = transaction.prepare_cached(&inserts[table])?;
            let mut delete = transaction.prepare_cached(&deletes[table])?;
            for (i, (key, row, deletes)) in rows.iter().enumerate() {
                if *deletes {
                    delete.execute([key])?;
                } else {
                    insert.execute(params_from_iter(row.iter()))?;
                }
                if table == TableSet::ROWS && i == rows.len() / 2 {
                    crate::failpoint::hit("sink.mid_batch");
                }
            }
        }
        transaction.commit()?;
        crate::failpoint::hit("sink.after_data_write");
        for job in batch {
            (job.ack)();
        }
    }
    Ok(())
}

/// Adds the columns of `table` that a database made by an older Weir lacks (`reason_kind`).
fn add_missing_columns(connection: &Connection, table: &super::Table) -> rusqlite::Result<()> {
    let mut existing = std::collections::HashSet::new();
    let mut info = connection.prepare(&format!("PRAGMA table_info({})", table.name))?;
    let mut rows = info.query([])?;
    while let Some(row) = rows.next()? {
        existing.insert(row.get::<_, String>(1)?);
    }
    for (column, ty) in &table.columns {
        if !existing.contains(column) {
            connection.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {column} {}",
                table.name,
                ty.sql()
            ))?;
            tracing::info!(table = %table.name, column, "column added");
        }
    }
    Ok(())
}

/// Checkpoints the WAL beside the writer: a passive checkpoint (which never blocks the writer)
/// every 100 ms, and a blocking one only if the WAL has nonetheless grown past 256 MiB. Ends
/// when the writer does.
fn checkpoint_loop(
    connection: &Connection,
    writer_stopped: &mpsc::Receiver<()>,
) -> rusqlite::Result<()> {
    // 256 MiB. Measured at 50k users/s: a limit of 16 or 64 MiB blocks the writer more often
    // and raises the p99 latency (146 and 493 ms against 97 ms).
    const WAL_LIMIT_PAGES: i64 = 65_536;
    while let Err(mpsc::RecvTimeoutError::Timeout) =
        writer_stopped.recv_timeout(Duration::from_millis(100))
    {
        let (_busy, wal_pages, _done): (i64, i64, i64) =
            connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
        if wal_pages > WAL_LIMIT_PAGES {
            connection.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
        }
    }
    Ok(())
}

/// The order SQLite's index keeps: uuids as canonical text sort as their 128 bits.
fn key_order(a: &Cell, b: &Cell) -> std::cmp::Ordering {
    match (a, b) {
        (Cell::Uuid(a), Cell::Uuid(b)) => a.cmp(b),
        (Cell::Text(a), Cell::Text(b)) => a.cmp(b),
        (Cell::Bigint(a) | Cell::Timestamp(a), Cell::Bigint(b) | Cell::Timestamp(b)) => a.cmp(b),
        (Cell::Int(a), Cell::Int(b)) => a.cmp(b),
        _ => std::cmp::Ordering::Equal,
    }
}

impl ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Cell::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Cell::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Cell::Int(i) => ToSqlOutput::Owned((*i as i64).into()),
            Cell::Bigint(i) | Cell::Timestamp(i) => ToSqlOutput::Owned((*i).into()),
            Cell::Double(f) => ToSqlOutput::Owned((*f).into()),
            Cell::Boolean(b) => ToSqlOutput::Owned((*b as i64).into()),
            Cell::Uuid(u) => {
                let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
                let text = uuid::Uuid::from_u128(*u)
                    .hyphenated()
                    .encode_lower(&mut text);
                ToSqlOutput::Owned(rusqlite::types::Value::Text(text.to_owned()))
            }
            Cell::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}
