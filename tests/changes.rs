//! Changing a dataflow between runs, on SQLite (the `weir` binary, killed mid-run): windows and
//! dimensions added are backfilled (with kills during the backfill), a window removed stops
//! being written and its rows stay, a lateness change is refused with exit 2 and nothing
//! written, a renamed dataflow starts its own progress, and an upgrade with the same file
//! resumes. Every expectation is the independent oracle's, for the final file.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

fn args(g: &weir::source::generator::GeneratorConfig, dataflow: &Path, db: &Path) -> Vec<String> {
    let mut args = sqlite_args(g, dataflow, db);
    args.extend(["--progress-interval".into(), "20ms".into()]);
    args
}

/// Runs weir and SIGKILLs it after `after`; returns its stderr. Fails if it ended by itself
/// (the test needs it killed mid-run).
fn run_and_kill(args: &[String], after: Duration) -> String {
    let mut child = weir()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let started = Instant::now();
    while started.elapsed() < after {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "weir ended before it was killed: {status}\n{}",
                reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    reader.join().unwrap_or_default()
}

fn run_to_end(args: &[String]) -> String {
    let mut cmd = weir();
    cmd.args(args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(300));
    assert!(status.success(), "weir failed: {status}\n{stderr}");
    stderr
}

/// The rows of `tables` whose window_name (by_value and by_window tables) is `window`, taken
/// out; the rest stays.
fn take_window(tables: &mut Tables, spec: &weir::spec::DataflowSpec, window: &str) -> Tables {
    let mut taken = Tables::new();
    for table in [&spec.tables.by_value, &spec.tables.by_window] {
        let rows = tables.get_mut(table.as_str()).unwrap();
        let (out, keep): (std::collections::BTreeSet<_>, _) = std::mem::take(rows)
            .into_iter()
            .partition(|r| r[1] == window);
        *rows = keep;
        taken.insert(table.clone(), out);
    }
    taken
}

#[test]
fn added_windows_and_dimensions_are_backfilled_through_kills() {
    let dir = temp_dir("changes_added");
    let g = generator(31, 4, 24_000, 3000.0);
    let data = generated(&g);
    // The first file: one window, one dimension.
    let first = variant(&dir, "first", |t| {
        without_window(without_window(t, "5s"), "2s_every_500ms").replace(
            "dimensions = [\"gender\", \"nat\"]",
            "dimensions = [\"gender\"]",
        )
    });
    let full = variant(&dir, "full", |t| t);
    let db = dir.join("weir.db");
    run_and_kill(&args(&g, &first, &db), Duration::from_millis(2500));
    run_and_kill(&args(&g, &first, &db), Duration::from_millis(1500));

    // `weir check --against` says what a start would do, and does not start it.
    let before = read_sqlite(&db, &spec(full.to_str().unwrap()));
    let mut check = weir();
    check.args([
        "check",
        full.to_str().unwrap(),
        "--against",
        db.to_str().unwrap(),
    ]);
    let (status, stdout, stderr) = run(check, Duration::from_secs(30));
    assert!(status.success(), "{status}\n{stdout}{stderr}");
    assert!(stdout.contains("window 5s added: backfilled"), "{stdout}");
    assert!(
        stdout.contains("dimension nat added: backfilled"),
        "{stdout}"
    );
    assert!(
        stdout.contains("backfills partitions [0, 1, 2, 3]"),
        "{stdout}"
    );
    assert_eq!(before, read_sqlite(&db, &spec(full.to_str().unwrap())));

    // The full file, killed during its backfill at failpoints and at random moments.
    let full_args = args(&g, &full, &db);
    let stderr = run_and_kill(&full_args, Duration::from_millis(800));
    assert!(stderr.contains("window 5s added"), "{stderr}");
    let ranges = KillRanges {
        parse: 1..800,
        mid_batch: 1..6,
        after_write: 1..6,
        progress: 1..6,
        random_ms: 300..1200,
    };
    let kills = crash_loop(
        &full_args,
        &[
            "progress.before_write",
            "progress.after_write",
            "sink.mid_batch",
            "random",
        ],
        6,
        3,
        &ranges,
    );
    let full_spec = spec(full.to_str().unwrap());
    let expected = oracle(&full_spec, &data);
    assert_interesting(&expected, &full_spec);
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &full_spec),
        &format!("the full file after a killed first file and {kills} kills during the backfill"),
    );
    let backfills = count_sqlite_rows(&db, "weir_backfills");
    assert!(
        backfills >= 4,
        "every backfilling partition is logged: {backfills}"
    );
}

#[test]
fn a_removed_window_stops_being_written_and_its_rows_stay() {
    let dir = temp_dir("changes_removed");
    let g = generator(32, 4, 24_000, 3000.0);
    let data = generated(&g);
    let full = variant(&dir, "full", |t| t);
    let fewer = variant(&dir, "fewer", |t| without_window(t, "5s"));
    let db = dir.join("weir.db");
    run_and_kill(&args(&g, &full, &db), Duration::from_millis(5000));
    let stderr = run_to_end(&args(&g, &fewer, &db));
    assert!(stderr.contains("window 5s removed"), "{stderr}");
    let fewer_spec = spec(fewer.to_str().unwrap());
    let mut tables = read_sqlite(&db, &fewer_spec);
    let kept = take_window(&mut tables, &fewer_spec, "5s");
    assert_tables_eq(&oracle(&fewer_spec, &data), &tables, "the file without 5s");
    // What the first run wrote of 5s stays, and is what the first file computes.
    let full_spec = spec(full.to_str().unwrap());
    let mut full_expected = oracle(&full_spec, &data);
    let expected_5s = take_window(&mut full_expected, &full_spec, "5s");
    for (table, rows) in &kept {
        assert!(
            !rows.is_empty(),
            "the first run wrote some 5s windows in {table}"
        );
        assert!(
            rows.is_subset(&expected_5s[table]),
            "5s rows in {table} are the first file's"
        );
    }
}

#[test]
fn a_lateness_change_is_refused_and_nothing_is_written() {
    let dir = temp_dir("changes_refused");
    let g = generator(33, 4, 8_000, 0.0);
    let data = generated(&g);
    let first = variant(&dir, "first", |t| t);
    let later = variant(&dir, "later", |t| {
        t.replace("allowed_lateness = \"1s\"", "allowed_lateness = \"3s\"")
    });
    let db = dir.join("weir.db");
    run_to_end(&args(&g, &first, &db));
    let first_spec = spec(first.to_str().unwrap());
    let before = read_sqlite(&db, &first_spec);
    let progress = |db: &Path| {
        let c = rusqlite::Connection::open(db).unwrap();
        let mut s = c
            .prepare(
                "SELECT kafka_partition, resume_offset, fingerprint FROM weir_progress ORDER BY 1",
            )
            .unwrap();
        s.query_map([], |r| {
            Ok((
                r.get::<_, i32>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect::<Vec<_>>()
    };
    let stored = progress(&db);

    let mut cmd = weir();
    cmd.args(args(&g, &later, &db));
    let (status, _, stderr) = run(cmd, Duration::from_secs(60));
    assert_eq!(status.code(), Some(2), "{stderr}");
    let line = stderr.lines().last().unwrap_or_default();
    assert!(
        line.contains("allowed_lateness changed from \"1s\" to \"3s\": refused")
            && line.contains("--reset-progress")
            && line.contains("new name"),
        "{stderr}"
    );
    assert_eq!(before, read_sqlite(&db, &first_spec), "nothing written");
    assert_eq!(stored, progress(&db), "no progress written");

    let mut check = weir();
    check.args([
        "check",
        later.to_str().unwrap(),
        "--against",
        db.to_str().unwrap(),
    ]);
    let (status, stdout, _) = run(check, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("allowed_lateness"), "{stdout}");
    let mut check = weir();
    check.args([
        "check",
        first.to_str().unwrap(),
        "--against",
        db.to_str().unwrap(),
    ]);
    let (status, stdout, _) = run(check, Duration::from_secs(30));
    assert!(
        status.success() && stdout.contains("resumes 4 partitions"),
        "{stdout}"
    );

    // --reset-progress replays from the start with the new file; a later start resumes it.
    let mut reset = args(&g, &later, &db);
    reset.push("--reset-progress".into());
    run_to_end(&reset);
    let later_spec = spec(later.to_str().unwrap());
    let tables = read_sqlite(&db, &later_spec);
    let expected = oracle(&later_spec, &data);
    // (Dead letters' reasons are compared by the oracle's normalisation in assert_tables_eq;
    // the rows and window tables compare cell for cell.)
    for table in [
        &later_spec.tables.rows,
        &later_spec.tables.by_value,
        &later_spec.tables.by_window,
    ] {
        assert!(
            expected[table.as_str()].is_subset(&tables[table.as_str()]),
            "every row of the new file is in {table}"
        );
    }
    let stderr = run_to_end(&args(&g, &later, &db));
    assert!(!stderr.contains(": refused"), "{stderr}");
    assert_ne!(stored, progress(&db));
}

#[test]
fn a_renamed_dataflow_starts_its_own_progress_and_leaves_the_old_rows() {
    let dir = temp_dir("changes_renamed");
    let g = generator(34, 4, 8_000, 0.0);
    let data = generated(&g);
    let first = variant(&dir, "first", |t| t);
    let renamed = variant(&dir, "renamed", |t| {
        t.replace("name = \"users_created\"", "name = \"users_v2\"")
    });
    let db = dir.join("weir.db");
    run_to_end(&args(&g, &first, &db));
    let stderr = run_to_end(&args(&g, &renamed, &db));
    assert!(stderr.contains("no stored progress"), "{stderr}");
    let (a, b) = (
        spec(first.to_str().unwrap()),
        spec(renamed.to_str().unwrap()),
    );
    let mut expected = oracle(&a, &data);
    for (table, rows) in oracle(&b, &data) {
        expected.entry(table).or_default().extend(rows);
    }
    assert_tables_eq(&expected, &read_sqlite(&db, &b), "both dataflows' rows");
}

#[test]
fn an_upgrade_with_the_same_file_resumes() {
    let dir = temp_dir("changes_upgrade");
    let g = generator(35, 4, 16_000, 3000.0);
    let data = generated(&g);
    let file = variant(&dir, "file", |t| t);
    let db = dir.join("weir.db");
    let run_args = args(&g, &file, &db);
    run_and_kill(&run_args, Duration::from_millis(2000));
    // As if an older Weir had written the progress.
    let c = rusqlite::Connection::open(&db).unwrap();
    let version = env!("CARGO_PKG_VERSION");
    c.execute(
        &format!("UPDATE weir_progress SET definition = replace(definition, '\"weir\":\"{version}\"', '\"weir\":\"0.0.9\"'), fingerprint = 'older'"),
        [],
    )
    .unwrap();
    drop(c);
    let stderr = run_and_kill(&run_args, Duration::from_millis(1500));
    assert!(
        stderr.contains(&format!("written by weir 0.0.9, now {version}: resumes")),
        "{stderr}"
    );
    assert!(!stderr.contains("backfill"), "{stderr}");
    // And as if a Weir from before fingerprints had.
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute(
        "UPDATE weir_progress SET definition = NULL, fingerprint = NULL, unit_frontiers = NULL, start_offset = NULL, rows_from = NULL",
        [],
    )
    .unwrap();
    drop(c);
    let stderr = run_to_end(&run_args);
    assert!(stderr.contains("without fingerprints"), "{stderr}");
    let s = spec(file.to_str().unwrap());
    assert_tables_eq(
        &oracle(&s, &data),
        &read_sqlite(&db, &s),
        "after two upgrades",
    );
}
