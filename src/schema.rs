//! Schema parsing: message bytes -> typed record, or the reason it is a bad record. Pure.
//!
//! A bad record (oversized, invalid UTF-8, malformed JSON, a required field missing, a value of
//! the wrong type, an event time before 1970) is never an error of the pipeline: it becomes a
//! dead letter with its reason, partition and offset.

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::spec::{DataflowSpec, EventTime, FieldType};

/// The largest message parsed by default; larger ones are dead letters.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
/// How much of a bad record's payload the dead-letter table keeps.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

/// A typed value of one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Absent or JSON null (optional fields only).
    Null,
    /// Text.
    Text(String),
    /// A UUID, as its 128 bits.
    Uuid(u128),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Epoch milliseconds.
    Timestamp(i64),
}

impl Value {
    /// The value as a dimension label: text as is, numbers in decimal, null as `null`.
    pub fn label(&self) -> String {
        match self {
            Value::Null => "null".into(),
            Value::Text(s) => s.clone(),
            Value::Uuid(u) => uuid::Uuid::from_u128(*u).to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => f.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Timestamp(t) => t.to_string(),
        }
    }

    /// The value as a number, for sum, min and max.
    pub fn number(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// A record's key: what rows upsert on and distinct counts count.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Key {
    /// A UUID key.
    Uuid(u128),
    /// An integer key.
    Int(i64),
    /// A text key.
    Text(String),
}

impl Key {
    /// A stable 64-bit hash, for routing records between workers.
    pub fn route(&self) -> u64 {
        match self {
            Key::Uuid(u) => crate::source::assign::mix64((*u as u64) ^ ((*u >> 64) as u64)),
            Key::Int(i) => crate::source::assign::mix64(*i as u64),
            Key::Text(s) => crate::source::assign::fnv1a(s.as_bytes()),
        }
    }
}

/// A record that parsed: where it came from, its event time, its key and its field values (in
/// schema order).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Source partition.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Event time, epoch ms.
    pub event_time: u64,
    /// The key field's value.
    pub key: Key,
    /// Every field's value, in schema order.
    pub values: Vec<Value>,
}

/// A parsed record without its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    /// Event time, epoch ms.
    pub event_time: u64,
    /// The key.
    pub key: Key,
    /// Values in schema order.
    pub values: Vec<Value>,
}

/// Turns message bytes into records for one dataflow.
#[derive(Clone, Debug)]
pub struct Schema {
    spec: DataflowSpec,
    max_record_bytes: usize,
}

impl Schema {
    /// A parser for `spec`'s fields.
    pub fn new(spec: &DataflowSpec, max_record_bytes: usize) -> Self {
        Schema {
            spec: spec.clone(),
            max_record_bytes,
        }
    }

    /// Parses one message. `message_timestamp` is the Kafka timestamp, if any.
    pub fn parse(&self, payload: &[u8], message_timestamp: Option<i64>) -> Result<Parsed, String> {
        if payload.len() > self.max_record_bytes {
            return Err(format!(
                "oversized: {} bytes, the limit is {}",
                payload.len(),
                self.max_record_bytes
            ));
        }
        let text = std::str::from_utf8(payload)
            .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
        let json: Json = serde_json::from_str(text).map_err(|e| format!("malformed JSON: {e}"))?;
        if !json.is_object() {
            return Err("malformed JSON: not an object".into());
        }
        let mut values = Vec::with_capacity(self.spec.fields.len());
        for field in &self.spec.fields {
            let mut node = Some(&json);
            for segment in &field.path {
                node = node.and_then(|n| n.get(segment));
            }
            let value = match node {
                None | Some(Json::Null) if field.required => {
                    return Err(format!("missing required field {:?}", field.name));
                }
                None | Some(Json::Null) => Value::Null,
                Some(json) => convert(json, field.ty).ok_or_else(|| {
                    format!(
                        "field {:?}: expected {}, found {}",
                        field.name,
                        field.ty.cql(),
                        describe(json)
                    )
                })?,
            };
            values.push(value);
        }
        let event_time = match self.spec.event_time {
            EventTime::Field(i) => match values[i] {
                Value::Timestamp(t) | Value::Int(t) => t,
                _ => {
                    return Err(format!(
                        "missing required field {:?}",
                        self.spec.fields[i].name
                    ))
                }
            },
            EventTime::MessageTimestamp => {
                message_timestamp.ok_or("the message has no timestamp")?
            }
        };
        let event_time = u64::try_from(event_time)
            .map_err(|_| format!("event time {event_time} is before 1970"))?;
        let key = match &values[self.spec.key] {
            Value::Uuid(u) => Key::Uuid(*u),
            Value::Int(i) => Key::Int(*i),
            Value::Text(s) => Key::Text(s.clone()),
            _ => {
                return Err(format!(
                    "missing required field {:?}",
                    self.spec.fields[self.spec.key].name
                ))
            }
        };
        Ok(Parsed {
            event_time,
            key,
            values,
        })
    }
}

fn convert(json: &Json, ty: FieldType) -> Option<Value> {
    match (ty, json) {
        (FieldType::Text, Json::String(s)) => Some(Value::Text(s.clone())),
        // The randomuser API returns some postcodes as numbers; the tutorial stores text.
        (FieldType::Text, Json::Number(n)) => Some(Value::Text(n.to_string())),
        (FieldType::Text, Json::Bool(b)) => Some(Value::Text(b.to_string())),
        (FieldType::Uuid, Json::String(s)) => uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| Value::Uuid(u.as_u128())),
        (FieldType::Bigint, Json::Number(n)) => n.as_i64().map(Value::Int),
        (FieldType::Bigint, Json::String(s)) => s.parse().ok().map(Value::Int),
        (FieldType::Double, Json::Number(n)) => n.as_f64().map(Value::Float),
        (FieldType::Double, Json::String(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float),
        (FieldType::Boolean, Json::Bool(b)) => Some(Value::Bool(*b)),
        (FieldType::Timestamp, Json::String(s)) => {
            crate::time::parse_rfc3339(s).map(Value::Timestamp)
        }
        (FieldType::Timestamp, Json::Number(n)) => n.as_i64().map(Value::Timestamp),
        _ => None,
    }
}

fn describe(json: &Json) -> String {
    match json {
        Json::String(s) if s.chars().count() > 40 => {
            format!("{:?}...", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("{s:?}"),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
        Json::Null => "null".into(),
    }
}

/// The first `DEAD_LETTER_PAYLOAD_BYTES` of a payload, for the dead-letter and late tables.
pub fn truncate_payload(payload: &[u8]) -> Vec<u8> {
    payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn users() -> Schema {
        Schema::new(
            &DataflowSpec::load(Path::new("dataflows/users_created.toml")).unwrap(),
            2048,
        )
    }

    const GOOD: &str = r#"{"id":"9b2f1c1e-8a4b-4c62-9f7e-3f1d2a6b7c8d","first_name":"Åse","last_name":"Berg","gender":"female",
        "address":"1 Main St, Oslo, Oslo, Norway","post_code":1234,"email":"a@b.no","username":"ase","dob":"1990-01-01T00:00:00.000Z",
        "registered_date":"2010-01-01T00:00:00.000Z","phone":"123","picture":"https://x/y.jpg","nat":"NO","created_at":"2026-11-21T10:00:01.250Z"}"#;

    #[test]
    fn parses_a_formatted_user() {
        let p = users().parse(GOOD.as_bytes(), None).unwrap();
        assert_eq!(p.event_time, 1_795_255_201_250);
        assert_eq!(p.values[1], Value::Text("Åse".into()));
        assert_eq!(
            p.values[5],
            Value::Text("1234".into()),
            "numeric postcodes become text"
        );
        assert!(matches!(p.key, Key::Uuid(_)));
    }

    #[test]
    fn bad_records_have_reasons() {
        let s = users();
        let reason = |bytes: &[u8]| s.parse(bytes, None).unwrap_err();
        assert!(reason(b"{\"id\":").starts_with("malformed JSON"));
        assert!(reason(b"[1,2]").starts_with("malformed JSON: not an object"));
        assert_eq!(reason(b"{\"x\":\xff}"), "invalid UTF-8 at byte 5");
        assert_eq!(
            reason(GOOD.replace("\"id\":", "\"uid\":").as_bytes()),
            "missing required field \"id\""
        );
        assert!(reason(
            GOOD.replace("\"gender\":\"female\"", "\"gender\":[1]")
                .as_bytes()
        )
        .contains("field \"gender\": expected text, found an array"));
        assert!(reason(
            GOOD.replace("2026-11-21T10:00:01.250Z", "yesterday")
                .as_bytes()
        )
        .contains("expected timestamp"));
        assert!(reason(&vec![b' '; 4096]).starts_with("oversized"));
    }

    #[test]
    fn nested_paths() {
        let spec = DataflowSpec::load(Path::new("dataflows/orders.toml")).unwrap();
        let s = Schema::new(&spec, 1 << 20);
        let p = s
            .parse(br#"{"order":{"id":7,"placed":"2026-11-21T10:00:00Z"},"customer":{"country":"NO"},"total":{"amount":"12.5","currency":"EUR"}}"#, Some(5))
            .unwrap();
        assert_eq!(p.key, Key::Int(7));
        assert_eq!(p.event_time, 5);
        assert_eq!(p.values[3], Value::Float(12.5));
        assert_eq!(
            s.parse(br#"{"order":{"id":7}}"#, None).unwrap_err(),
            "missing required field \"country\""
        );
    }
}
