//! The interval join of two streams, frontier-gated, its state bounded by the interval.
//!
//! With `bounds = (lower, upper)`, a left record `(k, ta, l)` *matches* the right records
//! `(k, tb, r)` with `lo(ta) <= tb <= hi(ta)`, where `lo(ta) = ta + lower` and
//! `hi(ta) = ta + upper`, both saturating at `0` and `u64::MAX` (computed in `i128`, so a
//! negative `lower` and an `upper` above `i64::MAX` need no care). Each left record is emitted
//! exactly once, as `(l, matches)`, at a timely time at or below `ta` (waiting records are
//! held in a [`Gate`], under one capability at their least time); the matches (possibly none) are
//! sorted by `(tb, r)`. A left record with no key never matches. Bounds with `lower > upper`
//! make every interval empty (every left record is emitted with no match); they do not panic.
//! One operator per worker, both inputs exchanged by [`render`]'s `route`, so a key's left and
//! right records meet on the one worker that owns the key:
//!
//! ```text
//! left  ─exchange by key (no key: by time)─┐
//! right ─exchange by key───────────────────┴► Interval ─► (l, matches) at ta
//! ```
//!
//! Frontiers: `FL` on the left input, `FR` on the right. Every record the operator will still
//! receive on an input has an event time at or above that input's frontier (see
//! [`crate::source`]: a record's timely time is at or below its event time).
//!
//! **Gating.** A left record waits until `FR > hi(ta)` and `FL >= ta` (the as-of join's convention: no earlier
//! left record is still to come, so a worker emits in time order). Once `FR > hi(ta)`, every
//! right record still to come has `tb >= FR > hi(ta)` and cannot match; every right record of
//! `k` with `tb <= hi(ta)` has arrived and, by the rule below, is still kept if it can match.
//! So the matches computed then are all of them, and final. The record leaves the pending map
//! as it is emitted: exactly once. When both inputs close, both frontiers are empty and every
//! pending record is emitted.
//!
//! **Deterministic.** An output depends only on its left record and the right records of its
//! key in its interval, all present when it is computed, sorted by `(tb, r)`, a total order.
//! Every record of a key goes to the worker `route(k)` picks, at any worker count; a keyless
//! left record needs no partner, so its worker does not matter. So the multiset of outputs
//! does not depend on the worker or process count, the arrival order, or the batching.
//!
//! **State is bounded by the interval.** Left records are kept only while they wait: from
//! arrival until `FR` passes `hi(ta)`, about `upper` plus how far the right input lags. A
//! right record is kept only while a present or future left record could still match it.
//! Let `M = min(least pending ta, FL)` (infinite when nothing is pending and the left input is
//! closed). Every left record still to emit has `ta >= M`: pending ones by definition, later
//! ones because they arrive at or above the left frontier. `lo` is non-decreasing, so a right
//! record with `tb < lo(M)` is below `lo(ta)` for every such `ta` and can never match: it is
//! dropped (all are dropped when `M` is infinite). With `lower >= 0` this keeps the right
//! records at or after `M + lower`; with `lower < 0` it keeps them from `|lower|` before `M`;
//! near zero `lo` saturates and keeps everything from `0`. Once the left input has closed,
//! no new left record comes, so a right record above `hi(greatest pending ta)` can match
//! none either and is dropped too. What remains is, per key, the right records in
//! `[lo(M), FR)` plus those that arrived early, above the right frontier.
//!
//! **Contract edges.** A record whose timely time is above its event time (the sources never
//! send one) is taken at its timely time rather than panicking (on both inputs, so the
//! frontier argument above holds for it); a message without a capability (an empty stamp,
//! which no Weir operator sends) cannot be emitted at a time and is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use differential_dataflow::ExchangeData;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;

use crate::data::hash::mix64;
use crate::operators::gate::Gate;

/// Gauges of one worker's interval join (atomics, so the status page and metrics can read them
/// from other threads).
#[derive(Debug, Default)]
pub struct IntervalGauges {
    /// Left records waiting for their interval to close (current count).
    pub left_pending: AtomicU64,
    /// Right records kept because a present or future left record could match them (current
    /// count).
    pub right_kept: AtomicU64,
    /// Matches emitted, summed over the left records (a counter).
    pub pairs: AtomicU64,
    /// Left records emitted with no match (a counter).
    pub unmatched: AtomicU64,
}

/// The interval of a left record at `ta`: `[ta + lower, ta + upper]`, saturating at `0` and
/// `u64::MAX`. Empty (`lo > hi`) when `lower > upper`.
fn interval(ta: u64, (lower, upper): (i64, u64)) -> (u64, u64) {
    let lo = (i128::from(ta) + i128::from(lower)).clamp(0, i128::from(u64::MAX));
    // In range after the clamp.
    let lo = u64::try_from(lo).unwrap_or(u64::MAX);
    (lo, ta.saturating_add(upper))
}

/// The right records kept on one worker: by key then time, with an index by time to drop
/// them from either end.
struct Kept<K, R> {
    by_key: BTreeMap<K, BTreeMap<u64, Vec<R>>>,
    /// Time -> the keys with records at it (each key once).
    by_time: BTreeMap<u64, Vec<K>>,
    len: u64,
}

impl<K: Ord + Clone, R: Ord + Clone> Kept<K, R> {
    fn new() -> Self {
        Kept {
            by_key: BTreeMap::new(),
            by_time: BTreeMap::new(),
            len: 0,
        }
    }

    fn insert(&mut self, key: K, time: u64, record: R) {
        let at = self.by_key.entry(key.clone()).or_default();
        at.entry(time)
            .or_insert_with(|| {
                self.by_time.entry(time).or_default().push(key);
                Vec::new()
            })
            .push(record);
        self.len += 1;
    }

    /// `key`'s records with `lo <= time <= hi`, sorted by (time, record).
    fn matches(&self, key: &K, lo: u64, hi: u64) -> Vec<R> {
        let mut out = Vec::new();
        if lo > hi {
            return out;
        }
        if let Some(at) = self.by_key.get(key) {
            for records in at.range(lo..=hi).map(|(_, records)| records) {
                let start = out.len();
                out.extend(records.iter().cloned());
                out[start..].sort();
            }
        }
        out
    }

    /// Drops every record at `time` (of the `keys` the index lists for it).
    fn remove_time(&mut self, time: u64, keys: Vec<K>) {
        for key in keys {
            if let Some(at) = self.by_key.get_mut(&key) {
                if let Some(records) = at.remove(&time) {
                    self.len -= records.len() as u64;
                }
                if at.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    /// Drops the records with `time < below`.
    fn drop_below(&mut self, below: u64) {
        while let Some(entry) = self.by_time.first_entry() {
            if *entry.key() >= below {
                break;
            }
            let (time, keys) = entry.remove_entry();
            self.remove_time(time, keys);
        }
    }

    /// Drops the records with `time > above`.
    fn drop_above(&mut self, above: u64) {
        while let Some(entry) = self.by_time.last_entry() {
            if *entry.key() <= above {
                break;
            }
            let (time, keys) = entry.remove_entry();
            self.remove_time(time, keys);
        }
    }

    fn clear(&mut self) {
        self.by_key.clear();
        self.by_time.clear();
        self.len = 0;
    }
}

/// Joins each left record with the right records of its key whose time is within `bounds` of
/// its time (see the module doc); emits `(left, matches)` (at or below the left record's time) once the
/// right frontier is past its interval and the left frontier has reached it.
///
/// `bounds = (lower, upper)`: a right record at `tb` matches a left one at `ta` when
/// `ta + lower <= tb <= ta + upper` (saturating); `lower` may be negative. `route` says which
/// worker owns a key ([`crate::data::record::Key::route`]); both inputs are exchanged by it.
/// `render` runs once per worker, and `gauges` are that worker's.
pub fn render<'s, K, L, R>(
    left: Stream<'s, u64, Vec<(Option<K>, u64, L)>>,
    right: Stream<'s, u64, Vec<(K, u64, R)>>,
    bounds: (i64, u64),
    route: fn(&K) -> u64,
    gauges: Arc<IntervalGauges>,
) -> Stream<'s, u64, Vec<(L, Vec<R>)>>
where
    K: ExchangeData,
    L: timely::ExchangeData,
    R: ExchangeData,
{
    left.binary_frontier(
        right,
        Exchange::new(move |(key, time, _): &(Option<K>, u64, L)| match key {
            Some(key) => route(key),
            None => mix64(*time),
        }),
        Exchange::new(move |(key, _, _): &(K, u64, R)| route(key)),
        "IntervalJoin",
        move |_, _| {
            let mut pending: Gate<(Option<K>, L)> = Gate::default();
            let mut kept: Kept<K, R> = Kept::new();
            move |(lefts, left_frontier), (rights, right_frontier), output| {
                lefts.for_each(|cap, data| {
                    let Some(least) = cap.least().copied() else {
                        return;
                    };
                    pending.hold(least, || cap.delayed(&least, output.output_index()));
                    for (key, time, record) in data.drain(..) {
                        pending.push(time.max(least), (key, record));
                    }
                });
                rights.for_each(|cap, data| {
                    let Some(least) = cap.least().copied() else {
                        return;
                    };
                    for (key, time, record) in data.drain(..) {
                        kept.insert(key, time.max(least), record);
                    }
                });

                let ready = pending.take_ready(|t| {
                    !right_frontier.less_equal(&interval(*t, bounds).1)
                        && !left_frontier.less_than(t)
                });
                if let Some(cap) = pending.capability().filter(|_| !ready.is_empty()) {
                    // All ready times at the one capability (at or below them all).
                    let mut session = output.session(cap);
                    let (mut pairs, mut unmatched) = (0u64, 0u64);
                    for (time, items) in ready {
                        let (lo, hi) = interval(time, bounds);
                        for (key, record) in items {
                            let matches = match &key {
                                Some(key) => kept.matches(key, lo, hi),
                                None => Vec::new(),
                            };
                            if matches.is_empty() {
                                unmatched += 1;
                            }
                            pairs += matches.len() as u64;
                            // A kill here: some results are downstream, none is durable; the
                            // replay recomputes them all.
                            crate::failpoint::hit("join.emit");
                            session.give((record, matches));
                        }
                    }
                    gauges.pairs.fetch_add(pairs, Ordering::Relaxed);
                    gauges.unmatched.fetch_add(unmatched, Ordering::Relaxed);
                }
                pending.settle();

                // Every left record still to emit is at or above M (see the module doc).
                let least_left = pending
                    .first_time()
                    .into_iter()
                    .chain(left_frontier.frontier().iter().copied())
                    .min();
                match least_left {
                    Some(least) => kept.drop_below(interval(least, bounds).0),
                    None => kept.clear(),
                }
                // The left input closed: only the pending records can still match.
                if left_frontier.frontier().is_empty() {
                    match pending.last_time() {
                        Some(last) => kept.drop_above(interval(last, bounds).1),
                        None => kept.clear(),
                    }
                }
                gauges.left_pending.store(pending.len(), Ordering::Relaxed);
                gauges.right_kept.store(kept.len, Ordering::Relaxed);
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use timely::container::CapacityContainerBuilder;
    use timely::dataflow::operators::{Input, Inspect, Probe};
    use timely::dataflow::ProbeHandle;

    use super::*;
    use crate::data::record::{Key, Record};
    use crate::data::row::Row;

    /// Left records carry their id and event time.
    type Left = (Option<Key>, u64, (i64, u64));
    fn left(key: Option<Key>, time: u64, id: i64) -> Left {
        (key, time, (id, time))
    }

    /// Right records carry their id.
    type Right = (Key, u64, i64);
    /// What the join emitted: (left id, its matches' ids, its event time), each output checked
    /// to be at a timely time at or below its event time.
    type Seen = Vec<(i64, Vec<i64>, Option<u64>)>;

    type Handle<D> = timely::dataflow::InputHandle<u64, CapacityContainerBuilder<Vec<D>>>;

    /// The join takes the source's records (a compile-time check).
    #[allow(dead_code)]
    fn joins_records<'s>(
        left: Stream<'s, u64, Vec<(Option<Key>, u64, Record)>>,
        right: Stream<'s, u64, Vec<(Key, u64, Row)>>,
    ) -> Stream<'s, u64, Vec<(Record, Vec<Row>)>> {
        render(left, right, (-100, 100), Key::route, Arc::default())
    }

    /// A xorshift generator: reproducible inputs.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// Half the times on a 50 ms grid (so records fall exactly on interval edges, several
    /// at one time), half anywhere in [0, 3000). Left keys 0..8, right keys 0..7 (key 7 never
    /// matches); one left record in 20 has no key.
    fn random_case(seed: u64) -> (Vec<Left>, Vec<Right>) {
        let mut rng = Rng(seed);
        let time = |rng: &mut Rng| match rng.below(2) {
            0 => 50 * rng.below(60),
            _ => rng.below(3_000),
        };
        let lefts = (0..300)
            .map(|id| {
                let key = (rng.below(20) > 0).then(|| Key::Int(rng.below(8) as i64));
                left(key, time(&mut rng), id)
            })
            .collect();
        let rights = (0..400)
            .map(|id| (Key::Int(rng.below(7) as i64), time(&mut rng), id))
            .collect();
        (lefts, rights)
    }

    /// `left`'s matches by a scan of every right record, sorted by (time, id).
    fn naive_matches(left: &Left, rights: &[Right], bounds: (i64, u64)) -> Vec<(u64, i64)> {
        let (key, ta, _) = left;
        let lo = *ta as i128 + bounds.0 as i128;
        let hi = *ta as i128 + bounds.1 as i128;
        let mut matches: Vec<(u64, i64)> = rights
            .iter()
            .filter(|(k, tb, _)| Some(k) == key.as_ref() && lo <= *tb as i128 && *tb as i128 <= hi)
            .map(|(_, tb, id)| (*tb, *id))
            .collect();
        matches.sort();
        matches
    }

    /// The naive scan: each left record with its matches, at its time.
    fn expected(lefts: &[Left], rights: &[Right], bounds: (i64, u64)) -> Seen {
        let mut seen: Seen = lefts
            .iter()
            .map(|left| {
                let ids = naive_matches(left, rights, bounds)
                    .into_iter()
                    .map(|(_, id)| id)
                    .collect();
                (left.2 .0, ids, Some(left.1))
            })
            .collect();
        seen.sort();
        seen
    }

    /// Builds the join on one worker: input handles, the probe of its output, its gauges.
    #[allow(clippy::type_complexity)]
    fn build(
        worker: &mut timely::worker::Worker,
        seen: &Arc<Mutex<Seen>>,
        bounds: (i64, u64),
    ) -> (
        Handle<Left>,
        Handle<Right>,
        ProbeHandle<u64>,
        Arc<IntervalGauges>,
    ) {
        let gauges = Arc::new(IntervalGauges::default());
        let probe = ProbeHandle::new();
        let (left, right) = worker.dataflow::<u64, _, _>(|scope| {
            let (left_in, left) = scope.new_input::<Vec<Left>>();
            let (right_in, right) = scope.new_input::<Vec<Right>>();
            let seen = Arc::clone(seen);
            render(left, right, bounds, Key::route, Arc::clone(&gauges))
                .inspect_core(move |event| {
                    if let Ok((stamp, data)) = event {
                        let mut seen = seen.lock().unwrap();
                        for ((id, time), matches) in data {
                            let at = stamp.least().copied();
                            assert!(at.is_some_and(|at| at <= *time), "{id} at {at:?}");
                            seen.push((*id, matches.clone(), Some(*time)));
                        }
                    }
                })
                .probe_with(&probe);
            (left_in, right_in)
        });
        (left, right, probe, gauges)
    }

    /// Per worker at the end: (left pending, right kept, pairs, unmatched).
    type Gauges = [u64; 4];

    fn read(gauges: &IntervalGauges) -> Gauges {
        [
            gauges.left_pending.load(Ordering::Relaxed),
            gauges.right_kept.load(Ordering::Relaxed),
            gauges.pairs.load(Ordering::Relaxed),
            gauges.unmatched.load(Ordering::Relaxed),
        ]
    }

    /// Runs the join at `workers` workers, each sending its share of both inputs in a jittered
    /// order (out of order within what the frontiers allow: each input is advanced to the
    /// least time it still has to send). Returns what it emitted and each worker's gauges.
    fn run(
        workers: usize,
        lefts: &[Left],
        rights: &[Right],
        bounds: (i64, u64),
        seed: u64,
    ) -> (Seen, Vec<Gauges>) {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (lefts, rights) = (lefts.to_vec(), rights.to_vec());
        let seen_in = Arc::clone(&seen);
        let gauges = timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let (mut left_in, mut right_in, _probe, gauges) = build(worker, &seen_in, bounds);
            let mut rng = Rng(seed ^ ((index as u64 + 1) * 0x9e37_79b9));
            // (jittered time, which input, index), in sending order.
            let mut sends: Vec<(u64, bool, usize)> = Vec::new();
            for (i, r) in rights
                .iter()
                .enumerate()
                .filter(|(i, _)| i % peers == index)
            {
                sends.push((r.1 + rng.below(150), true, i));
            }
            for (i, l) in lefts.iter().enumerate().filter(|(i, _)| i % peers == index) {
                sends.push((l.1 + rng.below(150), false, i));
            }
            sends.sort();
            // The least time each input still has to send, from each position on.
            let mut least = vec![(u64::MAX, u64::MAX); sends.len() + 1];
            for (j, &(_, is_right, i)) in sends.iter().enumerate().rev() {
                let (mut right, mut left) = least[j + 1];
                if is_right {
                    right = right.min(rights[i].1);
                } else {
                    left = left.min(lefts[i].1);
                }
                least[j] = (right, left);
            }
            for (j, &(_, is_right, i)) in sends.iter().enumerate() {
                let (right, left) = least[j];
                if right != u64::MAX {
                    right_in.advance_to(right);
                }
                if left != u64::MAX {
                    left_in.advance_to(left);
                }
                if is_right {
                    right_in.send(rights[i].clone());
                } else {
                    left_in.send(lefts[i].clone());
                }
                if j % 8 == 0 {
                    worker.step();
                }
            }
            right_in.close();
            left_in.close();
            while worker.step() {}
            read(&gauges)
        })
        .unwrap()
        .join()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        (seen, gauges)
    }

    #[test]
    fn each_left_record_meets_the_right_records_in_its_interval_at_any_worker_count() {
        for bounds in [(0, 600), (-100, 100)] {
            for seed in [0x2545_f491_4f6c_dd1d, 0x9e37_79b9_7f4a_7c15] {
                let (lefts, rights) = random_case(seed);
                let want = expected(&lefts, &rights, bounds);
                // The case exercises what it should: no match, several matches, no key, and
                // matches exactly at both edges of an interval.
                assert!(want.iter().any(|(_, m, _)| m.is_empty()));
                assert!(want.iter().any(|(_, m, _)| m.len() >= 3));
                assert!(lefts.iter().any(|l| l.0.is_none()));
                let at_edge = |edge: fn(u64, (i64, u64)) -> u64| {
                    lefts.iter().any(|l| {
                        naive_matches(l, &rights, bounds)
                            .iter()
                            .any(|(tb, _)| *tb == edge(l.1, bounds))
                    })
                };
                assert!(at_edge(|ta, b| interval(ta, b).0), "{bounds:?}: lower edge");
                assert!(at_edge(|ta, b| interval(ta, b).1), "{bounds:?}: upper edge");
                let pairs: usize = want.iter().map(|(_, m, _)| m.len()).sum();
                let unmatched = want.iter().filter(|(_, m, _)| m.is_empty()).count();
                for workers in [1, 2, 3] {
                    let (got, gauges) = run(workers, &lefts, &rights, bounds, seed);
                    assert_eq!(
                        got.len(),
                        lefts.len(),
                        "{workers} workers: one output per left"
                    );
                    assert_eq!(got, want, "{workers} workers, {bounds:?}");
                    assert!(gauges.iter().all(|g| g[0] == 0 && g[1] == 0), "{gauges:?}");
                    let sum = |i: usize| gauges.iter().map(|g| g[i]).sum::<u64>();
                    assert_eq!(sum(2), pairs as u64, "{workers} workers: pairs");
                    assert_eq!(sum(3), unmatched as u64, "{workers} workers: unmatched");
                }
            }
        }
    }

    #[test]
    fn a_left_record_is_emitted_only_once_the_right_frontier_is_past_its_interval() {
        let bounds = (0, 600);
        // Keys 0..3: a left record every 100 ms to 1000, a right one every 50 ms to 2000.
        let lefts: Vec<Left> = (0..3)
            .flat_map(|k| {
                (0..=10).map(move |i| left(Some(Key::Int(k)), 100 * i, 1_000 * k + i as i64))
            })
            .collect();
        let rights: Vec<Right> = (0..3)
            .flat_map(|k| (0..=40).map(move |i| (Key::Int(k), 50 * i, 1_000 * k + i as i64)))
            .collect();
        // Sent later, at 400, once the left frontier is 400.
        let late: Left = left(Some(Key::Int(1)), 400, 99_999);
        let mut all_lefts = lefts.clone();
        all_lefts.push(late.clone());
        let want = expected(&all_lefts, &rights, bounds);

        let seen: Arc<Mutex<Seen>> = Arc::default();
        let seen_in = Arc::clone(&seen);
        let (lefts_in, rights_in) = (lefts.clone(), rights.clone());
        let want_in = want.clone();
        let gauges: Vec<Gauges> = timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let (mut left, mut right, probe, gauges) = build(worker, &seen_in, bounds);
            let check = |below: u64| {
                let seen = seen_in.lock().unwrap();
                assert!(
                    seen.iter().all(|(_, _, t)| t.is_some_and(|t| t < below)),
                    "only times below {below} emitted: {seen:?}"
                );
                let mut got = seen.clone();
                got.sort();
                let mut want = want_in.clone();
                want.retain(|(_, _, t)| t.is_some_and(|t| t < below));
                assert_eq!(got, want, "everything below {below}");
            };
            if index == 0 {
                for l in &lefts_in {
                    left.send(l.clone());
                }
                for r in rights_in.iter().filter(|r| r.1 < 1_000) {
                    right.send(r.clone());
                }
            }
            // Right frontier 1000: the left records up to 300 are complete (hi = 900), the one
            // at 400 is not (a right record at 1000, its upper edge, is still to come).
            left.advance_to(400);
            right.advance_to(1_000);
            worker.step_while(|| probe.less_than(&400));
            for _ in 0..50 {
                worker.step();
            }
            check(400);
            // A left record at the left frontier still joins, at its time; the right record at
            // its upper edge is among its matches.
            if index == 0 {
                left.send(late.clone());
                for r in rights_in.iter().filter(|r| r.1 == 1_000) {
                    right.send(r.clone());
                }
            }
            left.advance_to(5_000);
            right.advance_to(1_001);
            worker.step_while(|| probe.less_than(&500));
            for _ in 0..50 {
                worker.step();
            }
            check(401);
            if index == 0 {
                for r in rights_in.iter().filter(|r| r.1 > 1_000) {
                    right.send(r.clone());
                }
            }
            right.close();
            left.close();
            while worker.step() {}
            read(&gauges)
        })
        .unwrap()
        .join()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, want);
        let late_matches = &want.iter().find(|(id, _, _)| *id == 99_999).unwrap().1;
        assert_eq!(late_matches.len(), 13, "400..=1000 every 50 ms");
        assert!(gauges.iter().all(|g| g[0] == 0 && g[1] == 0), "{gauges:?}");
    }

    #[test]
    fn right_records_are_kept_only_while_a_left_record_could_match_them() {
        let bounds = (-100, 100);
        let (keys, times) = (2i64, 1_000u64);
        // A right record per key every millisecond, a left one every 10 ms.
        let rights: Vec<Right> = (0..times)
            .flat_map(|t| (0..keys).map(move |k| (Key::Int(k), t, 10 * t as i64 + k)))
            .collect();
        let lefts: Vec<Left> = (0..times)
            .step_by(10)
            .flat_map(|t| (0..keys).map(move |k| left(Some(Key::Int(k)), t, 10 * t as i64 + k)))
            .collect();
        // Sent early (at timely time 999), above every left record's interval (the last is
        // [890, 1090]): kept while the left input is open, dropped once it closes.
        let early: Vec<Right> = (0..keys).map(|k| (Key::Int(k), 1_200, -1 - k)).collect();
        let mut rights = rights;
        rights.extend(early.iter().cloned());
        let want = expected(&lefts, &rights, bounds);
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let seen_in = Arc::clone(&seen);
        let (lefts_in, rights_in) = (lefts.clone(), rights.clone());
        timely::execute(timely::Config::process(1), move |worker| {
            let (mut left, mut right, probe, gauges) = build(worker, &seen_in, bounds);
            for t in 0..times {
                left.advance_to(t);
                right.advance_to(t);
                for r in rights_in.iter().filter(|r| r.1 == t) {
                    right.send(r.clone());
                }
                for l in lefts_in.iter().filter(|l| l.1 == t) {
                    left.send(l.clone());
                }
                worker.step();
                if t % 100 != 0 || t == 0 {
                    continue;
                }
                // Both frontiers at t: the left records from t - 100 on wait (the right
                // frontier is not past their upper edge, ta + 100), so M = t - 100 and the
                // right records from lo(M) = t - 200 (saturating at 0) to t are kept.
                let least = t - 100;
                // The handles buffer what is sent at t until they advance: push it now.
                left.flush();
                right.flush();
                worker.step_while(|| probe.less_than(&least));
                for _ in 0..20 {
                    worker.step();
                }
                let pending = lefts_in.iter().filter(|l| l.1 >= least && l.1 <= t).count();
                let from = interval(least, bounds).0;
                let kept = rights_in.iter().filter(|r| r.1 >= from && r.1 <= t).count();
                let g = read(&gauges);
                assert_eq!(g[0], pending as u64, "left pending at {t}");
                assert_eq!(g[1], kept as u64, "right kept at {t}");
                // Bounded by the interval, not by history.
                assert!(g[1] <= keys as u64 * 201, "{g:?} at {t}");
            }
            for r in &early {
                right.send(r.clone());
            }
            right.flush();
            worker.step_while(|| probe.less_than(&(times - 100)));
            for _ in 0..20 {
                worker.step();
            }
            let g = read(&gauges);
            let kept = rights_in.iter().filter(|r| r.1 >= times - 200).count();
            assert_eq!(g[1], kept as u64, "the early records are kept");
            // The left input closes: only the pending records' intervals still count.
            left.close();
            right.advance_to(times);
            worker.step_while(|| probe.less_than(&(times - 100)));
            for _ in 0..20 {
                worker.step();
            }
            let g = read(&gauges);
            let pending = lefts_in.iter().filter(|l| l.1 >= times - 100).count();
            assert_eq!(g[0], pending as u64);
            let kept = rights_in
                .iter()
                .filter(|r| r.1 >= times - 200 && r.1 < times)
                .count();
            assert_eq!(g[1], kept as u64, "the early records are dropped");
            right.close();
            while worker.step() {}
            let g = read(&gauges);
            assert_eq!((g[0], g[1]), (0, 0), "{g:?}");
        })
        .unwrap()
        .join()
        .into_iter()
        .for_each(|r| r.unwrap());
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn intervals_saturate_and_inverted_bounds_match_nothing() {
        assert_eq!(interval(50, (-100, 100)), (0, 150));
        assert_eq!(
            interval(u64::MAX - 5, (-10, 100)),
            (u64::MAX - 15, u64::MAX)
        );
        assert_eq!(interval(7, (i64::MIN, u64::MAX)), (0, u64::MAX));
        assert_eq!(interval(u64::MAX, (i64::MAX, 0)), (u64::MAX, u64::MAX));
        let mut kept: Kept<i64, i64> = Kept::new();
        for (t, r) in [(10, 3), (10, 1), (12, 2), (20, 0)] {
            kept.insert(1, t, r);
        }
        kept.insert(2, 10, 9);
        assert_eq!(kept.matches(&1, 10, 12), vec![1, 3, 2]);
        let (lo, hi) = interval(10, (5, 2));
        assert!(lo > hi);
        assert_eq!(kept.matches(&1, lo, hi), Vec::<i64>::new());
        kept.drop_below(11);
        assert_eq!(kept.len, 2);
        kept.drop_above(12);
        assert_eq!(kept.len, 1);
        assert_eq!(kept.by_time.len(), 1);
    }
}
