//! Dataflow specifications: the `dataflows/*.toml` files.
//!
//! A spec names the source topic, the schema (fields, types, JSON paths, required or not), the
//! record key, the event time, the allowed lateness, the windows, the dimensions, the
//! aggregates and the target tables. [`DataflowSpec::load`] parses and validates a file; every
//! error names the file, the line and the field, so `weir check FILE` can point at the mistake.
//! Nothing here does I/O beyond reading the file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::time::WindowSpec;

/// A field's type, named as in CQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// UTF-8 text (`text` in CQL and SQLite). Numbers are accepted and kept as their text.
    Text,
    /// A UUID in its canonical text form (`uuid` in CQL, text in SQLite).
    Uuid,
    /// A 64-bit integer.
    Bigint,
    /// A 64-bit float.
    Double,
    /// true or false.
    Boolean,
    /// RFC 3339 text or epoch milliseconds (`timestamp` in CQL, integer milliseconds in SQLite).
    Timestamp,
}

impl FieldType {
    /// The CQL type of a column holding this field.
    pub fn cql(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Uuid => "uuid",
            FieldType::Bigint => "bigint",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
            FieldType::Timestamp => "timestamp",
        }
    }
}

/// One field of the schema.
#[derive(Clone, Debug)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Dotted JSON path into the record, e.g. `["name", "first"]`.
    pub path: Vec<String>,
    /// Type of the value.
    pub ty: FieldType,
    /// A record without this field is a bad record.
    pub required: bool,
    /// Whether the rows table stores it.
    pub column: bool,
}

/// Where a record's event time comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventTime {
    /// The field at this index of [`DataflowSpec::fields`] (a `timestamp` or `bigint`).
    Field(usize),
    /// The Kafka message timestamp (or the generator's equivalent).
    MessageTimestamp,
}

/// An aggregate function computed per window and dimension value.
#[derive(Clone, Debug, PartialEq)]
pub enum AggregateFn {
    /// Number of records, duplicates included.
    Count,
    /// Exact number of distinct keys.
    CountDistinct,
    /// Sum of a numeric field (index into the fields).
    Sum(usize),
    /// Minimum of a numeric field.
    Min(usize),
    /// Maximum of a numeric field.
    Max(usize),
}

impl AggregateFn {
    /// The CQL type of the aggregate's column.
    pub fn cql(&self) -> &'static str {
        match self {
            AggregateFn::Count | AggregateFn::CountDistinct => "bigint",
            _ => "double",
        }
    }

    /// The numeric field it reads (sum, min and max), if any.
    pub fn field(&self) -> Option<usize> {
        match self {
            AggregateFn::Sum(f) | AggregateFn::Min(f) | AggregateFn::Max(f) => Some(*f),
            AggregateFn::Count | AggregateFn::CountDistinct => None,
        }
    }
}

/// A named aggregate.
#[derive(Clone, Debug)]
pub struct Aggregate {
    /// Column name in the window tables.
    pub name: String,
    /// What it computes.
    pub function: AggregateFn,
}

/// A named window.
#[derive(Clone, Debug)]
pub struct Window {
    /// The value of the `window` column, e.g. `1m`.
    pub name: String,
    /// Size and slide.
    pub spec: WindowSpec,
}

/// Target table names.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tables {
    /// One row per key: the latest record.
    pub rows: String,
    /// Window results for query (a): one dimension value over a time range.
    pub by_value: String,
    /// Window results for query (b): every value of a dimension for one window.
    pub by_window: String,
    /// Bad records.
    pub dead_letters: String,
    /// Late records.
    pub late: String,
    /// How long Cassandra keeps each table's rows (`[tables.ttl]`, e.g. `dead_letters = "30d"`);
    /// none by default. The SQLite sink keeps rows.
    #[serde(default)]
    pub ttl: TableTtl,
}

/// Optional time to live per table, by the table's role in `[tables]`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableTtl {
    /// The rows table.
    pub rows: Option<Ttl>,
    /// The by-value window table.
    pub by_value: Option<Ttl>,
    /// The by-window window table.
    pub by_window: Option<Ttl>,
    /// Dead letters.
    pub dead_letters: Option<Ttl>,
    /// Late records.
    pub late: Option<Ttl>,
}

impl Tables {
    /// The five table names.
    pub fn names(&self) -> [&String; 5] {
        [
            &self.rows,
            &self.by_value,
            &self.by_window,
            &self.dead_letters,
            &self.late,
        ]
    }
}

impl TableTtl {
    /// Whether any table has a TTL.
    pub fn any(&self) -> bool {
        [
            self.rows,
            self.by_value,
            self.by_window,
            self.dead_letters,
            self.late,
        ]
        .iter()
        .any(Option::is_some)
    }
}

/// A time to live: whole seconds, from 1 s to Cassandra's maximum of 20 years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl(u32);

impl Ttl {
    /// Cassandra's largest TTL (`MAX_TTL`, 20 years).
    pub const MAX_SECONDS: u32 = 630_720_000;

    /// Seconds.
    pub fn seconds(self) -> u32 {
        self.0
    }
}

impl std::str::FromStr for Ttl {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let d = parse_duration(text)?;
        if d.subsec_nanos() != 0 || d.as_secs() == 0 || d.as_secs() > u64::from(Self::MAX_SECONDS) {
            return Err(format!(
                "ttl {text:?}: a TTL is whole seconds from 1s to 20 years (Cassandra's limit)"
            ));
        }
        Ok(Ttl(d.as_secs() as u32))
    }
}

impl<'de> Deserialize<'de> for Ttl {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A validated dataflow.
#[derive(Clone, Debug)]
pub struct DataflowSpec {
    /// Name, stored in every window row and progress record.
    pub name: String,
    /// The Kafka topic.
    pub topic: String,
    /// Schema, in column order.
    pub fields: Vec<Field>,
    /// Index of the key field.
    pub key: usize,
    /// Event time.
    pub event_time: EventTime,
    /// Allowed lateness in milliseconds.
    pub allowed_lateness_ms: u64,
    /// Idle timeout, if any.
    pub idle_timeout: Option<Duration>,
    /// Windows.
    pub windows: Vec<Window>,
    /// Indices of the dimension fields.
    pub dimensions: Vec<usize>,
    /// Aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Tables.
    pub tables: Tables,
    /// The file it came from.
    pub path: PathBuf,
    /// With `[[inputs]]`: the inputs and how they meet. This spec is then the join's *view*:
    /// its fields are every input's fields named `input.field` (stream first), its key the
    /// join field, and its windows, dimensions and aggregates are over the joined records;
    /// its topic and rows, dead-letter and late tables are the stream input's.
    pub join: Option<Box<Join>>,
    /// Its records' windows are final this long after their event time: an interval join's
    /// right input, whose records count in the windows of left records up to `-lower` later.
    pub retire_after_ms: u64,
    /// A table input's declared delete marker: a record whose field has one of these labels
    /// deletes its key, as a tombstone does.
    pub delete_marker: Option<Select>,
}

/// What an input is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// Every record is an event.
    #[default]
    Stream,
    /// The latest version of each key as of event time; a tombstone (null value) deletes it.
    Table,
}

impl InputKind {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            InputKind::Stream => "stream",
            InputKind::Table => "table",
        }
    }
}

/// One named input of a dataflow with `[[inputs]]`.
#[derive(Clone, Debug)]
pub struct Input {
    /// Its name (`events`, `users`): view fields are `name.field`.
    pub name: String,
    /// Stream or table.
    pub kind: InputKind,
    /// It as a single-input dataflow: topic, schema, key, event time, lateness, and its rows,
    /// dead-letter and late tables (the inputs that are not tables also carry the windows,
    /// which decide when their offsets retire).
    pub spec: DataflowSpec,
    /// Only these records take part in the join (all are rows, dead letters or late records
    /// as usual).
    pub select: Option<Select>,
}

/// `select = { field = "type", values = ["purchase"] }`: the records whose field, as a label
/// (text as is, numbers in decimal, null as `null`), is one of the values.
#[derive(Clone, Debug)]
pub struct Select {
    /// Index into the input's fields.
    pub field: usize,
    /// The labels that take part.
    pub values: Vec<String>,
}

/// How two inputs meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    /// Each stream record meets the table's version of its key as of its event time
    /// ([`crate::operators::asof`]).
    AsOf,
    /// Each left record meets the right records of its key whose event time is within
    /// `[left + lower, left + upper]` ([`crate::operators::interval`]).
    Interval {
        /// Milliseconds, may be negative.
        lower_ms: i64,
        /// Milliseconds.
        upper_ms: u64,
    },
}

/// A join of two inputs: as of time (a stream with a table), or within an interval (two
/// streams).
#[derive(Clone, Debug)]
pub struct Join {
    /// How they meet.
    pub kind: JoinKind,
    /// Both inputs, in file order.
    pub inputs: Vec<Input>,
    /// Index of the left input (an as-of join's stream): its records are the view's.
    pub left: usize,
    /// Index of the right input (an as-of join's table).
    pub right: usize,
    /// The left's join field (an index into its fields; also the view's key).
    pub on: usize,
    /// The right's join field (an as-of join's: the table's key).
    pub right_on: usize,
    /// Inner (unmatched left records go to `unmatched`) or left (they meet nulls).
    pub inner: bool,
    /// The table of the inner join's unmatched stream records.
    pub unmatched: Option<String>,
}

/// A dataflow file that cannot be used, with the place and a hint.
#[derive(Debug, thiserror::Error)]
#[error("{path}{}: {message}", .line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct SpecError {
    /// The file.
    pub path: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong and what to do.
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Spanned<String>,
    // A single-input file declares its source at the top level; a file with `[[inputs]]`
    // declares it per input.
    topic: Option<String>,
    key: Option<Spanned<String>>,
    #[serde(default = "default_lateness")]
    allowed_lateness: Spanned<String>,
    #[serde(default)]
    idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    dimensions: Vec<Spanned<String>>,
    event_time: Option<Spanned<RawEventTime>>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
    #[serde(default)]
    windows: Vec<Spanned<RawWindow>>,
    #[serde(default)]
    aggregates: Vec<Spanned<RawAggregate>>,
    tables: Spanned<RawTables>,
    #[serde(default)]
    inputs: Vec<Spanned<RawInput>>,
    join: Option<Spanned<RawJoin>>,
}

/// `[tables]`: all five for a single-input file; the window tables only with `[[inputs]]`
/// (each input names its own rows, dead-letter and late tables).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTables {
    rows: Option<String>,
    by_value: String,
    by_window: String,
    dead_letters: Option<String>,
    late: Option<String>,
    #[serde(default)]
    ttl: TableTtl,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: Spanned<String>,
    topic: String,
    #[serde(default)]
    kind: InputKind,
    key: Spanned<String>,
    #[serde(default = "default_lateness")]
    allowed_lateness: Spanned<String>,
    #[serde(default)]
    idle_timeout: Option<Spanned<String>>,
    event_time: Spanned<RawEventTime>,
    fields: Vec<Spanned<RawField>>,
    tables: RawInputTables,
    select: Option<Spanned<RawSelect>>,
    delete_marker: Option<Spanned<RawSelect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSelect {
    field: String,
    values: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInputTables {
    rows: String,
    dead_letters: String,
    late: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJoin {
    kind: Spanned<String>,
    /// As-of joins: the stream (`left` also names it).
    stream: Option<Spanned<String>>,
    /// As-of joins: the table (`right` also names it).
    table: Option<Spanned<String>>,
    left: Option<Spanned<String>>,
    right: Option<Spanned<String>>,
    on: Spanned<String>,
    right_on: Option<Spanned<String>>,
    lower: Option<Spanned<String>>,
    upper: Option<Spanned<String>>,
    #[serde(rename = "type", default = "default_join_type")]
    ty: Spanned<String>,
    unmatched: Option<Spanned<String>>,
}

fn default_join_type() -> Spanned<String> {
    Spanned::new(0..0, "left".to_string())
}

fn default_lateness() -> Spanned<String> {
    Spanned::new(0..0, "5s".to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventTime {
    field: Option<String>,
    source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    path: Option<String>,
    #[serde(rename = "type")]
    ty: FieldType,
    #[serde(default)]
    required: bool,
    #[serde(default = "yes")]
    column: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindow {
    name: String,
    size: String,
    slide: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAggregate {
    name: String,
    function: String,
    field: Option<String>,
}

/// Is `s` usable as a CQL/SQL identifier without quoting?
fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Makes errors that name the file and the line of a span.
struct Errs<'t> {
    shown: String,
    text: &'t str,
}

impl Errs<'_> {
    fn at(&self, span: Option<std::ops::Range<usize>>, message: String) -> SpecError {
        let text = self.text;
        SpecError {
            path: self.shown.clone(),
            line: span
                .filter(|s| s.end > 0)
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1),
            message,
        }
    }
}

/// What one source's part of a file declares: schema, key, event time, lateness.
struct Source {
    fields: Vec<Field>,
    key: usize,
    event_time: EventTime,
    allowed_lateness_ms: u64,
    idle_timeout: Option<Duration>,
}

/// The raw text of one source's part (the top level of a single-input file, or an input).
struct RawSource<'r> {
    /// `input "NAME": ` for an input, empty at the top level.
    what: String,
    fields: &'r [Spanned<RawField>],
    key: &'r Spanned<String>,
    event_time: &'r Spanned<RawEventTime>,
    allowed_lateness: &'r Spanned<String>,
    idle_timeout: &'r Option<Spanned<String>>,
}

impl RawSource<'_> {
    fn parse(&self, e: &Errs) -> Result<Source, SpecError> {
        let what = &self.what;
        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        for f in self.fields {
            let span = Some(f.span());
            let f = f.get_ref();
            if !is_identifier(&f.name) {
                return Err(e.at(
                    span,
                    format!(
                        "{what}field name {:?} must be lower_snake_case (it is a column name)",
                        f.name
                    ),
                ));
            }
            if !seen.insert(f.name.clone()) {
                return Err(e.at(span, format!("{what}field {:?} is declared twice", f.name)));
            }
            let path_text = f.path.clone().unwrap_or_else(|| f.name.clone());
            let path: Vec<String> = path_text.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(e.at(
                    span,
                    format!(
                        "{what}field {:?}: path {path_text:?} has an empty segment",
                        f.name
                    ),
                ));
            }
            fields.push(Field {
                name: f.name.clone(),
                path,
                ty: f.ty,
                required: f.required,
                column: f.column,
            });
        }
        if fields.is_empty() {
            return Err(e.at(None, format!("{what}the schema has no fields")));
        }
        let field_index = |name: &str| fields.iter().position(|f| f.name == name);

        let key = field_index(self.key.get_ref()).ok_or_else(|| {
            e.at(
                Some(self.key.span()),
                format!("{what}key {:?} is not a declared field", self.key.get_ref()),
            )
        })?;
        if !fields[key].required
            || !matches!(
                fields[key].ty,
                FieldType::Uuid | FieldType::Text | FieldType::Bigint
            )
        {
            return Err(e.at(
                Some(self.key.span()),
                format!(
                    "{what}key field {:?} must be required and of type uuid, text or bigint",
                    fields[key].name
                ),
            ));
        }
        if !fields[key].column {
            return Err(e.at(
                Some(self.key.span()),
                format!("{what}the key field must be a column (it is the primary key)"),
            ));
        }

        let et = self.event_time.get_ref();
        let event_time = match (&et.field, et.source.as_deref()) {
            (Some(name), None) => {
                let i = field_index(name).ok_or_else(|| {
                    e.at(
                        Some(self.event_time.span()),
                        format!("{what}event_time field {name:?} is not a declared field"),
                    )
                })?;
                if !matches!(fields[i].ty, FieldType::Timestamp | FieldType::Bigint)
                    || !fields[i].required
                {
                    return Err(e.at(
                        Some(self.event_time.span()),
                        format!("{what}event_time field {name:?} must be required and of type timestamp or bigint"),
                    ));
                }
                EventTime::Field(i)
            }
            (None, Some("message_timestamp")) => EventTime::MessageTimestamp,
            _ => return Err(e.at(
                Some(self.event_time.span()),
                format!("{what}event_time needs either `field = \"NAME\"` or `source = \"message_timestamp\"`"),
            )),
        };

        let allowed_lateness_ms = parse_duration(self.allowed_lateness.get_ref())
            .map_err(|m| {
                e.at(
                    Some(self.allowed_lateness.span()),
                    format!("{what}allowed_lateness: {m}"),
                )
            })?
            .as_millis() as u64;
        let idle_timeout = match self.idle_timeout {
            None => None,
            Some(s) if s.get_ref() == "off" => None,
            Some(s) => Some(
                parse_duration(s.get_ref())
                    .map_err(|m| e.at(Some(s.span()), format!("{what}idle_timeout: {m}")))?,
            ),
        };
        Ok(Source {
            fields,
            key,
            event_time,
            allowed_lateness_ms,
            idle_timeout,
        })
    }
}

/// Windows, dimensions and aggregates, over `fields` (a source's, or a join's view).
type Outputs = (Vec<Window>, Vec<usize>, Vec<Aggregate>);

fn parse_outputs(raw: &RawSpec, fields: &[Field], e: &Errs) -> Result<Outputs, SpecError> {
    let field_index = |name: &str| fields.iter().position(|f| f.name == name);
    let mut windows = Vec::new();
    let mut window_names = HashSet::new();
    for w in &raw.windows {
        let span = Some(w.span());
        let w = w.get_ref();
        let size = parse_duration(&w.size)
            .map_err(|m| e.at(span.clone(), format!("window {:?}: size: {m}", w.name)))?;
        let slide = match &w.slide {
            Some(s) => parse_duration(s)
                .map_err(|m| e.at(span.clone(), format!("window {:?}: slide: {m}", w.name)))?,
            None => size,
        };
        let spec = WindowSpec::new(size.as_millis() as u64, slide.as_millis() as u64)
            .map_err(|m| e.at(span.clone(), format!("window {:?}: {m}", w.name)))?;
        if !window_names.insert(w.name.clone()) {
            return Err(e.at(span, format!("window {:?} is declared twice", w.name)));
        }
        windows.push(Window {
            name: w.name.clone(),
            spec,
        });
    }

    let mut dimensions = Vec::new();
    for d in &raw.dimensions {
        let i = field_index(d.get_ref()).ok_or_else(|| {
            e.at(
                Some(d.span()),
                format!("dimension {:?} is not a declared field", d.get_ref()),
            )
        })?;
        if matches!(fields[i].ty, FieldType::Double) {
            return Err(e.at(
                Some(d.span()),
                format!(
                    "dimension {:?} is a double; use text, bigint or boolean",
                    d.get_ref()
                ),
            ));
        }
        dimensions.push(i);
    }

    let mut aggregates = Vec::new();
    for a in &raw.aggregates {
        let span = Some(a.span());
        let a = a.get_ref();
        if !is_identifier(&a.name) {
            return Err(e.at(
                span,
                format!("aggregate name {:?} must be lower_snake_case", a.name),
            ));
        }
        let numeric_field = |what: &str| -> Result<usize, SpecError> {
            let name = a.field.as_deref().ok_or_else(|| {
                e.at(
                    span.clone(),
                    format!("aggregate {:?}: {what} needs `field = \"NAME\"`", a.name),
                )
            })?;
            let i = field_index(name).ok_or_else(|| {
                e.at(
                    span.clone(),
                    format!(
                        "aggregate {:?}: field {name:?} is not a declared field",
                        a.name
                    ),
                )
            })?;
            if !matches!(fields[i].ty, FieldType::Bigint | FieldType::Double) {
                return Err(e.at(
                    span.clone(),
                    format!(
                        "aggregate {:?}: field {name:?} must be bigint or double",
                        a.name
                    ),
                ));
            }
            Ok(i)
        };
        let function = match a.function.as_str() {
            "count" => AggregateFn::Count,
            "count_distinct" => AggregateFn::CountDistinct,
            "sum" => AggregateFn::Sum(numeric_field("sum")?),
            "min" => AggregateFn::Min(numeric_field("min")?),
            "max" => AggregateFn::Max(numeric_field("max")?),
            other => {
                return Err(e.at(
                    span,
                    format!("aggregate {:?}: unknown function {other:?} (use count, count_distinct, sum, min or max)", a.name),
                ))
            }
        };
        if matches!(function, AggregateFn::Count | AggregateFn::CountDistinct) && a.field.is_some()
        {
            return Err(e.at(
                span,
                format!(
                    "aggregate {:?}: {} takes no field (count_distinct counts distinct keys)",
                    a.name, a.function
                ),
            ));
        }
        aggregates.push(Aggregate {
            name: a.name.clone(),
            function,
        });
    }
    if !windows.is_empty() && (aggregates.is_empty() || dimensions.is_empty()) {
        return Err(e.at(
            None,
            "windows need at least one dimension and one aggregate".into(),
        ));
    }
    let reserved = [
        "dataflow",
        "window_name",
        "dimension",
        "value",
        "day",
        "window_start",
        "window_end",
    ];
    if let Some(a) = aggregates
        .iter()
        .find(|a| reserved.contains(&a.name.as_str()))
    {
        return Err(e.at(
            None,
            format!(
                "aggregate name {:?} is reserved for a window-table column",
                a.name
            ),
        ));
    }
    Ok((windows, dimensions, aggregates))
}

/// Every table name must be a plain identifier, and no two roles may share a table.
fn check_table_names<'a>(
    names: impl IntoIterator<Item = &'a String>,
    e: &Errs,
    span: std::ops::Range<usize>,
) -> Result<(), SpecError> {
    let mut seen = HashSet::new();
    for table in names {
        if !is_identifier(table) {
            return Err(e.at(
                Some(span.clone()),
                format!("table name {table:?} must be lower_snake_case"),
            ));
        }
        if !seen.insert(table.as_str()) {
            return Err(e.at(
                Some(span.clone()),
                format!("table {table:?} is named for two roles; give each its own table"),
            ));
        }
    }
    Ok(())
}

impl DataflowSpec {
    /// Reads and validates a dataflow file.
    pub fn load(path: &Path) -> Result<Self, SpecError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            path: shown.clone(),
            line: None,
            message: format!(
                "cannot read the dataflow file ({e}); pass an existing file with --dataflow"
            ),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates dataflow text; `path` is used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, SpecError> {
        let e = Errs {
            shown: path.display().to_string(),
            text,
        };
        let raw: RawSpec = toml::from_str(text).map_err(|err| {
            let message = err.message().trim().to_string();
            e.at(err.span(), message)
        })?;

        let name = raw.name.get_ref().clone();
        if !is_identifier(&name) {
            return Err(e.at(
                Some(raw.name.span()),
                format!("name {name:?} must be lower_snake_case"),
            ));
        }
        if !raw.inputs.is_empty() || raw.join.is_some() {
            return Self::parse_joined(raw, name, path, &e);
        }
        let missing = |what: &str| {
            e.at(
                None,
                format!("{what} is missing: a dataflow reads one `topic` (with `key`, `[event_time]` and `[[fields]]` at the top level), or declares `[[inputs]]` and a `[join]`"),
            )
        };
        let topic = raw.topic.clone().ok_or_else(|| missing("topic"))?;
        let key = raw.key.as_ref().ok_or_else(|| missing("key"))?;
        let event_time = raw
            .event_time
            .as_ref()
            .ok_or_else(|| missing("[event_time]"))?;
        if raw.fields.is_empty() {
            return Err(e.at(None, "the schema has no [[fields]]".into()));
        }
        let source = RawSource {
            what: String::new(),
            fields: &raw.fields,
            key,
            event_time,
            allowed_lateness: &raw.allowed_lateness,
            idle_timeout: &raw.idle_timeout,
        }
        .parse(&e)?;
        let (windows, dimensions, aggregates) = parse_outputs(&raw, &source.fields, &e)?;
        let t = raw.tables.get_ref();
        let role = |name: &Option<String>, role: &str| {
            name.clone().ok_or_else(|| {
                e.at(
                    Some(raw.tables.span()),
                    format!("[tables]: `{role}` is missing"),
                )
            })
        };
        let tables = Tables {
            rows: role(&t.rows, "rows")?,
            by_value: t.by_value.clone(),
            by_window: t.by_window.clone(),
            dead_letters: role(&t.dead_letters, "dead_letters")?,
            late: role(&t.late, "late")?,
            ttl: t.ttl,
        };
        check_table_names(tables.names(), &e, raw.tables.span())?;
        Ok(DataflowSpec {
            delete_marker: None,
            name,
            topic,
            fields: source.fields,
            key: source.key,
            event_time: source.event_time,
            allowed_lateness_ms: source.allowed_lateness_ms,
            idle_timeout: source.idle_timeout,
            windows,
            dimensions,
            aggregates,
            tables,
            path: path.to_path_buf(),
            join: None,
            retire_after_ms: 0,
        })
    }

    /// A file with `[[inputs]]` and a `[join]`: each input is parsed as a single-input
    /// dataflow's source is; the windows are over the join's view (see [`Join`]).
    fn parse_joined(raw: RawSpec, name: String, path: &Path, e: &Errs) -> Result<Self, SpecError> {
        if raw.topic.is_some() || raw.key.is_some() || !raw.fields.is_empty() {
            return Err(e.at(
                None,
                "a dataflow with [[inputs]] declares `topic`, `key` and fields per input, not at the top level".into(),
            ));
        }
        let Some(raw_join) = raw.join.as_ref() else {
            return Err(e.at(
                None,
                "a dataflow with [[inputs]] needs a [join] saying how they meet".into(),
            ));
        };
        let top = raw.tables.get_ref();
        if top.rows.is_some() || top.dead_letters.is_some() || top.late.is_some() {
            return Err(e.at(
                Some(raw.tables.span()),
                "[tables]: with [[inputs]], `rows`, `dead_letters` and `late` belong to each input's [inputs.tables]; [tables] names the window tables".into(),
            ));
        }
        let mut inputs: Vec<Input> = Vec::new();
        for input in &raw.inputs {
            let span = input.span();
            let input = input.get_ref();
            let input_name = input.name.get_ref().clone();
            if !is_identifier(&input_name) {
                return Err(e.at(
                    Some(input.name.span()),
                    format!("input name {input_name:?} must be lower_snake_case"),
                ));
            }
            if inputs.iter().any(|i| i.name == input_name) {
                return Err(e.at(
                    Some(input.name.span()),
                    format!("input {input_name:?} is declared twice"),
                ));
            }
            if input.fields.is_empty() {
                return Err(e.at(
                    Some(span),
                    format!("input {input_name:?}: the schema has no [[inputs.fields]]"),
                ));
            }
            let source = RawSource {
                what: format!("input {input_name:?}: "),
                fields: &input.fields,
                key: &input.key,
                event_time: &input.event_time,
                allowed_lateness: &input.allowed_lateness,
                idle_timeout: &input.idle_timeout,
            }
            .parse(e)?;
            let labels = |raw: &Spanned<RawSelect>, what: &str| -> Result<Select, SpecError> {
                let sel = raw.get_ref();
                let field = source
                    .fields
                    .iter()
                    .position(|f| f.name == sel.field)
                    .ok_or_else(|| {
                        e.at(
                            Some(raw.span()),
                            format!(
                                "input {input_name:?}: {what} field {:?} is not a declared field",
                                sel.field
                            ),
                        )
                    })?;
                if sel.values.is_empty() {
                    return Err(e.at(
                        Some(raw.span()),
                        format!("input {input_name:?}: {what} needs at least one value"),
                    ));
                }
                Ok(Select {
                    field,
                    values: sel.values.clone(),
                })
            };
            let select = match &input.select {
                None => None,
                Some(_) if input.kind == InputKind::Table => {
                    return Err(e.at(
                        input.select.as_ref().map(|s| s.span()),
                        format!("input {input_name:?}: select applies to streams (a table keeps every key's versions)"),
                    ))
                }
                Some(raw) => Some(labels(raw, "select")?),
            };
            let delete_marker = match &input.delete_marker {
                None => None,
                Some(raw) if input.kind != InputKind::Table => {
                    return Err(e.at(
                        Some(raw.span()),
                        format!("input {input_name:?}: delete_marker applies to table inputs (`kind = \"table\"`)"),
                    ))
                }
                Some(raw) => Some(labels(raw, "delete_marker")?),
            };
            inputs.push(Input {
                name: input_name,
                kind: input.kind,
                select,
                spec: DataflowSpec {
                    name: name.clone(),
                    topic: input.topic.clone(),
                    fields: source.fields,
                    key: source.key,
                    event_time: source.event_time,
                    allowed_lateness_ms: source.allowed_lateness_ms,
                    idle_timeout: source.idle_timeout,
                    windows: Vec::new(),
                    dimensions: Vec::new(),
                    aggregates: Vec::new(),
                    tables: Tables {
                        rows: input.tables.rows.clone(),
                        by_value: top.by_value.clone(),
                        by_window: top.by_window.clone(),
                        dead_letters: input.tables.dead_letters.clone(),
                        late: input.tables.late.clone(),
                        ttl: TableTtl {
                            by_value: top.ttl.by_value,
                            by_window: top.ttl.by_window,
                            ..TableTtl::default()
                        },
                    },
                    path: path.to_path_buf(),
                    join: None,
                    retire_after_ms: 0,
                    delete_marker,
                },
            });
        }

        let j = raw_join.get_ref();
        let kind = match j.kind.get_ref().as_str() {
            "as_of" => JoinKind::AsOf,
            "interval" => {
                let bound = |b: &Option<Spanned<String>>, what: &str| -> Result<i64, SpecError> {
                    let b = b.as_ref().ok_or_else(|| {
                        e.at(
                            Some(raw_join.span()),
                            format!("[join]: an interval join needs `{what} = \"DURATION\"` (right.time within [left.time + lower, left.time + upper])"),
                        )
                    })?;
                    let text = b.get_ref().trim();
                    let (negative, magnitude) = match text.strip_prefix('-') {
                        Some(rest) => (true, rest.trim()),
                        None => (false, text),
                    };
                    let ms = parse_duration(magnitude)
                        .map_err(|m| e.at(Some(b.span()), format!("[join] {what}: {m}")))?
                        .as_millis() as i64;
                    Ok(if negative { -ms } else { ms })
                };
                let (lower_ms, upper_ms) = (bound(&j.lower, "lower")?, bound(&j.upper, "upper")?);
                if upper_ms < lower_ms || upper_ms < 0 {
                    return Err(e.at(
                        j.upper.as_ref().map(|u| u.span()),
                        "[join]: upper must be at least lower and not negative".into(),
                    ));
                }
                JoinKind::Interval {
                    lower_ms,
                    upper_ms: upper_ms as u64,
                }
            }
            other => {
                return Err(e.at(
                    Some(j.kind.span()),
                    format!(
                        "[join] kind {other:?} is not known (use \"as_of\": each stream record meets the table's version of its key as of its event time, or \"interval\": each left record meets the right records of its key within [lower, upper] of its time)"
                    ),
                ))
            }
        };
        let find = |n: &Spanned<String>, want: InputKind| -> Result<usize, SpecError> {
            let i = inputs
                .iter()
                .position(|i| &i.name == n.get_ref())
                .ok_or_else(|| {
                    let known: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
                    e.at(
                        Some(n.span()),
                        format!(
                            "[join] names input {:?}, which is not declared (inputs: {})",
                            n.get_ref(),
                            known.join(", ")
                        ),
                    )
                })?;
            if inputs[i].kind != want {
                return Err(e.at(
                    Some(n.span()),
                    format!(
                        "[join]: input {:?} is a {}; this side of the join needs `kind = \"{}\"`",
                        n.get_ref(),
                        inputs[i].kind.as_str(),
                        want.as_str()
                    ),
                ));
            }
            Ok(i)
        };
        let side = |a: &Option<Spanned<String>>, b: &Option<Spanned<String>>, what: &str| {
            a.as_ref().or(b.as_ref()).cloned().ok_or_else(|| {
                e.at(
                    Some(raw_join.span()),
                    format!("[join] needs `{what} = \"INPUT\"`"),
                )
            })
        };
        let (left_name, right_name) = (
            side(&j.left, &j.stream, "left")?,
            side(&j.right, &j.table, "right")?,
        );
        let right_kind = match kind {
            JoinKind::AsOf => InputKind::Table,
            JoinKind::Interval { .. } => InputKind::Stream,
        };
        let left = find(&left_name, InputKind::Stream)?;
        let right = find(&right_name, right_kind)?;
        if inputs.len() != 2 {
            return Err(e.at(
                None,
                format!(
                    "this dataflow declares {} inputs; a [join] takes exactly two",
                    inputs.len()
                ),
            ));
        }
        let field_of = |input: usize, n: &Spanned<String>| -> Result<usize, SpecError> {
            let spec = &inputs[input].spec;
            let i = spec
                .fields
                .iter()
                .position(|f| &f.name == n.get_ref())
                .ok_or_else(|| {
                    e.at(
                        Some(n.span()),
                        format!(
                            "[join] {:?} is not a field of input {:?}",
                            n.get_ref(),
                            inputs[input].name
                        ),
                    )
                })?;
            if !spec.fields[i].required {
                return Err(e.at(
                    Some(n.span()),
                    format!(
                        "[join] {:?} must be a required field of input {:?} (a record without it could meet nothing)",
                        n.get_ref(),
                        inputs[input].name
                    ),
                ));
            }
            Ok(i)
        };
        let on = field_of(left, &j.on)?;
        let right_on = match (kind, &j.right_on) {
            (JoinKind::AsOf, None) => inputs[right].spec.key,
            (JoinKind::AsOf, Some(r)) if r.get_ref() == &inputs[right].spec.fields[inputs[right].spec.key].name => inputs[right].spec.key,
            (JoinKind::AsOf, Some(r)) => {
                return Err(e.at(
                    Some(r.span()),
                    "[join]: an as-of join meets the table's key; leave out `right_on`".into(),
                ))
            }
            (JoinKind::Interval { .. }, Some(r)) => field_of(right, r)?,
            (JoinKind::Interval { .. }, None) => {
                return Err(e.at(
                    Some(raw_join.span()),
                    "[join]: an interval join needs `right_on = \"FIELD\"`, the right input's field equal to `on`".into(),
                ))
            }
        };
        let (left_field, right_field) = (
            &inputs[left].spec.fields[on],
            &inputs[right].spec.fields[right_on],
        );
        if left_field.ty != right_field.ty {
            return Err(e.at(
                Some(j.on.span()),
                format!(
                    "[join] on = {:?} is a {} but {:?} of input {:?} is a {}; join fields of the same type",
                    j.on.get_ref(),
                    left_field.ty.cql(),
                    right_field.name,
                    inputs[right].name,
                    right_field.ty.cql()
                ),
            ));
        }
        if !matches!(
            left_field.ty,
            FieldType::Uuid | FieldType::Text | FieldType::Bigint
        ) {
            return Err(e.at(
                Some(j.on.span()),
                format!(
                    "[join] on = {:?} is a {}; join on uuid, text or bigint fields",
                    j.on.get_ref(),
                    left_field.ty.cql()
                ),
            ));
        }
        let inner = match j.ty.get_ref().as_str() {
            "inner" => true,
            "left" => false,
            other => {
                return Err(e.at(
                    Some(j.ty.span()),
                    format!("[join] type {other:?} is not known (use \"left\" or \"inner\")"),
                ))
            }
        };
        // A left join keeps every left record: `unmatched` applies to inner joins only.
        let unmatched = j
            .unmatched
            .as_ref()
            .filter(|_| inner)
            .map(|u| u.get_ref().clone());
        if inner && unmatched.is_none() {
            return Err(e.at(
                Some(raw_join.span()),
                "[join]: an inner join needs `unmatched = \"TABLE\"`: the left records that meet nothing are kept there, never dropped".into(),
            ));
        }

        // The view the windows see: the left's fields, then the right's, each named
        // `input.field`; keyed by the join field; timed by the left record.
        let mut fields = Vec::new();
        for side in [left, right] {
            for f in &inputs[side].spec.fields {
                fields.push(Field {
                    name: format!("{}.{}", inputs[side].name, f.name),
                    path: vec![f.name.clone()],
                    ty: f.ty,
                    required: false,
                    column: false,
                });
            }
        }
        let (windows, dimensions, aggregates) = parse_outputs(&raw, &fields, e)?;
        // The offsets of the inputs that are not tables retire with the view's windows: a
        // right record of an interval join counts in the windows of left records up to
        // `-lower` after it.
        for input in inputs.iter_mut().filter(|i| i.kind == InputKind::Stream) {
            input.spec.windows = windows.clone();
        }
        if let JoinKind::Interval { lower_ms, .. } = kind {
            inputs[right].spec.retire_after_ms = lower_ms.min(0).unsigned_abs();
        }
        let mut names: Vec<&String> = Vec::new();
        for input in &inputs {
            let t = &input.spec.tables;
            names.extend([&t.rows, &t.dead_letters, &t.late]);
        }
        names.extend([&top.by_value, &top.by_window]);
        names.extend(unmatched.as_ref());
        check_table_names(names, e, raw.tables.span())?;

        let s = &inputs[left].spec;
        Ok(DataflowSpec {
            name,
            topic: s.topic.clone(),
            fields,
            key: on,
            event_time: s.event_time.clone(),
            allowed_lateness_ms: s.allowed_lateness_ms,
            idle_timeout: s.idle_timeout,
            windows,
            dimensions,
            aggregates,
            tables: s.tables.clone(),
            path: path.to_path_buf(),
            retire_after_ms: 0,
            delete_marker: None,
            join: Some(Box::new(Join {
                kind,
                left,
                right,
                on,
                right_on,
                inner,
                unmatched,
                inputs,
            })),
        })
    }

    /// The fields stored in the rows table, with their indices.
    pub fn columns(&self) -> impl Iterator<Item = (usize, &Field)> {
        self.fields.iter().enumerate().filter(|(_, f)| f.column)
    }

    /// The largest window end containing `event_time` over all windows: the record's windows
    /// are all final, and durable, once the durable frontier passes this.
    pub fn last_window_end(&self, event_time: u64) -> Option<u64> {
        let event_time = event_time.saturating_add(self.retire_after_ms);
        self.windows
            .iter()
            .map(|w| w.spec.last_end(event_time))
            .max()
    }
}

/// Parses `500ms`, `5s`, `1m`, `1h`, `2h 30m` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration like 5s, 1m or 1h ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DataflowSpec, SpecError> {
        DataflowSpec::parse(text, Path::new("t.toml"))
    }

    #[test]
    fn shipped_dataflows_are_valid() {
        for file in ["dataflows/users_created.toml", "dataflows/orders.toml"] {
            let spec = DataflowSpec::load(Path::new(file)).unwrap_or_else(|e| panic!("{e}"));
            assert!(!spec.windows.is_empty());
        }
        let users = DataflowSpec::load(Path::new("dataflows/users_created.toml")).unwrap();
        let columns: Vec<_> = users.columns().map(|(_, f)| f.name.as_str()).collect();
        assert_eq!(
            columns,
            [
                "id",
                "first_name",
                "last_name",
                "gender",
                "address",
                "post_code",
                "email",
                "username",
                "dob",
                "registered_date",
                "phone",
                "picture"
            ]
        );
    }

    #[test]
    fn table_ttls_are_whole_seconds_by_role() {
        let text = std::fs::read_to_string("dataflows/users_created.toml").unwrap();
        let spec = parse(&format!(
            "{text}\n[tables.ttl]\ndead_letters = \"30d\"\nlate = \"90s\"\n"
        ))
        .unwrap();
        let ttl = spec.tables.ttl;
        assert_eq!(ttl.dead_letters.map(Ttl::seconds), Some(30 * 86_400));
        assert_eq!(ttl.late.map(Ttl::seconds), Some(90));
        assert!(ttl.rows.is_none() && ttl.by_value.is_none() && ttl.any());
        assert!(!parse(&text).unwrap().tables.ttl.any());
        for (bad, says) in [
            ("late = \"0s\"", "from 1s to 20 years"),
            ("late = \"1500ms\"", "whole seconds"),
            ("late = \"21y\"", "20 years"),
            ("late = \"soon\"", "not a duration"),
            ("users = \"1d\"", "unknown field"),
        ] {
            let e = parse(&format!("{text}\n[tables.ttl]\n{bad}\n")).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
            assert!(e.line.is_some(), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_the_line_and_the_field() {
        let text = std::fs::read_to_string("dataflows/users_created.toml").unwrap();
        let broken = text.replace(
            "dimensions = [\"gender\", \"nat\"]",
            "dimensions = [\"gender\", \"nationality\"]",
        );
        let e = parse(&broken).unwrap_err();
        let line = text
            .lines()
            .position(|l| l.starts_with("dimensions"))
            .unwrap()
            + 1;
        assert_eq!(e.line, Some(line), "{e}");
        assert!(
            e.to_string()
                .contains("\"nationality\" is not a declared field"),
            "{e}"
        );
        assert!(
            e.to_string().starts_with(&format!("t.toml:{line}: ")),
            "{e}"
        );

        let broken = text.replace("type = \"uuid\"", "type = \"guid\"");
        let e = parse(&broken).unwrap_err();
        assert!(e.line.is_some() && e.to_string().contains("guid"), "{e}");

        let broken = text.replace("size = \"5m\"", "size = \"five minutes\"");
        let e = parse(&broken).unwrap_err();
        assert!(e.to_string().contains("window \"5m\": size"), "{e}");
    }

    #[test]
    fn a_joined_dataflow_is_a_view_over_its_inputs() {
        let spec = DataflowSpec::load(Path::new("dataflows/user_activity.toml")).unwrap();
        let join = spec.join.as_deref().expect("a join");
        let (stream, table) = (&join.inputs[join.left], &join.inputs[join.right]);
        assert_eq!(
            (stream.name.as_str(), table.name.as_str()),
            ("events", "users")
        );
        assert_eq!(
            (stream.kind, table.kind),
            (InputKind::Stream, InputKind::Table)
        );
        assert_eq!(stream.spec.fields[join.on].name, "user_id");
        // The view: the stream's fields, then the table's, keyed by the join field.
        assert_eq!(
            spec.fields.len(),
            stream.spec.fields.len() + table.spec.fields.len()
        );
        assert_eq!(spec.fields[spec.key].name, "events.user_id");
        let dimension = |i: usize| spec.fields[spec.dimensions[i]].name.as_str();
        assert_eq!(
            [dimension(0), dimension(1), dimension(2)],
            ["users.nat", "users.gender", "events.type"]
        );
        // The stream input's offsets retire with the view's windows.
        assert_eq!(stream.spec.windows.len(), spec.windows.len());
        assert_eq!(spec.tables.rows, "user_events");
        assert_eq!(table.spec.tables.rows, "created_users");
    }

    #[test]
    fn join_errors_name_the_line_and_the_field() {
        let text = std::fs::read_to_string("dataflows/user_activity.toml").unwrap();
        let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
        let cases = [
            (
                "table = \"users\"",
                "table = \"people\"",
                "input \"people\", which is not declared",
            ),
            (
                "on = \"user_id\"",
                "on = \"user\"",
                "\"user\" is not a field of input \"events\"",
            ),
            (
                "kind = \"as_of\"",
                "kind = \"hash\"",
                "kind \"hash\" is not known",
            ),
            (
                "stream = \"events\"",
                "stream = \"users\"",
                "input \"users\" is a table",
            ),
        ];
        for (from, to, says) in cases {
            let e = parse(&text.replace(from, to)).unwrap_err();
            assert!(e.to_string().contains(says), "{from} -> {to}: {e}");
            assert_eq!(e.line, Some(line_of(from)), "{e}");
        }
        // A join field of another type than the table's key.
        let broken = text.replacen(
            "name = \"user_id\"\ntype = \"uuid\"",
            "name = \"user_id\"\ntype = \"bigint\"",
            1,
        );
        let e = parse(&broken).unwrap_err();
        assert!(
            e.to_string()
                .contains("is a bigint but \"id\" of input \"users\" is a uuid"),
            "{e}"
        );
        // Dimensions name view fields.
        let e = parse(&text.replace("\"users.nat\"", "\"nat\"")).unwrap_err();
        assert!(
            e.to_string()
                .contains("dimension \"nat\" is not a declared field"),
            "{e}"
        );
        // An inner join must keep its unmatched records somewhere.
        let broken = text
            .replace("type = \"left\"", "type = \"inner\"")
            .replace("unmatched = \"events_unmatched\"\n", "");
        let e = parse(&broken).unwrap_err();
        assert!(e.to_string().contains("needs `unmatched"), "{e}");
    }

    #[test]
    fn an_interval_join_has_bounds_a_right_field_and_streams_on_both_sides() {
        let text = std::fs::read_to_string("dataflows/activation.toml").unwrap();
        let spec = parse(&text).unwrap();
        let join = spec.join.as_deref().unwrap();
        assert_eq!(
            join.kind,
            JoinKind::Interval {
                lower_ms: 0,
                upper_ms: 600_000
            }
        );
        let right = &join.inputs[join.right];
        assert_eq!(right.spec.fields[join.right_on].name, "user_id");
        assert_eq!(right.select.as_ref().unwrap().values, ["purchase"]);
        // A negative lower bound: the right input's records retire that much later.
        let spec = parse(&text.replace("lower = \"0s\"", "lower = \"-5m\"")).unwrap();
        let join = spec.join.as_deref().unwrap();
        assert!(matches!(
            join.kind,
            JoinKind::Interval {
                lower_ms: -300_000,
                ..
            }
        ));
        assert_eq!(join.inputs[join.right].spec.retire_after_ms, 300_000);
        for (from, to, says) in [
            ("right_on = \"user_id\"\n", "", "needs `right_on"),
            (
                "upper = \"10m\"",
                "upper = \"-1m\"",
                "upper must be at least lower",
            ),
            (
                "kind = \"interval\"",
                "kind = \"as_of\"",
                "is a stream; this side of the join needs `kind = \"table\"`",
            ),
            (
                "values = [\"purchase\"]",
                "values = []",
                "select needs at least one value",
            ),
            (
                "select = {",
                "delete_marker = {",
                "delete_marker applies to table inputs",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let e = parse(&text.replacen(from, to, 1)).unwrap_err();
            assert!(e.to_string().contains(says), "{from} -> {to}: {e}");
        }
    }
}
