//! A table row: the field values of one version of a table input's key, totally ordered so that
//! differential dataflow can arrange and consolidate it. Pure.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::data::record::Value;

/// The values of one table row, in schema order.
///
/// [`Value`] holds floats, so it is neither `Eq` nor `Ord`; a row is, totally: values compare
/// by variant (in declaration order: null, text, uuid, int, float, bool, timestamp), then by
/// payload, floats by [`f64::total_cmp`]. Equality and hashing agree with that order (floats by
/// their bits), so `0.0` and `-0.0` are different rows and a NaN equals itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Row(pub Vec<Value>);

impl From<Vec<Value>> for Row {
    fn from(values: Vec<Value>) -> Self {
        Row(values)
    }
}

/// A value's variant, in declaration order.
fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Text(_) => 1,
        Value::Uuid(_) => 2,
        Value::Int(_) => 3,
        Value::Float(_) => 4,
        Value::Bool(_) => 5,
        Value::Timestamp(_) => 6,
    }
}

/// The total order of values: variant, then payload (floats by `total_cmp`).
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Text(a), Value::Text(b)) => a.cmp(b),
        (Value::Uuid(a), Value::Uuid(b)) => a.cmp(b),
        (Value::Int(a), Value::Int(b)) => a.cmp(b),
        (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
        (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
        (Value::Timestamp(a), Value::Timestamp(b)) => a.cmp(b),
        _ => rank(a).cmp(&rank(b)),
    }
}

impl Ord for Row {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (&self.0, &other.0);
        a.iter()
            .zip(b)
            .map(|(x, y)| compare(x, y))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.len().cmp(&b.len()))
    }
}

impl PartialOrd for Row {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Row {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Row {}

impl Hash for Row {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_usize(self.0.len());
        for v in &self.0 {
            state.write_u8(rank(v));
            match v {
                Value::Null => {}
                Value::Text(s) => s.as_str().hash(state),
                Value::Uuid(u) => u.hash(state),
                Value::Int(i) | Value::Timestamp(i) => i.hash(state),
                Value::Float(f) => f.to_bits().hash(state),
                Value::Bool(b) => b.hash(state),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_totally_ordered_by_variant_then_payload() {
        let rows = [
            Row(vec![]),
            Row(vec![Value::Null]),
            Row(vec![Value::Text("a".into())]),
            Row(vec![Value::Text("b".into())]),
            Row(vec![Value::Uuid(1)]),
            Row(vec![Value::Int(-1)]),
            Row(vec![Value::Int(2)]),
            Row(vec![Value::Float(f64::NEG_INFINITY)]),
            Row(vec![Value::Float(-0.0)]),
            Row(vec![Value::Float(0.0)]),
            Row(vec![Value::Float(f64::NAN)]),
            Row(vec![Value::Bool(false)]),
            Row(vec![Value::Timestamp(0)]),
            Row(vec![Value::Timestamp(0), Value::Null]),
        ];
        for (i, a) in rows.iter().enumerate() {
            for (j, b) in rows.iter().enumerate() {
                assert_eq!(a.cmp(b), i.cmp(&j), "{a:?} vs {b:?}");
                assert_eq!(a == b, i == j);
            }
        }
        let nan = Row(vec![Value::Float(f64::NAN)]);
        assert_eq!(nan, nan.clone());
        let hash = |r: &Row| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            r.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&nan), hash(&nan.clone()));
    }
}
