//! Schema parsing: message bytes -> typed record, or the reason it is a bad record. Pure.
//!
//! A bad record (oversized, invalid UTF-8, malformed JSON, a required field missing, a value of
//! the wrong type, an event time before 1970 or after 9999) is never an error of the pipeline: it becomes a
//! dead letter with its reason, partition and offset.

use compact_str::{format_compact, CompactString, ToCompactString};
use serde::Deserialize;
use std::borrow::Cow;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

pub use crate::data::record::{Key, Record, Value};
pub use crate::data::reject::{truncate_payload, Reason, ReasonKind, DEAD_LETTER_PAYLOAD_BYTES};
use crate::spec::{DataflowSpec, EventTime, FieldType};

/// The latest event time accepted, 9999-12-31T23:59:59.999Z in epoch ms; later ones are dead
/// letters (`bad_event_time`).
pub const LATEST_EVENT_TIME_MS: u64 = 253_402_300_799_999;

/// The largest message parsed by default; larger ones are dead letters.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

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
    /// The fields' JSON paths as a trie, walked once per message.
    paths: PathNode,
}

impl Schema {
    /// A parser for `spec`'s fields.
    pub fn new(spec: &DataflowSpec, max_record_bytes: usize) -> Self {
        let mut paths = PathNode::default();
        for (i, field) in spec.fields.iter().enumerate() {
            let mut node = &mut paths;
            for segment in &field.path {
                let at = match node.children.iter().position(|(k, _)| k == segment) {
                    Some(at) => at,
                    None => {
                        node.children.push((segment.clone(), PathNode::default()));
                        node.children.len() - 1
                    }
                };
                node = &mut node.children[at].1;
            }
            node.fields.push(i);
        }
        Schema {
            spec: spec.clone(),
            max_record_bytes,
            paths,
        }
    }

    /// Parses one message. `message_timestamp` is the Kafka timestamp, if any.
    pub fn parse(&self, payload: &[u8], message_timestamp: Option<i64>) -> Result<Parsed, Reason> {
        if payload.len() > self.max_record_bytes {
            return Err(Reason::new(
                ReasonKind::Oversized,
                format!(
                    "oversized: {} bytes, the limit is {}",
                    payload.len(),
                    self.max_record_bytes
                ),
            ));
        }
        // simdutf8 checks a valid line several times faster than std; std then only
        // describes a bad one.
        let text = simdutf8::basic::from_utf8(payload).map_err(|_| {
            let at = std::str::from_utf8(payload)
                .err()
                .map_or(0, |e| e.valid_up_to());
            Reason::new(
                ReasonKind::InvalidUtf8,
                format!("invalid UTF-8 at byte {at}"),
            )
        })?;
        let mut values: Vec<Value> = std::iter::repeat_with(|| Value::Null)
            .take(self.spec.fields.len())
            .collect();
        let mut wrong = Vec::new();
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let mut not_object = false;
        ObjectSeed {
            node: &self.paths,
            fields: &self.spec.fields,
            values: &mut values,
            wrong: &mut wrong,
            not_object: Some(&mut not_object),
        }
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end())
        .map_err(|e| {
            let detail = if not_object {
                "malformed JSON: not an object".to_string()
            } else {
                format!("malformed JSON: {e}")
            };
            Reason::new(ReasonKind::Malformed, detail)
        })?;
        // The first bad field in schema order: a value of the wrong type, or a required field
        // missing or null.
        for (f, (field, value)) in self.spec.fields.iter().zip(&values).enumerate() {
            if let Some((_, found)) = wrong.iter().find(|(w, _)| *w == f) {
                return Err(Reason::new(
                    ReasonKind::WrongType,
                    format!(
                        "field {:?}: expected {}, found {found}",
                        field.name,
                        field.ty.cql(),
                    ),
                ));
            }
            if field.required && *value == Value::Null {
                return Err(missing(&field.name));
            }
        }
        let event_time = match self.spec.event_time {
            EventTime::Field(i) => match values[i] {
                Value::Timestamp(t) | Value::Int(t) => t,
                _ => return Err(missing(&self.spec.fields[i].name)),
            },
            EventTime::MessageTimestamp => message_timestamp.ok_or_else(|| {
                Reason::new(ReasonKind::BadEventTime, "the message has no timestamp")
            })?,
        };
        let event_time = u64::try_from(event_time).map_err(|_| {
            Reason::new(
                ReasonKind::BadEventTime,
                format!("event time {event_time} is before 1970"),
            )
        })?;
        // A time past year 9999 has no RFC 3339 form or day, and one such record would push
        // its partition's watermark so far that every later record is late.
        if event_time > LATEST_EVENT_TIME_MS {
            return Err(Reason::new(
                ReasonKind::BadEventTime,
                format!("event time {event_time} is after 9999-12-31"),
            ));
        }
        let key = match &values[self.spec.key] {
            Value::Uuid(u) => Key::Uuid(*u),
            Value::Int(i) => Key::Int(*i),
            Value::Text(s) => Key::Text(s.to_string()),
            _ => return Err(missing(&self.spec.fields[self.spec.key].name)),
        };
        Ok(Parsed {
            event_time,
            key,
            values,
        })
    }
}

impl Schema {
    /// A table input's tombstone (a message with a null value): the key comes from the Kafka
    /// message key, read as the key field's type (a uuid's text, an integer's decimal text,
    /// or text), and the event time from the message timestamp. Every other value is null.
    pub fn tombstone(&self, key: Option<&[u8]>, timestamp: Option<i64>) -> Result<Parsed, Reason> {
        let field = &self.spec.fields[self.spec.key];
        let bad = |what: String| Reason::new(ReasonKind::Malformed, what);
        let bytes = key.ok_or_else(|| {
            bad("tombstone without a message key: nothing to delete (produce tombstones with the key of the row to delete)".into())
        })?;
        let text = std::str::from_utf8(bytes).map_err(|_| {
            bad(format!(
                "tombstone key is not UTF-8 (the {} key {:?} is text)",
                field.ty.cql(),
                field.name
            ))
        })?;
        let (key, value) = match field.ty {
            FieldType::Uuid => {
                let u = uuid::Uuid::parse_str(text)
                    .map_err(|_| {
                        bad(format!(
                            "tombstone key {text:?} is not a uuid (the key {:?} is a uuid)",
                            field.name
                        ))
                    })?
                    .as_u128();
                (Key::Uuid(u), Value::Uuid(u))
            }
            FieldType::Bigint => {
                let i: i64 = text.parse().map_err(|_| {
                    bad(format!(
                        "tombstone key {text:?} is not an integer (the key {:?} is a bigint)",
                        field.name
                    ))
                })?;
                (Key::Int(i), Value::Int(i))
            }
            _ => (Key::Text(text.to_string()), Value::Text(text.into())),
        };
        let event_time = timestamp.ok_or_else(|| {
            bad("tombstone without a message timestamp: a delete needs an event time".into())
        })?;
        let late = |what: &str| {
            Reason::new(
                ReasonKind::BadEventTime,
                format!("event time {event_time} is {what}"),
            )
        };
        let event_time = u64::try_from(event_time).map_err(|_| late("before 1970"))?;
        if event_time > LATEST_EVENT_TIME_MS {
            return Err(late("after 9999-12-31"));
        }
        let mut values = vec![Value::Null; self.spec.fields.len()];
        values[self.spec.key] = value;
        Ok(Parsed {
            event_time,
            key,
            values,
        })
    }
}

fn missing(field: &str) -> Reason {
    Reason::new(
        ReasonKind::MissingField,
        format!("missing required field {field:?}"),
    )
}

/// The wanted keys at one level of the JSON object: nested keys, and the fields whose path
/// ends here.
#[derive(Clone, Debug, Default)]
struct PathNode {
    children: Vec<(String, PathNode)>,
    fields: Vec<usize>,
}

/// A JSON value as far as a field needs it: scalars borrowed from the message where possible.
#[derive(Debug)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    Array,
    Object,
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Array)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Object)
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, borrowed from the message unless it has escapes. (serde's own `Cow<str>`
/// always copies: one allocation per key.)
struct JsonKey<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for JsonKey<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = JsonKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<JsonKey<'de>, E> {
                Ok(JsonKey(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<JsonKey<'de>, E> {
                Ok(JsonKey(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Whether two object keys are equal. Keys are short: two overlapping word loads per key
/// instead of a call to memcmp (a tenth of the parse's time went to that call).
fn same_key(wanted: &str, key: &str) -> bool {
    fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
        let mut w = [0; N];
        w.copy_from_slice(&s[at..at + N]);
        w
    }
    let (a, b) = (wanted.as_bytes(), key.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=8 => word::<4>(a, 0) == word::<4>(b, 0) && word::<4>(a, n - 4) == word::<4>(b, n - 4),
        9..=16 => word::<8>(a, 0) == word::<8>(b, 0) && word::<8>(a, n - 8) == word::<8>(b, n - 8),
        _ => a == b,
    }
}

/// Walks one JSON object, converting the values of the wanted paths to their fields' types
/// as it goes and skipping the rest without building anything.
struct ObjectSeed<'s> {
    node: &'s PathNode,
    fields: &'s [crate::spec::Field],
    /// Per field, in schema order: its value (null until found).
    values: &'s mut [Value],
    /// Fields whose value has the wrong type, with a description of what was found.
    wrong: &'s mut Vec<(usize, String)>,
    /// Set when the top level is not an object (None below the top).
    not_object: Option<&'s mut bool>,
}

impl ObjectSeed<'_> {
    /// Notes whether `field`'s latest value had the wrong type (`found` describes it); a later
    /// duplicate key replaces an earlier verdict.
    fn judged(&mut self, field: usize, found: Option<String>) {
        if !self.wrong.is_empty() {
            self.wrong.retain(|(f, _)| *f != field);
        }
        if let Some(found) = found {
            self.wrong.push((field, found));
        }
    }
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let children = &self.node.children;
        // Producers write keys in one order, so the wanted key after the last match is usually
        // the next one: one comparison per key instead of a scan.
        let mut next = 0;
        while let Some(JsonKey(key)) = map.next_key::<JsonKey<'de>>()? {
            let at = match children.get(next) {
                Some((k, _)) if same_key(k, &key) => Some(next),
                _ => children.iter().position(|(k, _)| same_key(k, &key)),
            };
            let Some(at) = at else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            next = at + 1;
            let child = &children[at].1;
            match (child.children.is_empty(), child.fields.as_slice()) {
                // The usual case: one field at this path, converted straight from the JSON.
                (true, &[f]) => {
                    let seed = ValueSeed {
                        ty: self.fields[f].ty,
                        slot: &mut self.values[f],
                    };
                    // Nothing to note for a good value unless an earlier one was bad.
                    let found = map.next_value_seed(seed)?;
                    if found.is_some() || !self.wrong.is_empty() {
                        self.judged(f, found);
                    }
                }
                (true, fields) => {
                    let scalar: Scalar<'de> = map.next_value()?;
                    for f in fields {
                        let seed = ValueSeed {
                            ty: self.fields[*f].ty,
                            slot: &mut self.values[*f],
                        };
                        let found = seed.put(&scalar);
                        self.judged(*f, found);
                    }
                }
                (false, fields) => {
                    // A nested object; a field ending here too would see it as an object.
                    for f in fields {
                        self.values[*f] = Value::Null;
                        self.judged(*f, Some(describe(&Scalar::Object)));
                    }
                    map.next_value_seed(ObjectSeed {
                        node: child,
                        fields: self.fields,
                        values: &mut *self.values,
                        wrong: &mut *self.wrong,
                        not_object: None,
                    })?;
                }
            }
        }
        Ok(())
    }
    // Anything but an object: at the top a bad record, below it the nested fields are absent.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.not_an_object()
    }
}

impl ObjectSeed<'_> {
    fn not_an_object<E: serde::de::Error>(self) -> Result<(), E> {
        match self.not_object {
            Some(flag) => {
                *flag = true;
                Err(E::custom("not an object"))
            }
            None => Ok(()),
        }
    }
}

/// One field's value, converted to the field's type as the JSON is read and written to its
/// slot; a value of the wrong type leaves the slot null and is described (not an error of the
/// walk: the message is still read to its end).
struct ValueSeed<'s> {
    ty: FieldType,
    slot: &'s mut Value,
}

impl ValueSeed<'_> {
    /// Writes the scalar converted to the field's type (null stays null), or null and a
    /// description of the scalar when it has the wrong type.
    fn put(self, scalar: &Scalar<'_>) -> Option<String> {
        let converted = match scalar {
            Scalar::Null => Some(Value::Null),
            scalar => convert(scalar, self.ty),
        };
        let found = converted.is_none().then(|| describe(scalar));
        *self.slot = converted.unwrap_or(Value::Null);
        found
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(self.put(&Scalar::Null))
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(self.put(&Scalar::Null))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(self.put(&Scalar::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(self.put(&Scalar::I64(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(self.put(&Scalar::U64(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(self.put(&Scalar::F64(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        if self.ty == FieldType::Text {
            // The common case, without the detour through Scalar.
            *self.slot = Value::Text(CompactString::new(v));
            return Ok(None);
        }
        Ok(self.put(&Scalar::Str(Cow::Borrowed(v))))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(self.put(&Scalar::Array))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(self.put(&Scalar::Object))
    }
}

fn convert(scalar: &Scalar<'_>, ty: FieldType) -> Option<Value> {
    match (ty, scalar) {
        (FieldType::Text, Scalar::Str(s)) => Some(Value::Text(CompactString::new(s))),
        // The randomuser API returns some postcodes as numbers; the tutorial stores text.
        (FieldType::Text, Scalar::I64(n)) => Some(Value::Text(n.to_compact_string())),
        (FieldType::Text, Scalar::U64(n)) => Some(Value::Text(n.to_compact_string())),
        (FieldType::Text, Scalar::F64(f)) => {
            serde_json::Number::from_f64(*f).map(|n| Value::Text(format_compact!("{n}")))
        }
        (FieldType::Text, Scalar::Bool(b)) => Some(Value::Text(b.to_compact_string())),
        (FieldType::Uuid, Scalar::Str(s)) => uuid::Uuid::parse_str(s)
            .ok()
            .map(|u| Value::Uuid(u.as_u128())),
        (FieldType::Bigint, Scalar::I64(n)) => Some(Value::Int(*n)),
        (FieldType::Bigint, Scalar::U64(n)) => i64::try_from(*n).ok().map(Value::Int),
        (FieldType::Bigint, Scalar::Str(s)) => s.parse().ok().map(Value::Int),
        (FieldType::Double, Scalar::I64(n)) => Some(Value::Float(*n as f64)),
        (FieldType::Double, Scalar::U64(n)) => Some(Value::Float(*n as f64)),
        (FieldType::Double, Scalar::F64(f)) => Some(Value::Float(*f)),
        (FieldType::Double, Scalar::Str(s)) => s
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Value::Float),
        (FieldType::Boolean, Scalar::Bool(b)) => Some(Value::Bool(*b)),
        (FieldType::Timestamp, Scalar::Str(s)) => {
            crate::time::parse_rfc3339(s).map(Value::Timestamp)
        }
        (FieldType::Timestamp, Scalar::I64(n)) => Some(Value::Timestamp(*n)),
        (FieldType::Timestamp, Scalar::U64(n)) => i64::try_from(*n).ok().map(Value::Timestamp),
        _ => None,
    }
}

fn describe(scalar: &Scalar<'_>) -> String {
    match scalar {
        Scalar::Str(s) if s.chars().count() > 40 => {
            format!("{:?}...", s.chars().take(40).collect::<String>())
        }
        Scalar::Str(s) => format!("{s:?}"),
        Scalar::I64(n) => n.to_string(),
        Scalar::U64(n) => n.to_string(),
        Scalar::F64(f) => f.to_string(),
        Scalar::Bool(b) => b.to_string(),
        Scalar::Array => "an array".into(),
        Scalar::Object => "an object".into(),
        Scalar::Null => "null".into(),
    }
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

    /// `same_key` agrees with `==` on every length it treats specially.
    #[test]
    fn same_key_is_equality() {
        let words: Vec<String> = (0..=20)
            .flat_map(|n| {
                let base = "abcdefghijklmnopqrstu"[..n].to_string();
                let mut variants = vec![base.clone()];
                for i in 0..n {
                    let mut changed = base.clone().into_bytes();
                    changed[i] = b'z';
                    variants.push(String::from_utf8(changed).unwrap());
                }
                variants
            })
            .collect();
        for a in &words {
            for b in &words {
                assert_eq!(same_key(a, b), a == b, "{a:?} vs {b:?}");
            }
        }
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
    fn keys_in_any_order_and_escaped() {
        let s = users();
        let expected = s.parse(GOOD.as_bytes(), None).unwrap();
        // serde_json's map sorts keys: the same user with its keys in another order.
        let sorted = serde_json::from_str::<serde_json::Value>(GOOD)
            .unwrap()
            .to_string();
        assert_eq!(s.parse(sorted.as_bytes(), None).unwrap(), expected);
        let escaped = GOOD.replace("\"gender\":", "\"g\\u0065nder\":");
        assert_eq!(s.parse(escaped.as_bytes(), None).unwrap(), expected);
        // A later duplicate key wins, also over an earlier value of the wrong type.
        let twice = GOOD.replace(
            "\"gender\":\"female\"",
            "\"gender\":[1],\"gender\":\"female\"",
        );
        assert_eq!(s.parse(twice.as_bytes(), None).unwrap(), expected);
    }

    #[test]
    fn skipped_values_are_only_checked_for_syntax_and_read_ones_are_converted() {
        let s = Schema::new(
            &DataflowSpec::load(Path::new("dataflows/users_created.toml")).unwrap(),
            DEFAULT_MAX_RECORD_BYTES,
        );
        let expected = s.parse(GOOD.as_bytes(), None).unwrap();
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let digits = format!("1{}", "9".repeat(10_000));
        let with = |key: &str, value: &str| GOOD.replacen('{', &format!("{{\"{key}\":{value},"), 1);
        // Under a key no field reads: the same record.
        for junk in [deep.as_str(), &digits, r#""a\ud800b""#] {
            assert_eq!(
                s.parse(with("junk", junk).as_bytes(), None).unwrap(),
                expected
            );
        }
        // Not JSON, even where nothing is read: a raw control byte in a string.
        let raw_nul = s.parse(with("junk", "\"a\u{0}b\"").as_bytes(), None);
        assert_eq!(raw_nul.unwrap_err().kind, ReasonKind::Malformed);
        // In a field the dataflow reads (a later duplicate of `gender` wins).
        let read = |value: &str| {
            s.parse(
                with("gender", value)
                    .replacen("\"gender\":\"female\",", "", 1)
                    .as_bytes(),
                None,
            )
        };
        assert_eq!(read(&digits).unwrap_err().kind, ReasonKind::Malformed);
        assert_eq!(
            read(r#""a\ud800b""#).unwrap_err().kind,
            ReasonKind::Malformed
        );
        assert_eq!(read(&deep).unwrap_err().kind, ReasonKind::WrongType);
        let nul = read(r#""a\u0000b""#).unwrap();
        assert_eq!(nul.values[3], Value::Text("a\u{0}b".into()));
    }

    #[test]
    fn event_times_after_the_year_9999_are_bad() {
        let s = users();
        let at = |ms: u64| {
            let text = GOOD.replace("\"2026-11-21T10:00:01.250Z\"", &ms.to_string());
            s.parse(text.as_bytes(), None)
        };
        assert_eq!(
            at(LATEST_EVENT_TIME_MS).unwrap().event_time,
            LATEST_EVENT_TIME_MS
        );
        let reason = at(LATEST_EVENT_TIME_MS + 1).unwrap_err();
        assert_eq!(reason.kind, ReasonKind::BadEventTime);
        assert_eq!(
            reason.detail,
            "event time 253402300800000 is after 9999-12-31"
        );
    }

    #[test]
    fn bad_records_have_reasons() {
        let s = users();
        let reason = |bytes: &[u8]| s.parse(bytes, None).unwrap_err();
        let detail = |bytes: &[u8]| reason(bytes).detail;
        assert!(detail(b"{\"id\":").starts_with("malformed JSON"));
        assert_eq!(reason(b"{\"id\":").kind, ReasonKind::Malformed);
        assert!(detail(b"[1,2]").starts_with("malformed JSON: not an object"));
        assert_eq!(
            reason(b"{\"x\":\xff}"),
            Reason::new(ReasonKind::InvalidUtf8, "invalid UTF-8 at byte 5")
        );
        assert_eq!(
            reason(GOOD.replace("\"id\":", "\"uid\":").as_bytes()),
            Reason::new(ReasonKind::MissingField, "missing required field \"id\"")
        );
        let wrong = reason(
            GOOD.replace("\"gender\":\"female\"", "\"gender\":[1]")
                .as_bytes(),
        );
        assert_eq!(wrong.kind, ReasonKind::WrongType);
        assert!(wrong
            .detail
            .contains("field \"gender\": expected text, found an array"));
        assert!(detail(
            GOOD.replace("2026-11-21T10:00:01.250Z", "yesterday")
                .as_bytes()
        )
        .contains("expected timestamp"));
        assert_eq!(reason(&vec![b' '; 4096]).kind, ReasonKind::Oversized);
        assert!(detail(&vec![b' '; 4096]).starts_with("oversized"));
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
            s.parse(br#"{"order":{"id":7}}"#, None).unwrap_err().detail,
            "missing required field \"country\""
        );
    }
}
