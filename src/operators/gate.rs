//! What a join operator holds back until the frontiers pass it: items by event time, all under
//! one capability.
//!
//! **Contract.** A [`Gate`] keeps items at times, in time order, and at most one capability.
//! While any item waits, the capability is at or below every waiting item's time; once
//! [`Gate::settle`] has run it is exactly the least waiting time, or none when nothing waits.
//! An operator emits what [`Gate::take_ready`] returns at [`Gate::capability`], so every
//! output keeps the sources' rule (a record's timely time is at or below its event time, see
//! [`crate::source`]) and the operator's output frontier is the least time it still holds.
//!
//! **Why one capability.** Timely tracks every distinct time an operator holds a capability
//! for, and every change to one is progress traffic to every worker. Events carry
//! millisecond event times; a capability per waiting time made the joins (and the windows
//! after them, which saw one timely time per millisecond) spend most of their time in
//! progress tracking. Nothing downstream needs the exact time: the windows read each record's
//! event time, and the frontier — the least held time — says the same as before, since the
//! least of the per-time capabilities was the least waiting time too.
//!
//! **Invariant.** Each item is pushed at a time at or above the capability it came with
//! ([`Gate::hold`] first), and the held capability is the least of those seen since it was
//! last settled, so it is at or below every waiting time; settling downgrades it to the least
//! waiting time, which is at or above it.

use std::collections::BTreeMap;

use timely::dataflow::operators::Capability;

/// Items waiting by time under one capability (see the module doc).
pub struct Gate<D> {
    waiting: BTreeMap<u64, Vec<D>>,
    held: Option<Capability<u64>>,
    len: u64,
}

impl<D> Default for Gate<D> {
    fn default() -> Self {
        Gate {
            waiting: BTreeMap::new(),
            held: None,
            len: 0,
        }
    }
}

impl<D> Gate<D> {
    /// Makes sure a capability at or below `least` is held: `make` (called only when needed)
    /// gives one at `least`. Call it for each input message, before its items are pushed.
    pub fn hold(&mut self, least: u64, make: impl FnOnce() -> Capability<u64>) {
        if self.held.as_ref().is_none_or(|held| *held.time() > least) {
            self.held = Some(make());
        }
    }

    /// Holds `item` at `time`, which must be at or above the `least` of the last
    /// [`Gate::hold`].
    pub fn push(&mut self, time: u64, item: D) {
        self.waiting.entry(time).or_default().push(item);
        self.len += 1;
    }

    /// The least waiting time.
    pub fn first_time(&self) -> Option<u64> {
        self.waiting.keys().next().copied()
    }

    /// The greatest waiting time.
    pub fn last_time(&self) -> Option<u64> {
        self.waiting.keys().next_back().copied()
    }

    /// Items waiting.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes and returns, in time order, the waiting times from the least on while `ready`
    /// holds for them. Emit them at [`Gate::capability`], then [`Gate::settle`].
    pub fn take_ready(&mut self, mut ready: impl FnMut(&u64) -> bool) -> Vec<(u64, Vec<D>)> {
        let mut taken = Vec::new();
        while let Some(entry) = self.waiting.first_entry() {
            if !ready(entry.key()) {
                break;
            }
            let (time, items) = entry.remove_entry();
            self.len -= items.len() as u64;
            taken.push((time, items));
        }
        taken
    }

    /// The held capability: at or below every waiting time, and below nothing taken since
    /// the last [`Gate::settle`].
    pub fn capability(&self) -> Option<&Capability<u64>> {
        self.held.as_ref()
    }

    /// Moves the capability up to the least waiting time, or drops it when nothing waits.
    pub fn settle(&mut self) {
        match (self.first_time(), self.held.as_mut()) {
            (Some(first), Some(held)) => {
                if *held.time() < first {
                    held.downgrade(&first);
                }
            }
            _ => self.held = None,
        }
    }
}
