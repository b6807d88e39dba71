//! The engine in-process: `weir::runtime::run` started by the test with an in-memory topic and
//! an in-memory store at 1, 2 and 4 workers and as a cluster of 2 timely processes (over
//! loopback TCP, each a thread here), its tables compared with the oracle; a topic that grows
//! while four workers read it; a store failure returned as an error.

mod common;

use std::time::Duration;

use common::in_process::{dataset_of, engine, run, run_cluster, tables_of, topic_of};
use common::Tables;
use weir::runtime::Cluster;
use weir::sink::memory::MemoryStore;
use weir::source::generator::GeneratorConfig;
use weir::source::memory::MemoryTopic;
use weir::spec::DataflowSpec;

fn generator(seed: u64, partitions: i32, count: u64) -> GeneratorConfig {
    common::generator(seed, partitions, count, 200.0)
}

#[test]
fn in_process_engine_equals_the_oracle_at_1_2_and_4_workers() {
    let spec = common::spec("dataflows/users_created.toml");
    let data = common::generated(&generator(11, 4, 3_000));
    let expected = common::oracle(&spec, &data);
    common::assert_interesting(&expected, &spec);
    // Every cell, dead-letter reasons word for word, is the same at every shape.
    let mut first: Option<Tables> = None;
    for workers in [1, 2, 4] {
        let store = MemoryStore::new();
        let summary = run(&spec, &topic_of(&data), &store, workers)
            .unwrap_or_else(|e| panic!("-w {workers}: {e}"));
        assert!(!summary.stopped, "the input ended; nothing stopped it");
        let tables = tables_of(&store, &spec);
        assert_tables_match(&expected, &tables, workers);
        match &first {
            None => first = Some(tables),
            Some(first) => assert!(*first == tables, "-w {workers}: tables differ from -w 1"),
        }
        // Every partition's final progress is past its last message.
        let progress = weir::sink::Store::read_progress(&store, &spec.name, "memory").unwrap();
        assert_eq!(progress.len(), 4, "-w {workers}: one record per partition");
        for p in progress {
            assert_eq!(
                p.resume_offset,
                data[&p.partition].len() as i64,
                "-w {workers}: partition {} resumes after its end",
                p.partition
            );
        }
    }
    let store = MemoryStore::new();
    for result in run_cluster(&spec, &topic_of(&data), &store, 2, 2)
        .join()
        .expect("the cluster")
    {
        result.unwrap_or_else(|e| panic!("2 processes x -w 2: {e}"));
    }
    let tables = tables_of(&store, &spec);
    common::assert_tables_eq(&expected, &tables, "in-process, 2 processes x -w 2");
    assert!(
        first.as_ref() == Some(&tables),
        "2 processes x -w 2: tables differ from -w 1"
    );
}

fn assert_tables_match(expected: &Tables, actual: &Tables, workers: usize) {
    common::assert_tables_eq(expected, actual, &format!("in-process, -w {workers}"));
}

/// A topic grows from 2 to 6 partitions while `processes` x `workers` read it: every record
/// of every partition is read, and the tables equal the oracle.
fn partitions_added_while_running(processes: usize, workers: usize) {
    let what = format!("topic grown from 2 to 6 partitions, {processes} x -w {workers}");
    let spec = common::spec("dataflows/users_created.toml");
    // Event times 10 ms apart by global index (offset x 6 + partition); no late records or
    // repeats, so that what a new partition sends is never below the frontier it joins at.
    let mut g = generator(12, 6, 0);
    g.count = None;
    g.rate = 100.0;
    g.late_per_mille = 0;
    g.duplicates_per_mille = 0;
    let topic = MemoryTopic::new(2);
    let mut buf = Vec::new();
    for p in 0..2 {
        for o in 0..200 {
            let ts = g.message(p, o, &mut buf);
            topic.push(p, buf.clone(), Some(ts));
        }
    }
    // Two of the four workers own none of the first two partitions.
    let owners: std::collections::BTreeSet<usize> = (0..2)
        .map(|p| weir::source::assign::owner(&spec.topic, p, processes * workers))
        .collect();
    assert_eq!(owners.len(), 2);
    let store = MemoryStore::new();
    let engine = run_cluster(&spec, &topic, &store, processes, workers);
    common::wait_until(
        Duration::from_secs(60),
        "the first partitions are read",
        || store.writes() > 10,
    );
    topic.grow(6);
    // A partition joins at the frontier when it is found: wait until all six are read from
    // (each has a progress record) before producing more, so that no record is older than the
    // frontier its partition joined at.
    common::wait_until(
        Duration::from_secs(60),
        "the new partitions are assigned",
        || {
            weir::sink::Store::read_progress(&store, &spec.name, "memory").map_or(0, |p| p.len())
                == 6
        },
    );
    // Later event times (at least 22 s after the first phase's last, jitter included) in every
    // partition, new and old.
    for p in 0..6 {
        for o in 400..600 {
            let ts = g.message(p, o, &mut buf);
            topic.push(p, buf.clone(), Some(ts));
        }
    }
    topic.end();
    for result in engine.join().expect("the engine thread") {
        let summary = result.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(!summary.stopped);
    }
    let data = dataset_of(&topic);
    let expected = common::oracle(&spec, &data);
    let actual = tables_of(&store, &spec);
    common::assert_tables_eq(&expected, &actual, &what);
    let late = &actual[&spec.tables.late];
    assert!(
        late.is_empty(),
        "{what}: nothing a new partition sent is late: {late:?}"
    );
    let progress = weir::sink::Store::read_progress(&store, &spec.name, "memory").unwrap();
    let mut read: Vec<(i32, i64)> = progress
        .iter()
        .map(|p| (p.partition, p.resume_offset))
        .collect();
    read.sort();
    let ends: Vec<(i32, i64)> = data.iter().map(|(p, m)| (*p, m.len() as i64)).collect();
    assert_eq!(read, ends, "{what}: every partition is read to its end");
}

#[test]
fn partitions_added_while_four_workers_run_are_read_whoever_owns_them() {
    partitions_added_while_running(1, 4);
}

#[test]
fn partitions_added_while_two_processes_of_two_workers_run_are_read() {
    partitions_added_while_running(2, 2);
}

#[test]
fn a_store_that_fails_makes_run_return_the_error_without_progress_past_it() {
    let spec = common::spec("dataflows/users_created.toml");
    let mut g = generator(13, 2, 0);
    g.count = None;
    let topic = MemoryTopic::new(2);
    let mut buf = Vec::new();
    for p in 0..2 {
        for o in 0..500 {
            let ts = g.message(p, o, &mut buf);
            topic.push(p, buf.clone(), Some(ts));
        }
    }
    // The topic does not end: only the failure can stop the engine.
    let store = MemoryStore::new();
    let engine = {
        let (spec, topic, store) = (spec.clone(), topic.clone(), store.clone());
        std::thread::spawn(move || run(&spec, &topic, &store, 2))
    };
    common::wait_until(Duration::from_secs(60), "rows are written", || {
        store.writes() > 5
    });
    store.fail_from_now();
    let before = weir::sink::Store::read_progress(&store, &spec.name, "memory").unwrap();
    let result = engine.join().expect("the engine thread");
    let error = result.expect_err("a failing store stops the engine with an error");
    assert!(
        error.to_string().contains("writes fail"),
        "the store's own error is returned: {error}"
    );
    assert_eq!(error.exit_code(), 1);
    let after = weir::sink::Store::read_progress(&store, &spec.name, "memory").unwrap();
    assert_eq!(before, after, "no progress is written once writes fail");
}

/// The small-windows users dataflow with only its 1s window and one dimension, and the whole
/// file: the first and the second version of a dataflow that grows.
fn grown_dataflow(dir: &std::path::Path) -> (DataflowSpec, DataflowSpec) {
    let full = common::small_windows_dataflow(dir);
    let text = std::fs::read_to_string(&full).unwrap();
    let start = text.find("[[windows]]\nname = \"5s\"").unwrap();
    let end = text.find("[[aggregates]]").unwrap();
    let first = format!("{}{}", &text[..start], &text[end..]).replace(
        "dimensions = [\"gender\", \"nat\"]",
        "dimensions = [\"gender\"]",
    );
    let first_path = dir.join("first.toml");
    std::fs::write(&first_path, first).unwrap();
    (
        common::spec(first_path.to_str().unwrap()),
        common::spec(full.to_str().unwrap()),
    )
}

#[test]
fn windows_added_between_runs_are_backfilled_the_same_at_every_shape() {
    let dir = common::temp_dir("engine_backfill");
    let (first, full) = grown_dataflow(&dir);
    let data = common::generated(&generator(12, 4, 3_000));
    let expected = common::oracle(&full, &data);
    common::assert_interesting(&expected, &full);
    for (processes, workers) in [(1, 1), (1, 2), (1, 4), (2, 2)] {
        let store = MemoryStore::new();
        for spec in [&first, &full] {
            for result in run_cluster(spec, &topic_of(&data), &store, processes, workers)
                .join()
                .expect("the cluster")
            {
                result.unwrap_or_else(|e| panic!("{processes} x -w {workers}: {e}"));
            }
        }
        common::assert_tables_eq(
            &expected,
            &tables_of(&store, &full),
            &format!("{processes} process(es) x -w {workers}: first file, then the full one"),
        );
    }
}

#[test]
fn a_backfill_whose_history_retention_removed_stops_unless_told_to_start_later() {
    let dir = common::temp_dir("engine_retention");
    let (first, full) = grown_dataflow(&dir);
    let data = common::generated(&generator(13, 2, 600));
    let topic = topic_of(&data);
    let store = MemoryStore::new();
    run(&first, &topic, &store, 2).expect("the first file");
    topic.trim(1, 100);
    let error = run(&full, &topic, &store, 2).expect_err("history is gone");
    assert_eq!(error.exit_code(), 2);
    let text = error.to_string();
    assert!(
        text.contains(
            "partition 1 needs its history from offset 0, but the topic now starts at 100"
        ) && text.contains("--backfill-from-retention"),
        "{text}"
    );
    let mut engine = engine(
        &full,
        &topic,
        &store,
        timely::Config::process(2),
        Cluster {
            workers: 2,
            processes: 1,
            process: 0,
        },
    );
    engine.settings.backfill_from_retention = true;
    weir::runtime::run(engine).expect("a partial backfill");
    let backfills = store.tables().remove("weir_backfills").unwrap_or_default();
    let partial: Vec<Vec<String>> = backfills
        .iter()
        .map(|r| common::render_cells(r))
        .filter(|r| r[7] == "true")
        .collect();
    assert_eq!(
        partial.len(),
        1,
        "one partial backfill recorded: {backfills:?}"
    );
    assert_eq!(
        (&partial[0][2], &partial[0][4], &partial[0][5]),
        (&"1".to_string(), &"0".to_string(), &"100".to_string())
    );
}
