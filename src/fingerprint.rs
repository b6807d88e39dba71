//! Fingerprints: what a dataflow's stored outputs depend on, stored with every progress record,
//! and how a dataflow file differs from the one that wrote them. Pure: no I/O.
//!
//! A [`Definition`] is the part of a dataflow that decides its outputs, in three groups:
//! - **validity**: the input and its format, the fields, the key, the event time, the allowed
//!   lateness and the idle timeout. They decide which records are rows, dead letters or late,
//!   and each record's windows. A change here cannot be reconciled with what is written: Weir
//!   refuses to start ([`Kind::Refused`]);
//! - **records**: the rows, dead-letter and late tables and the stored columns. A change
//!   rewrites every row from the start of the history ([`Kind::Backfill`]);
//! - **units**: one per window and dimension, with the window's size and slide, the aggregates
//!   and the window tables. A unit added (or changed) is backfilled; a unit removed is no longer
//!   written. A window whose size or slide changed under the same name is refused, because its
//!   rows would mix two meanings under one `window_name`.
//!
//! Weir's version is recorded too; a different version with the same file resumes.
//! [`Definition::fingerprint`] is a stable hash of the whole definition; the JSON text is
//! stored beside it so that a later start can say, one line per change, what changed.

use serde::{Deserialize, Serialize};

use crate::spec::{AggregateFn, DataflowSpec, EventTime};

/// What a dataflow's outputs depend on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    /// The Weir version that wrote it.
    pub weir: String,
    /// The dataflow's name.
    pub dataflow: String,
    /// What decides which records are valid, late, and in which windows.
    pub validity: Validity,
    /// The record outputs: rows, dead letters, late records.
    pub records: Records,
    /// The window outputs, one per window and dimension.
    pub units: Vec<Unit>,
}

/// What decides which records are valid, late, and in which windows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validity {
    /// The input's stable identity (`kafka:users_created`, `file:/data`, ...).
    pub source: String,
    /// The topic.
    pub topic: String,
    /// The message format.
    pub format: String,
    /// Fields: `name path type required`, in order.
    pub fields: Vec<String>,
    /// The key field.
    pub key: String,
    /// The event time (a field name or `message_timestamp`).
    pub event_time: String,
    /// Allowed lateness, ms.
    pub allowed_lateness_ms: u64,
    /// Idle timeout, ms.
    pub idle_timeout_ms: Option<u64>,
    /// Window name -> (size, slide) in ms.
    pub windows: Vec<(String, u64, u64)>,
}

/// The record outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Records {
    /// Rows table.
    pub rows: String,
    /// Dead-letter table.
    pub dead_letters: String,
    /// Late-record table.
    pub late: String,
    /// Columns of the rows table.
    pub columns: Vec<String>,
}

/// One window output: a window and a dimension, with what its rows hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// `window/dimension`, e.g. `1m/gender`.
    pub id: String,
    /// Window size, ms.
    pub size_ms: u64,
    /// Window slide, ms.
    pub slide_ms: u64,
    /// Aggregates, `name=function`.
    pub aggregates: Vec<String>,
    /// The by-value and by-window tables.
    pub tables: (String, String),
}

/// The id of the unit of window `w` and dimension `d` of `spec`.
pub fn unit_id(spec: &DataflowSpec, w: usize, d: usize) -> String {
    format!(
        "{}/{}",
        spec.windows[w].name, spec.fields[spec.dimensions[d]].name
    )
}

fn function(f: &AggregateFn, spec: &DataflowSpec) -> String {
    let field = |i: &usize| spec.fields[*i].name.as_str();
    match f {
        AggregateFn::Count => "count".into(),
        AggregateFn::CountDistinct => format!("count_distinct({})", spec.fields[spec.key].name),
        AggregateFn::Sum(i) => format!("sum({})", field(i)),
        AggregateFn::Min(i) => format!("min({})", field(i)),
        AggregateFn::Max(i) => format!("max({})", field(i)),
    }
}

impl Definition {
    /// The definition of `spec` reading the input named `source`.
    pub fn of(spec: &DataflowSpec, source: &str) -> Self {
        let validity = Validity {
            source: source.to_string(),
            topic: spec.topic.clone(),
            format: "json".into(),
            fields: spec
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "{} {} {} {}",
                        f.name,
                        f.path.join("."),
                        f.ty.cql(),
                        if f.required { "required" } else { "optional" }
                    )
                })
                .collect(),
            key: spec.fields[spec.key].name.clone(),
            event_time: match spec.event_time {
                EventTime::Field(i) => spec.fields[i].name.clone(),
                EventTime::MessageTimestamp => "message_timestamp".into(),
            },
            allowed_lateness_ms: spec.allowed_lateness_ms,
            idle_timeout_ms: spec.idle_timeout.map(|d| d.as_millis() as u64),
            windows: spec
                .windows
                .iter()
                .map(|w| (w.name.clone(), w.spec.size, w.spec.slide))
                .collect(),
        };
        let records = Records {
            rows: spec.tables.rows.clone(),
            dead_letters: spec.tables.dead_letters.clone(),
            late: spec.tables.late.clone(),
            columns: spec.columns().map(|(_, f)| f.name.clone()).collect(),
        };
        let aggregates: Vec<String> = spec
            .aggregates
            .iter()
            .map(|a| format!("{}={}", a.name, function(&a.function, spec)))
            .collect();
        let mut units = Vec::new();
        for (w, window) in spec.windows.iter().enumerate() {
            for d in 0..spec.dimensions.len() {
                units.push(Unit {
                    id: unit_id(spec, w, d),
                    size_ms: window.spec.size,
                    slide_ms: window.spec.slide,
                    aggregates: aggregates.clone(),
                    tables: (spec.tables.by_value.clone(), spec.tables.by_window.clone()),
                });
            }
        }
        Definition {
            weir: env!("CARGO_PKG_VERSION").to_string(),
            dataflow: spec.name.clone(),
            validity,
            records,
            units,
        }
    }

    /// The definition as stored (JSON).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A stored definition, if the text is one.
    pub fn from_json(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// A stable hash of the whole definition, 16 hex digits.
    pub fn fingerprint(&self) -> String {
        format!(
            "{:016x}",
            crate::data::hash::fnv1a(self.to_json().as_bytes())
        )
    }

    /// The unit with this id.
    pub fn unit(&self, id: &str) -> Option<&Unit> {
        self.units.iter().find(|u| u.id == id)
    }
}

/// What a change means for a start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Nothing written depends on it: resume.
    Resume,
    /// New or changed outputs: replayed from the start of the history, written once.
    Backfill,
    /// Outputs no longer written; their rows stay.
    Removed,
    /// Decides which records are valid, late or in which window: refused.
    Refused,
}

/// One change between a stored definition and the current one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What it means.
    pub kind: Kind,
    /// One line for people.
    pub line: String,
}

/// The changes from `stored` to `current`, one per thing that changed.
pub fn diff(stored: &Definition, current: &Definition) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut push = |kind: Kind, line: String| changes.push(Change { kind, line });
    if stored.weir != current.weir {
        push(
            Kind::Resume,
            format!(
                "written by weir {}, now {}: resumes (no output depends on the version)",
                stored.weir, current.weir
            ),
        );
    }
    let (s, c) = (&stored.validity, &current.validity);
    let refuse = |what: &str, old: &dyn std::fmt::Debug, new: &dyn std::fmt::Debug| {
        format!("{what} changed from {old:?} to {new:?}: refused")
    };
    if s.source != c.source || s.topic != c.topic {
        push(
            Kind::Refused,
            refuse("the input", &(&s.source, &s.topic), &(&c.source, &c.topic)),
        );
    }
    if s.format != c.format {
        push(Kind::Refused, refuse("the format", &s.format, &c.format));
    }
    for field in s.fields.iter().filter(|f| !c.fields.contains(f)) {
        let name = field.split(' ').next().unwrap_or_default();
        match c.fields.iter().find(|f| f.split(' ').next() == Some(name)) {
            Some(now) => push(Kind::Refused, refuse(&format!("field {name}"), field, now)),
            None => push(Kind::Refused, format!("field {name} removed: refused")),
        }
    }
    for field in c.fields.iter().filter(|f| !s.fields.contains(f)) {
        let name = field.split(' ').next().unwrap_or_default();
        if !s.fields.iter().any(|f| f.split(' ').next() == Some(name)) {
            push(Kind::Refused, format!("field {field:?} added: refused"));
        }
    }
    let field_refused = s.fields.iter().any(|f| !c.fields.contains(f))
        || c.fields.iter().any(|f| !s.fields.contains(f));
    if s.fields != c.fields && !field_refused {
        push(Kind::Refused, "the fields' order changed: refused".into());
    }
    if s.key != c.key {
        push(Kind::Refused, refuse("the key", &s.key, &c.key));
    }
    if s.event_time != c.event_time {
        push(
            Kind::Refused,
            refuse("the event time", &s.event_time, &c.event_time),
        );
    }
    if s.allowed_lateness_ms != c.allowed_lateness_ms {
        push(
            Kind::Refused,
            refuse(
                "allowed_lateness",
                &ms(s.allowed_lateness_ms),
                &ms(c.allowed_lateness_ms),
            ),
        );
    }
    if s.idle_timeout_ms != c.idle_timeout_ms {
        let text = |t: Option<u64>| t.map_or("off".to_string(), ms);
        push(
            Kind::Refused,
            refuse(
                "idle_timeout",
                &text(s.idle_timeout_ms),
                &text(c.idle_timeout_ms),
            ),
        );
    }
    for (name, size, slide) in &c.windows {
        if let Some((_, old_size, old_slide)) = s.windows.iter().find(|(n, _, _)| n == name) {
            if (old_size, old_slide) != (size, slide) {
                push(
                    Kind::Refused,
                    format!(
                        "window {name} changed from size {} slide {} to size {} slide {}: refused (give the new window another name)",
                        ms(*old_size), ms(*old_slide), ms(*size), ms(*slide)
                    ),
                );
            }
        }
    }
    if stored.records != current.records {
        push(
            Kind::Backfill,
            format!(
                "the rows' tables or columns changed ({} {:?} -> {} {:?}): every row is written again from the start of the history",
                stored.records.rows, stored.records.columns, current.records.rows, current.records.columns
            ),
        );
    }
    // Units, described per window, per dimension and per aggregate list where possible.
    let windows = |d: &Definition| -> Vec<String> {
        d.validity.windows.iter().map(|w| w.0.clone()).collect()
    };
    let dimensions = |d: &Definition| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for u in &d.units {
            let dim = u.id.split_once('/').map_or("", |x| x.1).to_string();
            if !out.contains(&dim) {
                out.push(dim);
            }
        }
        out
    };
    let (sw, cw) = (windows(stored), windows(current));
    let (sd, cd) = (dimensions(stored), dimensions(current));
    for (what, old, new) in [("window", &sw, &cw), ("dimension", &sd, &cd)] {
        for name in new.iter().filter(|n| !old.contains(n)) {
            push(
                Kind::Backfill,
                format!("{what} {name} added: backfilled from the start of the history"),
            );
        }
        for name in old.iter().filter(|n| !new.contains(n)) {
            push(
                Kind::Removed,
                format!("{what} {name} removed: no longer written; its rows stay"),
            );
        }
    }
    let changed: Vec<&Unit> = current
        .units
        .iter()
        .filter(|u| {
            stored.unit(&u.id).is_some_and(|old| {
                old != *u && (old.size_ms, old.slide_ms) == (u.size_ms, u.slide_ms)
            })
        })
        .collect();
    if let Some(first) = changed.first() {
        let old = stored.unit(&first.id).map(|u| (&u.aggregates, &u.tables));
        push(
            Kind::Backfill,
            format!(
                "aggregates or window tables changed ({:?} -> {:?}, {} windows and dimensions): recomputed from the start of the history",
                old,
                (&first.aggregates, &first.tables),
                changed.len()
            ),
        );
    }
    changes
}

fn ms(v: u64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(v)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> DataflowSpec {
        DataflowSpec::parse(text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn base(extra: &str, lateness: &str) -> String {
        format!(
            r#"
name = "d"
topic = "t"
key = "id"
allowed_lateness = "{lateness}"
dimensions = ["gender"]
[event_time]
field = "at"
[[fields]]
name = "id"
type = "uuid"
required = true
[[fields]]
name = "gender"
type = "text"
[[fields]]
name = "at"
type = "timestamp"
required = true
[[windows]]
name = "1m"
size = "1m"
{extra}
[[aggregates]]
name = "n"
function = "count"
[tables]
rows = "r"
by_value = "v"
by_window = "w"
dead_letters = "x"
late = "l"
"#
        )
    }

    fn kinds(old: &str, new: &str) -> Vec<(Kind, String)> {
        let old = Definition::of(&spec(old), "memory");
        let new = Definition::of(&spec(new), "memory");
        diff(&old, &new)
            .into_iter()
            .map(|c| (c.kind, c.line))
            .collect()
    }

    #[test]
    fn the_same_file_has_the_same_fingerprint_and_no_changes() {
        let a = Definition::of(&spec(&base("", "5s")), "memory");
        let b = Definition::of(&spec(&base("", "5s")), "memory");
        assert_eq!(a.fingerprint(), b.fingerprint());
        assert!(diff(&a, &b).is_empty());
        assert_eq!(Definition::from_json(&a.to_json()), Some(a));
    }

    #[test]
    fn an_added_window_is_backfilled_and_a_removed_one_stops() {
        let more = "[[windows]]\nname = \"1h\"\nsize = \"1h\"\n";
        let changes = kinds(&base("", "5s"), &base(more, "5s"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].0, Kind::Backfill);
        assert!(changes[0].1.starts_with("window 1h added"), "{changes:?}");
        let changes = kinds(&base(more, "5s"), &base("", "5s"));
        assert_eq!(changes[0].0, Kind::Removed, "{changes:?}");
    }

    #[test]
    fn lateness_and_window_sizes_are_refused() {
        let changes = kinds(&base("", "5s"), &base("", "10s"));
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(changes[0].0, Kind::Refused);
        assert!(changes[0].1.contains("allowed_lateness"), "{changes:?}");
        let resized = base("", "5s").replace("size = \"1m\"", "size = \"2m\"");
        let changes = kinds(&base("", "5s"), &resized);
        assert!(
            changes
                .iter()
                .any(|(k, l)| *k == Kind::Refused && l.starts_with("window 1m")),
            "{changes:?}"
        );
    }

    #[test]
    fn a_new_version_resumes() {
        let old = Definition::of(&spec(&base("", "5s")), "memory");
        let mut older = old.clone();
        older.weir = "0.0.1".into();
        let changes = diff(&older, &old);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].kind, Kind::Resume);
        assert_ne!(older.fingerprint(), old.fingerprint());
    }
}
