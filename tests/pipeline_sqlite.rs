//! The whole pipeline on embedded defaults (generator or files -> SQLite), against the oracle,
//! at 1, 2 and 4 workers and across 2 processes.

mod common;

use std::time::Duration;

use common::*;

const USERS: &str = "dataflows/users_created.toml";

fn run_sqlite(extra: &[String], db: &std::path::Path) {
    let mut cmd = weir();
    cmd.args(extra).arg("--sqlite").arg(db);
    let (status, _, stderr) = run(cmd, Duration::from_secs(180));
    assert!(status.success(), "weir failed: {status}\n{stderr}");
}

#[test]
fn generator_to_sqlite_equals_the_oracle_at_1_2_and_4_workers() {
    let spec = spec(USERS);
    let g = generator(7, 4, 3000, 0.0);
    let expected = oracle(&spec, &generated(&g));
    assert_interesting(&expected, &spec);
    let dir = temp_dir("determinism");
    for workers in [1, 2, 4] {
        let db = dir.join(format!("w{workers}.db"));
        let mut args = generator_args(&g);
        args.extend(["-w".into(), workers.to_string()]);
        run_sqlite(&args, &db);
        assert_tables_eq(
            &expected,
            &read_sqlite(&db, &spec),
            &format!("-w {workers}"),
        );
    }
}

#[test]
fn two_processes_of_two_workers_equal_the_oracle() {
    let spec = spec(USERS);
    let g = generator(11, 4, 3000, 0.0);
    let expected = oracle(&spec, &generated(&g));
    let dir = temp_dir("cluster");
    let hostfile = hostfile(&dir);
    let db = dir.join("cluster.db");
    let children: Vec<_> = (0..2)
        .map(|p| {
            let mut cmd = weir();
            cmd.args(generator_args(&g))
                .args(["-w", "2", "-n", "2", "-p", &p.to_string(), "--hostfile"])
                .arg(&hostfile)
                .arg("--sqlite")
                .arg(&db)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let (status, _, stderr) = wait_output(child, Duration::from_secs(180));
        assert!(status.success(), "process failed: {status}\n{stderr}");
    }
    assert_tables_eq(&expected, &read_sqlite(&db, &spec), "2 processes x -w 2");
}

#[test]
fn file_source_equals_the_oracle_and_a_second_run_adds_nothing() {
    let spec = spec(USERS);
    let g = generator(3, 3, 2000, 0.0);
    let dir = temp_dir("files");
    let input = dir.join("input");
    g.write_files(&input).unwrap();
    let expected = oracle(&spec, &from_files(&input));
    assert_interesting(&expected, &spec);
    let db = dir.join("files.db");
    let args = vec![
        "-w".to_string(),
        "2".into(),
        "--input".into(),
        input.display().to_string(),
    ];
    run_sqlite(&args, &db);
    assert_tables_eq(&expected, &read_sqlite(&db, &spec), "file source");
    // Everything is covered by progress: a rerun reads nothing and changes nothing.
    run_sqlite(&args, &db);
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        "file source, second run",
    );
}

#[test]
fn a_second_dataflow_with_nested_paths_and_sums() {
    let dir = temp_dir("orders");
    let input = dir.join("input");
    std::fs::create_dir_all(&input).unwrap();
    // Orders have no message timestamp in files; use a variant with a field event time.
    let dataflow = dir.join("orders.toml");
    let text = std::fs::read_to_string("dataflows/orders.toml")
        .unwrap()
        .replace(
            "[event_time]\nsource = \"message_timestamp\"",
            "[event_time]\nfield = \"placed_at\"",
        );
    std::fs::write(
        &dataflow,
        text.replace(
            "name = \"placed_at\"\npath = \"order.placed\"\ntype = \"timestamp\"",
            "name = \"placed_at\"\npath = \"order.placed\"\ntype = \"timestamp\"\nrequired = true",
        ),
    )
    .unwrap();
    let spec = spec(dataflow.to_str().unwrap());
    let mut lines = String::new();
    let countries = ["NO", "SE", "DK"];
    for i in 0..600u64 {
        let t = weir::time::rfc3339(1_795_255_200_000 + i * 250);
        let amount = (i % 17) as f64 * 1.25 + 0.1;
        lines.push_str(&format!(
            "{{\"order\":{{\"id\":{},\"placed\":\"{t}\"}},\"customer\":{{\"country\":\"{}\"}},\"total\":{{\"amount\":{amount},\"currency\":\"EUR\"}}}}\n",
            i % 550,
            countries[(i % 3) as usize]
        ));
        if i % 100 == 0 {
            lines.push_str("{\"order\":{\"id\":\"not a number\"}}\n");
        }
    }
    std::fs::write(input.join("p0.jsonl"), &lines).unwrap();
    let expected = oracle(&spec, &from_files(&input));
    let db = dir.join("orders.db");
    let args = vec![
        "-w".to_string(),
        "2".into(),
        "--input".into(),
        input.display().to_string(),
        "--dataflow".into(),
        dataflow.display().to_string(),
    ];
    run_sqlite(&args, &db);
    let actual = read_sqlite(&db, &spec);
    assert_tables_eq(&expected, &actual, "orders");
    assert!(!actual["order_totals_by_window"].is_empty());
    assert_eq!(actual["orders_dead_letters"].len(), 6);
}

#[test]
fn dead_letters_carry_a_reason_kind_also_in_a_database_made_before_it_existed() {
    let spec = spec(USERS);
    let g = generator(17, 2, 2000, 0.0);
    let expected = oracle(&spec, &generated(&g));
    let dir = temp_dir("reason_kind");
    let db = dir.join("old.db");
    // The dead-letter table as Weir made it before `reason_kind`.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "CREATE TABLE users_dead_letters (topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, \
             kafka_offset INTEGER NOT NULL, reason TEXT, payload BLOB, payload_size INTEGER, \
             PRIMARY KEY (topic, kafka_partition, kafka_offset));",
        )
        .unwrap();
    run_sqlite(&generator_args(&g), &db);
    assert_tables_eq(&expected, &read_sqlite(&db, &spec), "an upgraded database");
    let connection = rusqlite::Connection::open(&db).unwrap();
    let mut statement = connection
        .prepare(
            "SELECT reason_kind, count(*) FROM users_dead_letters GROUP BY reason_kind ORDER BY 1",
        )
        .unwrap();
    let kinds: Vec<(Option<String>, i64)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<Option<&str>> = kinds.iter().map(|(k, _)| k.as_deref()).collect();
    assert!(
        names.contains(&Some("malformed")) && names.contains(&Some("missing_field")),
        "users can group dead letters by kind: {kinds:?}"
    );
    assert!(
        !names.contains(&None),
        "every dead letter has a kind: {kinds:?}"
    );
}
