//! Exactly-once for a joined dataflow through the `weir` binary: `dataflows/user_activity.toml`
//! (events joined as of their time with the users table, whose tombstones delete users) on the
//! built-in generator, into SQLite.
//!
//! - At least 20 SIGKILLs per test, at every failpoint that matters for a join (`join.emit`
//!   inside the as-of join, `progress.before_write`, `progress.after_write`,
//!   `sink.mid_batch`, `sink.after_data_write`, `source.parse`; each must fire) and at random
//!   moments, restarting each time, then a run to "input ended": every table of the dataflow
//!   (both inputs' rows, dead-letter and late tables, the window tables) equals the oracle's
//!   (`common::oracle_inputs`, which shares no code with Weir), and each input's progress is
//!   at the end of its topic. Each input has its own progress stage: the stored progress read
//!   at the kills shows one landed after one input's progress write of the run and before the
//!   other's. Once on the file as it is (1-minute windows: nothing closes before the input
//!   ends, so every restart replays the events from their start), once with second-sized
//!   windows, where the events' stored progress moves and restarts resume them mid-stream
//!   while the users table is read again from its start.
//! - The same data at `-w 1` and `-w 4`, each into a fresh database, gives identical tables,
//!   equal to the oracle's, for both files.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Dataset, Tables};
use weir::source::generator::{GeneratorConfig, JOINED_TOMBSTONES_PER_MILLE};

const SPEC: &str = "dataflows/user_activity.toml";
const EVENTS: &str = "user_events";
const USERS: &str = "users_created";

/// The two topics the binary reads with the generator flags of `g` (src/config/run.rs,
/// src/runtime.rs): the stream input reads the generator of its own topic, the table input
/// that generator's users topic, with the joined share of tombstones.
fn inputs(g: &GeneratorConfig) -> BTreeMap<String, Dataset> {
    let events = g.for_topic(EVENTS).expect("the events topic");
    let mut users = events.for_topic(USERS).expect("the users topic");
    users.tombstones_per_mille = JOINED_TOMBSTONES_PER_MILLE;
    BTreeMap::from([
        (USERS.to_string(), common::generated(&users)),
        (EVENTS.to_string(), common::generated(&events)),
    ])
}

/// `dataflows/user_activity.toml` with windows of 1 s, 2 s and 2 s every 500 ms and 1 s of
/// allowed lateness, so that windows close, and the stream's progress moves, mid-stream.
fn small_windows(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(SPEC).unwrap();
    let start = text.find("[[windows]]").unwrap();
    let end = text.find("[[aggregates]]").unwrap();
    let windows = "[[windows]]\nname = \"1s\"\nsize = \"1s\"\n\n[[windows]]\nname = \"2s\"\nsize = \"2s\"\n\n\
                   [[windows]]\nname = \"2s_every_500ms\"\nsize = \"2s\"\nslide = \"500ms\"\n\n";
    let text = format!("{}{windows}{}", &text[..start], &text[end..]);
    assert_eq!(text.matches("allowed_lateness = \"5s\"").count(), 2);
    let text = text.replace("allowed_lateness = \"5s\"", "allowed_lateness = \"1s\"");
    let path = dir.join("user_activity_small_windows.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The oracle's tables for `data` through `dataflow`, checked to exercise what they should:
/// users deleted by tombstones, events that met a user and events that met none, rejects and
/// late records of both inputs.
fn expected(dataflow: &Path, data: &BTreeMap<String, Dataset>) -> Tables {
    let expected = common::oracle_inputs(dataflow, data);
    for table in [
        "created_users",
        "users_dead_letters",
        "users_late_records",
        "user_events",
        "events_dead_letters",
        "events_late_records",
        "activity_by_value",
        "activity_by_window",
    ] {
        assert!(
            !expected[table].is_empty(),
            "the oracle's {table} is empty: the data set is too tame"
        );
    }
    let users = &data[USERS];
    let deleted: BTreeSet<&[u8]> = users
        .values()
        .flatten()
        .filter(|m| m.tombstone)
        .filter_map(|m| m.key.as_deref())
        .collect();
    let live: BTreeSet<&str> = expected["created_users"]
        .iter()
        .map(|r| r[0].as_str())
        .collect();
    let gone = deleted
        .iter()
        .filter(|k| !live.contains(std::str::from_utf8(k).unwrap()))
        .count();
    assert!(gone >= 5, "users deleted by a tombstone: {gone}");
    let nats = |null: bool| {
        expected["activity_by_value"]
            .iter()
            .filter(|r| r[2] == "users.nat" && (r[3] == "null") == null)
            .count()
    };
    assert!(
        nats(false) > 5 && nats(true) > 0,
        "window rows of events with a user {} / without one {}",
        nats(false),
        nats(true)
    );
    expected
}

/// `weir`'s arguments for `g` through `dataflow` into `db` at `-w workers`.
fn args(g: &GeneratorConfig, dataflow: &Path, db: &Path, workers: usize) -> Vec<String> {
    let mut args = common::generator_args(g);
    args.extend([
        "-w".into(),
        workers.to_string(),
        "--dataflow".into(),
        dataflow.display().to_string(),
        "--sqlite".into(),
        db.display().to_string(),
        "--progress-interval".into(),
        "20ms".into(),
    ]);
    args
}

/// Every table of the dataflow in `db` (but progress and the backfill log), checked to be the
/// tables the oracle has, each equal to the oracle's.
fn assert_final_tables(expected: &Tables, dataflow: &Path, db: &Path, what: &str) -> Tables {
    let spec = common::spec(dataflow.to_str().unwrap());
    let actual = common::read_sqlite(db, &spec);
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: the tables of the dataflow"
    );
    common::assert_tables_eq(expected, &actual, what);
    actual
}

/// A stored progress record, as much of it as the test looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Progress {
    source: String,
    partition: i32,
    resume_offset: i64,
    updated_at: i64,
}

impl Progress {
    /// The stream (events) input's, or the table (users) input's.
    fn of_events(&self) -> bool {
        self.source.ends_with(",topic=user_events")
    }
}

/// The progress records in `db` (none while it or its progress table does not exist).
fn progress_rows(db: &Path) -> Vec<Progress> {
    let Ok(db) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    let Ok(mut statement) = db.prepare(
        "SELECT source, kafka_partition, resume_offset, updated_at FROM weir_progress \
         WHERE dataflow = 'user_activity'",
    ) else {
        return Vec::new();
    };
    statement
        .query_map([], |r| {
            Ok(Progress {
                source: r.get(0)?,
                partition: r.get(1)?,
                resume_offset: r.get(2)?,
                updated_at: r.get(3)?,
            })
        })
        .map(|rows| rows.map(Result::unwrap).collect())
        .unwrap_or_default()
}

/// What one run of a crash loop did.
#[derive(Debug)]
struct Run {
    point: &'static str,
    /// The failpoint killed it (not the test's deadline).
    fired: bool,
    /// Killed (rather than run to the end of the input).
    killed: bool,
    /// The progress records before the run, and after it.
    before: Vec<Progress>,
    after: Vec<Progress>,
}

impl Run {
    /// Which inputs' progress this run wrote: (events, users).
    fn wrote(&self) -> (bool, bool) {
        let new: Vec<&Progress> = self
            .after
            .iter()
            .filter(|p| !self.before.contains(p))
            .collect();
        (
            new.iter().any(|p| p.of_events()),
            new.iter().any(|p| !p.of_events()),
        )
    }

    /// Killed by a progress failpoint once this run had written one input's progress and not
    /// yet the other's, the other's of an earlier run being stored: `Some(true)` when the
    /// events' was written, `Some(false)` when the users' was.
    fn between_the_inputs_progress(&self) -> Option<bool> {
        let both_stored = self.before.iter().any(Progress::of_events)
            && self.before.iter().any(|p| !p.of_events());
        if !(self.fired && self.point.starts_with("progress.") && both_stored) {
            return None;
        }
        match self.wrote() {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        }
    }

    /// The largest events resume offset stored when the run started.
    fn events_resumed_at(&self) -> i64 {
        self.before
            .iter()
            .filter(|p| p.of_events())
            .map(|p| p.resume_offset)
            .max()
            .unwrap_or(0)
    }
}

/// Runs `weir` once, with failpoint `point` armed at its `at`-th pass ("random": SIGKILL by
/// the test after `at` ms), to its kill or to the end of its input.
fn kill_once(args: &[String], db: &Path, point: &'static str, at: u64) -> Run {
    let mut cmd = common::weir();
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
    if point != "random" {
        cmd.env("WEIR_FAILPOINTS", format!("{point}={at}"));
    }
    let before = progress_rows(db);
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    // Read stderr while it runs, so that a chatty run cannot fill the pipe and stall.
    let mut pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
        text
    });
    let deadline = started
        + if point == "random" {
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
    let run = Run {
        point,
        fired: stderr.contains(&format!("failpoint {point}: killing the process")),
        killed: status.signal() == Some(libc::SIGKILL),
        before,
        after: progress_rows(db),
    };
    eprintln!(
        "{point}={at} -> {status} after {:?}{}; progress written (events, users): {:?}",
        started.elapsed(),
        if run.fired { " (fired)" } else { "" },
        run.wrote()
    );
    assert!(
        run.killed || status.success(),
        "weir failed (not killed): {status}\n{stderr}"
    );
    if status.success() {
        assert!(stderr.contains("input ended"), "{stderr}");
    }
    run
}

/// Kills `weir` again and again, at each of `points` in turn, at the n-th pass, n drawn from
/// its range ("random": by the test, after a number of milliseconds drawn from its range),
/// until there were `min_kills` kills and every named failpoint fired.
fn kill_loop(
    args: &[String],
    db: &Path,
    points: &[(&'static str, Range<u64>)],
    min_kills: usize,
    rng: &mut fastrand::Rng,
) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let fired = |runs: &[Run], point: &str| runs.iter().any(|r| r.fired && r.point == point);
    let kills = |runs: &[Run]| runs.iter().filter(|r| r.killed).count();
    while kills(&runs) < min_kills
        || points
            .iter()
            .any(|(p, _)| *p != "random" && !fired(&runs, p))
    {
        assert!(
            runs.len() < min_kills * 3,
            "only {} kills in {} runs: the input ends too soon for this test, or a failpoint never fires: {:?}",
            kills(&runs),
            runs.len(),
            runs.iter().map(|r| (r.point, r.fired)).collect::<Vec<_>>()
        );
        let (point, range) = &points[runs.len() % points.len()];
        runs.push(kill_once(args, db, point, rng.u64(range.clone())));
    }
    runs
}

/// Runs `weir` to the end of its input.
fn run_to_end(args: &[String]) {
    let mut cmd = common::weir();
    cmd.args(args);
    let (status, _, stderr) = common::run(cmd, Duration::from_secs(300));
    assert!(status.success(), "the last run failed: {status}\n{stderr}");
    assert!(stderr.contains("input ended"), "the last run: {stderr}");
}

/// The crash loop of one dataflow over one data set (at least 20 kills at `points`), then
/// kills at `progress.before_write` until one has landed between the two inputs' progress
/// writes of a run, then a run to the end; checks the final progress and tables. Returns the
/// runs.
fn crash_test(
    name: &str,
    dataflow: impl Fn(&Path) -> PathBuf,
    g: &GeneratorConfig,
    points: &[(&'static str, Range<u64>)],
    seed: u64,
) -> Vec<Run> {
    let dir = common::temp_dir(name);
    let dataflow = dataflow(&dir);
    let data = inputs(g);
    let expected = expected(&dataflow, &data);
    let db = dir.join("weir.db");
    let args = args(g, &dataflow, &db, 2);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut runs = kill_loop(&args, &db, points, 20, &mut rng);
    // A run writes its first progress records of the events input, then those of the users
    // input, often in one transaction: the 2nd or 3rd write of a run is the one to kill
    // before, to catch the events' written and the users' not yet.
    for _ in 0..40 {
        if runs
            .iter()
            .any(|r| r.between_the_inputs_progress().is_some())
        {
            break;
        }
        runs.push(kill_once(
            &args,
            &db,
            "progress.before_write",
            rng.u64(2..4),
        ));
    }
    let between: Vec<bool> = runs
        .iter()
        .filter_map(Run::between_the_inputs_progress)
        .collect();
    eprintln!("kills between the inputs' progress writes (true: the events' written): {between:?}");
    assert!(
        !between.is_empty(),
        "no kill landed after one input's progress write of a run and before the other's"
    );
    run_to_end(&args);
    let kills = runs.iter().filter(|r| r.killed).count();
    assert!(kills >= 20, "{kills} kills");
    // Each input's progress: a record per partition, at its end.
    let progress = progress_rows(&db);
    for (topic, events) in [(EVENTS, true), (USERS, false)] {
        let mut ends: Vec<(i32, i64)> = progress
            .iter()
            .filter(|p| p.of_events() == events)
            .map(|p| (p.partition, p.resume_offset))
            .collect();
        ends.sort();
        let lengths: Vec<(i32, i64)> = data[topic]
            .iter()
            .map(|(p, m)| (*p, m.len() as i64))
            .collect();
        assert_eq!(ends, lengths, "{topic}: the final progress");
    }
    assert_final_tables(
        &expected,
        &dataflow,
        &db,
        &format!("{name}: after {kills} kills"),
    );
    runs
}

/// The failpoints of a join's crash loop, with the passes to fire at.
fn points(
    join_emit: Range<u64>,
    parse: Range<u64>,
    random_ms: Range<u64>,
) -> Vec<(&'static str, Range<u64>)> {
    vec![
        ("join.emit", join_emit),
        ("progress.before_write", 1..12),
        ("progress.after_write", 1..12),
        ("sink.mid_batch", 1..20),
        ("sink.after_data_write", 1..40),
        ("source.parse", parse),
        ("random", random_ms),
    ]
}

#[test]
fn kills_at_every_failpoint_of_a_join_leave_the_oracle_tables() {
    let g = common::generator(61, 3, 4_000, 1_000.0);
    crash_test(
        "joins_crash",
        |_| PathBuf::from(SPEC),
        &g,
        &points(1..3_000, 1..6_000, 200..3_500),
        7,
    );
}

#[test]
fn kills_while_the_stream_resumes_mid_stream_leave_the_oracle_tables() {
    // 9 s of input: the events' progress trails what is read by 3 to 4 s (windows of up to
    // 2 s, closed 1 s late, of joined records released once the users are 1 s further), and a
    // restarted run reads the users again from their start at the same pace, so runs must
    // last long enough for their progress to move.
    let g = common::generator(62, 3, 9_000, 1_000.0);
    let mut points = points(1..3_000, 1..15_000, 2_500..8_000);
    points.push(("random", 4_000..8_000));
    let runs = crash_test("joins_crash_resume", small_windows, &g, &points, 8);
    // Kills of runs that resumed the events well into the stream (the users table being
    // read again from its start).
    let len = g.partition_len(0).unwrap();
    let resumed: Vec<i64> = runs
        .iter()
        .filter(|r| r.killed)
        .map(Run::events_resumed_at)
        .filter(|at| *at >= len / 20 && *at < len)
        .collect();
    eprintln!("kills of runs that resumed the events mid-stream, at: {resumed:?}");
    assert!(
        resumed.len() >= 3,
        "kills of runs that resumed mid-stream: {resumed:?}"
    );
}

#[test]
fn the_same_data_at_one_and_four_workers_gives_identical_tables() {
    // Unthrottled: the inputs arrive as fast as each worker reads them, not paced together.
    let g = common::generator(63, 3, 4_000, 0.0);
    let data = inputs(&g);
    let dir = common::temp_dir("joins_shapes");
    for dataflow in [PathBuf::from(SPEC), small_windows(&dir)] {
        let expected = expected(&dataflow, &data);
        let mut first: Option<Tables> = None;
        for workers in [1, 4] {
            let db = dir.join(common::unique("weir")).with_extension("db");
            let mut cmd = common::weir();
            cmd.args(args(&g, &dataflow, &db, workers));
            let (status, _, stderr) = common::run(cmd, Duration::from_secs(120));
            assert!(status.success(), "-w {workers}: {status}\n{stderr}");
            assert!(stderr.contains("input ended"), "-w {workers}: {stderr}");
            let what = format!("{}, -w {workers}", dataflow.display());
            let tables = assert_final_tables(&expected, &dataflow, &db, &what);
            match &first {
                None => first = Some(tables),
                Some(first) => assert!(*first == tables, "{what}: tables differ from -w 1"),
            }
        }
    }
}

/// A restart with another `--epoch` (the default is "now, to the minute", so a restart in a
/// later minute gets one) keeps the stored time origin for every input, the table input
/// (which stores no progress of its own) included: the joins stay the oracle's.
#[test]
fn a_restart_keeps_the_stored_time_origin_for_every_input() {
    let dir = common::temp_dir("joins_crash_epoch");
    let dataflow = small_windows(&dir);
    let g = common::generator(63, 3, 6_000, 1_000.0);
    let data = inputs(&g);
    let expected = expected(&dataflow, &data);
    let db = dir.join("weir.db");
    let first = args(&g, &dataflow, &db, 2);
    // Killed once the events' progress has moved, so that the restart resumes mid-stream.
    let run = kill_once(&first, &db, "progress.after_write", 40);
    assert!(run.killed, "the first run was killed");
    let later = GeneratorConfig {
        epoch_ms: g.epoch_ms + 60_000,
        ..g.clone()
    };
    run_to_end(&args(&later, &dataflow, &db, 2));
    assert_final_tables(&expected, &dataflow, &db, "restarted with another --epoch");
}

/// A restart reads the users table again from its start but does not write its rows again:
/// a user a tombstone deleted stays deleted at every moment of the restart, not only once the
/// replay reaches the tombstone. After a run to the end, restarts killed at their first few
/// data writes (and one run to the end) leave every table the oracle's.
#[test]
fn a_restart_never_brings_back_a_deleted_user() {
    let dir = common::temp_dir("joins_crash_deleted");
    let dataflow = PathBuf::from(SPEC);
    let g = common::generator(64, 3, 4_000, 0.0);
    let data = inputs(&g);
    let expected = expected(&dataflow, &data);
    let db = dir.join("weir.db");
    let args = args(&g, &dataflow, &db, 2);
    run_to_end(&args);
    assert_final_tables(&expected, &dataflow, &db, "the first run");
    for at in [1, 2, 3, 4, 5, 6, 8, 12] {
        let run = kill_once(&args, &db, "sink.after_data_write", at);
        let what = format!(
            "a restart killed at its data write {at} (killed: {})",
            run.killed
        );
        assert_final_tables(&expected, &dataflow, &db, &what);
    }
}
