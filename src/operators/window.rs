//! The window operator: event-time windowed aggregates per dimension value, emitted when the
//! frontier passes the window's end. Two timely stages:
//!
//! ```text
//! observations ─exchange by key─► Partials ─exchange by (window, dimension)─► Finals ─► sink
//! (from the source:              per window end: distinct     sum the partials of every
//!  event time, key,              keys, counts, sums; emitted  worker when the frontier
//!  dimension labels,             when the frontier reaches    passes the end; print
//!  numbers; see [`observe`])     the end                      one line per dimension
//! ```
//!
//! Routing by key makes distinct counts exact and additive: a key always reaches the same
//! worker, so per-worker distinct counts of disjoint key sets add up. The first stage holds a
//! capability for each open window end (`BTreeMap<end, Capability>`) and the tallies of each
//! open instance; both are removed when the instance is emitted, so memory is bounded by the
//! open windows, not by the records seen. A record costs about the same in a window sliding
//! every minute as in a tumbling one: see [`PartialAggregator`].
//!
//! Windows of a window and dimension that ended below its restored frontier (from the stored
//! progress, per window output) were written before a restart and are not emitted again; see
//! [`crate::progress`] and [`crate::resume`] (outputs added since start from nothing).

use std::collections::{BTreeMap, BTreeSet};

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::ProbeHandle;
use timely::dataflow::Stream;

use crate::data::record::Value;
pub use crate::data::window::{AggregateValue, WindowResult};
use crate::schema::{Key, Record};
use crate::spec::{AggregateFn, DataflowSpec};

/// What the window operator needs of a record.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Observation {
    /// Event time.
    pub event_time: u64,
    /// The key.
    pub key: Key,
    /// One label per dimension (short labels inline: no allocation).
    pub labels: SmallVec<[CompactString; 2]>,
    /// One number per aggregate (for sum, min and max; `None` otherwise or when absent), or
    /// empty when no aggregate needs numbers.
    pub numbers: Vec<Option<f64>>,
}

/// Fixed-point scale of sums: sums are exact in units of 1e-9, so they do not depend on the
/// order in which workers add them up.
const SUM_SCALE: f64 = 1e9;

/// A number in units of 1/SUM_SCALE.
fn fixed_point(x: f64) -> i128 {
    (x * SUM_SCALE).round() as i128
}

/// An aggregate's state, mergeable across workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Accumulator {
    /// A count of records, or of distinct keys (keys are routed, so workers' counts add up).
    Count(u64),
    /// A sum in units of 1/SUM_SCALE.
    Sum(i128),
    /// A minimum.
    Min(Option<f64>),
    /// A maximum.
    Max(Option<f64>),
}

impl Accumulator {
    fn new(function: &AggregateFn) -> Self {
        match function {
            AggregateFn::Count => Accumulator::Count(0),
            AggregateFn::CountDistinct => Accumulator::Count(0),
            AggregateFn::Sum(_) => Accumulator::Sum(0),
            AggregateFn::Min(_) => Accumulator::Min(None),
            AggregateFn::Max(_) => Accumulator::Max(None),
        }
    }

    /// Adds a record's number to a minimum or maximum (counts and sums are kept by [`Tally`]).
    fn add_extreme(&mut self, number: Option<f64>) {
        match (self, number) {
            (Accumulator::Min(m), Some(x)) => *m = Some(m.map_or(x, |m| m.min(x))),
            (Accumulator::Max(m), Some(x)) => *m = Some(m.map_or(x, |m| m.max(x))),
            _ => {}
        }
    }

    fn merge(&mut self, other: Accumulator) {
        match (self, other) {
            (Accumulator::Count(a), Accumulator::Count(b)) => *a += b,
            (Accumulator::Sum(a), Accumulator::Sum(b)) => *a += b,
            (Accumulator::Min(a), Accumulator::Min(b)) => *a = min_max(*a, b, f64::min),
            (Accumulator::Max(a), Accumulator::Max(b)) => *a = min_max(*a, b, f64::max),
            _ => {}
        }
    }

    /// The final value.
    pub fn value(&self) -> AggregateValue {
        match self {
            Accumulator::Count(n) => AggregateValue::Int(*n as i64),
            Accumulator::Sum(s) => AggregateValue::Float(Some(*s as f64 / SUM_SCALE)),
            Accumulator::Min(m) | Accumulator::Max(m) => AggregateValue::Float(*m),
        }
    }
}

fn min_max(a: Option<f64>, b: Option<f64>, f: fn(f64, f64) -> f64) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        (a, b) => a.or(b),
    }
}

/// One worker's aggregates for one window, dimension and value.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Partial {
    /// Index into the spec's windows.
    pub window: u16,
    /// Window end.
    pub end: u64,
    /// Index into the spec's dimensions.
    pub dimension: u16,
    /// The dimension's value.
    pub value: String,
    /// One per aggregate.
    pub accumulators: Vec<Accumulator>,
}

/// (window, dimension) -> value -> accumulators merged from every worker.
type FinalTable = BTreeMap<(u16, u16), BTreeMap<String, Vec<Accumulator>>>;

/// A worker's side of the windows: for the keys routed to this worker, per window, dimension
/// and value, the records, distinct keys and aggregates of every open window.
///
/// **Hopping windows at the cost of one.** A record at time `t` lies in a contiguous range of
/// a window's instances, `[lo, hi]` by index (`j` starts at `j * slide`; a tumbling window's
/// range has one instance). Counts and sums are not added to each instance: the record adds
/// to a *begin* tally at `lo` and an *end* tally at `hi`, and emission walks each window's
/// instances in order with a running tally per dimension value: `running += begin(j)`, emit
/// `running`, `running -= end(j)`. So instance `j` receives exactly the records whose range
/// contains `j` (the records with `lo <= j`, minus those with `hi < j`). A range of one
/// instance (every record of a tumbling window) goes to a third, *whole* tally, added before
/// and subtracted after its instance's emission: one update instead of two. Sums are fixed-point
/// integers, so subtracting is exact. Minimum and maximum cannot be subtracted; they are kept
/// per instance (a record updates each instance of its range), which costs `size / slide`
/// per record only for dataflows that use them.
///
/// **Distinct counts** by the same ranges: a record counts as new only in the instances where
/// no earlier occurrence of its key with the same label counts it. An occurrence at `h < t`
/// covers a prefix of `[lo, hi]` (instances up to `hi(h)`), one at `h > t` a suffix (from
/// `lo(h)`), because `lo` and `hi` grow with time; so what remains is one range,
/// `[max(lo, hi(h<t) + 1), min(hi, lo(h>t) - 1)]`, begun and ended as above. Each arrival adds
/// exactly the instances no earlier arrival covered, in any arrival order, so every instance
/// counts each key once. Key occurrences are kept in generations by the end of the last window
/// that contains them, and a generation is dropped whole once the frontier reaches that end,
/// so memory is bounded by the open windows. A record's key is looked up in the open
/// generations, newest first, until one holds an occurrence that covers all older ones (at
/// or before `t`, same labels). Where many generations are open (a 1-hour window sliding
/// every minute keeps 60) one map from a key's hash to its newest and oldest generations
/// makes a new key one look-up; a dropped generation removes its keys from that map when it
/// was their newest. Labels are interned per dimension. All of a record's updates
/// to one instance share one look-up of that instance.
///
/// **Emission.** Every instance holding a begin or end tally has a capability (`add` reports
/// its end); an instance between them may hold neither, so emitting an instance whose running
/// tallies are not all finished reports the next instance's end, which the caller opens from
/// the capability it is emitting at. Instances of a window are emitted in end order, because
/// the caller emits ends in order.
pub struct PartialAggregator {
    spec: DataflowSpec,
    /// Windows and dimensions restored from progress: instances ending below are skipped.
    suppress: Suppress,
    /// Per dimension: label -> id, and id -> label.
    label_ids: Vec<FxHashMap<CompactString, u32>>,
    labels: Vec<Vec<CompactString>>,
    /// Instance end -> [window][dimension][label id] -> tallies.
    open: FxHashMap<u64, Vec<Vec<Vec<Cell>>>>,
    /// [window][dimension]: label id -> the running tally of the instances emitted so far.
    running: Vec<Vec<FxHashMap<u32, Tally>>>,
    /// Whether any aggregate is a sum, and whether any is a minimum or maximum.
    sums: bool,
    extremes: bool,
    /// End of the last window containing them -> the occurrences of keys.
    generations: BTreeMap<u64, Generation>,
    /// Hash of a key ([`Key::route`]) -> the newest and oldest generations holding it (or a key
    /// of the same hash): a new key costs one look-up, not one per generation. Kept only when
    /// more than [`SCANNED_GENERATIONS`] generations are open at once; with fewer, looking in
    /// each is cheaper than keeping the map.
    seen: Option<FxHashMap<u64, (u64, u64)>>,
    /// This record's tally updates in one window: (instance end, dimension, tally, part).
    updates: Vec<(u64, u16, Slot, Part)>,
    /// The last generation dropped, emptied: the next one reuses its allocations instead of
    /// growing (and rehashing) from nothing.
    spare: Option<Generation>,
    /// This record's label ids, and its key's earlier occurrences (event times; label ids,
    /// one per dimension each): scratch space reused for every record.
    ids: Vec<u32>,
    history_times: Vec<u64>,
    history_ids: Vec<u32>,
}

/// The occurrences of keys whose last window ends at one time.
#[derive(Default)]
struct Generation {
    /// Key -> its latest occurrence in `occurrences`.
    latest: FxHashMap<Key, u32>,
    /// (event time, the key's previous occurrence in this generation or [`NONE`]).
    occurrences: Vec<(u64, u32)>,
    /// Label ids, one per dimension for each occurrence.
    ids: Vec<u32>,
}

/// No previous occurrence.
const NONE: u32 = u32::MAX;

/// Records, distinct keys and sums (per aggregate, fixed point; empty when no aggregate sums).
#[derive(Clone, Debug, Default)]
struct Tally {
    records: u64,
    distinct: u64,
    sums: Vec<i128>,
}

impl Tally {
    /// Counts a record, and adds its numbers to the sums when the dataflow has sums.
    fn add_record(&mut self, sums: bool, numbers: &[Option<f64>]) {
        self.records += 1;
        if sums {
            if self.sums.len() < numbers.len() {
                self.sums.resize(numbers.len(), 0);
            }
            for (sum, number) in self.sums.iter_mut().zip(numbers) {
                if let Some(x) = number {
                    *sum += fixed_point(*x);
                }
            }
        }
    }

    fn add(&mut self, other: &Tally) {
        self.records += other.records;
        self.distinct += other.distinct;
        if self.sums.len() < other.sums.len() {
            self.sums.resize(other.sums.len(), 0);
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a += b;
        }
    }

    fn subtract(&mut self, other: &Tally) {
        self.records -= other.records;
        self.distinct -= other.distinct;
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            *a -= b;
        }
    }

    fn is_empty(&self) -> bool {
        self.records == 0 && self.distinct == 0
    }
}

/// One instance's tallies for one dimension value: what begins and ends here, and (when the
/// dataflow has them) minimum and maximum per aggregate.
#[derive(Clone, Debug, Default)]
struct Cell {
    begin: Tally,
    end: Tally,
    /// Records whose range is this one instance (every record of a tumbling window).
    whole: Tally,
    extremes: Vec<Accumulator>,
}

/// The cell of label `id` among one instance's cells for a window and dimension.
fn cell_of(cells: &mut Vec<Cell>, id: u32) -> &mut Cell {
    let id = id as usize;
    if cells.len() <= id {
        cells.resize_with(id + 1, Cell::default);
    }
    &mut cells[id]
}

/// Which of a cell's tallies an update goes to.
#[derive(Clone, Copy)]
enum Slot {
    Begin,
    End,
    Whole,
}

/// What one record adds to one tally.
#[derive(Clone, Copy)]
enum Part {
    /// A record (and its numbers).
    Record,
    /// A distinct key.
    Distinct,
}

impl PartialAggregator {
    /// An empty aggregator; windows of window `w` and dimension `d` ending below
    /// `suppress[w][d]` are skipped.
    pub fn new(spec: &DataflowSpec, suppress: &[Vec<u64>]) -> Self {
        let dimensions = spec.dimensions.len();
        PartialAggregator {
            spec: spec.clone(),
            suppress: Suppress::new(spec, suppress),
            label_ids: vec![FxHashMap::default(); dimensions],
            labels: vec![Vec::new(); dimensions],
            open: FxHashMap::default(),
            running: vec![vec![FxHashMap::default(); dimensions]; spec.windows.len()],
            sums: spec
                .aggregates
                .iter()
                .any(|a| matches!(a.function, AggregateFn::Sum(_))),
            extremes: spec
                .aggregates
                .iter()
                .any(|a| matches!(a.function, AggregateFn::Min(_) | AggregateFn::Max(_))),
            generations: BTreeMap::new(),
            seen: (open_generations(spec) > SCANNED_GENERATIONS).then(FxHashMap::default),
            updates: Vec::new(),
            spare: None,
            ids: Vec::new(),
            history_times: Vec::new(),
            history_ids: Vec::new(),
        }
    }

    /// The tallies of instance `end` ([window][dimension][label id]); reports `end` to
    /// `new_end` when the instance had none.
    fn table<'a>(
        open: &'a mut FxHashMap<u64, Vec<Vec<Vec<Cell>>>>,
        shape: (usize, usize),
        end: u64,
        new_end: &mut impl FnMut(u64),
    ) -> &'a mut Vec<Vec<Vec<Cell>>> {
        open.entry(end).or_insert_with(|| {
            new_end(end);
            vec![vec![Vec::new(); shape.1]; shape.0]
        })
    }

    /// Adds an observation; calls `new_end` with the end of each instance it opens (before
    /// adding to it): the caller holds a capability for each until the instance is emitted.
    pub fn add(&mut self, o: &Observation, mut new_end: impl FnMut(u64)) {
        self.ids.clear();
        for (d, label) in o.labels.iter().enumerate() {
            let id = match self.label_ids[d].get(label.as_str()) {
                Some(id) => *id,
                None => {
                    let id = self.labels[d].len() as u32;
                    self.label_ids[d].insert(label.clone(), id);
                    self.labels[d].push(label.clone());
                    id
                }
            };
            self.ids.push(id);
        }
        let dimensions = self.spec.dimensions.len();
        let shape = (self.spec.windows.len(), dimensions);
        let hash = o.key.route();
        let t = o.event_time;
        self.history_times.clear();
        self.history_ids.clear();
        let (oldest, newest) = match &self.seen {
            Some(seen) => seen
                .get(&hash)
                .map_or((1, 0), |(newest, oldest)| (*oldest, *newest)),
            None => (0, u64::MAX),
        };
        if oldest <= newest {
            // Newest generation first. Older generations hold only earlier times, so once an
            // occurrence at or before `t` with this record's labels is found, every older one
            // is covered by it (see the type's doc) and the scan stops.
            for generation in self
                .generations
                .range(oldest..=newest)
                .rev()
                .map(|(_, g)| g)
            {
                let mut covered = false;
                let mut at = generation.latest.get(&o.key).copied().unwrap_or(NONE);
                while at != NONE {
                    let (time, previous) = generation.occurrences[at as usize];
                    let ids = &generation.ids[at as usize * dimensions..][..dimensions];
                    covered |= time <= t && ids == &self.ids[..];
                    self.history_times.push(time);
                    self.history_ids.extend_from_slice(ids);
                    at = previous;
                }
                if covered {
                    break;
                }
            }
        }
        let mut last_end = 0;
        for w in 0..self.spec.windows.len() {
            let window = self.spec.windows[w].spec;
            last_end = last_end.max(window.last_end(t));
            let (size, slide) = (window.size, window.slide);
            let end_of = |j: u64| j * slide + size;
            let count = size / slide;
            let hi = t / slide;
            let lo = (hi + 1).saturating_sub(count);
            self.updates.clear();
            for d in 0..dimensions {
                let lo = lo.max(self.suppress.first[w][d]);
                if lo > hi {
                    continue;
                }
                // The instances where this key is new for this label: [lo, hi] without the
                // prefix and suffix its other occurrences cover (see the type's doc).
                let (mut first, mut last) = (lo as i64, hi as i64);
                let id = self.ids[d];
                for (h, time) in self.history_times.iter().enumerate() {
                    if self.history_ids[h * dimensions + d] != id {
                        continue;
                    }
                    let h_hi = (*time / slide) as i64;
                    if *time < t {
                        first = first.max(h_hi + 1);
                    } else {
                        let h_lo = (h_hi + 1 - count as i64).max(0);
                        last = last.min(h_lo - 1);
                    }
                }
                let d = d as u16;
                let mut span = |first: u64, last: u64, part: Part| {
                    if first == last {
                        self.updates.push((end_of(first), d, Slot::Whole, part));
                    } else {
                        self.updates.push((end_of(first), d, Slot::Begin, part));
                        self.updates.push((end_of(last), d, Slot::End, part));
                    }
                };
                span(lo, hi, Part::Record);
                if first <= last {
                    span(first as u64, last as u64, Part::Distinct);
                }
            }
            // One look-up per instance touched, for every dimension.
            self.updates.sort_unstable_by_key(|u| u.0);
            let mut updates = &self.updates[..];
            while let Some(&(end, ..)) = updates.first() {
                let n = updates.iter().take_while(|u| u.0 == end).count();
                let table = Self::table(&mut self.open, shape, end, &mut new_end);
                for &(_, d, slot, part) in &updates[..n] {
                    let cell = cell_of(&mut table[w][d as usize], self.ids[d as usize]);
                    let tally = match slot {
                        Slot::Begin => &mut cell.begin,
                        Slot::End => &mut cell.end,
                        Slot::Whole => &mut cell.whole,
                    };
                    match part {
                        Part::Distinct => tally.distinct += 1,
                        Part::Record => tally.add_record(self.sums, &o.numbers),
                    }
                }
                updates = &updates[n..];
            }
            if self.extremes {
                for d in 0..dimensions {
                    let lo = lo.max(self.suppress.first[w][d]);
                    let id = self.ids[d];
                    for j in lo..=hi {
                        let table = Self::table(&mut self.open, shape, end_of(j), &mut new_end);
                        let cell = cell_of(&mut table[w][d], id);
                        if cell.extremes.is_empty() {
                            cell.extremes = self
                                .spec
                                .aggregates
                                .iter()
                                .map(|a| Accumulator::new(&a.function))
                                .collect();
                        }
                        for (acc, number) in cell.extremes.iter_mut().zip(&o.numbers) {
                            acc.add_extreme(*number);
                        }
                    }
                }
            }
        }
        if last_end >= self.suppress.least {
            let generation = self
                .generations
                .entry(last_end)
                .or_insert_with(|| self.spare.take().unwrap_or_default());
            let at = generation.occurrences.len() as u32;
            let previous = generation.latest.insert(o.key.clone(), at);
            generation
                .occurrences
                .push((o.event_time, previous.unwrap_or(NONE)));
            generation.ids.extend_from_slice(&self.ids);
            if let Some(seen) = &mut self.seen {
                seen.entry(hash)
                    .and_modify(|(newest, oldest)| {
                        *newest = (*newest).max(last_end);
                        *oldest = (*oldest).min(last_end);
                    })
                    .or_insert((last_end, last_end));
            }
        }
    }

    /// Emits the partials of the instances ending at `end` and forgets them; calls `next` with
    /// the end of each window's next instance that running tallies still reach.
    pub fn emit(&mut self, end: u64, mut give: impl FnMut(Partial), mut next: impl FnMut(u64)) {
        let mut table = self.open.remove(&end);
        for (w, window) in self.spec.windows.iter().enumerate() {
            let (size, slide) = (window.spec.size, window.spec.slide);
            if end < size || !(end - size).is_multiple_of(slide) {
                continue;
            }
            let mut reaches_next = false;
            for d in 0..self.spec.dimensions.len() {
                let cells = table.as_mut().map(|t| std::mem::take(&mut t[w][d]));
                let cells = cells.unwrap_or_default();
                let running = &mut self.running[w][d];
                for (id, cell) in cells.iter().enumerate() {
                    if !cell.begin.is_empty() || !cell.whole.is_empty() {
                        let tally = running.entry(id as u32).or_default();
                        tally.add(&cell.begin);
                        tally.add(&cell.whole);
                    }
                }
                for (id, tally) in running.iter() {
                    if tally.records == 0 {
                        continue;
                    }
                    let extremes = cells.get(*id as usize).map(|c| &c.extremes);
                    let accumulators = self
                        .spec
                        .aggregates
                        .iter()
                        .enumerate()
                        .map(|(a, aggregate)| match aggregate.function {
                            AggregateFn::Count => Accumulator::Count(tally.records),
                            AggregateFn::CountDistinct => Accumulator::Count(tally.distinct),
                            AggregateFn::Sum(_) => {
                                Accumulator::Sum(tally.sums.get(a).copied().unwrap_or(0))
                            }
                            AggregateFn::Min(_) | AggregateFn::Max(_) => extremes
                                .and_then(|e| e.get(a).cloned())
                                .unwrap_or_else(|| Accumulator::new(&aggregate.function)),
                        })
                        .collect();
                    give(Partial {
                        window: w as u16,
                        end,
                        dimension: d as u16,
                        value: self.labels[d][*id as usize].to_string(),
                        accumulators,
                    });
                }
                for (id, cell) in cells.iter().enumerate() {
                    if cell.end.is_empty() && cell.whole.is_empty() {
                        continue;
                    }
                    if let Some(tally) = running.get_mut(&(id as u32)) {
                        tally.subtract(&cell.end);
                        tally.subtract(&cell.whole);
                        if tally.is_empty() {
                            running.remove(&(id as u32));
                        }
                    }
                }
                reaches_next |= !running.is_empty();
            }
            if reaches_next {
                next(end + slide);
            }
        }
    }

    /// Forgets key occurrences that no window open at `frontier` or later can contain.
    pub fn forget_before(&mut self, frontier: u64) {
        while let Some(entry) = self.generations.first_entry() {
            if *entry.key() > frontier {
                break;
            }
            let (end, mut generation) = entry.remove_entry();
            // A key whose newest generation this is has no occurrence left: generations are
            // dropped in end order. (Keys sharing a hash share an entry: the newest of both.)
            if let Some(seen) = &mut self.seen {
                for key in generation.latest.keys() {
                    let hash = key.route();
                    if seen.get(&hash).is_some_and(|(newest, _)| *newest == end) {
                        seen.remove(&hash);
                    }
                }
            }
            generation.latest.clear();
            generation.occurrences.clear();
            generation.ids.clear();
            self.spare = Some(generation);
        }
    }
}

/// Up to this many open generations a record's key is looked up in each of them.
const SCANNED_GENERATIONS: usize = 4;

/// About how many generations are open at once, on average over time: at time `T` the open
/// ones are the ends of the last window containing some record at or before `T` that are
/// still after `T`. Sampled at 1,024 times at most over a span of twice the longest window.
fn open_generations(spec: &DataflowSpec) -> usize {
    let longest = spec.windows.iter().map(|w| w.spec.size).max().unwrap_or(1);
    let finest = spec.windows.iter().map(|w| w.spec.slide).min().unwrap_or(1);
    let step = finest.max(longest / 512).max(1) as usize;
    let last_end = |t: u64| {
        spec.windows
            .iter()
            .map(|w| w.spec.last_end(t))
            .max()
            .unwrap_or(0)
    };
    let ends: BTreeSet<u64> = (longest..3 * longest).step_by(step).map(last_end).collect();
    let (samples, open) = (2 * longest..3 * longest)
        .step_by(step)
        .map(|t| ends.range(t + 1..=last_end(t)).count())
        .fold((0, 0), |(n, sum), open| (n + 1, sum + open));
    open.div_ceil(samples.max(1))
}

/// Frontiers that suppress nothing (a first start), for every window and dimension of `spec`.
pub fn suppress_nothing(spec: &DataflowSpec) -> Vec<Vec<u64>> {
    vec![vec![0; spec.dimensions.len()]; spec.windows.len()]
}

/// Restored frontiers: per window and dimension, the first instance not written before (by
/// index), and the least frontier.
struct Suppress {
    first: Vec<Vec<u64>>,
    least: u64,
}

impl Suppress {
    fn new(spec: &DataflowSpec, unit: &[Vec<u64>]) -> Self {
        let first = spec
            .windows
            .iter()
            .zip(unit)
            .map(|(window, frontiers)| {
                let (size, slide) = (window.spec.size, window.spec.slide);
                // The least j with j * slide + size >= frontier.
                frontiers
                    .iter()
                    .map(|f| f.saturating_sub(size).div_ceil(slide))
                    .collect()
            })
            .collect();
        Suppress {
            first,
            least: unit.iter().flatten().copied().min().unwrap_or(0),
        }
    }
}

/// Projects records onto what the windows need.
pub fn observe(spec: &DataflowSpec, record: &Record) -> Observation {
    observe_fields(spec, record.event_time, record.key.clone(), |f| {
        &record.values[f]
    })
}

/// Projects a record given as its event time, key and fields (`field(i)`: the `spec`'s field
/// `i`) onto what the windows need; [`observe`] for records that are not one `Record` (a
/// join's event and version).
pub fn observe_fields<'a>(
    spec: &DataflowSpec,
    event_time: u64,
    key: Key,
    field: impl Fn(usize) -> &'a Value,
) -> Observation {
    Observation {
        event_time,
        key,
        labels: spec.dimensions.iter().map(|d| field(*d).label()).collect(),
        numbers: if spec.aggregates.iter().any(|a| a.function.field().is_some()) {
            spec.aggregates
                .iter()
                .map(|a| a.function.field().and_then(|f| field(f).number()))
                .collect()
        } else {
            Vec::new()
        },
    }
}

/// Renders both stages; returns final window results at their end times. `taken_in` probes the
/// first stage's output, whose frontier is the frontier of observations every worker's first
/// stage has taken in (for the source's flow control, [`crate::operators::flow`]).
pub fn render<'s>(
    observations: Stream<'s, u64, Vec<Observation>>,
    spec: &DataflowSpec,
    suppress: Vec<Vec<u64>>,
    print: bool,
    taken_in: &ProbeHandle<u64>,
) -> Stream<'s, u64, Vec<WindowResult>> {
    let partial_spec = spec.clone();
    let partials = observations.unary_frontier(
        Exchange::new(|o: &Observation| o.key.route()),
        "WindowPartials",
        move |_, _| {
            let mut aggregator = PartialAggregator::new(&partial_spec, &suppress);
            let mut capabilities: BTreeMap<u64, Capability<u64>> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for o in data.drain(..) {
                        aggregator.add(&o, |end| {
                            capabilities
                                .entry(end)
                                .or_insert_with(|| cap.delayed(&end, output.output_index()));
                        });
                    }
                });
                while let Some(entry) = capabilities.first_entry() {
                    if frontier.less_than(entry.key()) {
                        break;
                    }
                    let (end, cap) = entry.remove_entry();
                    let mut next: SmallVec<[u64; 4]> = SmallVec::new();
                    let mut session = output.session(&cap);
                    aggregator.emit(end, |partial| session.give(partial), |e| next.push(e));
                    drop(session);
                    for e in next {
                        capabilities.entry(e).or_insert_with(|| cap.delayed(&e));
                    }
                }
                if let Some(low) = frontier.frontier().first() {
                    aggregator.forget_before(*low);
                }
            }
        },
    );
    // The stage holds capabilities only for window ends the frontier has not reached, so its
    // output frontier is its input frontier.
    let partials = partials.probe_with(taken_in);

    let final_spec = spec.clone();
    partials.unary_frontier(
        Exchange::new(|p: &Partial| {
            use crate::data::hash::mix64;
            mix64(mix64(p.end) ^ ((p.window as u64) << 16) ^ p.dimension as u64)
        }),
        "WindowFinals",
        move |_, _| {
            let spec = final_spec;
            let mut stash: BTreeMap<u64, (Capability<u64>, FinalTable)> = BTreeMap::new();
            move |(input, frontier), output| {
                input.for_each(|cap, data| {
                    for p in data.drain(..) {
                        let (_, table) = stash.entry(p.end).or_insert_with(|| {
                            (cap.delayed(&p.end, output.output_index()), BTreeMap::new())
                        });
                        let values = table.entry((p.window, p.dimension)).or_default();
                        match values.get_mut(&p.value) {
                            Some(accumulators) => {
                                for (a, b) in accumulators.iter_mut().zip(p.accumulators) {
                                    a.merge(b);
                                }
                            }
                            None => {
                                values.insert(p.value, p.accumulators);
                            }
                        }
                    }
                });
                while let Some(entry) = stash.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (end, (cap, table)) = entry.remove_entry();
                    let mut session = output.session(&cap);
                    for ((w, d), values) in table {
                        let window = &spec.windows[w as usize];
                        let start = end - window.spec.size;
                        if print {
                            println!("{}", describe(&spec, w, d, start, &values));
                        }
                        for (value, accumulators) in values {
                            let aggregates = accumulators.iter().map(Accumulator::value).collect();
                            session.give(WindowResult {
                                window: w,
                                start,
                                end,
                                dimension: d,
                                value,
                                aggregates,
                            });
                        }
                    }
                }
            }
        },
    )
}

/// One line per window and dimension, e.g.
/// `window 1m 2026-11-21T22:01:00.000Z gender: female users=31 records=33 | male users=29 records=29`.
fn describe(
    spec: &DataflowSpec,
    w: u16,
    d: u16,
    start: u64,
    values: &BTreeMap<String, Vec<Accumulator>>,
) -> String {
    let dimension = &spec.fields[spec.dimensions[d as usize]].name;
    let cells: Vec<String> = values
        .iter()
        .map(|(value, accumulators)| {
            let aggregates: Vec<String> = spec
                .aggregates
                .iter()
                .zip(accumulators)
                .map(|(a, acc)| format!("{}={}", a.name, acc.value()))
                .collect();
            format!("{value} {}", aggregates.join(" "))
        })
        .collect();
    format!(
        "window {} {} {dimension}: {}",
        spec.windows[w as usize].name,
        crate::time::rfc3339(start),
        cells.join(" | ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};
    use timely::dataflow::operators::{Input, Inspect};

    fn users() -> DataflowSpec {
        DataflowSpec::load(std::path::Path::new("dataflows/users_created.toml")).unwrap()
    }

    /// Observations 7 s apart over two hours, 40 keys, two genders and three nationalities.
    fn observations() -> Vec<Observation> {
        (0..1000u64)
            .map(|i| Observation {
                event_time: 1_795_255_200_000 + i * 7_000,
                key: Key::Int((i * 7 % 40) as i64),
                labels: [
                    ["female", "male"][(i % 2) as usize],
                    ["FR", "NO", "US"][(i % 3) as usize],
                ]
                .into_iter()
                .map(CompactString::from)
                .collect(),
                numbers: Vec::new(),
            })
            .collect()
    }

    /// The rows a fold over the observations gives: (window, start, dimension, value, distinct, count).
    fn fold(
        spec: &DataflowSpec,
        observations: &[Observation],
    ) -> BTreeSet<(u16, u64, u16, String, i64, i64)> {
        type Acc = (HashSet<Key>, i64);
        let mut cells: BTreeMap<(u16, u64, u16, String), Acc> = BTreeMap::new();
        for o in observations {
            for (w, window) in spec.windows.iter().enumerate() {
                let (size, slide) = (window.spec.size, window.spec.slide);
                for start in (o.event_time.saturating_sub(size) / slide..=o.event_time / slide)
                    .map(|k| k * slide)
                    .filter(|s| *s <= o.event_time && o.event_time < s + size)
                {
                    for (d, label) in o.labels.iter().enumerate() {
                        let cell = cells
                            .entry((w as u16, start, d as u16, label.to_string()))
                            .or_default();
                        cell.0.insert(o.key.clone());
                        cell.1 += 1;
                    }
                }
            }
        }
        cells
            .into_iter()
            .map(|((w, s, d, v), (keys, n))| (w, s, d, v, keys.len() as i64, n))
            .collect()
    }

    #[test]
    fn results_are_final_only_once_the_frontier_reaches_their_end_at_two_workers() {
        let spec = users();
        let all = observations();
        let expected = fold(&spec, &all);
        let seen: Arc<Mutex<Vec<WindowResult>>> = Arc::default();
        let (seen_in, spec_in) = (Arc::clone(&seen), spec.clone());
        let middle = 1_795_255_200_000 + 500 * 7_000;
        timely::execute(timely::Config::process(2), move |worker| {
            let index = worker.index();
            let probe = ProbeHandle::new();
            let seen = Arc::clone(&seen_in);
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, stream) = scope.new_input::<Vec<Observation>>();
                render(stream, &spec_in, suppress_nothing(&spec_in), false, &probe).inspect(
                    move |r| {
                        seen.lock().unwrap().push(r.clone());
                    },
                );
                input
            });
            // Each worker sends half, in event-time order.
            let mine: Vec<Observation> =
                observations().into_iter().skip(index).step_by(2).collect();
            for o in mine.iter().filter(|o| o.event_time < middle) {
                input.advance_to(o.event_time - 1_000);
                input.send(o.clone());
            }
            input.advance_to(middle);
            for _ in 0..200 {
                worker.step();
            }
            worker.step_while(|| probe.less_than(&middle));
            // Every result emitted so far ends at or before the frontier.
            for r in seen_in.lock().unwrap().iter() {
                assert!(
                    r.end <= middle,
                    "a window ending at {} emitted at frontier {middle}",
                    r.end
                );
            }
            for o in mine.iter().filter(|o| o.event_time >= middle) {
                input.advance_to((o.event_time - 1_000).max(middle));
                input.send(o.clone());
            }
            input.close();
            while worker.step() {}
        })
        .unwrap()
        .join()
        .into_iter()
        .for_each(|r| r.unwrap());
        let results = seen.lock().unwrap().clone();
        let got: BTreeSet<_> = results
            .iter()
            .map(|r| {
                let [AggregateValue::Int(users), AggregateValue::Int(records)] = r.aggregates[..]
                else {
                    panic!("users_created counts distinct users and records: {r:?}");
                };
                (
                    r.window,
                    r.start,
                    r.dimension,
                    r.value.clone(),
                    users,
                    records,
                )
            })
            .collect();
        assert_eq!(
            got.len(),
            results.len(),
            "every window, dimension and value is emitted once"
        );
        assert_eq!(got, expected);
        // The windows that ended by the middle were complete when emitted (the check above), and
        // some of them were: the test exercised the gate.
        assert!(results.iter().any(|r| r.end <= middle));
    }

    /// A dataflow with a tumbling window, two hopping ones and every aggregate.
    fn every_aggregate() -> DataflowSpec {
        let text = r#"
name = "every_aggregate"
topic = "t"
key = "id"
allowed_lateness = "0s"
idle_timeout = "off"
dimensions = ["kind", "region"]
[event_time]
source = "message_timestamp"
[[fields]]
name = "id"
type = "bigint"
required = true
[[fields]]
name = "kind"
type = "text"
[[fields]]
name = "region"
type = "text"
[[fields]]
name = "amount"
type = "double"
[[windows]]
name = "1m"
size = "1m"
[[windows]]
name = "10m_every_1m"
size = "10m"
slide = "1m"
[[windows]]
name = "6m_every_3m"
size = "6m"
slide = "3m"
[[aggregates]]
name = "users"
function = "count_distinct"
[[aggregates]]
name = "records"
function = "count"
[[aggregates]]
name = "total"
function = "sum"
field = "amount"
[[aggregates]]
name = "least"
function = "min"
field = "amount"
[[aggregates]]
name = "most"
function = "max"
field = "amount"
[tables]
rows = "r"
by_value = "v"
by_window = "w"
dead_letters = "d"
late = "l"
"#;
        DataflowSpec::parse(text, std::path::Path::new("every_aggregate.toml")).unwrap()
    }

    /// Per (window, end, dimension, value): distinct keys, records, sum in fixed point, min, max.
    type Folded = BTreeMap<(u16, u64, u16, String), (i64, i64, i128, Option<f64>, Option<f64>)>;

    /// Every instance of every window that contains each observation, one at a time.
    fn fold_every_aggregate(
        spec: &DataflowSpec,
        all: &[Observation],
        suppress: &[Vec<u64>],
    ) -> Folded {
        let mut keys: BTreeMap<(u16, u64, u16, String), HashSet<Key>> = BTreeMap::new();
        let mut cells = Folded::new();
        for o in all {
            for (w, window) in spec.windows.iter().enumerate() {
                let (size, slide) = (window.spec.size, window.spec.slide);
                let mut start = o.event_time / slide * slide;
                loop {
                    if start + size > o.event_time {
                        for (d, label) in o.labels.iter().enumerate() {
                            if start + size < suppress[w][d] {
                                continue;
                            }
                            let at = (w as u16, start + size, d as u16, label.to_string());
                            keys.entry(at.clone()).or_default().insert(o.key.clone());
                            let cell = cells.entry(at).or_insert((0, 0, 0, None, None));
                            cell.1 += 1;
                            if let Some(x) = o.numbers[2] {
                                cell.2 += fixed_point(x);
                                cell.3 = Some(cell.3.map_or(x, |m| m.min(x)));
                                cell.4 = Some(cell.4.map_or(x, |m| m.max(x)));
                            }
                        }
                    }
                    if start < slide {
                        break;
                    }
                    start -= slide;
                    if start + size <= o.event_time {
                        break;
                    }
                }
            }
        }
        for (at, keys) in keys {
            cells.get_mut(&at).unwrap().0 = keys.len() as i64;
        }
        cells
    }

    /// Adds every observation, then emits every instance in end order as a caller holding
    /// capabilities does (ends reported by `add` and by `emit`).
    fn aggregate(
        spec: &DataflowSpec,
        all: &[Observation],
        suppress: &[Vec<u64>],
        index: bool,
    ) -> Folded {
        let mut aggregator = PartialAggregator::new(spec, suppress);
        // Both ways of finding a key's generations: through the index, and by looking in each.
        aggregator.seen = index.then(FxHashMap::default);
        let mut ends = BTreeSet::new();
        for o in all {
            aggregator.add(o, |end| {
                ends.insert(end);
            });
        }
        let mut got = Folded::new();
        while let Some(end) = ends.pop_first() {
            let mut next = Vec::new();
            aggregator.emit(
                end,
                |p| {
                    let [Accumulator::Count(distinct), Accumulator::Count(records), Accumulator::Sum(sum), Accumulator::Min(least), Accumulator::Max(most)] =
                        p.accumulators[..]
                    else {
                        panic!("five aggregates: {p:?}");
                    };
                    let at = (p.window, p.end, p.dimension, p.value);
                    let row = (distinct as i64, records as i64, sum, least, most);
                    assert!(got.insert(at.clone(), row).is_none(), "{at:?} emitted twice");
                },
                |e| next.push(e),
            );
            for e in next {
                assert!(e > end, "a next instance ends after the one emitted");
                ends.insert(e);
            }
            aggregator.forget_before(end);
        }
        got
    }

    #[test]
    fn the_key_index_is_kept_where_many_generations_are_open() {
        assert!(open_generations(&users()) <= SCANNED_GENERATIONS);
        assert!(open_generations(&every_aggregate()) > SCANNED_GENERATIONS);
    }

    #[test]
    fn hopping_windows_out_of_order_equal_a_fold_of_every_instance() {
        let spec = every_aggregate();
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let base = 1_795_255_200_000u64;
        for round in 0..20 {
            // Bursts of repeated keys close in time, and keys that come back after a gap, so
            // occurrences overlap each other's windows in every way.
            let keys = 1 + random(30);
            let mut all: Vec<Observation> = (0..400)
                .map(|_| Observation {
                    event_time: base + random(40 * 60_000),
                    key: Key::Int(random(keys) as i64),
                    labels: [
                        ["a", "b", "c"][random(3) as usize],
                        ["x", "y"][random(2) as usize],
                    ]
                    .into_iter()
                    .map(CompactString::from)
                    .collect(),
                    numbers: vec![
                        None,
                        None,
                        (random(4) > 0).then(|| random(10_000) as f64 / 8.0),
                        None,
                        None,
                    ],
                })
                .collect();
            // Shuffle: arrival order is not event-time order.
            for i in (1..all.len()).rev() {
                all.swap(i, random(i as u64 + 1) as usize);
            }
            let mut suppress = suppress_nothing(&spec);
            if round % 2 == 1 {
                for frontiers in suppress.iter_mut() {
                    for f in frontiers.iter_mut() {
                        *f = base + random(20 * 60_000);
                    }
                }
            }
            let mut extended = all.clone();
            for o in &mut extended {
                o.numbers[3] = o.numbers[2];
                o.numbers[4] = o.numbers[2];
            }
            let expected = fold_every_aggregate(&spec, &extended, &suppress);
            for index in [false, true] {
                let got = aggregate(&spec, &extended, &suppress, index);
                assert_eq!(
                    got.len(),
                    expected.len(),
                    "round {round}: instances emitted"
                );
                assert_eq!(got, expected, "round {round}, index {index}");
            }
        }
    }
}
