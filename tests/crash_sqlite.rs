//! Crash safety on embedded defaults: SIGKILL at every failpoint and at random moments, at
//! least 20 times, restarting each time; the final tables must equal the oracle's.

mod common;

use std::process::{Child, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn twenty_kills_at_failpoints_and_random_moments_leave_the_oracle_tables() {
    let SqliteRun {
        spec,
        expected,
        db,
        mut args,
    } = sqlite_run("crash_sqlite", &generator(21, 4, 48_000, 1500.0));
    assert_interesting(&expected, &spec);
    args.extend(["--progress-interval".into(), "20ms".into()]);
    let ranges = KillRanges {
        parse: 1..1500,
        mid_batch: 1..10,
        after_write: 1..10,
        progress: 1..10,
        random_ms: 100..800,
    };
    let kills = crash_loop(&args, &CRASH_POINTS, 20, 5, &ranges);
    assert!(kills >= 20);
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        &format!("after {kills} kills"),
    );
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_completes_exactly() {
    let SqliteRun {
        spec,
        expected,
        db,
        args,
    } = sqlite_run("sigterm", &generator(22, 4, 12_000, 3000.0));
    let mut cmd = weir();
    let mut child = cmd
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop as soon as the first window result is durable (not after a fixed sleep: on a slow
    // or loaded machine nothing may be written yet), while most of the input is still to come.
    let by_value = &spec.tables.by_value;
    wait_until(
        Duration::from_secs(60),
        "no window result was written",
        || {
            assert!(
                child.try_wait().unwrap().is_none(),
                "weir exited before SIGTERM"
            );
            count_sqlite_rows(&db, by_value) > 0
        },
    );
    // SAFETY: kill(2) with a child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (status, _, stderr) = wait_output(child, Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must exit 0: {status}\n{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // Some windows are written, not all.
    let partial = read_sqlite(&db, &spec);
    let (written, all) = (partial[by_value].len(), expected[by_value].len());
    assert!(
        written > 0 && written < all,
        "a clean stop writes what is complete, no more: {written} of {all} window results"
    );
    assert!(
        partial[by_value].is_subset(&expected[by_value]),
        "no window was written with a partial value"
    );
    let mut cmd = weir();
    cmd.args(&args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        "after SIGTERM and restart",
    );
}

/// One stream through runs of different shapes, each stopped mid-stream (SIGTERM or SIGKILL):
/// `-w 1`, `-w 4`, 2 processes x `-w 2`, then `-w 2` to the end. Progress is stored per
/// partition and ownership is a pure function of the shape, so each run resumes every
/// partition where the last durable progress left it, whoever owned it before.
#[test]
fn rescaling_between_runs_stopped_mid_stream_leaves_the_oracle_tables() {
    let (
        SqliteRun {
            spec,
            expected,
            db,
            args: base,
        },
        dir,
    ) = sqlite_run_of_any_shape("rescale", &generator(23, 4, 40_000, 2500.0));
    let rows = &spec.tables.rows;
    let hostfile = hostfile(&dir);
    let start = |shape: &[&str]| -> Child {
        let mut cmd = weir();
        cmd.args(&base)
            .args(shape)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let cluster = |p: usize| -> Vec<String> {
        let p = p.to_string();
        let hosts = hostfile.display().to_string();
        ["-w", "2", "-n", "2", "-p", &p, "--hostfile", &hosts]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    // (shape, signal) for each interrupted run.
    let cluster_args: Vec<Vec<String>> = (0..2).map(cluster).collect();
    let runs: Vec<(Vec<Vec<String>>, i32)> = vec![
        (vec![vec!["-w".into(), "1".into()]], libc::SIGTERM),
        (vec![vec!["-w".into(), "4".into()]], libc::SIGKILL),
        (cluster_args, libc::SIGKILL),
    ];
    let mut written = 0;
    for (shapes, sig) in runs {
        let children: Vec<Child> = shapes
            .iter()
            .map(|s| start(&s.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        let what = format!("{shapes:?}: 2,000 more rows");
        wait_until(Duration::from_secs(120), &what, || {
            std::thread::sleep(Duration::from_millis(20));
            count_sqlite_rows(&db, rows) >= written + 2_000
        });
        for child in &children {
            signal(child, sig);
        }
        for child in children {
            let (status, _, stderr) = wait_output(child, Duration::from_secs(60));
            match sig {
                libc::SIGTERM => assert!(status.success(), "{shapes:?}: {status}\n{stderr}"),
                _ => assert_eq!(
                    std::os::unix::process::ExitStatusExt::signal(&status),
                    Some(libc::SIGKILL),
                    "{shapes:?} was killed, not finished: {stderr}"
                ),
            }
        }
        written = count_sqlite_rows(&db, rows);
        assert!(
            written < expected[rows].len(),
            "{shapes:?} stopped mid-stream"
        );
    }
    let mut cmd = weir();
    cmd.args(&base).args(["-w", "2"]);
    let (status, _, stderr) = run(cmd, Duration::from_secs(300));
    assert!(status.success(), "the last run, -w 2: {status}\n{stderr}");
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        "after -w 1, -w 4, 2 processes x -w 2 and -w 2",
    );
}

/// A cluster of 2 processes x `-w 2` stops as one: SIGTERM to one process stops both at a
/// safe point (each writes its final progress and exits 0); a process that dies makes the
/// other exit 1 within a bound, with one line; a restart of both resumes exactly.
#[test]
fn a_cluster_stops_as_one_and_a_dead_process_stops_the_other_with_exit_1() {
    let (
        SqliteRun {
            spec,
            expected,
            db,
            args: base,
        },
        dir,
    ) = sqlite_run_of_any_shape("cluster_stop", &generator(24, 4, 30_000, 2500.0));
    let rows = &spec.tables.rows;
    // Both processes of a fresh cluster (new ports each time), stderr piped.
    let start = || -> Vec<Child> {
        let hostfile = hostfile(&dir);
        (0..2)
            .map(|p| {
                let mut cmd = weir();
                cmd.args(&base)
                    .args(["-w", "2", "-n", "2", "-p", &p.to_string(), "--hostfile"])
                    .arg(&hostfile)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                cmd.spawn().unwrap()
            })
            .collect()
    };
    let wait_rows = |at_least: usize| {
        wait_until(Duration::from_secs(120), "rows written", || {
            std::thread::sleep(Duration::from_millis(20));
            count_sqlite_rows(&db, rows) >= at_least
        });
    };

    // SIGTERM to process 1 only: both stop cleanly.
    let mut cluster = start();
    wait_rows(2_000);
    signal(&cluster[1], libc::SIGTERM);
    let second = cluster.pop().unwrap();
    let first = cluster.pop().unwrap();
    for (p, child) in [(0, first), (1, second)] {
        let (status, _, stderr) = wait_output(child, Duration::from_secs(60));
        assert!(status.success(), "process {p}: {status}\n{stderr}");
        assert!(stderr.contains("stopped cleanly"), "process {p}: {stderr}");
    }
    let written = count_sqlite_rows(&db, rows);
    assert!(written < expected[rows].len(), "stopped mid-stream");

    // Process 0 killed: process 1 stops within the bound with exit 1 and one line.
    let mut cluster = start();
    wait_rows(written + 2_000);
    signal(&cluster[0], libc::SIGKILL);
    let survivor = cluster.pop().unwrap();
    let (status, _, stderr) = wait_output(survivor, Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "the survivor exits 1: {stderr}");
    let last = last_line(&stderr);
    assert!(
        last.starts_with("weir: cluster:") && last.contains("restart every process"),
        "one line says a process went away and what to do: {last:?}"
    );
    assert!(
        !stderr.contains("stack backtrace"),
        "no backtraces: {stderr}"
    );
    for mut child in cluster {
        let _ = child.wait();
    }

    // A restart of both resumes exactly, to the end of the input.
    for (p, child) in start().into_iter().enumerate() {
        let (status, _, stderr) = wait_output(child, Duration::from_secs(300));
        assert!(
            status.success(),
            "the last run, process {p}: {status}\n{stderr}"
        );
    }
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        "after a cluster stop, a dead process and a restart",
    );
}
