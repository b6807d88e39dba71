//! Table layouts, shared by every store: the same tables in Cassandra and SQLite.
//!
//! | table | primary key | for |
//! |---|---|---|
//! | rows (`created_users`) | `(id)` | the latest record per key |
//! | by_value | `((dataflow, window_name, dimension, value, day), window_start)` | query (a): one value over a time range |
//! | by_window | `((dataflow, window_name, dimension, window_start), value)` | query (b): every value of one window |
//! | dead_letters | `((topic, kafka_partition), kafka_offset)` | bad records, with `reason_kind` and `reason` |
//! | late | `((topic, kafka_partition), kafka_offset)` | late records |
//! | `weir_progress` | `((dataflow, source), kafka_partition)` | resume offsets, watermarks, per-output frontiers and the fingerprint of what wrote them |
//! | `weir_backfills` | `((dataflow, source), kafka_partition, started_at)` | every backfill started, and where (a partial one, when retention removed its start) |
//!
//! `day` (UTC, `YYYY-MM-DD` of `window_start`) bounds each by_value partition to one day of
//! windows (1,440 one-minute windows). All rows are upserts keyed by content, so writing one
//! twice is the same as writing it once.

use compact_str::CompactString;

use crate::operators::window::{AggregateValue, WindowResult};
use crate::progress::PartitionProgress;
use crate::schema::{Record, Value};
use crate::source::{Reject, RejectKind};
use crate::spec::{DataflowSpec, FieldType};

/// A column's type (CQL names; SQLite maps them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    /// text
    Text,
    /// int (32 bits)
    Int,
    /// bigint
    Bigint,
    /// double
    Double,
    /// boolean
    Boolean,
    /// uuid
    Uuid,
    /// timestamp (epoch ms)
    Timestamp,
    /// blob
    Blob,
}

impl ColumnType {
    /// CQL type name.
    pub fn cql(self) -> &'static str {
        match self {
            ColumnType::Text => "text",
            ColumnType::Int => "int",
            ColumnType::Bigint => "bigint",
            ColumnType::Double => "double",
            ColumnType::Boolean => "boolean",
            ColumnType::Uuid => "uuid",
            ColumnType::Timestamp => "timestamp",
            ColumnType::Blob => "blob",
        }
    }

    /// SQLite type name (uuids as canonical text, timestamps as epoch ms).
    pub fn sql(self) -> &'static str {
        match self {
            ColumnType::Text | ColumnType::Uuid => "TEXT",
            ColumnType::Int | ColumnType::Bigint | ColumnType::Boolean | ColumnType::Timestamp => {
                "INTEGER"
            }
            ColumnType::Double => "REAL",
            ColumnType::Blob => "BLOB",
        }
    }

    fn of(field: FieldType) -> Self {
        match field {
            FieldType::Text => ColumnType::Text,
            FieldType::Uuid => ColumnType::Uuid,
            FieldType::Bigint => ColumnType::Bigint,
            FieldType::Double => ColumnType::Double,
            FieldType::Boolean => ColumnType::Boolean,
            FieldType::Timestamp => ColumnType::Timestamp,
        }
    }
}

/// One value to store.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// null
    Null,
    /// text
    Text(CompactString),
    /// int
    Int(i32),
    /// bigint
    Bigint(i64),
    /// double
    Double(f64),
    /// boolean
    Boolean(bool),
    /// uuid
    Uuid(u128),
    /// timestamp, epoch ms
    Timestamp(i64),
    /// blob
    Blob(Vec<u8>),
}

/// A table: columns, partition key and clustering columns (indices into `columns`).
#[derive(Clone, Debug)]
pub struct Table {
    /// Name.
    pub name: String,
    /// (name, type), in insert order.
    pub columns: Vec<(String, ColumnType)>,
    /// Partition key columns.
    pub partition_key: Vec<usize>,
    /// Clustering columns.
    pub clustering: Vec<usize>,
    /// Time to live of every row written (`[tables.ttl]`; Cassandra only).
    pub ttl_seconds: Option<u32>,
    /// Each primary key is written at most once per run (window results, dead letters and
    /// late records: one per window instance and value, one per offset), so a store need
    /// not order this table's writes. Rows (a key arrives again) and progress (rewritten
    /// each interval) are not.
    pub written_once: bool,
}

impl Table {
    fn new(
        name: &str,
        columns: &[(&str, ColumnType)],
        partition_key: &[&str],
        clustering: &[&str],
    ) -> Self {
        let index = |c: &&str| {
            columns
                .iter()
                .position(|(n, _)| n == c)
                .unwrap_or_else(|| panic!("no column {c} in {name}"))
        };
        Table {
            name: name.to_string(),
            columns: columns.iter().map(|(n, t)| (n.to_string(), *t)).collect(),
            partition_key: partition_key.iter().map(index).collect(),
            clustering: clustering.iter().map(index).collect(),
            ttl_seconds: None,
            written_once: false,
        }
    }

    /// The primary key's column indices, partition key first.
    pub fn primary_key(&self) -> impl Iterator<Item = usize> + '_ {
        self.partition_key.iter().chain(&self.clustering).copied()
    }

    /// `CREATE TABLE IF NOT EXISTS` in CQL.
    pub fn cql_create(&self, keyspace: &str) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(n, t)| format!("{n} {}", t.cql()))
            .collect();
        let names = |ix: &[usize]| {
            ix.iter()
                .map(|i| self.columns[*i].0.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut key = format!("({})", names(&self.partition_key));
        if !self.clustering.is_empty() {
            key = format!("{key}, {}", names(&self.clustering));
        }
        format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.{} ({}, PRIMARY KEY ({key}))",
            self.name,
            columns.join(", ")
        )
    }

    /// `CREATE TABLE IF NOT EXISTS` in SQLite.
    pub fn sql_create(&self) -> String {
        let columns: Vec<String> = self
            .columns
            .iter()
            .map(|(n, t)| format!("{n} {}", t.sql()))
            .collect();
        let key: Vec<&str> = self
            .primary_key()
            .map(|i| self.columns[i].0.as_str())
            .collect();
        format!(
            "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY ({}))",
            self.name,
            columns.join(", "),
            key.join(", ")
        )
    }

    /// The column list, comma separated.
    pub fn column_list(&self) -> String {
        self.columns
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The tables of one dataflow, and how records become their rows.
#[derive(Clone, Debug)]
pub struct TableSet {
    /// Indexed by the constants below.
    pub tables: Vec<Table>,
    /// The dataflow (with inputs: the join's view, which names the window rows).
    spec: DataflowSpec,
    /// The input whose records and rejects this set renders ([`TableSet::for_input`]).
    input: DataflowSpec,
    /// Per field of `input`: whether it is a column of its rows table.
    is_column: Vec<bool>,
    /// Where `input`'s rows, dead letters and late records go.
    pub roles: Roles,
}

/// Where one input's rows, dead letters and late records go (indices into
/// [`TableSet::tables`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Its rows table.
    pub rows: usize,
    /// Its dead-letter table.
    pub dead_letters: usize,
    /// Its late-record table.
    pub late: usize,
}

/// A write to `table | DELETE` deletes the rows whose primary keys it carries (each row is
/// the key's cells), in order with the writes to `table`.
pub const DELETE: usize = 1 << 16;

/// Name of the progress table, shared by all dataflows.
pub const PROGRESS_TABLE: &str = "weir_progress";

/// Name of the backfill log, shared by all dataflows.
pub const BACKFILLS_TABLE: &str = "weir_backfills";

impl TableSet {
    /// Index of the rows table.
    pub const ROWS: usize = 0;
    /// Index of the by-value window table.
    pub const BY_VALUE: usize = 1;
    /// Index of the by-window window table.
    pub const BY_WINDOW: usize = 2;
    /// Index of the dead-letter table.
    pub const DEAD_LETTERS: usize = 3;
    /// Index of the late-record table.
    pub const LATE: usize = 4;
    /// Index of the progress table.
    pub const PROGRESS: usize = 5;
    /// Index of the backfill log.
    pub const BACKFILLS: usize = 6;

    /// The tables of `spec`: for a single input, the seven tables at the indices above; with
    /// `[[inputs]]`, those of the stream input (its rows, dead letters and late records at
    /// [`Self::ROWS`], [`Self::DEAD_LETTERS`], [`Self::LATE`]), then the other input's three,
    /// then the inner join's unmatched table.
    pub fn new(spec: &DataflowSpec) -> Self {
        let Some(join) = spec.join.as_deref() else {
            return Self::single(spec, spec);
        };
        let stream = &join.inputs[join.left].spec;
        let mut set = Self::single(spec, stream);
        for (i, input) in join.inputs.iter().enumerate() {
            if i == join.left {
                continue;
            }
            let own = Self::single(&input.spec, &input.spec).tables;
            set.tables
                .extend([Self::ROWS, Self::DEAD_LETTERS, Self::LATE].map(|role| own[role].clone()));
        }
        if let Some(name) = &join.unmatched {
            let mut t = Table::new(
                name,
                &[
                    ("topic", ColumnType::Text),
                    ("kafka_partition", ColumnType::Int),
                    ("kafka_offset", ColumnType::Bigint),
                    ("join_key", ColumnType::Text),
                ],
                &["topic", "kafka_partition"],
                &["kafka_offset"],
            );
            t.written_once = true;
            set.tables.push(t);
        }
        set
    }

    /// The rows, dead-letter and late tables of input `input` of a dataflow with
    /// `[[inputs]]` (the stream input's are [`Self::ROWS`], ...), rendering its records; the
    /// set itself for a single-input dataflow.
    pub fn for_input(&self, input: usize) -> TableSet {
        let Some(join) = self.spec.join.as_deref() else {
            return self.clone();
        };
        let spec = &join.inputs[input].spec;
        let mut set = self.clone();
        set.input = spec.clone();
        set.is_column = spec.fields.iter().map(|f| f.column).collect();
        if input != join.left {
            let at = Self::BACKFILLS + 1 + 3 * (input - usize::from(input > join.left));
            set.roles = Roles {
                rows: at,
                dead_letters: at + 1,
                late: at + 2,
            };
        }
        set
    }

    /// The inner join's unmatched table, if any.
    pub fn unmatched(&self) -> Option<usize> {
        let join = self.spec.join.as_deref()?;
        join.unmatched
            .as_ref()
            .map(|_| Self::BACKFILLS + 1 + 3 * (join.inputs.len() - 1))
    }

    /// The seven tables of one input (`input`: rows, dead letters, late) and its dataflow
    /// (`spec`: window tables).
    fn single(spec: &DataflowSpec, input: &DataflowSpec) -> Self {
        use ColumnType::*;
        let t = &input.tables;
        let row_columns: Vec<(&str, ColumnType)> = input
            .columns()
            .map(|(_, f)| (f.name.as_str(), ColumnType::of(f.ty)))
            .collect();
        let key = input.fields[input.key].name.as_str();
        let aggregates: Vec<(&str, ColumnType)> = spec
            .aggregates
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    if a.function.cql() == "bigint" {
                        Bigint
                    } else {
                        Double
                    },
                )
            })
            .collect();
        let mut by_value = vec![
            ("dataflow", Text),
            ("window_name", Text),
            ("dimension", Text),
            ("value", Text),
            ("day", Text),
            ("window_start", Timestamp),
            ("window_end", Timestamp),
        ];
        by_value.extend(aggregates.iter().copied());
        let mut by_window = vec![
            ("dataflow", Text),
            ("window_name", Text),
            ("dimension", Text),
            ("window_start", Timestamp),
            ("value", Text),
            ("window_end", Timestamp),
        ];
        by_window.extend(aggregates.iter().copied());
        let rejects = |late: bool| {
            let mut c = vec![
                ("topic", Text),
                ("kafka_partition", Int),
                ("kafka_offset", Bigint),
            ];
            if late {
                c.extend([("event_time", Timestamp), ("watermark", Timestamp)]);
            } else {
                c.extend([("reason_kind", Text), ("reason", Text)]);
            }
            c.extend([("payload", Blob), ("payload_size", Bigint)]);
            c
        };
        let tables = vec![
            Table::new(&t.rows, &row_columns, &[key], &[]),
            Table::new(
                &t.by_value,
                &by_value,
                &["dataflow", "window_name", "dimension", "value", "day"],
                &["window_start"],
            ),
            Table::new(
                &t.by_window,
                &by_window,
                &["dataflow", "window_name", "dimension", "window_start"],
                &["value"],
            ),
            Table::new(
                &t.dead_letters,
                &rejects(false),
                &["topic", "kafka_partition"],
                &["kafka_offset"],
            ),
            Table::new(
                &t.late,
                &rejects(true),
                &["topic", "kafka_partition"],
                &["kafka_offset"],
            ),
            Table::new(
                PROGRESS_TABLE,
                &[
                    ("dataflow", Text),
                    ("source", Text),
                    ("kafka_partition", Int),
                    ("resume_offset", Bigint),
                    ("watermark", Bigint),
                    ("durable_frontier", Bigint),
                    ("epoch", Bigint),
                    ("updated_at", Timestamp),
                    ("start_offset", Bigint),
                    ("rows_from", Bigint),
                    ("unit_frontiers", Text),
                    ("fingerprint", Text),
                    ("definition", Text),
                ],
                &["dataflow", "source"],
                &["kafka_partition"],
            ),
            Table::new(
                BACKFILLS_TABLE,
                &[
                    ("dataflow", Text),
                    ("source", Text),
                    ("kafka_partition", Int),
                    ("started_at", Timestamp),
                    ("wanted_offset", Bigint),
                    ("from_offset", Bigint),
                    ("rows_from", Bigint),
                    ("partial", Boolean),
                    ("changes", Text),
                ],
                &["dataflow", "source"],
                &["kafka_partition", "started_at"],
            ),
        ];
        let mut tables = tables;
        let ttl = &t.ttl;
        for (table, ttl) in tables.iter_mut().zip([
            ttl.rows,
            ttl.by_value,
            ttl.by_window,
            ttl.dead_letters,
            ttl.late,
        ]) {
            table.ttl_seconds = ttl.map(|t| t.seconds());
        }
        for table in [
            Self::BY_VALUE,
            Self::BY_WINDOW,
            Self::DEAD_LETTERS,
            Self::LATE,
        ] {
            tables[table].written_once = true;
        }
        TableSet {
            tables,
            spec: spec.clone(),
            input: input.clone(),
            is_column: input.fields.iter().map(|f| f.column).collect(),
            roles: Roles {
                rows: Self::ROWS,
                dead_letters: Self::DEAD_LETTERS,
                late: Self::LATE,
            },
        }
    }

    /// A record's row.
    pub fn row_cells(&self, record: &Record) -> Vec<Cell> {
        self.into_row_cells(record.clone())
    }

    /// A record's row, moving its values (the sink's hot path: no string is copied, and as
    /// `Value` and `Cell` have one size, the row reuses the record's vector).
    pub fn into_row_cells(&self, record: Record) -> Vec<Cell> {
        record
            .values
            .into_iter()
            .enumerate()
            .filter(|(i, _)| self.is_column[*i])
            .map(|(_, v)| value_cell(v))
            .collect()
    }

    /// A deleted record's primary key, as the rows table orders its key columns (the key
    /// field is the rows table's only key column).
    pub fn key_cells(&self, record: &Record) -> Vec<Cell> {
        vec![value_cell(record.values[self.input.key].clone())]
    }

    /// An unmatched stream record's row in the inner join's unmatched table.
    pub fn unmatched_cells(&self, record: &Record, join_key: &str) -> Vec<Cell> {
        vec![
            Cell::Text(self.input.topic.as_str().into()),
            Cell::Int(record.partition),
            Cell::Bigint(record.offset),
            Cell::Text(join_key.into()),
        ]
    }

    /// A reject's row; `true` for a dead letter, `false` for a late record.
    pub fn reject_cells(&self, reject: &Reject) -> (bool, Vec<Cell>) {
        let mut cells = vec![
            Cell::Text(self.input.topic.as_str().into()),
            Cell::Int(reject.partition),
            Cell::Bigint(reject.offset),
        ];
        let dead = match &reject.kind {
            RejectKind::DeadLetter { reason } => {
                cells.push(Cell::Text(reason.kind.as_str().into()));
                cells.push(Cell::Text(reason.detail.as_str().into()));
                true
            }
            RejectKind::Late {
                event_time,
                watermark,
            } => {
                cells.extend([
                    Cell::Timestamp(*event_time as i64),
                    Cell::Timestamp(*watermark as i64),
                ]);
                false
            }
        };
        cells.extend([
            Cell::Blob(reject.payload.clone()),
            Cell::Bigint(reject.size as i64),
        ]);
        (dead, cells)
    }

    fn names(&self, w: &WindowResult) -> (Cell, Cell, Cell) {
        (
            Cell::Text(self.spec.name.as_str().into()),
            Cell::Text(self.spec.windows[w.window as usize].name.as_str().into()),
            Cell::Text(
                self.spec.fields[self.spec.dimensions[w.dimension as usize]]
                    .name
                    .as_str()
                    .into(),
            ),
        )
    }

    /// A window result's row in the by-value table.
    pub fn by_value_cells(&self, w: &WindowResult) -> Vec<Cell> {
        let (dataflow, window, dimension) = self.names(w);
        let mut cells = vec![
            dataflow,
            window,
            dimension,
            Cell::Text(w.value.as_str().into()),
            Cell::Text(crate::time::day(w.start).into()),
            Cell::Timestamp(w.start as i64),
            Cell::Timestamp(w.end as i64),
        ];
        cells.extend(w.aggregates.iter().map(aggregate_cell));
        cells
    }

    /// A window result's row in the by-window table.
    pub fn by_window_cells(&self, w: &WindowResult) -> Vec<Cell> {
        let (dataflow, window, dimension) = self.names(w);
        let mut cells = vec![
            dataflow,
            window,
            dimension,
            Cell::Timestamp(w.start as i64),
            Cell::Text(w.value.as_str().into()),
            Cell::Timestamp(w.end as i64),
        ];
        cells.extend(w.aggregates.iter().map(aggregate_cell));
        cells
    }

    /// A progress record's row.
    pub fn progress_cells(&self, source: &str, p: &PartitionProgress) -> Vec<Cell> {
        vec![
            Cell::Text(self.spec.name.as_str().into()),
            Cell::Text(source.into()),
            Cell::Int(p.partition),
            Cell::Bigint(p.resume_offset),
            Cell::Bigint(p.watermark.min(i64::MAX as u64) as i64),
            Cell::Bigint(p.durable_frontier.min(i64::MAX as u64) as i64),
            Cell::Bigint(p.epoch),
            Cell::Timestamp(crate::time::now_ms() as i64),
            p.start_offset.map_or(Cell::Null, Cell::Bigint),
            Cell::Bigint(p.rows_from),
            Cell::Text(serde_json::to_string(&p.units).unwrap_or_default().into()),
            p.definition
                .as_ref()
                .map_or(Cell::Null, |(f, _)| Cell::Text(f.as_str().into())),
            p.definition
                .as_ref()
                .map_or(Cell::Null, |(_, d)| Cell::Text(d.as_str().into())),
        ]
    }

    /// The columns [`TableSet::progress_from_cells`] reads, in its order.
    pub const PROGRESS_COLUMNS: &'static str = "dataflow, source, kafka_partition, resume_offset, watermark, durable_frontier, epoch, start_offset, rows_from, unit_frontiers, fingerprint, definition";

    /// A backfill's row: `partition` replays from `from` (it wanted `wanted`: the start of its
    /// history; less than `from` when retention removed it) up to `rows_from`.
    pub fn backfill_cells(
        &self,
        source: &str,
        partition: i32,
        wanted: Option<i64>,
        from: Option<i64>,
        rows_from: i64,
        changes: &str,
    ) -> Vec<Cell> {
        let opt = |v: Option<i64>| v.map_or(Cell::Null, Cell::Bigint);
        vec![
            Cell::Text(self.spec.name.as_str().into()),
            Cell::Text(source.into()),
            Cell::Int(partition),
            Cell::Timestamp(crate::time::now_ms() as i64),
            opt(wanted),
            opt(from),
            if rows_from == i64::MIN {
                Cell::Null
            } else {
                Cell::Bigint(rows_from)
            },
            Cell::Boolean(matches!((wanted, from), (Some(w), Some(f)) if f > w)),
            Cell::Text(changes.into()),
        ]
    }

    /// Reads a progress record back from its row (in [`TableSet::PROGRESS_COLUMNS`] order;
    /// the columns added with fingerprints are null in rows written before them).
    pub fn progress_from_cells(cells: &[Cell]) -> Option<PartitionProgress> {
        let int = |c: &Cell| match c {
            Cell::Bigint(v) => Some(*v),
            Cell::Int(v) => Some(*v as i64),
            _ => None,
        };
        let text = |i: usize| match cells.get(i) {
            Some(Cell::Text(t)) => Some(t.to_string()),
            _ => None,
        };
        let frontier = int(&cells[5])?;
        let definition = match (text(10), text(11)) {
            (Some(f), Some(d)) => Some((f, d)),
            _ => None,
        };
        Some(PartitionProgress {
            start_offset: cells.get(7).and_then(int),
            rows_from: cells.get(8).and_then(int).unwrap_or(i64::MIN),
            units: text(9)
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or_default(),
            definition,
            partition: int(&cells[2])? as i32,
            resume_offset: int(&cells[3])?,
            watermark: int(&cells[4])? as u64,
            durable_frontier: if frontier == i64::MAX {
                u64::MAX
            } else {
                frontier as u64
            },
            epoch: int(&cells[6])?,
        })
    }
}

fn value_cell(v: Value) -> Cell {
    match v {
        Value::Null => Cell::Null,
        Value::Text(s) => Cell::Text(s),
        Value::Uuid(u) => Cell::Uuid(u),
        Value::Int(i) => Cell::Bigint(i),
        Value::Float(f) => Cell::Double(f),
        Value::Bool(b) => Cell::Boolean(b),
        Value::Timestamp(t) => Cell::Timestamp(t),
    }
}

fn aggregate_cell(a: &AggregateValue) -> Cell {
    match a {
        AggregateValue::Int(n) => Cell::Bigint(*n),
        AggregateValue::Float(Some(x)) => Cell::Double(*x),
        AggregateValue::Float(None) => Cell::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_reuse_the_record_vector() {
        // The in-place collect in `into_row_cells` needs equal sizes and alignments.
        assert_eq!(std::mem::size_of::<Value>(), std::mem::size_of::<Cell>());
        assert_eq!(std::mem::align_of::<Value>(), std::mem::align_of::<Cell>());
    }

    #[test]
    fn created_users_matches_the_tutorial() {
        let spec =
            DataflowSpec::load(std::path::Path::new("dataflows/users_created.toml")).unwrap();
        let t = TableSet::new(&spec);
        assert_eq!(
            t.tables[TableSet::ROWS].cql_create("spark_streams"),
            "CREATE TABLE IF NOT EXISTS spark_streams.created_users (id uuid, first_name text, last_name text, gender text, \
             address text, post_code text, email text, username text, dob text, registered_date text, phone text, picture text, \
             PRIMARY KEY ((id)))"
        );
        assert!(t.tables[TableSet::BY_VALUE].cql_create("ks").ends_with(
            "PRIMARY KEY ((dataflow, window_name, dimension, value, day), window_start))"
        ));
    }
}
