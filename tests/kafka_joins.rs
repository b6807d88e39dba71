//! The joined dataflow (`dataflows/user_activity.toml`: events joined as of their time with
//! the users table, tombstones deleting users) from Kafka (tansu) into Cassandra (the CQL test
//! server), through the real rdkafka and scylla clients: one uninterrupted run, and a run at
//! `-w 2` killed at least 20 times (SIGKILL at the join, progress, sink and parse failpoints,
//! each at least twice, and at random moments) and restarted until it has read everything. Every table of the dataflow,
//! both inputs' rows (deleted users gone), dead letters and late records and the window tables,
//! read back from the CQL server, equals the oracle (`common::oracle_inputs`, which shares no
//! code with Weir) over exactly the messages produced.
//!
//! The topics are produced by this file's own producer: the generator's messages at their
//! partitions and offsets, each with its key, its value or a null one (a tombstone) and its
//! timestamp (a tombstone's event time is its message timestamp), and read back before the
//! runs, so the data set is what the broker holds. The test servers come from
//! `scripts/test-servers.sh`; without them every test fails.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;
use weir::sink::TableSet;
use weir::spec::DataflowSpec;

const SPEC: &str = "dataflows/user_activity.toml";

/// Every table the joined dataflow writes (but progress and the backfill log).
const TABLES: [&str; 8] = [
    "activity_by_value",
    "activity_by_window",
    "created_users",
    "events_dead_letters",
    "events_late_records",
    "user_events",
    "users_dead_letters",
    "users_late_records",
];

/// Two fresh topics with the users (with tombstones) and their events, a copy of the dataflow
/// reading them, and the oracle's tables.
struct Joined {
    dataflow: PathBuf,
    spec: DataflowSpec,
    users: String,
    events: String,
    data: BTreeMap<String, Dataset>,
    expected: Tables,
}

/// `count` users over 4 partitions (30 tombstones, 40 duplicates, 20 late and 20 malformed
/// per 1,000), event times `1000 / rate` ms apart, and `events_per_user` times as many events
/// about them over the same span of event time.
fn joined(name: &str, seed: u64, count: u64, rate: f64, events_per_user: u64) -> Joined {
    let mut users_g = generator(seed, 4, count, rate);
    users_g.tombstones_per_mille = 30;
    users_g.events_per_user = events_per_user;
    let events_g = users_g.for_topic("user_events").expect("the events topic");
    let users = unique(&format!("{name}_users"));
    let events = unique(&format!("{name}_events"));
    let text = std::fs::read_to_string(SPEC).unwrap();
    let text = text
        .replace("topic = \"users_created\"", &format!("topic = \"{users}\""))
        .replace("topic = \"user_events\"", &format!("topic = \"{events}\""));
    assert!(text.contains(&users) && text.contains(&events));
    let dataflow = temp_dir(name).join("user_activity.toml");
    std::fs::write(&dataflow, text).unwrap();
    let spec = spec(dataflow.to_str().unwrap());
    let data = BTreeMap::from([
        (users.clone(), generated(&users_g)),
        (events.clone(), generated(&events_g)),
    ]);
    let tombstones = data[&users]
        .values()
        .flatten()
        .filter(|m| m.tombstone)
        .count();
    assert!(
        tombstones as u64 > count / 100,
        "the users topic has tombstones: {tombstones}"
    );
    for topic in [&users, &events] {
        produce_keyed(topic, &data[topic]);
    }
    let expected = oracle_inputs(&dataflow, &data);
    assert_interesting_join(&expected, &data[&users]);
    Joined {
        dataflow,
        spec,
        users,
        events,
        data,
        expected,
    }
}

/// The data exercises what it should: every table has rows, tombstones deleted users, and the
/// window tables hold events that met a user and events that met none.
fn assert_interesting_join(expected: &Tables, users: &Dataset) {
    assert_eq!(
        expected.keys().map(String::as_str).collect::<Vec<_>>(),
        TABLES,
        "the oracle's tables are the dataflow's"
    );
    for table in TABLES {
        assert!(!expected[table].is_empty(), "the oracle's {table} is empty");
    }
    let keyed: BTreeSet<&[u8]> = users
        .values()
        .flatten()
        .filter(|m| !m.tombstone)
        .filter_map(|m| m.key.as_deref())
        .collect();
    assert!(
        expected["created_users"].len() + 20 < keyed.len(),
        "tombstones deleted users: {} rows of {} keyed users",
        expected["created_users"].len(),
        keyed.len()
    );
    let nats = |null: bool| {
        expected["activity_by_value"]
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
}

/// Creates `topic` with the data set's partitions and produces each message to its partition
/// with its key, its value (none for a tombstone: a null value) and its timestamp, checking
/// that the broker assigned the data set's offsets and holds exactly the data set.
fn produce_keyed(topic: &str, data: &Dataset) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = kafka_client_config(&kafka_addr());
        create_topic(&config, topic, data.len() as i32).await;
        // Idempotence keeps each partition's order with several requests in flight.
        let producer: FutureProducer = config
            .clone()
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for (partition, messages) in data {
            let mut pending = Vec::new();
            for m in messages {
                let mut record = FutureRecord::<[u8], [u8]>::to(topic)
                    .partition(*partition)
                    .timestamp(m.timestamp.expect("generated messages have timestamps"));
                if !m.tombstone {
                    record = record.payload(&m.payload);
                }
                if let Some(key) = &m.key {
                    record = record.key(key);
                }
                let future = producer
                    .send_result(record)
                    .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
                pending.push((m.offset, future));
            }
            for (offset, future) in pending {
                let delivered = future
                    .await
                    .expect("delivery")
                    .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
                assert_eq!(
                    (delivered.partition, delivered.offset),
                    (*partition, offset),
                    "broker offsets must match the data set"
                );
            }
        }
    });
    assert_topic_holds(topic, data);
}

/// Reads `topic` back: the broker holds exactly the data set (keys, null values, timestamps).
fn assert_topic_holds(topic: &str, data: &Dataset) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = kafka_client_config(&kafka_addr())
        .set("group.id", unique("joins_read_back"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for p in data.keys() {
        list.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut read = Dataset::new();
    let total: usize = data.values().map(Vec::len).sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0;
    while n < total {
        assert!(Instant::now() < deadline, "reading {topic} back timed out");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = message.unwrap();
        n += 1;
        read.entry(m.partition()).or_default().push(Msg {
            key: m.key().map(<[u8]>::to_vec),
            tombstone: m.payload().is_none(),
            ..Msg::new(
                m.offset(),
                m.payload().unwrap_or_default().to_vec(),
                m.timestamp().to_millis(),
            )
        });
    }
    let render = |d: &Dataset| -> Vec<String> {
        d.iter()
            .flat_map(|(p, ms)| ms.iter().map(move |m| format!("{p} {m:?}")))
            .collect()
    };
    assert_eq!(render(&read), render(data), "{topic} holds the data set");
}

/// Every table of the joined `spec` (but progress and the backfill log) from the CQL server,
/// whole, with paging, rendered as the harness renders cells. (`common::read_cassandra` reads
/// only the first five tables of a set: a joined dataflow's table input's rows, dead letters
/// and late records come after its progress table.)
fn read_joined(keyspace: &str, spec: &DataflowSpec) -> Tables {
    use futures::TryStreamExt;
    use scylla::value::CqlValue;
    let layout = TableSet::new(spec);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let session = cql_session(&cassandra_addr()).await;
        let mut out = Tables::new();
        for (i, table) in layout.tables.iter().enumerate() {
            if [TableSet::PROGRESS, TableSet::BACKFILLS].contains(&i) {
                continue;
            }
            let query = format!(
                "SELECT {} FROM {keyspace}.{}",
                table.column_list(),
                table.name
            );
            let rows: Vec<scylla::value::Row> = session
                .query_iter(query, ())
                .await
                .unwrap_or_else(|e| panic!("{keyspace}.{}: {e}", table.name))
                .rows_stream()
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let rendered = rows
                .into_iter()
                .map(|row| {
                    row.columns
                        .into_iter()
                        .map(|c| match c {
                            None => "null".to_string(),
                            Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => s,
                            Some(CqlValue::Int(i)) => i.to_string(),
                            Some(CqlValue::BigInt(i)) => i.to_string(),
                            Some(CqlValue::Double(f)) => f.to_string(),
                            Some(CqlValue::Boolean(b)) => b.to_string(),
                            Some(CqlValue::Uuid(u)) => u.to_string(),
                            Some(CqlValue::Timestamp(t)) => t.0.to_string(),
                            Some(CqlValue::Blob(b)) => hex(&b),
                            Some(other) => format!("{other:?}"),
                        })
                        .collect()
                })
                .collect();
            out.insert(table.name.clone(), rendered);
        }
        out
    })
}

/// Asserts the CQL tables equal the oracle's, table for table (none missing, none extra).
#[track_caller]
fn assert_joined_tables(j: &Joined, keyspace: &str, what: &str) {
    let tables = read_joined(keyspace, &j.spec);
    assert_eq!(
        tables.keys().collect::<Vec<_>>(),
        j.expected.keys().collect::<Vec<_>>(),
        "{what}: the tables written are the oracle's"
    );
    assert_tables_eq(&j.expected, &tables, what);
}

/// `weir`'s flags: both topics to their ends (`--until end`), into `keyspace`, at `-w 2`.
fn args(j: &Joined, keyspace: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--brokers",
        &kafka_addr(),
        "--until",
        "end",
        "--group",
        &unique("weir_joins"),
        // The test broker listens on IPv4 only.
        "--kafka-config",
        "broker.address.family=v4",
        "--dataflow",
        j.dataflow.to_str().unwrap(),
        "-w",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(cassandra_sink_args(&cassandra_addr(), keyspace));
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// The stored resume offsets of `topic`'s input (partition -> offset); none before the
/// progress table exists.
fn stored_progress(keyspace: &str, topic: &str) -> BTreeMap<i32, i64> {
    use futures::TryStreamExt;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let rows: Vec<(String, i32, i64)> = runtime.block_on(async {
        let session = cql_session(&cassandra_addr()).await;
        let query =
            format!("SELECT source, kafka_partition, resume_offset FROM {keyspace}.weir_progress");
        let Ok(pager) = session.query_iter(query, ()).await else {
            return Vec::new();
        };
        pager
            .rows_stream::<(String, i32, i64)>()
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    });
    let source = format!("kafka:{topic}");
    rows.into_iter()
        .filter(|(s, _, _)| *s == source)
        .map(|(_, p, o)| (p, o))
        .collect()
}

/// Each input's progress is at the end of its topic.
#[track_caller]
fn assert_read_to_the_end(j: &Joined, keyspace: &str) {
    for topic in [&j.users, &j.events] {
        let ends: BTreeMap<i32, i64> = j.data[topic]
            .iter()
            .map(|(p, ms)| (*p, ms.len() as i64))
            .collect();
        assert_eq!(stored_progress(keyspace, topic), ends, "{topic}");
    }
}

#[test]
fn the_joined_dataflow_from_kafka_to_cassandra_equals_the_oracle() {
    let j = joined("joins_once", 61, 3_000, 10.0, 2);
    let keyspace = unique("ks_joins");
    let mut cmd = weir();
    cmd.args(args(&j, &keyspace, &[]));
    let started = Instant::now();
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert!(status.success(), "{status}\n{stderr}");
    eprintln!("one run: {:?}", started.elapsed());
    assert_joined_tables(&j, &keyspace, "kafka -> joined dataflow -> cassandra, -w 2");
    assert_read_to_the_end(&j, &keyspace);
}

/// Where each failpoint fires: the n-th pass, n drawn from this range ("random": a kill by
/// the test after this many milliseconds). Each run reads the 3,000 users again from their
/// start, then the events from their stored progress (held back to the oldest open window,
/// up to 5 minutes of event time: 2,000 events), so most kills land mid-stream, a little
/// further each time.
const KILLS: [(&str, std::ops::Range<u64>); 6] = [
    ("join.emit", 500..5_000),
    ("progress.after_write", 1..80),
    ("sink.after_data_write", 1..300),
    ("sink.mid_batch", 1..3_000),
    ("source.parse", 1..9_000),
    ("random", 500..4_000),
];

#[test]
fn twenty_kills_of_the_joined_dataflow_leave_the_oracle_tables() {
    // An hour of event time (3,000 users and 8 times as many events, 6.7 a second), so that
    // the 1m and 5m windows close and the events' progress advances between kills.
    let j = joined("joins_kills", 62, 3_000, 3_000.0 / 3600.0, 8);
    let keyspace = unique("ks_joins_kills");
    // Small batches, few rows in flight and frequent progress: each run is long enough to be
    // killed at any stage, and makes progress before it is.
    let args = args(
        &j,
        &keyspace,
        &[
            "--progress-interval",
            "20ms",
            "--batch",
            "16",
            "--max-in-flight",
            "300",
        ],
    );
    let events_total: i64 = j.data[&j.events].values().map(|m| m.len() as i64).sum();
    let mut rng = fastrand::Rng::with_seed(17);
    let mut fired: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kills = 0;
    // The events' stored progress after each kill that left it mid-stream.
    let mut partial = BTreeSet::new();
    let started = Instant::now();
    let mut attempt = 0;
    while kills < 20
        || KILLS[..KILLS.len() - 1]
            .iter()
            .any(|(p, _)| fired.get(p) < Some(&2))
    {
        assert!(
            attempt < 40,
            "{kills} kills in {attempt} runs (failpoints fired: {fired:?})"
        );
        let (point, range) = &KILLS[attempt % KILLS.len()];
        let at = rng.u64(range.clone());
        let mut cmd = weir();
        cmd.args(&args).stdout(Stdio::null()).stderr(Stdio::piped());
        if *point != "random" {
            cmd.env("WEIR_FAILPOINTS", format!("{point}={at}"));
        }
        let run_started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        // Read stderr while it runs, so that a chatty run cannot fill the pipe and stall.
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        });
        let deadline = run_started
            + if *point == "random" {
                Duration::from_millis(at)
            } else {
                Duration::from_secs(120)
            };
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                child.kill().unwrap();
                break child.wait().unwrap();
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let stderr = stderr.join().unwrap_or_default();
        let fired_here = stderr.contains(&format!("failpoint {point}: killing the process"));
        if fired_here {
            *fired.entry(point).or_default() += 1;
        }
        let progress: i64 = stored_progress(&keyspace, &j.events).values().sum();
        if progress > 0 && progress < events_total && status.signal() == Some(9) {
            partial.insert(progress);
        }
        eprintln!(
            "attempt {attempt}: {point}={at} -> {status} after {:?}{}; events progress {progress} of {events_total}",
            run_started.elapsed(),
            if fired_here { " (fired)" } else { "" }
        );
        match status.signal() {
            Some(9) => kills += 1,
            _ if status.success() => {}
            _ => panic!("weir failed (not killed): {status}\n{stderr}"),
        }
        attempt += 1;
    }
    eprintln!(
        "{kills} kills in {:?}; failpoints fired: {fired:?}",
        started.elapsed()
    );
    assert!(
        partial.len() >= 3,
        "kills landed mid-stream at advancing stored progress: {partial:?}"
    );
    // Restarted until it has read everything.
    let mut cmd = weir();
    cmd.args(&args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert!(status.success(), "the final run: {status}\n{stderr}");
    assert_joined_tables(
        &j,
        &keyspace,
        &format!("kafka -> joined dataflow -> cassandra after {kills} kills"),
    );
    assert_read_to_the_end(&j, &keyspace);
}
