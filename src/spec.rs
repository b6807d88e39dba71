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
    topic: String,
    key: Spanned<String>,
    #[serde(default = "default_lateness")]
    allowed_lateness: Spanned<String>,
    #[serde(default)]
    idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    dimensions: Vec<Spanned<String>>,
    event_time: Spanned<RawEventTime>,
    fields: Vec<Spanned<RawField>>,
    #[serde(default)]
    windows: Vec<Spanned<RawWindow>>,
    #[serde(default)]
    aggregates: Vec<Spanned<RawAggregate>>,
    tables: Tables,
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
        let shown = path.display().to_string();
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let err = |span: Option<std::ops::Range<usize>>, message: String| SpecError {
            path: shown.clone(),
            line: span.filter(|s| s.end > 0).map(|s| line_of(s.start)),
            message,
        };
        let raw: RawSpec = toml::from_str(text).map_err(|e| {
            let message = e.message().trim().to_string();
            err(e.span(), message)
        })?;

        let name = raw.name.get_ref().clone();
        if !is_identifier(&name) {
            return Err(err(
                Some(raw.name.span()),
                format!("name {name:?} must be lower_snake_case"),
            ));
        }

        let mut fields = Vec::new();
        let mut seen = HashSet::new();
        for f in &raw.fields {
            let span = Some(f.span());
            let f = f.get_ref();
            if !is_identifier(&f.name) {
                return Err(err(
                    span,
                    format!(
                        "field name {:?} must be lower_snake_case (it is a column name)",
                        f.name
                    ),
                ));
            }
            if !seen.insert(f.name.clone()) {
                return Err(err(span, format!("field {:?} is declared twice", f.name)));
            }
            let path_text = f.path.clone().unwrap_or_else(|| f.name.clone());
            let path: Vec<String> = path_text.split('.').map(str::to_string).collect();
            if path.iter().any(String::is_empty) {
                return Err(err(
                    span,
                    format!(
                        "field {:?}: path {path_text:?} has an empty segment",
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
            return Err(err(None, "the schema has no [[fields]]".into()));
        }
        let field_index = |name: &str| fields.iter().position(|f| f.name == name);

        let key = field_index(raw.key.get_ref()).ok_or_else(|| {
            err(
                Some(raw.key.span()),
                format!("key {:?} is not a declared field", raw.key.get_ref()),
            )
        })?;
        if !fields[key].required
            || !matches!(
                fields[key].ty,
                FieldType::Uuid | FieldType::Text | FieldType::Bigint
            )
        {
            return Err(err(
                Some(raw.key.span()),
                format!(
                    "key field {:?} must be required and of type uuid, text or bigint",
                    fields[key].name
                ),
            ));
        }
        if !fields[key].column {
            return Err(err(
                Some(raw.key.span()),
                "the key field must be a column (it is the primary key)".into(),
            ));
        }

        let et = raw.event_time.get_ref();
        let event_time = match (&et.field, et.source.as_deref()) {
            (Some(name), None) => {
                let i = field_index(name).ok_or_else(|| {
                    err(
                        Some(raw.event_time.span()),
                        format!("event_time field {name:?} is not a declared field"),
                    )
                })?;
                if !matches!(fields[i].ty, FieldType::Timestamp | FieldType::Bigint)
                    || !fields[i].required
                {
                    return Err(err(
                        Some(raw.event_time.span()),
                        format!("event_time field {name:?} must be required and of type timestamp or bigint"),
                    ));
                }
                EventTime::Field(i)
            }
            (None, Some("message_timestamp")) => EventTime::MessageTimestamp,
            _ => return Err(err(
                Some(raw.event_time.span()),
                "[event_time] needs either `field = \"NAME\"` or `source = \"message_timestamp\"`"
                    .into(),
            )),
        };

        let allowed_lateness_ms = parse_duration(raw.allowed_lateness.get_ref())
            .map_err(|m| {
                err(
                    Some(raw.allowed_lateness.span()),
                    format!("allowed_lateness: {m}"),
                )
            })?
            .as_millis() as u64;
        let idle_timeout = match &raw.idle_timeout {
            None => None,
            Some(s) if s.get_ref() == "off" => None,
            Some(s) => Some(
                parse_duration(s.get_ref())
                    .map_err(|m| err(Some(s.span()), format!("idle_timeout: {m}")))?,
            ),
        };

        let mut windows = Vec::new();
        let mut window_names = HashSet::new();
        for w in &raw.windows {
            let span = Some(w.span());
            let w = w.get_ref();
            let size = parse_duration(&w.size)
                .map_err(|m| err(span.clone(), format!("window {:?}: size: {m}", w.name)))?;
            let slide = match &w.slide {
                Some(s) => parse_duration(s)
                    .map_err(|m| err(span.clone(), format!("window {:?}: slide: {m}", w.name)))?,
                None => size,
            };
            let spec = WindowSpec::new(size.as_millis() as u64, slide.as_millis() as u64)
                .map_err(|m| err(span.clone(), format!("window {:?}: {m}", w.name)))?;
            if !window_names.insert(w.name.clone()) {
                return Err(err(span, format!("window {:?} is declared twice", w.name)));
            }
            windows.push(Window {
                name: w.name.clone(),
                spec,
            });
        }

        let mut dimensions = Vec::new();
        for d in &raw.dimensions {
            let i = field_index(d.get_ref()).ok_or_else(|| {
                err(
                    Some(d.span()),
                    format!("dimension {:?} is not a declared field", d.get_ref()),
                )
            })?;
            if matches!(fields[i].ty, FieldType::Double) {
                return Err(err(
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
                return Err(err(
                    span,
                    format!("aggregate name {:?} must be lower_snake_case", a.name),
                ));
            }
            let numeric_field = |what: &str| -> Result<usize, SpecError> {
                let name = a.field.as_deref().ok_or_else(|| {
                    err(
                        span.clone(),
                        format!("aggregate {:?}: {what} needs `field = \"NAME\"`", a.name),
                    )
                })?;
                let i = field_index(name).ok_or_else(|| {
                    err(
                        span.clone(),
                        format!(
                            "aggregate {:?}: field {name:?} is not a declared field",
                            a.name
                        ),
                    )
                })?;
                if !matches!(fields[i].ty, FieldType::Bigint | FieldType::Double) {
                    return Err(err(
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
                    return Err(err(
                        span,
                        format!("aggregate {:?}: unknown function {other:?} (use count, count_distinct, sum, min or max)", a.name),
                    ))
                }
            };
            if matches!(function, AggregateFn::Count | AggregateFn::CountDistinct)
                && a.field.is_some()
            {
                return Err(err(
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
            return Err(err(
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
            return Err(err(
                None,
                format!(
                    "aggregate name {:?} is reserved for a window-table column",
                    a.name
                ),
            ));
        }
        let t = &raw.tables;
        for table in [&t.rows, &t.by_value, &t.by_window, &t.dead_letters, &t.late] {
            if !is_identifier(table) {
                return Err(err(
                    None,
                    format!("[tables]: {table:?} must be lower_snake_case"),
                ));
            }
        }

        Ok(DataflowSpec {
            name,
            topic: raw.topic,
            fields,
            key,
            event_time,
            allowed_lateness_ms,
            idle_timeout,
            windows,
            dimensions,
            aggregates,
            tables: raw.tables,
            path: path.to_path_buf(),
        })
    }

    /// The fields stored in the rows table, with their indices.
    pub fn columns(&self) -> impl Iterator<Item = (usize, &Field)> {
        self.fields.iter().enumerate().filter(|(_, f)| f.column)
    }

    /// The largest window end containing `event_time` over all windows: the record's windows
    /// are all final, and durable, once the durable frontier passes this.
    pub fn last_window_end(&self, event_time: u64) -> Option<u64> {
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
}
