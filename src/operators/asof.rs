//! The as-of join of a stream with a table, over a differential-dataflow arrangement.
//!
//! The table's *version of key `k` as of time `t`* is, among its changes for `k` with time
//! `<= t`, the one with the largest `(time, order)`; if that is a delete, or there is none, `k`
//! has no version at `t`. Each event `(k, t, e)` is emitted exactly once, as `(e, version)`, at
//! a timely time at or below `t` (what waits is held in a [`Gate`], under one capability at
//! its least time, so the operators after the join see few distinct times). Three stages per worker, every exchange by [`render`]'s `route`, so a key's
//! changes and its events meet on the one worker that owns the key:
//!
//! ```text
//! table  ─exchange─► Upsert ─((k, row), t, ±1)─► arrange by k (the trace) ─┐ read as of t
//! events ─exchange─────────────────────────────────────────────────────────┴► Lookup ─► (e, version)
//! ```
//!
//! **Upsert.** Changes wait, by time, until the table frontier `F` is beyond their time
//! (`F > t`: a change *at* `t` counts as of `t`). Then all of `k`'s changes at `t` are in (every
//! later one has event time `>= F`, see [`crate::source`]); the last by `order` is `k`'s row
//! from `t` on, none if it is a delete. Against `k`'s current row it makes at most two
//! updates at `t`, `((k, old), t, -1)` and `((k, new), t, +1)`. Times are applied in increasing
//! order, so the collection accumulated at any `t` holds, for each key, exactly its version as
//! of `t`, once, or nothing.
//!
//! **Arrangement.** The updates are a `Collection`, arranged by key into this worker's trace
//! (pipelined: they are on their key's worker already). The arrangement's output frontier is
//! at most the table's, and once it is beyond `t` the trace holds every update at times `<= t`.
//!
//! **Lookup.** An event at `t` waits until the arrangement's frontier is
//! beyond `t` (`> t`) and the events frontier has reached it (`>= t`: no earlier event is to
//! come, so a worker emits in time order). The events that became ready in one activation are
//! sorted by `(k, t)` and looked up in one forward pass over the trace: a cursor seeks each `k`
//! once and, for each of its events, accumulates each row's diffs over the times `<= t`; the
//! row with a positive count (at most one) is the version.
//! The event leaves the pending map as it is emitted: exactly once.
//!
//! **Final and deterministic.** An output depends only on `k`'s changes at times `<= t`, which
//! are all in the trace when it is computed, applied in `(time, order)` order, a total order
//! (a duplicate `(time, order)` for one key, which Kafka never has, goes to the greatest row).
//! Every key's changes and its events go to the one worker `route(k)` picks, at any worker
//! count. So no output depends on the worker or process count, the arrival order, or how the
//! inputs are batched. An event with no key never matches (it is routed by its time).
//!
//! **Compaction is safe.** The lookup advances the trace's logical and physical compaction
//! frontiers to `C`, the meet of the least pending event time and the events frontier. Every
//! lookup still to come is at a time `>= C`: pending ones by definition, later ones because an
//! event arrives with a time at or above any events frontier seen before. Logical compaction
//! only moves times not beyond `C` to times that compare the same with every time beyond `C`,
//! so "accumulate over times `<= t`" gives the same answer for every such lookup. Cursors are
//! taken through all the trace's batches (an empty upper), which physical compaction allows at
//! any frontier; so the physical frontier follows the table's, and the spine merges every
//! batch it has (keeping the batches a lookup seeks few) while the logical frontier above
//! keeps what the lookups to come can tell apart.
//!
//! **State** is bounded by the live keys and what waits, not by history: the upsert keeps one
//! row per live key (a delete removes the key) and the changes the table frontier has not
//! passed; the lookup keeps the pending events; in the trace, a superseded version's `+1` and
//! `-1` both fall below `C` as the frontiers advance and cancel when the spine merges their
//! batches, which it does as new batches arrive (what remains to merge is the recent batches,
//! a logarithmic number of them). [`JoinGauges::table_updates`] shows what the trace holds.
//!
//! **Contract edges.** A record whose timely time is above its event time (the sources never
//! send one) is taken at its timely time rather than panicking; a message without a
//! capability (an empty stamp, which no Weir operator sends) cannot be emitted at a time and is
//! dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use differential_dataflow::operators::arrange::arrangement::arrange_core;
use differential_dataflow::trace::cursor::{cursor_list, Cursor};
use differential_dataflow::trace::implementations::spine_fueled::SpineBatch;
use differential_dataflow::trace::implementations::{ValBatcher, ValSpine};
use differential_dataflow::trace::TraceReader;
use differential_dataflow::{AsCollection, ExchangeData, VecCollection};
use serde::{Deserialize, Serialize};
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::Stream;
use timely::progress::Antichain;

use crate::data::hash::mix64;
use crate::operators::gate::Gate;

/// One change of the table input, in its order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange<K, R> {
    /// The table's key.
    pub key: K,
    /// Event time, epoch ms.
    pub time: u64,
    /// (partition, offset): breaks ties at one time (the larger is the later).
    pub order: (i32, i64),
    /// The new row; `None`: a delete (tombstone).
    pub row: Option<R>,
}

/// Gauges of one worker's join state (atomics, so the status page and metrics can read them
/// from other threads).
#[derive(Debug, Default)]
pub struct JoinGauges {
    /// Keys with a row on this worker (the upsert's current rows; deleted keys are not counted).
    pub table_keys: AtomicU64,
    /// Events waiting for the frontiers to pass their time.
    pub pending_events: AtomicU64,
    /// Table changes waiting for the table frontier to pass their time.
    pub pending_changes: AtomicU64,
    /// Updates held in this worker's trace: about one per live key once compacted, plus the
    /// superseded versions the trace has not merged away yet.
    pub table_updates: AtomicU64,
    /// Events emitted with a version (a counter).
    pub matched: AtomicU64,
    /// Events emitted without one (a counter).
    pub unmatched: AtomicU64,
}

/// The trace of the table: key -> rows, at event times, with counts.
type TableSpine<K, R> = ValSpine<K, R, u64, isize>;

/// Joins each event with the table's version of its key as of its event time (see the module
/// doc); emits `(event, version)` (at or below the event's time) once both inputs' frontiers pass it.
///
/// `route` says which worker owns a key ([`crate::data::record::Key::route`]); both inputs are
/// exchanged by it. `render` runs once per worker (as each worker builds the dataflow), and
/// `gauges` are that worker's: the caller passes one per worker, for the keys and events the
/// worker owns.
pub fn render<'s, K, R, E>(
    events: Stream<'s, u64, Vec<(Option<K>, u64, E)>>,
    table: Stream<'s, u64, Vec<TableChange<K, R>>>,
    route: fn(&K) -> u64,
    gauges: Arc<JoinGauges>,
) -> Stream<'s, u64, Vec<(E, Option<R>)>>
where
    K: ExchangeData,
    R: ExchangeData,
    E: timely::ExchangeData + Clone,
{
    let upsert_gauges = Arc::clone(&gauges);
    let updates = table.unary_frontier(
        Exchange::new(move |c: &TableChange<K, R>| route(&c.key)),
        "AsofUpsert",
        move |_, _| {
            let gauges = upsert_gauges;
            // The changes by time, until the frontier passes it.
            let mut waiting: Gate<TableChange<K, R>> = Gate::default();
            // Each live key's row: its latest version as of the times applied so far.
            let mut current: BTreeMap<K, R> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    let Some(least) = cap.least().copied() else {
                        return;
                    };
                    waiting.hold(least, || cap.delayed(&least, output.output_index()));
                    for mut change in data.drain(..) {
                        change.time = change.time.max(least);
                        waiting.push(change.time, change);
                    }
                });
                let ready = waiting.take_ready(|t| !frontier.less_equal(t));
                if let Some(cap) = waiting.capability().filter(|_| !ready.is_empty()) {
                    // Every update at its own time, all at the one capability (at or below them).
                    let mut session = output.session(cap);
                    for (time, mut changes) in ready {
                        changes.sort_unstable_by(|a, b| {
                            (&a.key, a.order, &a.row).cmp(&(&b.key, b.order, &b.row))
                        });
                        let mut changes = changes.into_iter().peekable();
                        while let Some(change) = changes.next() {
                            // Only the last change of a key at this time makes its row.
                            if changes.peek().is_some_and(|next| next.key == change.key) {
                                continue;
                            }
                            let TableChange { key, row, .. } = change;
                            let old = match &row {
                                Some(row) => current.insert(key.clone(), row.clone()),
                                None => current.remove(&key),
                            };
                            if old == row {
                                continue;
                            }
                            if let Some(old) = old {
                                session.give(((key.clone(), old), time, -1isize));
                            }
                            if let Some(row) = row {
                                session.give(((key, row), time, 1isize));
                            }
                        }
                    }
                }
                waiting.settle();
                gauges
                    .table_keys
                    .store(current.len() as u64, Ordering::Relaxed);
                gauges
                    .pending_changes
                    .store(waiting.len(), Ordering::Relaxed);
            }
        },
    );
    let updates: VecCollection<'s, u64, (K, R), isize> = updates.as_collection();
    // The updates are on their key's worker already: no exchange.
    let arranged = arrange_core::<_, _, ValBatcher<K, R, u64, isize>, TableSpine<K, R>>(
        updates.inner,
        Pipeline,
        "AsofTable",
        ValBatcher::new,
    );
    let mut trace = arranged.trace;

    events.binary_frontier(
        arranged.stream,
        Exchange::new(move |(key, time, _): &(Option<K>, u64, E)| match key {
            Some(key) => route(key),
            None => mix64(*time),
        }),
        Pipeline,
        "AsofLookup",
        move |_, _| {
            let mut pending: Gate<(Option<K>, E)> = Gate::default();
            let mut compaction = Antichain::from_elem(0u64);
            let mut merged = Antichain::from_elem(0u64);
            move |(events, events_frontier), (batches, table_frontier), output| {
                events.for_each(|cap, data| {
                    let Some(least) = cap.least().copied() else {
                        return;
                    };
                    pending.hold(least, || cap.delayed(&least, output.output_index()));
                    for (key, time, event) in data.drain(..) {
                        pending.push(time.max(least), (key, event));
                    }
                });
                // The batches are read through the trace.
                batches.for_each(|_, data| data.clear());

                let ready = pending
                    .take_ready(|t| !table_frontier.less_equal(t) && !events_frontier.less_than(t));
                // Every batch: the frontier is beyond the times read, and the cursor counts only
                // times at or before each event's.
                // (Read only when something is ready: once nothing waits and the events have
                // closed, the trace is compacted to the empty frontier and cannot be read. The
                // spine always gives `Some` otherwise.)
                let cap = pending.capability().filter(|_| !ready.is_empty());
                let batches = cap.and_then(|_| trace.batches_through(Antichain::new().borrow()));
                if let (Some(cap), Some(batches)) = (cap, batches) {
                    let (mut cursor, storage) = cursor_list(batches);
                    // Every ready event, by key then time: one forward pass over the trace,
                    // a seek per key.
                    let mut items: Vec<(Option<K>, u64, E)> = ready
                        .into_iter()
                        .flat_map(|(time, items)| {
                            items
                                .into_iter()
                                .map(move |(key, event)| (key, time, event))
                        })
                        .collect();
                    items.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                    // All at the one capability (at or below them all).
                    let mut session = output.session(cap);
                    let (mut matched, mut unmatched) = (0, 0);
                    let mut items = items.into_iter().peekable();
                    let mut run: Vec<(u64, E)> = Vec::new();
                    let mut times: Vec<u64> = Vec::new();
                    while let Some((key, time, event)) = items.next() {
                        run.push((time, event));
                        while let Some((_, time, event)) =
                            items.next_if(|(next, _, _)| *next == key)
                        {
                            run.push((time, event));
                        }
                        times.clear();
                        times.extend(run.iter().map(|(time, _)| *time));
                        let versions = match &key {
                            Some(key) => versions_as_of(&mut cursor, &storage, key, &times),
                            None => vec![None; times.len()],
                        };
                        for ((_, event), version) in run.drain(..).zip(versions) {
                            if version.is_some() {
                                matched += 1;
                            } else {
                                unmatched += 1;
                            }
                            // A kill here: some results are downstream, none is durable; the
                            // replay recomputes them all.
                            crate::failpoint::hit("join.emit");
                            session.give((event, version));
                        }
                    }
                    gauges.matched.fetch_add(matched, Ordering::Relaxed);
                    gauges.unmatched.fetch_add(unmatched, Ordering::Relaxed);
                }
                pending.settle();

                // Every lookup to come is at or beyond the least pending time and the events
                // frontier (see the module doc).
                let mut frontier = Antichain::new();
                if let Some(t) = pending.first_time() {
                    frontier.insert(t);
                }
                for t in events_frontier.frontier().iter() {
                    frontier.insert(*t);
                }
                if frontier != compaction {
                    trace.set_logical_compaction(frontier.borrow());
                    compaction = frontier;
                }
                // Every batch is read (an empty upper), so the physical frontier can follow
                // the table's: the spine merges a batch only once the physical frontier is
                // past it, and held back to the events' frontier (when the table is read ahead
                // of the events) it kept a hundred small batches for each lookup to seek.
                if table_frontier.frontier() != merged.borrow() {
                    merged = table_frontier.frontier().to_owned();
                    trace.set_physical_compaction(merged.borrow());
                }
                gauges
                    .pending_events
                    .store(pending.len(), Ordering::Relaxed);
                let mut updates = 0;
                trace.map_spans(|span| {
                    updates += span.inner.as_ref().map_or(0, SpineBatch::len);
                });
                gauges
                    .table_updates
                    .store(updates as u64, Ordering::Relaxed);
            }
        },
    )
}

/// `key`'s version as of each of `times` (in increasing order): the row whose diffs at times
/// at or below it add up to a positive count, if any. Keys must be looked up in increasing
/// order between rewinds (the cursor seeks forward).
fn versions_as_of<C, K, R>(
    cursor: &mut C,
    storage: &C::Storage,
    key: &K,
    times: &[u64],
) -> Vec<Option<R>>
where
    K: Ord,
    R: Clone,
    C: for<'a> Cursor<
        Key<'a> = &'a K,
        Val<'a> = &'a R,
        TimeGat<'a> = &'a u64,
        DiffGat<'a> = &'a isize,
    >,
{
    let mut versions = vec![None; times.len()];
    cursor.seek_key(storage, key);
    if cursor.get_key(storage) != Some(key) {
        return versions;
    }
    cursor.rewind_vals(storage);
    let mut diffs: Vec<(u64, isize)> = Vec::new();
    while let Some(row) = cursor.get_val(storage) {
        diffs.clear();
        cursor.map_times(storage, |t, diff| diffs.push((*t, *diff)));
        diffs.sort_unstable();
        // The count as of each time, the diffs and the times both in increasing order.
        let (mut count, mut next) = (0isize, 0);
        for (time, version) in times.iter().zip(versions.iter_mut()) {
            while let Some((_, diff)) = diffs.get(next).filter(|(t, _)| t <= time) {
                count += diff;
                next += 1;
            }
            if count > 0 && version.is_none() {
                *version = Some(row.clone());
            }
        }
        cursor.step_val(storage);
    }
    versions
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use timely::dataflow::operators::{Input, Inspect, Probe};
    use timely::dataflow::ProbeHandle;

    use super::*;
    use crate::data::record::{Key, Record, Value};
    use crate::data::row::Row;
    use timely::container::CapacityContainerBuilder;

    /// Events carry their id and event time.
    type Event = (Option<Key>, u64, (i64, u64));
    type Change = TableChange<Key, Row>;
    /// What the join emitted: (event id, version, event time), each output checked to be at a
    /// timely time at or below its event time.
    type Seen = Vec<(i64, Option<Row>, Option<u64>)>;

    type Handle<D> = timely::dataflow::InputHandle<u64, CapacityContainerBuilder<Vec<D>>>;

    /// The join takes the source's records as events (a compile-time check).
    #[allow(dead_code)]
    fn joins_records<'s>(
        events: Stream<'s, u64, Vec<(Option<Key>, u64, Record)>>,
        table: Stream<'s, u64, Vec<TableChange<Key, Row>>>,
    ) -> Stream<'s, u64, Vec<(Record, Option<Row>)>> {
        render(events, table, Key::route, Arc::default())
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

    fn event(id: i64, key: Option<i64>, time: u64) -> Event {
        (key.map(Key::Int), time, (id, time))
    }

    fn row(i: i64) -> Row {
        Row(vec![
            Value::Int(i),
            Value::Float(i as f64 / 8.0),
            Value::Text(format!("v{i}").into()),
        ])
    }

    /// Changes and events: few keys and times on a 5 ms grid, so a key often has several
    /// versions, deletes, ties at one time (broken by order) and events exactly at a version's
    /// time; keys 10 and 11 never have a row, some events have no key.
    fn random_case(seed: u64) -> (Vec<Change>, Vec<Event>) {
        let mut rng = Rng(seed);
        let changes: Vec<Change> = (0..300)
            .map(|i| Change {
                key: Key::Int(rng.below(10) as i64),
                time: 5 * rng.below(60),
                order: (rng.below(3) as i32, 1_000 - i),
                row: (rng.below(5) > 0).then(|| row(i)),
            })
            .collect();
        let events = (0..300)
            .map(|id| {
                let key = (rng.below(20) > 0).then(|| rng.below(12) as i64);
                let time = match rng.below(2) {
                    0 => 5 * rng.below(61),
                    _ => rng.below(305),
                };
                event(id, key, time)
            })
            .collect();
        (changes, events)
    }

    /// The naive fold: each event with the largest (time, order) change of its key at or before
    /// its time, at its time.
    fn expected(changes: &[Change], events: &[Event]) -> Seen {
        let mut seen: Seen = events
            .iter()
            .map(|(key, time, (id, _))| {
                let version = changes
                    .iter()
                    .filter(|c| Some(&c.key) == key.as_ref() && c.time <= *time)
                    .max_by_key(|c| (c.time, c.order))
                    .and_then(|c| c.row.clone());
                (*id, version, Some(*time))
            })
            .collect();
        seen.sort();
        seen
    }

    /// Keys whose last change is not a delete.
    fn live_keys(changes: &[Change]) -> u64 {
        let mut last: BTreeMap<&Key, &Change> = BTreeMap::new();
        for c in changes {
            let later = last
                .get(&c.key)
                .is_none_or(|l| (c.time, c.order) > (l.time, l.order));
            if later {
                last.insert(&c.key, c);
            }
        }
        last.values().filter(|c| c.row.is_some()).count() as u64
    }

    /// Builds the join on one worker: input handles, the probe of its output, its gauges.
    #[allow(clippy::type_complexity)]
    fn build(
        worker: &mut timely::worker::Worker,
        seen: &Arc<Mutex<Seen>>,
    ) -> (
        Handle<Event>,
        Handle<Change>,
        ProbeHandle<u64>,
        Arc<JoinGauges>,
    ) {
        let gauges = Arc::new(JoinGauges::default());
        let probe = ProbeHandle::new();
        let (events, table) = worker.dataflow::<u64, _, _>(|scope| {
            let (events_in, events) = scope.new_input::<Vec<Event>>();
            let (table_in, table) = scope.new_input::<Vec<Change>>();
            let seen = Arc::clone(seen);
            render(events, table, Key::route, Arc::clone(&gauges))
                .inspect_core(move |event| {
                    if let Ok((stamp, data)) = event {
                        let mut seen = seen.lock().unwrap();
                        for ((id, time), version) in data {
                            let at = stamp.least().copied();
                            assert!(at.is_some_and(|at| at <= *time), "{id} at {at:?}");
                            seen.push((*id, version.clone(), Some(*time)));
                        }
                    }
                })
                .probe_with(&probe);
            (events_in, table_in)
        });
        (events, table, probe, gauges)
    }

    /// Runs the join at `workers` workers, each sending its share of both inputs in a jittered
    /// order (out of order within what the frontier allows: each input is advanced to the least
    /// time it still has to send). Returns what it emitted and, per worker, (table keys,
    /// pending events, pending changes) at the end.
    fn run(
        workers: usize,
        changes: &[Change],
        events: &[Event],
        seed: u64,
    ) -> (Seen, Vec<[u64; 3]>) {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (changes, events) = (changes.to_vec(), events.to_vec());
        let seen_in = Arc::clone(&seen);
        let gauges = timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let (mut events_in, mut table_in, _probe, gauges) = build(worker, &seen_in);
            let mut rng = Rng(seed ^ ((index as u64 + 1) * 0x9e37_79b9));
            // (jittered time, which input, index), in sending order.
            let mut sends: Vec<(u64, bool, usize)> = Vec::new();
            for (i, c) in changes
                .iter()
                .enumerate()
                .filter(|(i, _)| i % peers == index)
            {
                sends.push((c.time + rng.below(40), true, i));
            }
            for (i, e) in events
                .iter()
                .enumerate()
                .filter(|(i, _)| i % peers == index)
            {
                sends.push((e.1 + rng.below(40), false, i));
            }
            sends.sort();
            // The least time each input still has to send, from each position on.
            let mut least = vec![(u64::MAX, u64::MAX); sends.len() + 1];
            for (j, &(_, is_change, i)) in sends.iter().enumerate().rev() {
                let (mut table, mut event) = least[j + 1];
                if is_change {
                    table = table.min(changes[i].time);
                } else {
                    event = event.min(events[i].1);
                }
                least[j] = (table, event);
            }
            for (j, &(_, is_change, i)) in sends.iter().enumerate() {
                let (table, event) = least[j];
                if table != u64::MAX {
                    table_in.advance_to(table);
                }
                if event != u64::MAX {
                    events_in.advance_to(event);
                }
                if is_change {
                    table_in.send(changes[i].clone());
                } else {
                    events_in.send(events[i].clone());
                }
                if j % 8 == 0 {
                    worker.step();
                }
            }
            table_in.close();
            events_in.close();
            while worker.step() {}
            [
                gauges.table_keys.load(Ordering::Relaxed),
                gauges.pending_events.load(Ordering::Relaxed),
                gauges.pending_changes.load(Ordering::Relaxed),
            ]
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
    fn each_event_meets_its_keys_version_as_of_its_time_at_any_worker_count() {
        for seed in [0x2545_f491_4f6c_dd1d, 0x9e37_79b9_7f4a_7c15] {
            let (changes, events) = random_case(seed);
            let want = expected(&changes, &events);
            // The case exercises what it should: matches, misses, deletes and exact times.
            assert!(want.iter().any(|(_, v, _)| v.is_some()));
            assert!(want.iter().any(|(_, v, _)| v.is_none()));
            assert!(changes.iter().any(|c| c.row.is_none()));
            for workers in [1, 2, 3] {
                let (got, gauges) = run(workers, &changes, &events, seed);
                assert_eq!(
                    got.len(),
                    events.len(),
                    "{workers} workers: one output per event"
                );
                assert_eq!(got, want, "{workers} workers");
                let keys: u64 = gauges.iter().map(|g| g[0]).sum();
                assert_eq!(keys, live_keys(&changes), "{workers} workers: table keys");
                assert!(gauges.iter().all(|g| g[1] == 0 && g[2] == 0), "{gauges:?}");
            }
        }
    }

    #[test]
    fn an_event_is_emitted_only_once_the_table_frontier_is_beyond_its_time() {
        // Keys 0..4: versions every 10 ms (key 3's deleted at 60), events every 5 ms.
        let changes: Vec<Change> = (0..4)
            .flat_map(|k| {
                (1..=10).map(move |v| Change {
                    key: Key::Int(k),
                    time: 10 * v,
                    order: (0, v as i64),
                    row: (k != 3 || v != 6).then(|| row(100 * k + v as i64)),
                })
            })
            .collect();
        let events: Vec<Event> = (0..4)
            .flat_map(|k| (0..=20).map(move |i| event(100 * k + i, Some(k), 5 * i as u64)))
            .collect();
        // Sent later, at time 30, once the events frontier is 30.
        let late = event(10_000, Some(2), 30);
        let mut all_events = events.clone();
        all_events.push(late.clone());
        let want = expected(&changes, &all_events);

        let seen: Arc<Mutex<Seen>> = Arc::default();
        let seen_in = Arc::clone(&seen);
        let (changes_in, events_in) = (changes.clone(), events.clone());
        let want_in = want.clone();
        let gauges: Vec<u64> = timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let (mut events, mut table, probe, gauges) = build(worker, &seen_in);
            let check = |below: u64, complete_below: u64| {
                let seen = seen_in.lock().unwrap();
                assert!(
                    seen.iter().all(|(_, _, t)| t.is_some_and(|t| t < below)),
                    "only times below {below} emitted: {seen:?}"
                );
                let mut got = seen.clone();
                got.sort();
                got.retain(|(_, _, t)| t.is_some_and(|t| t < complete_below));
                let mut want = want_in.clone();
                want.retain(|(_, _, t)| t.is_some_and(|t| t < complete_below));
                assert_eq!(got, want, "everything below {complete_below}");
            };
            if index == 0 {
                for e in &events_in {
                    events.send(e.clone());
                }
                for c in changes_in.iter().filter(|c| c.time < 50) {
                    table.send(c.clone());
                }
            }
            // Table frontier 50 (a version at 50 is still to come), events frontier 30.
            table.advance_to(50);
            events.advance_to(30);
            worker.step_while(|| probe.less_than(&30));
            for _ in 0..50 {
                worker.step();
            }
            check(31, 30);
            // An event at the events frontier still joins, at its time.
            if index == 0 {
                events.send(late.clone());
            }
            events.advance_to(1_000);
            worker.step_while(|| probe.less_than(&50));
            for _ in 0..50 {
                worker.step();
            }
            check(50, 50);
            if index == 0 {
                for c in changes_in.iter().filter(|c| c.time >= 50) {
                    table.send(c.clone());
                }
            }
            table.close();
            events.close();
            while worker.step() {}
            gauges.table_keys.load(Ordering::Relaxed)
        })
        .unwrap()
        .join()
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, want);
        // Keys 0..2 live, key 3 came back at 70.
        assert_eq!(gauges.iter().sum::<u64>(), live_keys(&changes));
        assert_eq!(live_keys(&changes), 4);
    }

    #[test]
    fn superseded_versions_compact_away_as_the_frontiers_advance() {
        // Five keys, a new version of each every millisecond, an event per key every 50 ms:
        // 2,000 versions, 3,995 updates without compaction.
        let (keys, times) = (5i64, 400u64);
        let changes: Vec<Change> = (0..times)
            .flat_map(|t| {
                (0..keys).map(move |k| Change {
                    key: Key::Int(k),
                    time: t,
                    order: (0, t as i64),
                    row: Some(row(10 * t as i64 + k)),
                })
            })
            .collect();
        let events: Vec<Event> = (0..times)
            .step_by(50)
            .flat_map(|t| (0..keys).map(move |k| event(10 * t as i64 + k, Some(k), t)))
            .collect();
        let want = expected(&changes, &events);
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let seen_in = Arc::clone(&seen);
        let (changes_in, events_in) = (changes.clone(), events.clone());
        timely::execute(timely::Config::process(1), move |worker| {
            let (mut events, mut table, probe, gauges) = build(worker, &seen_in);
            for t in 0..times {
                table.advance_to(t);
                events.advance_to(t);
                for c in changes_in.iter().filter(|c| c.time == t) {
                    table.send(c.clone());
                }
                for e in events_in.iter().filter(|e| e.1 == t) {
                    events.send(e.clone());
                }
                worker.step();
            }
            table.advance_to(times);
            events.advance_to(times);
            worker.step_while(|| probe.less_than(&times));
            for _ in 0..20 {
                worker.step();
            }
            let updates = gauges.table_updates.load(Ordering::Relaxed);
            assert!(
                updates <= 20 * keys as u64,
                "{updates} updates held for {keys} live keys"
            );
            assert!(
                updates >= keys as u64,
                "{updates} updates held for {keys} live keys"
            );
            assert_eq!(gauges.table_keys.load(Ordering::Relaxed), keys as u64);
            table.close();
            events.close();
            while worker.step() {}
        })
        .unwrap()
        .join()
        .into_iter()
        .for_each(|r| r.unwrap());
        let mut got = seen.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, want);
    }
}
