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
//! worker, so per-worker distinct counts of disjoint key sets add up. State is a
//! `BTreeMap<window end, ..>` holding a capability for each end; an end's entry is removed
//! when emitted, so memory is bounded by the open windows, not by the records seen.
//!
//! Windows of a window and dimension that ended below its restored frontier (from the stored
//! progress, per window output) were written before a restart and are not emitted again; see
//! [`crate::progress`] and [`crate::resume`] (outputs added since start from nothing).

use std::collections::BTreeMap;

use compact_str::CompactString;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::{Capability, Probe};
use timely::dataflow::ProbeHandle;
use timely::dataflow::Stream;

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

    /// Adds a record's number to a sum, minimum or maximum (counts are kept by [`Cell`]).
    fn add_number(&mut self, number: Option<f64>) {
        match (self, number) {
            (Accumulator::Sum(s), Some(x)) => *s += (x * SUM_SCALE).round() as i128,
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

/// A worker's side of the windows: per window end, per window and dimension, the
/// accumulators of every dimension value seen, for the keys routed to this worker.
///
/// Distinct counts without a set per window: each key's recent occurrences (event time and
/// dimension labels) are kept once, and a record counts as new for a window and dimension
/// value unless an earlier occurrence of its key falls in the same window with the same
/// label. Occurrences are kept in generations by the end of the last window that contains
/// them, and a generation is dropped whole once the frontier reaches that end, so memory is
/// bounded by the open windows and forgetting costs nothing per key. Labels are interned per
/// dimension, so the per-record work is a few vector increments rather than hash-set inserts.
pub struct PartialAggregator {
    spec: DataflowSpec,
    /// [window][dimension]: windows ending below are not emitted (written before a restart).
    suppress: Suppress,
    /// Per dimension: label -> id, and id -> label.
    label_ids: Vec<FxHashMap<CompactString, u32>>,
    labels: Vec<Vec<CompactString>>,
    /// Window end -> [window][dimension][label id] -> accumulators.
    open: BTreeMap<u64, Vec<Vec<Vec<Cell>>>>,
    /// End of the last window containing them -> the occurrences of keys.
    generations: BTreeMap<u64, Generation>,
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

/// The accumulators of one window, dimension and value.
#[derive(Clone, Debug, Default)]
struct Cell {
    records: u64,
    distinct: u64,
    numbers: Vec<Accumulator>,
}

impl PartialAggregator {
    /// An empty aggregator; windows of window `w` and dimension `d` ending below
    /// `suppress[w][d]` are skipped.
    pub fn new(spec: &DataflowSpec, suppress: &[Vec<u64>]) -> Self {
        PartialAggregator {
            spec: spec.clone(),
            suppress: Suppress::new(suppress),
            label_ids: vec![FxHashMap::default(); spec.dimensions.len()],
            labels: vec![Vec::new(); spec.dimensions.len()],
            open: BTreeMap::new(),
            generations: BTreeMap::new(),
            spare: None,
            ids: Vec::new(),
            history_times: Vec::new(),
            history_ids: Vec::new(),
        }
    }

    /// Adds an observation; calls `new_end` for each window end it touches (before adding).
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
        let (windows, dimensions) = (self.spec.windows.len(), self.spec.dimensions.len());
        self.history_times.clear();
        self.history_ids.clear();
        for generation in self.generations.values() {
            let mut at = generation.latest.get(&o.key).copied().unwrap_or(NONE);
            while at != NONE {
                let (time, previous) = generation.occurrences[at as usize];
                self.history_times.push(time);
                let ids = at as usize * dimensions;
                self.history_ids
                    .extend_from_slice(&generation.ids[ids..ids + dimensions]);
                at = previous;
            }
        }
        let mut last_end = 0;
        for (w, window) in self.spec.windows.iter().enumerate() {
            last_end = last_end.max(window.spec.last_end(o.event_time));
            for start in window.spec.starts(o.event_time) {
                let end = start + window.spec.size;
                if end < self.suppress.window[w] {
                    continue;
                }
                new_end(end);
                let table = self
                    .open
                    .entry(end)
                    .or_insert_with(|| vec![vec![Vec::new(); dimensions]; windows]);
                for (d, id) in self.ids.iter().enumerate() {
                    if end < self.suppress.unit[w][d] {
                        continue;
                    }
                    let cells = &mut table[w][d];
                    if cells.len() <= *id as usize {
                        cells.resize_with(*id as usize + 1, Cell::default);
                    }
                    let cell = &mut cells[*id as usize];
                    if cell.records == 0 {
                        cell.numbers = self
                            .spec
                            .aggregates
                            .iter()
                            .map(|a| Accumulator::new(&a.function))
                            .collect();
                    }
                    cell.records += 1;
                    let repeat = self.history_times.iter().enumerate().any(|(h, t)| {
                        start <= *t && *t < end && self.history_ids[h * dimensions + d] == *id
                    });
                    if !repeat {
                        cell.distinct += 1;
                    }
                    for (acc, number) in cell.numbers.iter_mut().zip(&o.numbers) {
                        acc.add_number(*number);
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
        }
    }

    /// Emits the partials of the windows ending at `end` and forgets them.
    pub fn emit(&mut self, end: u64, mut give: impl FnMut(Partial)) {
        let Some(table) = self.open.remove(&end) else {
            return;
        };
        for (w, per_dimension) in table.into_iter().enumerate() {
            for (d, cells) in per_dimension.into_iter().enumerate() {
                for (id, cell) in cells.into_iter().enumerate() {
                    if cell.records == 0 {
                        continue;
                    }
                    let accumulators = self
                        .spec
                        .aggregates
                        .iter()
                        .zip(cell.numbers)
                        .map(|(a, acc)| match a.function {
                            AggregateFn::Count => Accumulator::Count(cell.records),
                            AggregateFn::CountDistinct => Accumulator::Count(cell.distinct),
                            _ => acc,
                        })
                        .collect();
                    let value = self.labels[d][id].to_string();
                    give(Partial {
                        window: w as u16,
                        end,
                        dimension: d as u16,
                        value,
                        accumulators,
                    });
                }
            }
        }
    }

    /// Forgets key occurrences that no window open at `frontier` or later can contain.
    pub fn forget_before(&mut self, frontier: u64) {
        while let Some(entry) = self.generations.first_entry() {
            if *entry.key() > frontier {
                break;
            }
            let mut generation = entry.remove();
            generation.latest.clear();
            generation.occurrences.clear();
            generation.ids.clear();
            self.spare = Some(generation);
        }
    }
}

/// Frontiers that suppress nothing (a first start), for every window and dimension of `spec`.
pub fn suppress_nothing(spec: &DataflowSpec) -> Vec<Vec<u64>> {
    vec![vec![0; spec.dimensions.len()]; spec.windows.len()]
}

/// Restored frontiers: per window and dimension, and their minima.
struct Suppress {
    unit: Vec<Vec<u64>>,
    window: Vec<u64>,
    least: u64,
}

impl Suppress {
    fn new(unit: &[Vec<u64>]) -> Self {
        let window: Vec<u64> = unit
            .iter()
            .map(|d| d.iter().copied().min().unwrap_or(0))
            .collect();
        Suppress {
            unit: unit.to_vec(),
            least: window.iter().copied().min().unwrap_or(0),
            window,
        }
    }
}

/// Projects records onto what the windows need.
pub fn observe(spec: &DataflowSpec, record: &Record) -> Observation {
    Observation {
        event_time: record.event_time,
        key: record.key.clone(),
        labels: spec
            .dimensions
            .iter()
            .map(|d| record.values[*d].label())
            .collect(),
        numbers: if spec.aggregates.iter().any(|a| a.function.field().is_some()) {
            spec.aggregates
                .iter()
                .map(|a| a.function.field().and_then(|f| record.values[f].number()))
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
                    let mut session = output.session(&cap);
                    aggregator.emit(end, |partial| session.give(partial));
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
    use std::collections::{BTreeSet, HashSet};
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
}
