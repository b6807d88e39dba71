//! The oracle: what one uninterrupted, sequential run must leave in the tables, computed
//! without any of Weir's code. It reads the dataflow file with the `toml` crate, each message
//! with `serde_json::Value`, decides lateness by its own rule (a record is late when its event
//! time is more than the allowed lateness below the largest event time seen before it in its
//! partition), folds windows into maps, and renders every row itself, as the stores' readers in
//! this harness render cells.
//!
//! A file with `[[inputs]]` and a `[join]` ([`oracle_inputs`]) is computed the same way per
//! input; the as-of join picks, for each stream record, the table's version of its key as of
//! its event time by a plain search over the table's history; the interval join pairs each left
//! record with every right record of its key whose time is within the interval, by a plain
//! search over the right's records; and the windows fold the joined records. An input's
//! `select` keeps its other records out of the join (and only out of the join). A table
//! input's `delete_marker` makes its good, non-late records whose field's label is one of the
//! marker's values deletes of their keys, exactly as tombstones at their own event times.
//!
//! What it cannot know is the wording of three kinds of dead-letter reason (serde_json's parse
//! error, how Weir describes a wrong value, and why a tombstone is malformed): for those it
//! gives the reason's fixed start, and [`normalize`] cuts the tables being compared to the same
//! start (see `assert_tables_eq`). Every other cell is compared whole.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value as Json;

use super::{hex, Dataset, Msg, Tables};

/// The largest message parsed by default (`--max-record-bytes`), as documented.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// How much of a bad record's payload the dead-letter table keeps, as documented.
const PAYLOAD_BYTES: usize = 4096;
/// The fixed start of every malformed tombstone's dead-letter reason.
const TOMBSTONE: &str = "tombstone";

struct Field {
    name: String,
    path: Vec<String>,
    ty: String,
    required: bool,
    column: bool,
}

struct Window {
    name: String,
    size: u64,
    slide: u64,
}

struct Aggregate {
    function: String,
    /// A field of the view.
    field: Option<usize>,
}

/// One input: a topic, its fields, its lateness and its own tables (rows, dead_letters, late).
struct Input {
    name: String,
    topic: String,
    /// `kind = "table"`: tombstones delete keys.
    table: bool,
    key: usize,
    lateness: u64,
    event_time: Option<usize>,
    fields: Vec<Field>,
    tables: BTreeMap<String, String>,
    /// `select = { field, values }`: only records whose field's label is one of the values
    /// take part in the join.
    select: Option<(usize, HashSet<String>)>,
    /// `delete_marker = { field, values }` (table inputs): a good record whose field's label is
    /// one of the values deletes its key, as a tombstone at its event time would.
    delete_marker: Option<(usize, HashSet<String>)>,
}

impl Input {
    /// Whether a good record (or delete, a tombstone or marked record: `None`) takes part in
    /// the join. A delete is not selected by its fields: it always takes part (it deletes its
    /// key as of its time).
    fn selects(&self, values: Option<&[V]>) -> bool {
        match (&self.select, values) {
            (Some((field, labels)), Some(values)) => labels.contains(&values[*field].render()),
            _ => true,
        }
    }
}

enum JoinKind {
    /// A stream input with a table input, as of the stream record's time.
    AsOf {
        stream: usize,
        table: usize,
        /// The stream's field holding the table's key.
        on: usize,
    },
    /// Two stream inputs: a left record with each right record of its key whose event time is
    /// in `[left time + lower, left time + upper]` (both bounds clamped at 0).
    Interval {
        left: usize,
        right: usize,
        /// The left's field.
        on: usize,
        /// The right's field.
        right_on: usize,
        lower: i64,
        upper: i64,
    },
}

struct Join {
    kind: JoinKind,
    /// `type = "inner"`: the table of left (stream) records without a match.
    unmatched: Option<String>,
}

/// The dataflow file, read independently.
struct Flow {
    name: String,
    inputs: Vec<Input>,
    join: Option<Join>,
    /// The names of the fields the windows see: a single input's field names, or for a join
    /// `<input>.<field>` for each stream (left) field, then each table (right) field.
    view: Vec<String>,
    windows: Vec<Window>,
    /// Fields of the view.
    dimensions: Vec<usize>,
    aggregates: Vec<Aggregate>,
    /// The window tables (by_value, by_window).
    tables: BTreeMap<String, String>,
}

fn ms(text: &str) -> u64 {
    humantime::parse_duration(text).unwrap().as_millis() as u64
}

/// A duration that may be negative (`"-5m"`), in milliseconds.
fn signed_ms(text: &str) -> i64 {
    match text.trim().strip_prefix('-') {
        Some(rest) => -(ms(rest) as i64),
        None => ms(text) as i64,
    }
}

fn text_of(v: &toml::Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| x.as_str()).map(String::from)
}

fn list(v: &toml::Value, k: &str) -> Vec<toml::Value> {
    v.get(k)
        .and_then(|x| x.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Table names of `[tables]`; `[tables.ttl]` changes no row.
fn table_names(v: &toml::Value) -> BTreeMap<String, String> {
    v.get("tables")
        .and_then(|t| t.as_table())
        .unwrap()
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// An input from a table with `topic`, `key`, `fields`, `event_time`, `allowed_lateness` and
/// `[tables]`: the top level of a single-input file, or one of `[[inputs]]`.
fn read_input(v: &toml::Value, name: String) -> Input {
    let s = text_of;
    let fields: Vec<Field> = list(v, "fields")
        .iter()
        .map(|f| {
            let name = s(f, "name").unwrap();
            Field {
                path: s(f, "path")
                    .unwrap_or_else(|| name.clone())
                    .split('.')
                    .map(String::from)
                    .collect(),
                ty: s(f, "type").unwrap(),
                required: f.get("required").and_then(|x| x.as_bool()).unwrap_or(false),
                column: f.get("column").and_then(|x| x.as_bool()).unwrap_or(true),
                name,
            }
        })
        .collect();
    let index = |name: &str| {
        fields
            .iter()
            .position(|f| f.name == name)
            .unwrap_or_else(|| panic!("no field {name:?}"))
    };
    // `select` and `delete_marker`: a field and the labels it is compared with.
    let labels = |k: &str| {
        v.get(k).map(|sel| {
            let labels = list(sel, "values")
                .iter()
                .map(|l| {
                    l.as_str()
                        .unwrap_or_else(|| panic!("{k} values are text"))
                        .to_string()
                })
                .collect();
            let field = s(sel, "field").unwrap_or_else(|| panic!("{k} names a field"));
            (index(&field), labels)
        })
    };
    let select = labels("select");
    let delete_marker = labels("delete_marker");
    Input {
        name,
        topic: s(v, "topic").unwrap(),
        table: s(v, "kind").as_deref() == Some("table"),
        key: index(&s(v, "key").unwrap()),
        lateness: ms(&s(v, "allowed_lateness").unwrap_or_else(|| "5s".into())),
        event_time: v
            .get("event_time")
            .and_then(|e| s(e, "field"))
            .map(|f| index(&f)),
        tables: table_names(v),
        select,
        delete_marker,
        fields,
    }
}

fn read_flow(path: &std::path::Path) -> Flow {
    let text = std::fs::read_to_string(path).unwrap();
    let raw: toml::Value = toml::from_str(&text).unwrap();
    let s = text_of;
    let name = s(&raw, "name").unwrap();
    let (inputs, join, view): (Vec<Input>, Option<Join>, Vec<String>) = match raw.get("inputs") {
        None => {
            let input = read_input(&raw, name.clone());
            let view = input.fields.iter().map(|f| f.name.clone()).collect();
            (vec![input], None, view)
        }
        Some(inputs) => {
            let inputs: Vec<Input> = inputs
                .as_array()
                .unwrap()
                .iter()
                .map(|i| read_input(i, s(i, "name").unwrap()))
                .collect();
            let j = &raw["join"];
            let input = |k: &str| {
                let name = s(j, k).unwrap_or_else(|| panic!("the join names no {k:?}"));
                inputs
                    .iter()
                    .position(|i| i.name == name)
                    .unwrap_or_else(|| panic!("no input {name:?}"))
            };
            let field = |input: usize, k: &str| {
                let name = s(j, k).unwrap_or_else(|| panic!("the join names no {k:?}"));
                inputs[input]
                    .fields
                    .iter()
                    .position(|f| f.name == name)
                    .unwrap_or_else(|| panic!("no field {name:?}"))
            };
            let (kind, sides) = match s(j, "kind").as_deref() {
                Some("as_of") => {
                    // `left`/`right` are synonyms of `stream`/`table`.
                    let either = |a: &'static str, b| if j.get(a).is_some() { a } else { b };
                    let stream = input(either("stream", "left"));
                    let table = input(either("table", "right"));
                    assert!(!inputs[stream].table && inputs[table].table);
                    let on = field(stream, "on");
                    (JoinKind::AsOf { stream, table, on }, [stream, table])
                }
                Some("interval") => {
                    let (left, right) = (input("left"), input("right"));
                    assert!(!inputs[left].table && !inputs[right].table);
                    let (on, right_on) = (field(left, "on"), field(right, "right_on"));
                    assert_eq!(
                        inputs[left].fields[on].ty,
                        inputs[right].fields[right_on].ty
                    );
                    let lower = signed_ms(&s(j, "lower").unwrap());
                    let upper = signed_ms(&s(j, "upper").unwrap());
                    assert!(lower <= upper);
                    let kind = JoinKind::Interval {
                        left,
                        right,
                        on,
                        right_on,
                        lower,
                        upper,
                    };
                    (kind, [left, right])
                }
                other => panic!("the oracle knows no join kind {other:?}"),
            };
            let join = Join {
                kind,
                unmatched: match s(j, "type").as_deref() {
                    Some("inner") => Some(s(j, "unmatched").unwrap()),
                    None | Some("left") => None,
                    Some(other) => panic!("the oracle knows no join type {other:?}"),
                },
            };
            let view = sides
                .iter()
                .flat_map(|&i| {
                    let input = &inputs[i];
                    input
                        .fields
                        .iter()
                        .map(move |f| format!("{}.{}", input.name, f.name))
                })
                .collect();
            (inputs, Some(join), view)
        }
    };
    let index = |name: &str| view.iter().position(|f| f == name).unwrap();
    Flow {
        windows: list(&raw, "windows")
            .iter()
            .map(|w| {
                let size = ms(&s(w, "size").unwrap());
                Window {
                    name: s(w, "name").unwrap(),
                    size,
                    slide: s(w, "slide").map_or(size, |x| ms(&x)),
                }
            })
            .collect(),
        dimensions: list(&raw, "dimensions")
            .iter()
            .map(|d| index(d.as_str().unwrap()))
            .collect(),
        aggregates: list(&raw, "aggregates")
            .iter()
            .map(|a| Aggregate {
                function: s(a, "function").unwrap(),
                field: s(a, "field").map(|f| index(&f)),
            })
            .collect(),
        tables: table_names(&raw),
        name,
        inputs,
        join,
        view,
    }
}

/// A field's typed value.
#[derive(Clone, Debug, PartialEq)]
enum V {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Time(i64),
}

impl V {
    /// As a cell and as a dimension label.
    fn render(&self) -> String {
        match self {
            V::Null => "null".into(),
            V::Text(s) => s.clone(),
            V::Int(i) | V::Time(i) => i.to_string(),
            V::Float(f) => f.to_string(),
            V::Bool(b) => b.to_string(),
        }
    }

    /// As a key: text and integers only.
    fn key(&self) -> Option<String> {
        match self {
            V::Text(s) => Some(s.clone()),
            V::Int(i) => Some(i.to_string()),
            _ => None,
        }
    }
}

fn rfc3339_ms(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A JSON value as a field of type `ty`, or `None` when it is of the wrong type.
fn convert(json: &Json, ty: &str) -> Option<V> {
    match (ty, json) {
        (_, Json::Null) => Some(V::Null),
        ("text", Json::String(s)) => Some(V::Text(s.clone())),
        ("text", Json::Number(n)) => Some(V::Text(n.to_string())),
        ("text", Json::Bool(b)) => Some(V::Text(b.to_string())),
        ("uuid", Json::String(s)) => uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| V::Text(u.hyphenated().to_string())),
        ("bigint", Json::Number(n)) => n.as_i64().map(V::Int),
        ("bigint", Json::String(s)) => s.parse().ok().map(V::Int),
        ("double", Json::Number(n)) => n.as_f64().map(V::Float),
        ("double", Json::String(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(V::Float),
        ("boolean", Json::Bool(b)) => Some(V::Bool(*b)),
        ("timestamp", Json::String(s)) => rfc3339_ms(s).map(V::Time),
        ("timestamp", Json::Number(n)) if !n.is_f64() => n.as_i64().map(V::Time),
        _ => None,
    }
}

/// What a message is: a record (event time, key, values; no values for a tombstone), or a
/// dead letter (kind, reason).
enum Parsed {
    Record(u64, String, Option<Vec<V>>),
    Dead(&'static str, String),
}

/// An event time in the documented range (1970 to the end of 9999).
fn event_time_in_range(event_time: i64) -> Result<u64, Parsed> {
    let Ok(event_time) = u64::try_from(event_time) else {
        let detail = format!("event time {event_time} is before 1970");
        return Err(Parsed::Dead("bad_event_time", detail));
    };
    if event_time > 253_402_300_799_999 {
        let detail = format!("event time {event_time} is after 9999-12-31");
        return Err(Parsed::Dead("bad_event_time", detail));
    }
    Ok(event_time)
}

fn parse(input: &Input, payload: &[u8], timestamp: Option<i64>) -> Parsed {
    if payload.len() > MAX_RECORD_BYTES {
        let detail = format!(
            "oversized: {} bytes, the limit is {MAX_RECORD_BYTES}",
            payload.len()
        );
        return Parsed::Dead("oversized", detail);
    }
    let text = match std::str::from_utf8(payload) {
        Ok(text) => text,
        Err(e) => {
            let detail = format!("invalid UTF-8 at byte {}", e.valid_up_to());
            return Parsed::Dead("invalid_utf8", detail);
        }
    };
    // A message whose first JSON value is whole and not an object is "not an object",
    // whatever follows it; an object must be all there is.
    let mut json_text = serde_json::Deserializer::from_str(text);
    let json: Json = match serde::Deserialize::deserialize(&mut json_text) {
        Ok(Json::Object(o)) if json_text.end().is_ok() => Json::Object(o),
        Ok(Json::Object(_)) | Err(_) => {
            return Parsed::Dead("malformed", "malformed JSON: ".into())
        }
        Ok(_) => return Parsed::Dead("malformed", "malformed JSON: not an object".into()),
    };
    let mut values = Vec::new();
    for field in &input.fields {
        let mut at = Some(&json);
        for step in &field.path {
            at = match at {
                Some(Json::Object(o)) => o.get(step),
                Some(Json::Null) | None => None,
                Some(_) => return Parsed::Dead("malformed", "malformed JSON: ".into()),
            };
        }
        let value = match at {
            None => V::Null,
            Some(json) => match convert(json, &field.ty) {
                Some(v) => v,
                None => {
                    let detail = format!("field {:?}: expected {}, found", field.name, field.ty);
                    return Parsed::Dead("wrong_type", detail);
                }
            },
        };
        if field.required && value == V::Null {
            return Parsed::Dead("missing_field", missing(&field.name));
        }
        values.push(value);
    }
    let event_time = match input.event_time {
        Some(i) => match values[i] {
            V::Time(t) | V::Int(t) => t,
            _ => return Parsed::Dead("missing_field", missing(&input.fields[i].name)),
        },
        None => match timestamp {
            Some(t) => t,
            None => return Parsed::Dead("bad_event_time", "the message has no timestamp".into()),
        },
    };
    let event_time = match event_time_in_range(event_time) {
        Ok(t) => t,
        Err(dead) => return dead,
    };
    let Some(key) = values[input.key].key() else {
        return Parsed::Dead("missing_field", missing(&input.fields[input.key].name));
    };
    Parsed::Record(event_time, key, Some(values))
}

/// A tombstone of a table input: its key (the Kafka key's text as the key field's type,
/// rendered as the key column) and its event time (the message timestamp).
///
/// One without a key, with a key that is not UTF-8 text of the key's type, or without a
/// timestamp is a dead letter of kind `malformed` whose reason starts with "tombstone" (the
/// rest is Weir's wording); its payload cells are those of an empty payload (`""`, `0`). A
/// timestamp outside 1970..=9999 is a `bad_event_time` dead letter worded as a record's.
fn parse_tombstone(input: &Input, m: &Msg) -> Parsed {
    let malformed = || Parsed::Dead("malformed", TOMBSTONE.into());
    let Some(key) = m
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(|k| convert(&Json::String(k.into()), &input.fields[input.key].ty))
        .and_then(|k| k.key())
    else {
        return malformed();
    };
    let Some(t) = m.timestamp else {
        return malformed();
    };
    match event_time_in_range(t) {
        Ok(t) => Parsed::Record(t, key, None),
        Err(dead) => dead,
    }
}

fn missing(name: &str) -> String {
    format!("missing required field {name:?}")
}

/// Cuts the reasons whose wording the oracle cannot know to their fixed start.
pub fn normalize(cell: &str) -> String {
    if cell.starts_with("malformed JSON: ") && cell != "malformed JSON: not an object" {
        return "malformed JSON: ".into();
    }
    if cell.starts_with("field \"") {
        if let Some(at) = cell.find(", found") {
            return cell[..at + ", found".len()].to_string();
        }
    }
    if cell.starts_with(TOMBSTONE) {
        return TOMBSTONE.into();
    }
    cell.to_string()
}

fn day(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

/// A good (not dead, not late) record or tombstone of an input.
struct Good {
    partition: i32,
    offset: i64,
    event_time: u64,
    key: String,
    /// `None`: a delete (a tombstone, or a record with the input's delete marker).
    values: Option<Vec<V>>,
}

/// Reads one input: fills its rows, dead-letter and late tables in `out` and returns its good
/// records (and, for a table input, tombstones), partitions in order, each in offset order.
///
/// A message with a null value is a tombstone on a table input only; on a stream input it is
/// what it is today, an empty payload (a `malformed` dead letter). A good tombstone deletes its
/// key's row; a late one is a row of the late table like a late record (event time, watermark,
/// payload `""`, length `0`) and deletes nothing. Tombstones move the watermark like records.
///
/// A good, non-late record of a table input with a `delete_marker` whose marker field's label
/// is one of the marker's values is a delete of its key at its event time, as a tombstone is
/// (returned with no values). A late one is a late record; one that fails to parse is a dead
/// letter, whatever its marker.
fn read_messages(input: &Input, data: &Dataset, out: &mut Tables) -> Vec<Good> {
    let table = |k: &str| input.tables[k].clone();
    for k in ["rows", "dead_letters", "late"] {
        out.entry(table(k)).or_default();
    }
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut good = Vec::new();
    for (partition, messages) in data {
        let mut latest: Option<u64> = None;
        for m in messages {
            let kept = hex(&m.payload[..m.payload.len().min(PAYLOAD_BYTES)]);
            let position = [
                input.topic.clone(),
                partition.to_string(),
                m.offset.to_string(),
            ];
            let parsed = if input.table && m.tombstone {
                parse_tombstone(input, m)
            } else {
                parse(input, &m.payload, m.timestamp)
            };
            let (t, key, values) = match parsed {
                Parsed::Dead(kind, reason) => {
                    let mut row = position.to_vec();
                    row.extend([kind.into(), reason, kept, m.payload.len().to_string()]);
                    out.get_mut(&table("dead_letters")).unwrap().insert(row);
                    continue;
                }
                Parsed::Record(t, key, values) => (t, key, values),
            };
            // The watermark before this record: the largest earlier event time, less the
            // allowed lateness (0 before any).
            let watermark = latest.map_or(0, |l| l.saturating_sub(input.lateness));
            latest = Some(latest.map_or(t, |l| l.max(t)));
            if t < watermark {
                let mut row = position.to_vec();
                row.extend([
                    t.to_string(),
                    watermark.to_string(),
                    kept,
                    m.payload.len().to_string(),
                ]);
                out.get_mut(&table("late")).unwrap().insert(row);
                continue;
            }
            let values = match (&input.delete_marker, values) {
                (Some((field, labels)), Some(values))
                    if input.table && labels.contains(&values[*field].render()) =>
                {
                    None
                }
                (_, values) => values,
            };
            match &values {
                Some(values) => {
                    let row = input
                        .fields
                        .iter()
                        .zip(values)
                        .filter(|(f, _)| f.column)
                        .map(|(_, v)| v.render())
                        .collect();
                    rows.insert(key.clone(), row);
                }
                None => {
                    rows.remove(&key);
                }
            }
            good.push(Good {
                partition: *partition,
                offset: m.offset,
                event_time: t,
                key,
                values,
            });
        }
    }
    out.get_mut(&table("rows"))
        .unwrap()
        .extend(rows.into_values());
    good
}

/// (window, start, dimension, label) -> (distinct keys, records, numbers per aggregate).
type Cells = BTreeMap<(usize, u64, usize, String), (HashSet<String>, i64, Vec<Vec<f64>>)>;

/// Folds one record of the view (event time `t`, `key`, the view's `values`) into every window
/// containing `t`. A null key (a join field without a value) counts in no distinct count, as
/// SQL's `count(DISTINCT ...)` ignores nulls.
fn fold(flow: &Flow, cells: &mut Cells, t: u64, key: Option<&str>, values: &[V]) {
    for (w, window) in flow.windows.iter().enumerate() {
        let mut start = t - t % window.slide;
        loop {
            if t < start + window.size {
                for (d, field) in flow.dimensions.iter().enumerate() {
                    let cell = cells
                        .entry((w, start, d, values[*field].render()))
                        .or_insert_with(|| {
                            (HashSet::new(), 0, vec![Vec::new(); flow.aggregates.len()])
                        });
                    cell.0.extend(key.map(String::from));
                    cell.1 += 1;
                    for (a, aggregate) in flow.aggregates.iter().enumerate() {
                        let number = aggregate.field.and_then(|f| match values[f] {
                            V::Int(i) => Some(i as f64),
                            V::Float(x) => Some(x),
                            _ => None,
                        });
                        cell.2[a].extend(number);
                    }
                }
            }
            if start < window.slide {
                break;
            }
            start -= window.slide;
            if start + window.size <= t {
                break;
            }
        }
    }
}

/// The by_value and by_window rows of the folded windows.
fn render_windows(flow: &Flow, cells: Cells, out: &mut Tables) {
    let table = |k: &str| flow.tables[k].clone();
    for k in ["by_value", "by_window"] {
        out.entry(table(k)).or_default();
    }
    for ((w, start, d, label), (keys, records, numbers)) in cells {
        let window = &flow.windows[w];
        let end = start + window.size;
        let aggregates: Vec<String> = flow
            .aggregates
            .iter()
            .enumerate()
            .map(|(a, aggregate)| {
                let xs = &numbers[a];
                let float = |x: Option<f64>| x.map_or("null".to_string(), |x| x.to_string());
                match aggregate.function.as_str() {
                    "count" => records.to_string(),
                    "count_distinct" => keys.len().to_string(),
                    // Sums are exact in units of 1e-9 (the documented precision).
                    "sum" => float(Some(
                        xs.iter().map(|x| (x * 1e9).round() as i128).sum::<i128>() as f64 / 1e9,
                    )),
                    "min" => float(xs.iter().copied().reduce(f64::min)),
                    "max" => float(xs.iter().copied().reduce(f64::max)),
                    other => panic!("the oracle knows no aggregate {other:?}"),
                }
            })
            .collect();
        let dimension = flow.view[flow.dimensions[d]].clone();
        let mut by_value = vec![
            flow.name.clone(),
            window.name.clone(),
            dimension.clone(),
            label.clone(),
            day(start),
            start.to_string(),
            end.to_string(),
        ];
        by_value.extend(aggregates.iter().cloned());
        out.get_mut(&table("by_value")).unwrap().insert(by_value);
        let mut by_window = vec![
            flow.name.clone(),
            window.name.clone(),
            dimension,
            start.to_string(),
            label,
            end.to_string(),
        ];
        by_window.extend(aggregates);
        out.get_mut(&table("by_window")).unwrap().insert(by_window);
    }
}

/// The tables of one uninterrupted run of `flow` over each topic's messages.
fn run(flow: &Flow, topics: &BTreeMap<&str, &Dataset>) -> Tables {
    let mut out = Tables::new();
    let empty = Dataset::new();
    let data = |input: &Input| topics.get(input.topic.as_str()).copied().unwrap_or(&empty);
    let mut cells = Cells::new();
    match &flow.join {
        None => {
            let input = &flow.inputs[0];
            for g in read_messages(input, data(input), &mut out) {
                let values = g.values.expect("a stream input has no tombstones");
                fold(flow, &mut cells, g.event_time, Some(&g.key), &values);
            }
        }
        Some(join) => {
            if let Some(unmatched) = &join.unmatched {
                out.entry(unmatched.clone()).or_default();
            }
            // An input's good records that take part in the join.
            let joined = |input: &Input, out: &mut Tables| {
                let mut good = read_messages(input, data(input), out);
                good.retain(|g| input.selects(g.values.as_deref()));
                good
            };
            // A left (stream) record without a match: a row of `unmatched` (inner joins).
            let unmatched = |out: &mut Tables, input: &Input, g: &Good, key: &Option<String>| {
                let table = join.unmatched.as_ref()?;
                out.get_mut(table).unwrap().insert(vec![
                    input.topic.clone(),
                    g.partition.to_string(),
                    g.offset.to_string(),
                    key.clone().unwrap_or_default(),
                ]);
                Some(())
            };
            match join.kind {
                JoinKind::AsOf { stream, table, on } => {
                    let (stream, table) = (&flow.inputs[stream], &flow.inputs[table]);
                    // Key -> its history: (event time, partition, offset, values or None for
                    // a delete: a tombstone or a marked record).
                    type Version = (u64, i32, i64, Option<Vec<V>>);
                    let mut history: HashMap<String, Vec<Version>> = HashMap::new();
                    for g in joined(table, &mut out) {
                        let version = (g.event_time, g.partition, g.offset, g.values);
                        history.entry(g.key).or_default().push(version);
                    }
                    let nulls = vec![V::Null; table.fields.len()];
                    for g in joined(stream, &mut out) {
                        let values = g.values.as_ref().expect("a stream has no tombstones");
                        let t = g.event_time;
                        let key = values[on].key();
                        // The version as of t: the latest at or before t by (event time,
                        // partition, offset); a delete there means none.
                        let version = key
                            .as_ref()
                            .and_then(|k| history.get(k))
                            .and_then(|versions| {
                                versions
                                    .iter()
                                    .filter(|v| v.0 <= t)
                                    .max_by_key(|v| (v.0, v.1, v.2))
                            })
                            .and_then(|v| v.3.as_ref());
                        if version.is_none() && unmatched(&mut out, stream, &g, &key).is_some() {
                            continue;
                        }
                        let mut view = values.clone();
                        view.extend_from_slice(version.unwrap_or(&nulls));
                        fold(flow, &mut cells, t, key.as_deref(), &view);
                    }
                }
                JoinKind::Interval {
                    left,
                    right,
                    on,
                    right_on,
                    lower,
                    upper,
                } => {
                    let (left, right) = (&flow.inputs[left], &flow.inputs[right]);
                    // A join field's value as the view's key; a null matches nothing.
                    let key_of = |v: &V| (*v != V::Null).then(|| v.render());
                    // Key -> the right's records: (event time, values).
                    let mut by_key: HashMap<String, Vec<(u64, Vec<V>)>> = HashMap::new();
                    for g in joined(right, &mut out) {
                        let values = g.values.expect("a stream has no tombstones");
                        if let Some(k) = key_of(&values[right_on]) {
                            by_key.entry(k).or_default().push((g.event_time, values));
                        }
                    }
                    let nulls = vec![V::Null; right.fields.len()];
                    for g in joined(left, &mut out) {
                        let values = g.values.as_ref().expect("a stream has no tombstones");
                        let t = g.event_time;
                        let key = key_of(&values[on]);
                        let bound = |d: i64| (t as i64 + d).max(0) as u64;
                        let (from, to) = (bound(lower), bound(upper));
                        let matches: Vec<&Vec<V>> = key
                            .as_ref()
                            .and_then(|k| by_key.get(k))
                            .into_iter()
                            .flatten()
                            .filter(|(tb, _)| from <= *tb && *tb <= to)
                            .map(|(_, values)| values)
                            .collect();
                        if matches.is_empty() {
                            if unmatched(&mut out, left, &g, &key).is_none() {
                                let mut view = values.clone();
                                view.extend_from_slice(&nulls);
                                fold(flow, &mut cells, t, key.as_deref(), &view);
                            }
                            continue;
                        }
                        for b in matches {
                            let mut view = values.clone();
                            view.extend_from_slice(b);
                            fold(flow, &mut cells, t, key.as_deref(), &view);
                        }
                    }
                }
            }
        }
    }
    render_windows(flow, cells, &mut out);
    out
}

/// The tables (all but progress) of one uninterrupted run of `spec`'s file over `data`.
pub fn oracle(spec: &weir::spec::DataflowSpec, data: &Dataset) -> Tables {
    let flow = read_flow(&spec.path);
    let topic = flow.inputs[0].topic.as_str();
    run(&flow, &BTreeMap::from([(topic, data)]))
}

/// The tables (all but progress) of one uninterrupted, sequential run of the dataflow file at
/// `path` (single-input, or `[[inputs]]` with an as-of or interval `[join]`) over each topic's messages
/// (topic -> data set; a topic not given has no messages): each input's rows, dead letters and
/// late records, the join's unmatched records (inner joins), and the window tables of the
/// joined view.
pub fn oracle_inputs(path: &std::path::Path, inputs: &BTreeMap<String, Dataset>) -> Tables {
    let topics = inputs.iter().map(|(t, d)| (t.as_str(), d)).collect();
    run(&read_flow(path), &topics)
}
