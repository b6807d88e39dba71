//! Crash safety on embedded defaults: SIGKILL at every failpoint and at random moments, at
//! least 20 times, restarting each time; the final tables must equal the oracle's.

mod common;

use std::process::Stdio;
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
