//! Crash safety on embedded defaults: SIGKILL at every failpoint and at random moments, at
//! least 20 times, restarting each time; the final tables must equal the oracle's.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// The users dataflow with second-sized windows, so that progress advances during a short
/// test (with one-hour windows every restart would replay from the hour's start).
pub fn small_windows_dataflow(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string("dataflows/users_created.toml").unwrap();
    let start = text.find("[[windows]]").unwrap();
    let end = text.find("[[aggregates]]").unwrap();
    let windows = "[[windows]]\nname = \"1s\"\nsize = \"1s\"\n\n[[windows]]\nname = \"5s\"\nsize = \"5s\"\n\n\
                   [[windows]]\nname = \"2s_every_500ms\"\nsize = \"2s\"\nslide = \"500ms\"\n\n";
    let text = format!("{}{windows}{}", &text[..start], &text[end..])
        .replace("allowed_lateness = \"5s\"", "allowed_lateness = \"1s\"");
    let path = dir.join("users_small_windows.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Kills weir again and again (at failpoints and at random moments), then lets it finish.
/// Returns the number of kills.
pub fn crash_loop(args: &[String], min_kills: usize, seed: u64) -> usize {
    let points = [
        "sink.after_data_write",
        "sink.mid_batch",
        "source.parse",
        "progress.before_write",
        "progress.after_write",
        "random",
    ];
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = 0;
    let mut attempt = 0;
    while kills < min_kills {
        attempt += 1;
        assert!(
            attempt < min_kills * 3,
            "only {kills} kills in {attempt} runs: the input ends too soon for this test"
        );
        let point = points[attempt % points.len()];
        let mut cmd = weir();
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let at = match point {
            "source.parse" => rng.u64(1..1500),
            "random" => 0,
            _ => rng.u64(1..10),
        };
        if point != "random" {
            cmd.env("WEIR_FAILPOINTS", format!("{point}={at}"));
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now()
            + if point == "random" {
                Duration::from_millis(rng.u64(100..800))
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
        match status.signal() {
            Some(9) => kills += 1,
            _ if status.success() => {}
            _ => {
                let (_, _, stderr) = wait_output(child, Duration::from_secs(5));
                panic!("weir failed (not killed): {status}\n{stderr}");
            }
        }
    }
    let mut cmd = weir();
    cmd.args(args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(300));
    assert!(status.success(), "final run failed: {status}\n{stderr}");
    kills
}

#[test]
fn twenty_kills_at_failpoints_and_random_moments_leave_the_oracle_tables() {
    let dir = temp_dir("crash_sqlite");
    let dataflow = small_windows_dataflow(&dir);
    let spec = spec(dataflow.to_str().unwrap());
    let g = generator(21, 4, 48_000, 1500.0);
    let expected = oracle(&spec, &generated(&g));
    assert_interesting(&expected, &spec);
    let db = dir.join("crash.db");
    let mut args = generator_args(&g);
    args.extend([
        "-w".into(),
        "2".into(),
        "--dataflow".into(),
        dataflow.display().to_string(),
        "--sqlite".into(),
        db.display().to_string(),
    ]);
    args.extend(["--progress-interval".into(), "20ms".into()]);
    let kills = crash_loop(&args, 20, 5);
    assert!(kills >= 20);
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        &format!("after {kills} kills"),
    );
}

#[test]
fn sigterm_stops_cleanly_and_a_restart_completes_exactly() {
    let dir = temp_dir("sigterm");
    let dataflow = small_windows_dataflow(&dir);
    let spec = spec(dataflow.to_str().unwrap());
    let g = generator(22, 4, 12_000, 3000.0);
    let expected = oracle(&spec, &generated(&g));
    let db = dir.join("term.db");
    let mut args = generator_args(&g);
    args.extend([
        "-w".into(),
        "2".into(),
        "--dataflow".into(),
        dataflow.display().to_string(),
        "--sqlite".into(),
        db.display().to_string(),
    ]);
    let mut cmd = weir();
    let child = cmd
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill(2) with a child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let (status, _, stderr) = wait_output(child, Duration::from_secs(30));
    assert!(status.success(), "SIGTERM must exit 0: {status}\n{stderr}");
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
    // Some windows are written, not all.
    let partial = read_sqlite(&db, &spec);
    let by_value = &spec.tables.by_value;
    assert!(
        !partial[by_value].is_empty() && partial[by_value].len() < expected[by_value].len(),
        "a clean stop writes what is complete, no more"
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
