//! Rejected messages: dead letters (with a typed reason) and late records. Pure.
//!
//! Bad input is data, not an error of the pipeline: every message that does not become a row
//! becomes one of these, with its partition and offset, and is stored in its own table.

use serde::{Deserialize, Serialize};

/// How much of a bad record's payload the dead-letter table keeps.
pub const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

/// A message that did not become a record: a dead letter or a late record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reject {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why.
    pub kind: RejectKind,
    /// The payload, truncated to [`DEAD_LETTER_PAYLOAD_BYTES`].
    pub payload: Vec<u8>,
    /// The payload's full size.
    pub size: usize,
}

/// Why a message was rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RejectKind {
    /// The record did not parse or does not satisfy the schema.
    DeadLetter {
        /// What is wrong with it.
        reason: Reason,
    },
    /// The record parsed but is below its partition's watermark.
    Late {
        /// Its event time.
        event_time: u64,
        /// The partition's watermark when it arrived.
        watermark: u64,
    },
}

/// Why a record is a dead letter: a kind to group by, and a detail for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// The class of the problem (stored as `reason_kind`).
    pub kind: ReasonKind,
    /// What exactly is wrong, naming the field or byte (stored as `reason`).
    pub detail: String,
}

impl Reason {
    /// A reason of `kind`, described by `detail`.
    pub fn new(kind: ReasonKind, detail: impl Into<String>) -> Self {
        Reason {
            kind,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

/// The classes of bad records. The names ([`ReasonKind::as_str`]) are stored and are part of
/// the table contract: users group and filter by them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReasonKind {
    /// Larger than `--max-record-bytes`.
    Oversized,
    /// Not valid UTF-8.
    InvalidUtf8,
    /// Not a JSON object, or not JSON at all.
    Malformed,
    /// A required field is absent or null.
    MissingField,
    /// A field's value has the wrong type.
    WrongType,
    /// The event time is missing (no message timestamp), before 1970 or after 9999.
    BadEventTime,
    /// Below its partition's watermark (late records have their own table).
    Late,
}

impl ReasonKind {
    /// Every kind, in a fixed order.
    pub const ALL: [ReasonKind; 7] = [
        ReasonKind::Oversized,
        ReasonKind::InvalidUtf8,
        ReasonKind::Malformed,
        ReasonKind::MissingField,
        ReasonKind::WrongType,
        ReasonKind::BadEventTime,
        ReasonKind::Late,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Oversized => "oversized",
            ReasonKind::InvalidUtf8 => "invalid_utf8",
            ReasonKind::Malformed => "malformed",
            ReasonKind::MissingField => "missing_field",
            ReasonKind::WrongType => "wrong_type",
            ReasonKind::BadEventTime => "bad_event_time",
            ReasonKind::Late => "late",
        }
    }
}

/// The part of a payload a dead letter keeps.
pub fn truncate_payload(payload: &[u8]) -> Vec<u8> {
    payload[..payload.len().min(DEAD_LETTER_PAYLOAD_BYTES)].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_distinct_stored_names() {
        let names: std::collections::HashSet<_> =
            ReasonKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ReasonKind::ALL.len());
    }

    #[test]
    fn payloads_are_truncated() {
        assert_eq!(truncate_payload(&[1; 10]).len(), 10);
        assert_eq!(
            truncate_payload(&vec![1; 10_000]).len(),
            DEAD_LETTER_PAYLOAD_BYTES
        );
    }
}
