//! The oracle: what one uninterrupted, sequential run must leave in the tables, computed
//! without any of Weir's code. It reads the dataflow file with the `toml` crate, each message
//! with `serde_json::Value`, decides lateness by its own rule (a record is late when its event
//! time is more than the allowed lateness below the largest event time seen before it in its
//! partition), folds windows into maps, and renders every row itself, as the stores' readers in
//! this harness render cells.
//!
//! What it cannot know is the wording of two kinds of dead-letter reason (serde_json's parse
//! error, and how Weir describes a wrong value): for those it gives the reason's fixed start,
//! and [`normalize`] cuts the tables being compared to the same start (see
//! `assert_tables_eq`). Every other cell is compared whole.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value as Json;

use super::{hex, Dataset, Tables};

/// The largest message parsed by default (`--max-record-bytes`), as documented.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// How much of a bad record's payload the dead-letter table keeps, as documented.
const PAYLOAD_BYTES: usize = 4096;

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
    field: Option<usize>,
}

/// The dataflow file, read independently.
struct Flow {
    name: String,
    topic: String,
    key: usize,
    lateness: u64,
    event_time: Option<usize>,
    fields: Vec<Field>,
    windows: Vec<Window>,
    dimensions: Vec<usize>,
    aggregates: Vec<Aggregate>,
    tables: BTreeMap<String, String>,
}

fn ms(text: &str) -> u64 {
    humantime::parse_duration(text).unwrap().as_millis() as u64
}

fn read_flow(path: &std::path::Path) -> Flow {
    let text = std::fs::read_to_string(path).unwrap();
    let raw: toml::Value = toml::from_str(&text).unwrap();
    let s = |v: &toml::Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
    let fields: Vec<Field> = raw["fields"]
        .as_array()
        .unwrap()
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
    let index = |name: &str| fields.iter().position(|f| f.name == name).unwrap();
    let empty = Vec::new();
    let list = |k: &str| {
        raw.get(k)
            .and_then(|x| x.as_array())
            .unwrap_or(&empty)
            .clone()
    };
    Flow {
        name: s(&raw, "name").unwrap(),
        topic: s(&raw, "topic").unwrap(),
        key: index(&s(&raw, "key").unwrap()),
        lateness: ms(&s(&raw, "allowed_lateness").unwrap_or_else(|| "5s".into())),
        event_time: s(&raw["event_time"], "field").map(|f| index(&f)),
        windows: list("windows")
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
        dimensions: list("dimensions")
            .iter()
            .map(|d| index(d.as_str().unwrap()))
            .collect(),
        aggregates: list("aggregates")
            .iter()
            .map(|a| Aggregate {
                function: s(a, "function").unwrap(),
                field: s(a, "field").map(|f| index(&f)),
            })
            .collect(),
        tables: raw["tables"]
            .as_table()
            .unwrap()
            .iter()
            // Table names; `[tables.ttl]` changes no row.
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect(),
        fields,
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

/// What a message is: a record (event time, key, values), or a dead letter (kind, reason).
enum Parsed {
    Record(u64, String, Vec<V>),
    Dead(&'static str, String),
}

fn parse(flow: &Flow, payload: &[u8], timestamp: Option<i64>) -> Parsed {
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
    for field in &flow.fields {
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
    let event_time = match flow.event_time {
        Some(i) => match values[i] {
            V::Time(t) | V::Int(t) => t,
            _ => return Parsed::Dead("missing_field", missing(&flow.fields[i].name)),
        },
        None => match timestamp {
            Some(t) => t,
            None => return Parsed::Dead("bad_event_time", "the message has no timestamp".into()),
        },
    };
    let Ok(event_time) = u64::try_from(event_time) else {
        let detail = format!("event time {event_time} is before 1970");
        return Parsed::Dead("bad_event_time", detail);
    };
    // The documented latest event time: the end of year 9999.
    if event_time > 253_402_300_799_999 {
        let detail = format!("event time {event_time} is after 9999-12-31");
        return Parsed::Dead("bad_event_time", detail);
    }
    let key = match &values[flow.key] {
        V::Text(s) => s.clone(),
        V::Int(i) => i.to_string(),
        _ => return Parsed::Dead("missing_field", missing(&flow.fields[flow.key].name)),
    };
    Parsed::Record(event_time, key, values)
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
    cell.to_string()
}

fn day(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

/// (window, start, dimension, label) -> (distinct keys, records, numbers per aggregate).
type Cells = BTreeMap<(usize, u64, usize, String), (HashSet<String>, i64, Vec<Vec<f64>>)>;

/// The tables (all but progress) of one uninterrupted run of `spec`'s file over `data`.
pub fn oracle(spec: &weir::spec::DataflowSpec, data: &Dataset) -> Tables {
    let flow = read_flow(&spec.path);
    let table = |k: &str| flow.tables[k].clone();
    let mut out: Tables = ["rows", "by_value", "by_window", "dead_letters", "late"]
        .iter()
        .map(|k| (table(k), BTreeSet::new()))
        .collect();
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut cells: Cells = BTreeMap::new();
    for (partition, messages) in data {
        let mut latest: Option<u64> = None;
        for m in messages {
            let kept = hex(&m.payload[..m.payload.len().min(PAYLOAD_BYTES)]);
            let position = [
                flow.topic.clone(),
                partition.to_string(),
                m.offset.to_string(),
            ];
            let (t, key, values) = match parse(&flow, &m.payload, m.timestamp) {
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
            let watermark = latest.map_or(0, |l| l.saturating_sub(flow.lateness));
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
            let row = flow
                .fields
                .iter()
                .zip(&values)
                .filter(|(f, _)| f.column)
                .map(|(_, v)| v.render())
                .collect();
            rows.insert(key.clone(), row);
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
                            cell.0.insert(key.clone());
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
    }
    out.get_mut(&table("rows"))
        .unwrap()
        .extend(rows.into_values());
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
        let dimension = flow.fields[flow.dimensions[d]].name.clone();
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
    out
}
