//! Records: typed values, keys, and a record with its position. Pure.

use compact_str::{CompactString, ToCompactString};
use serde::{Deserialize, Serialize};

/// A typed value of one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// Absent or JSON null (optional fields only).
    Null,
    /// Text (up to 24 bytes inline).
    Text(CompactString),
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
    pub fn label(&self) -> CompactString {
        match self {
            Value::Null => CompactString::const_new("null"),
            Value::Text(s) => s.clone(),
            Value::Uuid(u) => uuid::Uuid::from_u128(*u).to_compact_string(),
            Value::Int(i) => i.to_compact_string(),
            Value::Float(f) => f.to_compact_string(),
            Value::Bool(b) => b.to_compact_string(),
            Value::Timestamp(t) => t.to_compact_string(),
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
            Key::Uuid(u) => crate::data::hash::mix64((*u as u64) ^ ((*u >> 64) as u64)),
            Key::Int(i) => crate::data::hash::mix64(*i as u64),
            Key::Text(s) => crate::data::hash::fnv1a(s.as_bytes()),
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
    /// A table input's tombstone: the key is deleted as of `event_time` (every value is
    /// null).
    pub deleted: bool,
    /// When the source read it, on the process clock (microseconds): for the
    /// latency metrics only, never written to a table.
    pub read_at_us: u64,
}

impl Record {
    /// The record with only the values of `fields`, in that order (what a join carries of
    /// it); position, time, key and delete flag unchanged.
    pub fn projected(&self, fields: &[usize]) -> Record {
        Record {
            partition: self.partition,
            offset: self.offset,
            event_time: self.event_time,
            key: self.key.clone(),
            values: fields.iter().map(|f| self.values[*f].clone()).collect(),
            deleted: self.deleted,
            read_at_us: self.read_at_us,
        }
    }
}
