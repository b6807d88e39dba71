//! Joins in-process: `dataflows/user_activity.toml` (events joined as of their time with the
//! users table, tombstones deleting users) and `dataflows/activation.toml` (registrations
//! interval-joined with the purchases of the next 10 minutes) over two in-memory topics from
//! the built-in generator, into an in-memory store, at 1, 2 and 4 workers and as 2 timely
//! processes x 2 workers; every table equals the oracle's (`common::oracle_inputs`, which
//! shares no code with Weir) and is identical at every shape.

mod common;

use std::collections::BTreeMap;

use common::in_process::{run, run_cluster, tables_of, topic_of};
use common::{Dataset, Tables};
use weir::sink::memory::MemoryStore;
use weir::source::memory::MemoryTopic;

const SPEC: &str = "dataflows/user_activity.toml";

/// Users (with tombstones, duplicates, late and malformed ones) and the events that refer to
/// them, from the generator: topic -> data set.
fn inputs(seed: u64) -> BTreeMap<String, Dataset> {
    let mut users = common::generator(seed, 3, 1_500, 200.0);
    users.tombstones_per_mille = 30;
    let events = users.for_topic("user_events").expect("the events topic");
    BTreeMap::from([
        ("users_created".to_string(), common::generated(&users)),
        ("user_events".to_string(), common::generated(&events)),
    ])
}

/// The events topic, with the users topic as its sibling.
fn topic(inputs: &BTreeMap<String, Dataset>) -> MemoryTopic {
    let events = topic_of(&inputs["user_events"]);
    events.add_sibling("users_created", topic_of(&inputs["users_created"]));
    events
}

#[test]
fn an_as_of_join_with_tombstones_equals_the_oracle_at_every_shape() {
    let spec = common::spec(SPEC);
    let data = inputs(21);
    let tombstones = data["users_created"]
        .values()
        .flatten()
        .filter(|m| m.tombstone)
        .count();
    assert!(
        tombstones > 10,
        "the users topic has tombstones: {tombstones}"
    );
    let expected = common::oracle_inputs(std::path::Path::new(SPEC), &data);
    // The data exercises the join: events that met a user, and events that met none (before
    // the user's row, after a delete, or of an unknown user), in the window tables.
    let by_value = &expected["activity_by_value"];
    let nats = |null: bool| {
        by_value
            .iter()
            .filter(|r| r[2] == "users.nat" && (r[3] == "null") == null)
            .count()
    };
    assert!(
        nats(false) > 20 && nats(true) > 0,
        "joined {} / unmatched {}",
        nats(false),
        nats(true)
    );
    for table in [
        "created_users",
        "user_events",
        "users_dead_letters",
        "events_late_records",
    ] {
        assert!(!expected[table].is_empty(), "the oracle's {table} is empty");
    }

    let mut first: Option<Tables> = None;
    for workers in [1, 2, 4] {
        let store = MemoryStore::new();
        let summary = run(&spec, &topic(&data), &store, workers)
            .unwrap_or_else(|e| panic!("-w {workers}: {e}"));
        assert!(!summary.stopped);
        let tables = tables_of(&store, &spec);
        common::assert_tables_eq(&expected, &tables, &format!("joins, -w {workers}"));
        match &first {
            None => first = Some(tables),
            Some(first) => assert!(*first == tables, "-w {workers}: tables differ from -w 1"),
        }
        // Each input stores its own progress, under its own source.
        for (source, topic) in [
            ("memory", "user_events"),
            ("memory:users_created", "users_created"),
        ] {
            let progress = weir::sink::Store::read_progress(&store, &spec.name, source).unwrap();
            assert_eq!(
                progress.len(),
                3,
                "-w {workers}: {source}: a record per partition"
            );
            for p in progress {
                assert_eq!(
                    p.resume_offset,
                    data[topic][&p.partition].len() as i64,
                    "-w {workers}: {source} partition {} resumes after its end",
                    p.partition
                );
            }
        }
    }
    let store = MemoryStore::new();
    for result in run_cluster(&spec, &topic(&data), &store, 2, 2)
        .join()
        .expect("the cluster")
    {
        result.unwrap_or_else(|e| panic!("2 processes x -w 2: {e}"));
    }
    let tables = tables_of(&store, &spec);
    common::assert_tables_eq(&expected, &tables, "joins, 2 processes x -w 2");
    assert!(
        first.as_ref() == Some(&tables),
        "2 processes x -w 2: tables differ from -w 1"
    );
}

#[test]
fn an_inner_join_keeps_its_unmatched_events_in_their_own_table() {
    let text = std::fs::read_to_string(SPEC).unwrap();
    let inner = text.replace("type = \"left\"", "type = \"inner\"");
    let dir = tempfile_dir();
    let path = dir.join("inner.toml");
    std::fs::write(&path, inner).unwrap();
    let spec = weir::spec::DataflowSpec::load(&path).unwrap();
    let data = inputs(22);
    let expected = common::oracle_inputs(&path, &data);
    assert!(
        expected["events_unmatched"].len() > 5,
        "events with no user as of their time: {}",
        expected["events_unmatched"].len()
    );
    let store = MemoryStore::new();
    run(&spec, &topic(&data), &store, 2).unwrap_or_else(|e| panic!("{e}"));
    common::assert_tables_eq(&expected, &tables_of(&store, &spec), "inner join, -w 2");
}

/// Runs `path` over `data` at 1, 2 and 4 workers and 2 processes x 2: the oracle's tables,
/// identical at every shape.
fn equals_the_oracle_at_every_shape(path: &str, data: &BTreeMap<String, Dataset>) -> Tables {
    let spec = common::spec(path);
    let expected = common::oracle_inputs(std::path::Path::new(path), data);
    let mut first: Option<Tables> = None;
    for workers in [1, 2, 4] {
        let store = MemoryStore::new();
        run(&spec, &topic_for(&spec, data), &store, workers)
            .unwrap_or_else(|e| panic!("{path} -w {workers}: {e}"));
        let tables = tables_of(&store, &spec);
        common::assert_tables_eq(&expected, &tables, &format!("{path}, -w {workers}"));
        match &first {
            None => first = Some(tables),
            Some(first) => assert!(*first == tables, "{path} -w {workers}: differs from -w 1"),
        }
    }
    let store = MemoryStore::new();
    for result in run_cluster(&spec, &topic_for(&spec, data), &store, 2, 2)
        .join()
        .expect("the cluster")
    {
        result.unwrap_or_else(|e| panic!("{path}, 2 processes x -w 2: {e}"));
    }
    let tables = tables_of(&store, &spec);
    assert!(
        first.as_ref() == Some(&tables),
        "{path}, 2 processes: differs from -w 1"
    );
    expected
}

/// The topic of `spec`'s left input, with the other input's topic as its sibling.
fn topic_for(spec: &weir::spec::DataflowSpec, data: &BTreeMap<String, Dataset>) -> MemoryTopic {
    let left = topic_of(&data[&spec.topic]);
    for (name, dataset) in data {
        if name != &spec.topic {
            left.add_sibling(name, topic_of(dataset));
        }
    }
    left
}

#[test]
fn an_interval_join_equals_the_oracle_at_every_shape() {
    let users = common::generator(23, 3, 1_500, 200.0);
    let events = users.for_topic("user_events").expect("the events topic");
    let data = BTreeMap::from([
        ("users_created".to_string(), common::generated(&users)),
        ("user_events".to_string(), common::generated(&events)),
    ]);
    let expected = equals_the_oracle_at_every_shape("dataflows/activation.toml", &data);
    // Some registrations activated within 10 minutes, some did not.
    let activated: i64 = expected["activation_by_value"]
        .iter()
        .map(|r| r[7].parse::<i64>().unwrap_or(0))
        .sum();
    assert!(activated > 20, "activated users: {activated}");
    assert!(expected["users_not_activated"].len() > 20);
}

#[test]
fn a_declared_delete_marker_deletes_like_a_tombstone() {
    // The users carry an `op` field; "delete" marks a delete of the record's key.
    let text = std::fs::read_to_string(SPEC).unwrap().replacen(
        "kind = \"table\"\n",
        "kind = \"table\"\ndelete_marker = { field = \"op\", values = [\"delete\"] }\n",
        1,
    );
    let text = text.replacen(
        "[inputs.tables]\nrows = \"created_users\"",
        "[[inputs.fields]]\nname = \"op\"\ntype = \"text\"\ncolumn = false\n\n[inputs.tables]\nrows = \"created_users\"",
        1,
    );
    let dir = tempfile_dir();
    let path = dir.join("markers.toml");
    std::fs::write(&path, text).unwrap();
    let spec = weir::spec::DataflowSpec::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut data = inputs(24);
    // Every 25th user that parses becomes a delete marker of itself.
    let mut marked = 0;
    for messages in data.get_mut("users_created").unwrap().values_mut() {
        for (i, m) in messages.iter_mut().enumerate() {
            let Ok(serde_json::Value::Object(mut user)) = serde_json::from_slice(&m.payload) else {
                continue;
            };
            if i % 25 == 7 {
                user.insert("op".into(), "delete".into());
                m.payload = serde_json::to_vec(&user).unwrap();
                marked += 1;
            }
        }
    }
    assert!(marked > 20, "{marked} markers");
    let expected = common::oracle_inputs(&path, &data);
    let store = MemoryStore::new();
    run(&spec, &topic(&data), &store, 2).unwrap_or_else(|e| panic!("{e}"));
    common::assert_tables_eq(&expected, &tables_of(&store, &spec), "delete markers, -w 2");
    // Without the marker the same data keeps those users.
    let plain = common::oracle_inputs(std::path::Path::new(SPEC), &data);
    assert!(
        plain["created_users"].len() > expected["created_users"].len(),
        "the markers deleted rows"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-joins-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
