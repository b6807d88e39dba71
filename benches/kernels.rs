//! criterion micro-benchmarks of the per-record kernels: schema parsing, the window
//! aggregation, and the sink's row encoding. `cargo bench --bench kernels`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use weir::operators::window::{observe, PartialAggregator};
use weir::schema::{Record, Schema};
use weir::sink::TableSet;
use weir::source::generator::{GeneratedTopic, GeneratorConfig};
use weir::spec::DataflowSpec;

fn data(n: i64) -> Vec<(Vec<u8>, i64)> {
    let g = GeneratorConfig {
        seed: 1,
        partitions: 1,
        count: None,
        rate: 500.0,
        epoch_ms: 1_795_255_200_000,
        duplicates_per_mille: 5,
        late_per_mille: 0,
        malformed_per_mille: 0,
        topic: GeneratedTopic::Users,
        tombstones_per_mille: 0,
        events_per_user: 1,
    };
    let mut buf = Vec::new();
    (0..n)
        .map(|o| (g.message(0, o, &mut buf), buf.clone()))
        .map(|(t, b)| (b, t))
        .collect()
}

fn benches(c: &mut Criterion) {
    let spec = DataflowSpec::load(Path::new("dataflows/users_created.toml")).expect("dataflow");
    let schema = Schema::new(&spec, 1 << 20);
    let messages = data(10_000);
    let bytes: usize = messages.iter().map(|(m, _)| m.len()).sum();

    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(messages.len() as u64));
    group.bench_function("users_created records", |b| {
        b.iter(|| {
            messages
                .iter()
                .filter(|(m, t)| schema.parse(m, Some(*t)).is_ok())
                .count()
        })
    });
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("users_created bytes", |b| {
        b.iter(|| {
            messages
                .iter()
                .filter(|(m, t)| schema.parse(m, Some(*t)).is_ok())
                .count()
        })
    });
    group.finish();

    let records: Vec<Record> = messages
        .iter()
        .enumerate()
        .filter_map(|(o, (m, t))| {
            schema.parse(m, Some(*t)).ok().map(|p| Record {
                partition: 0,
                offset: o as i64,
                event_time: p.event_time,
                key: p.key,
                values: p.values,
                deleted: false,
                read_at_us: 0,
            })
        })
        .collect();
    let observations: Vec<_> = records.iter().map(|r| observe(&spec, r)).collect();
    let mut group = c.benchmark_group("window");
    group.throughput(Throughput::Elements(observations.len() as u64));
    group.bench_function("add and emit (4 windows x 2 dimensions)", |b| {
        b.iter(|| {
            let mut aggregator =
                PartialAggregator::new(&spec, &weir::operators::window::suppress_nothing(&spec));
            let mut ends = std::collections::BTreeSet::new();
            for o in &observations {
                aggregator.add(o, |end| {
                    ends.insert(end);
                });
            }
            let mut partials = 0;
            while let Some(end) = ends.pop_first() {
                let mut next = Vec::new();
                aggregator.emit(end, |_| partials += 1, |e| next.push(e));
                ends.extend(next);
            }
            partials
        })
    });
    group.finish();

    let tables = TableSet::new(&spec);
    let mut group = c.benchmark_group("sink");
    group.throughput(Throughput::Elements(records.len() as u64));
    // What the sink does with each batch: records (cloned outside the timing) into rows.
    group.bench_function("encode created_users rows", |b| {
        b.iter_batched(
            || records.clone(),
            |records| {
                records
                    .into_iter()
                    .map(|r| tables.into_row_cells(r).len())
                    .sum::<usize>()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(kernels, benches);
criterion_main!(kernels);
