//! Progress: where each partition resumes after a restart, and when that may be recorded.
//!
//! ```text
//!  source reads offset o ──► rows at time c (the source's capability)
//!                        └─► windows ending at most at r = last_window_end(event time)
//!                                      │
//!  sink acknowledges ──► durable frontier D (a probe on the sink's "durable" output)
//!                                      │
//!  ledger: offset o is covered once D > r ──► resume offset = first uncovered offset
//!                                      │
//!  progress record (resume offset, watermark before it, D) ──► written last
//! ```
//!
//! Correctness argument. Every record is emitted at a time `c` not above its event time, and
//! contributes to windows whose results are emitted at their end times, all at most `r`. The
//! sink holds a capability for every write until it is acknowledged, so the durable frontier
//! `D` passes `r` only when the record's row and every window it belongs to are durable. The
//! ledger therefore records, as the resume offset, the first offset whose outputs are not all
//! durable; everything before it is in the sink. Replaying from there with the stored
//! watermark decides lateness as the first run did (see [`crate::time::PartitionClock`]).
//!
//! A restarted run's own durable frontier starts low again; the frontier it stores is the
//! larger of its own and the largest restored one (`suppress_below`), so that "records before
//! the resume offset have `r < D`" stays true for offsets that retired in an earlier run.
//!
//! Windows that ended below a stored `D` were durable when that record was written; the
//! window operator does not emit them again on replay (their records before the resume offset
//! are not replayed, so a recomputation would be partial). Windows ending at or above the
//! largest stored `D` have all their records at or after every partition's resume offset (a
//! record before it has `r < D`, and `r` is at least the end of each of its windows), so they
//! are recomputed whole. Hence the tables after any crash and restart equal those of one
//! uninterrupted run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::time::PartitionClock;

/// The progress record of one partition, as stored in the sink.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// The partition.
    pub partition: i32,
    /// First offset whose outputs are not all durable: where reading resumes.
    pub resume_offset: i64,
    /// The partition's watermark just before `resume_offset`.
    pub watermark: u64,
    /// The durable frontier when the record was written (`u64::MAX`: everything).
    pub durable_frontier: u64,
    /// The source's epoch (the generator's time origin; 0 for Kafka and files).
    pub epoch: i64,
}

/// A partition's read position, watermark, and the offsets still waiting to become durable.
#[derive(Clone, Debug)]
pub struct PartitionLedger {
    /// Next offset to read.
    pub next_offset: i64,
    /// Event-time state.
    pub clock: PartitionClock,
    /// Retire time -> (first offset retiring then, watermark before that offset).
    pending: BTreeMap<u64, (i64, u64)>,
    /// The input of this partition has ended (bounded runs).
    pub finished: bool,
    /// When the partition last delivered a message (for the idle timeout).
    pub last_message: std::time::Instant,
    /// The last record written for this partition.
    pub written: Option<(i64, u64)>,
}

impl PartitionLedger {
    /// A partition read from `next_offset`, with clock `clock`.
    pub fn new(next_offset: i64, clock: PartitionClock) -> Self {
        PartitionLedger {
            next_offset,
            clock,
            pending: BTreeMap::new(),
            finished: false,
            last_message: std::time::Instant::now(),
            written: None,
        }
    }

    /// Notes that the message at `offset` (next one at `next_offset`) has outputs that are all
    /// durable once the durable frontier passes `retire`. `watermark_before` is the clock
    /// before the message.
    pub fn note(&mut self, offset: i64, next_offset: i64, retire: u64, watermark_before: u64) {
        self.pending
            .entry(retire)
            .or_insert((offset, watermark_before));
        self.next_offset = next_offset;
    }

    /// The (resume offset, watermark) that may be recorded when the durable frontier is
    /// `durable` (`None`: the frontier is empty, everything is durable).
    pub fn resume_point(&mut self, durable: Option<u64>) -> (i64, u64) {
        match durable {
            None => self.pending.clear(),
            Some(d) => self.pending = self.pending.split_off(&d),
        }
        self.pending
            .values()
            .min_by_key(|(offset, _)| *offset)
            .copied()
            .unwrap_or((self.next_offset, self.clock.watermark))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_point_waits_for_the_latest_window_of_each_record() {
        let mut l = PartitionLedger::new(0, PartitionClock::new(0, 5));
        l.note(0, 1, 60, 0); // a record whose last window ends at 60
        l.note(1, 2, 120, 10); // ends at 120
        l.note(2, 3, 60, 20); // ends at 60 again: offset 0 still the first for 60
        assert_eq!(l.resume_point(Some(0)), (0, 0));
        assert_eq!(
            l.resume_point(Some(60)),
            (0, 0),
            "60 is not durable until D > 60"
        );
        assert_eq!(l.resume_point(Some(61)), (1, 10));
        l.clock.observe(200);
        assert_eq!(l.resume_point(Some(121)), (3, 195));
        l.note(3, 4, 300, 195);
        assert_eq!(l.resume_point(None), (4, 195));
    }
}
