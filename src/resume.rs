//! Resuming: what a start does with the stored progress of its dataflow, given the file it
//! runs now. Pure: the runtime reads the records, [`Plan::new`] decides, and `weir check
//! --against` prints the same decision without starting.
//!
//! Each stored record carries the [`Definition`] that wrote it. Against the current one:
//! - a change that decides which records are valid, late or in which window is refused
//!   ([`Plan::refused`]);
//! - a window output (unit) that every record has, with the same definition, resumes: its
//!   windows ending below its restored frontier `F_u` (the largest stored for it) are not
//!   emitted again;
//! - a partition whose record lacks a current unit (added, or changed), or whose rows' tables
//!   changed, is **backfilled**: it replays from the start of its history (the offset its
//!   first run began at, stored with the progress; `--start` when unknown) with the watermark
//!   a fresh partition gets, so lateness is decided as the first run decided it.
//!
//! Correctness argument. The invariant the progress stage keeps is (I): for every partition
//! `p` and unit `u`, every record before `p`'s stored resume offset has all its `u`-windows
//! ending below `F_u`; and (R): every record before `p`'s `rows_from` has its rows durable.
//! A unit absent from `p`'s record has no such promise, so `p` replays from its start, before
//! which there is nothing. On a replay, the windows of `u` ending below `F_u` are durable and
//! were complete when written (by (I) in the run that wrote them), so they are suppressed;
//! windows ending at or above `F_u` receive every record of every partition, because records
//! before a resume offset only touch `u`-windows below `F_u`. Rows, dead letters and late
//! records before `rows_from` are not written again, so a replay never moves a row back to an
//! older version. The progress stage stores `max(D, F_u)` per unit and
//! `max(rows_from, resume)`, which keeps (I) and (R) (see [`crate::progress`]). Hence the
//! tables equal those of one uninterrupted run of the current file over the same history.
//!
//! Records written before fingerprints (no definition) are taken to be written by the current
//! file, as the Weir that wrote them did; the plan says so in a line.

use std::collections::HashMap;

use crate::fingerprint::{diff, Change, Definition, Kind};
use crate::progress::PartitionProgress;
use crate::spec::DataflowSpec;

/// Where one partition with stored progress starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionPlan {
    /// The offset to read from; `None`: `--start` (a backfill of a history whose start was
    /// not stored).
    pub offset: Option<i64>,
    /// The watermark at that offset; `None`: a fresh partition's.
    pub watermark: Option<u64>,
    /// Rows before this offset are durable and not written again.
    pub rows_from: i64,
    /// The start of the partition's history, as stored.
    pub start_offset: Option<i64>,
    /// Replaying for outputs added since its record was written.
    pub backfill: bool,
}

/// What a start does.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Per partition with stored progress.
    pub partitions: HashMap<i32, PartitionPlan>,
    /// Per unit of the current file (window-major, as [`Definition::units`]): its restored
    /// frontier.
    pub units: Vec<(String, u64)>,
    /// What changed since the stored records were written, one line each.
    pub changes: Vec<Change>,
    /// Records written before fingerprints were found.
    pub legacy: bool,
    /// The generator's stored time origin, if any.
    pub epoch: Option<i64>,
}

impl Plan {
    /// The plan for running `current` over the stored records `stored`.
    pub fn new(current: &Definition, stored: &[PartitionProgress]) -> Self {
        let stored: Vec<&PartitionProgress> = stored.iter().filter(|p| !p.is_reset()).collect();
        let mut changes: Vec<Change> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        let mut legacy = false;
        let mut partitions = HashMap::new();
        let mut frontiers: Vec<Option<u64>> = vec![None; current.units.len()];
        for record in &stored {
            let definition = match &record.definition {
                Some((fingerprint, json)) => {
                    let parsed = Definition::from_json(json);
                    if !seen.contains(&fingerprint.as_str()) {
                        seen.push(fingerprint);
                        match &parsed {
                            Some(old) => {
                                for change in diff(old, current) {
                                    if !changes.contains(&change) {
                                        changes.push(change);
                                    }
                                }
                            }
                            None => changes.push(Change {
                                kind: Kind::Refused,
                                line: format!("a progress record holds a definition this Weir cannot read (fingerprint {fingerprint}): refused"),
                            }),
                        }
                    }
                    parsed
                }
                None => {
                    legacy = true;
                    Some(current.clone())
                }
            };
            let Some(definition) = definition else {
                continue;
            };
            let mut lacks_unit = false;
            for (i, unit) in current.units.iter().enumerate() {
                let frontier = (definition.unit(&unit.id) == Some(unit)).then(|| {
                    record
                        .units
                        .get(&unit.id)
                        .copied()
                        .unwrap_or(record.durable_frontier)
                });
                match frontier {
                    Some(f) => frontiers[i] = Some(frontiers[i].map_or(f, |g: u64| g.max(f))),
                    None => lacks_unit = true,
                }
            }
            let same_rows = definition.records == current.records;
            let rows_from = match (&record.definition, same_rows) {
                (_, false) => i64::MIN,
                (None, true) => record.resume_offset,
                (Some(_), true) => record.rows_from,
            };
            let backfill = lacks_unit || !same_rows;
            partitions.insert(
                record.partition,
                PartitionPlan {
                    offset: if backfill {
                        record.start_offset
                    } else {
                        Some(record.resume_offset)
                    },
                    watermark: (!backfill).then_some(record.watermark),
                    rows_from,
                    start_offset: record.start_offset,
                    backfill,
                },
            );
        }
        if legacy {
            changes.insert(0, Change {
                kind: Kind::Resume,
                line: "progress written by a Weir without fingerprints: taken to be written by this file (if windows, dimensions or aggregates were added since, start once with --reset-progress)".into(),
            });
        }
        // Units no record has (or whose records all rewind) start from nothing.
        let units = current
            .units
            .iter()
            .zip(frontiers)
            .map(|(u, f)| (u.id.clone(), f.unwrap_or(0)))
            .collect();
        Plan {
            partitions,
            units,
            changes,
            legacy,
            epoch: stored.iter().map(|p| p.epoch).max().filter(|e| *e > 0),
        }
    }

    /// The start of a table input: it reads its history from the first offset on every start
    /// (its state is its history, and the join needs all of it), with a fresh partition's
    /// watermark, so lateness is decided as in the run that first read it. Rows, dead letters
    /// and late records before a partition's stored `rows_from` are durable and not written
    /// again (a replay must not put back a row a later tombstone deleted); a change to the
    /// rows' definition writes them all again. Nothing is refused: the table's rows are the
    /// same function of its history under any file.
    pub fn table(current: &Definition, stored: &[PartitionProgress]) -> Self {
        let mut plan = Plan::new(current, stored);
        plan.changes.retain(|c| c.kind != Kind::Refused);
        for p in plan.partitions.values_mut() {
            p.offset = None;
            p.watermark = None;
            p.backfill = false;
        }
        plan
    }

    /// The changes that stop the start, if any.
    pub fn refused(&self) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| c.kind == Kind::Refused)
            .collect()
    }

    /// Partitions that replay for added outputs.
    pub fn backfills(&self) -> Vec<i32> {
        let mut p: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.backfill)
            .map(|(k, _)| *k)
            .collect();
        p.sort_unstable();
        p
    }

    /// The restored frontier of window `w` and dimension `d` (window-major order).
    pub fn suppress(&self, spec: &DataflowSpec) -> Vec<Vec<u64>> {
        let dims = spec.dimensions.len();
        (0..spec.windows.len())
            .map(|w| (0..dims).map(|d| self.units[w * dims + d].1).collect())
            .collect()
    }

    /// One line saying what the start does.
    pub fn summary(&self, dataflow: &str) -> String {
        if self.partitions.is_empty() {
            return format!("dataflow {dataflow}: no stored progress; starts from --start");
        }
        let refused = self.refused();
        if !refused.is_empty() {
            return format!("dataflow {dataflow}: refused to start ({} change(s) would make the stored outputs wrong); start it under a new name (its own progress and rows), or with --reset-progress (replays from --start and rewrites its outputs)", refused.len());
        }
        let backfills = self.backfills();
        if backfills.is_empty() {
            format!(
                "dataflow {dataflow}: resumes {} partitions",
                self.partitions.len()
            )
        } else {
            format!(
                "dataflow {dataflow}: backfills partitions {backfills:?} from the start of their history (rows and windows already written are not written again), resumes {} others",
                self.partitions.len() - backfills.len()
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    fn spec(windows: &[&str], lateness: &str) -> DataflowSpec {
        let mut text = format!(
            "name = \"d\"\ntopic = \"t\"\nkey = \"id\"\nallowed_lateness = \"{lateness}\"\ndimensions = [\"g\"]\n[event_time]\nfield = \"at\"\n\
             [[fields]]\nname = \"id\"\ntype = \"uuid\"\nrequired = true\n[[fields]]\nname = \"g\"\ntype = \"text\"\n\
             [[fields]]\nname = \"at\"\ntype = \"timestamp\"\nrequired = true\n"
        );
        for w in windows {
            text += &format!("[[windows]]\nname = \"{w}\"\nsize = \"{w}\"\n");
        }
        text += "[[aggregates]]\nname = \"n\"\nfunction = \"count\"\n[tables]\nrows = \"r\"\nby_value = \"v\"\nby_window = \"w\"\ndead_letters = \"x\"\nlate = \"l\"\n";
        DataflowSpec::parse(&text, Path::new("t.toml")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn record(
        spec: &DataflowSpec,
        partition: i32,
        resume: i64,
        frontier: u64,
    ) -> PartitionProgress {
        let def = Definition::of(spec, "memory");
        PartitionProgress {
            partition,
            resume_offset: resume,
            watermark: 7,
            durable_frontier: frontier,
            epoch: 0,
            start_offset: Some(0),
            rows_from: resume,
            units: def
                .units
                .iter()
                .map(|u| (u.id.clone(), frontier))
                .collect::<BTreeMap<_, _>>(),
            definition: Some((def.fingerprint(), def.to_json())),
        }
    }

    #[test]
    fn the_same_file_resumes_where_it_stopped() {
        let s = spec(&["1m"], "5s");
        let plan = Plan::new(&Definition::of(&s, "memory"), &[record(&s, 0, 10, 600)]);
        assert!(plan.changes.is_empty());
        assert_eq!(plan.partitions[&0].offset, Some(10));
        assert_eq!(plan.partitions[&0].watermark, Some(7));
        assert_eq!(plan.units, vec![("1m/g".to_string(), 600)]);
    }

    #[test]
    fn an_added_window_replays_from_the_start_and_keeps_old_windows_suppressed() {
        let old = spec(&["1m"], "5s");
        let new = spec(&["1m", "1h"], "5s");
        let plan = Plan::new(&Definition::of(&new, "memory"), &[record(&old, 0, 10, 600)]);
        assert!(plan.refused().is_empty());
        let p = &plan.partitions[&0];
        assert_eq!((p.offset, p.watermark, p.rows_from), (Some(0), None, 10));
        assert_eq!(plan.suppress(&new), vec![vec![600], vec![0]]);
    }

    #[test]
    fn a_lateness_change_is_refused_and_a_reset_marker_is_no_progress() {
        let old = spec(&["1m"], "5s");
        let new = spec(&["1m"], "10s");
        let plan = Plan::new(&Definition::of(&new, "memory"), &[record(&old, 0, 10, 600)]);
        assert_eq!(plan.refused().len(), 1);
        let plan = Plan::new(
            &Definition::of(&new, "memory"),
            &[PartitionProgress::reset(0)],
        );
        assert!(plan.partitions.is_empty() && plan.changes.is_empty());
    }
}
