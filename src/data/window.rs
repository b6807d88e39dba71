//! Window results: one row of the window tables. Pure.

use serde::{Deserialize, Serialize};

/// The final aggregates of one window, dimension and value: one row of the window tables.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// Index into the spec's windows.
    pub window: u16,
    /// Window start, epoch ms.
    pub start: u64,
    /// Window end, epoch ms (exclusive).
    pub end: u64,
    /// Index into the spec's dimensions.
    pub dimension: u16,
    /// The dimension's value.
    pub value: String,
    /// One per aggregate.
    pub aggregates: Vec<AggregateValue>,
}

/// A final aggregate value, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AggregateValue {
    /// count and count_distinct.
    Int(i64),
    /// sum, min and max (`None` when no record had the field).
    Float(Option<f64>),
}

impl std::fmt::Display for AggregateValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AggregateValue::Int(n) => write!(f, "{n}"),
            AggregateValue::Float(Some(x)) => write!(f, "{x}"),
            AggregateValue::Float(None) => write!(f, "null"),
        }
    }
}
