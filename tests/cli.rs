//! People-facing errors: one clear line, a non-zero exit, no hang.

mod common;

use std::time::Duration;

use common::*;

fn fails_with(args: &[&str], needle: &str) {
    let mut cmd = weir();
    cmd.args(args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(30));
    assert!(!status.success(), "{args:?} should fail");
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(needle),
        "{args:?}: expected {needle:?} in the first line, got:\n{stderr}"
    );
}

#[test]
fn unknown_flag() {
    fails_with(&["--bogus"], "unexpected argument '--bogus'");
}

#[test]
fn missing_and_invalid_dataflow_files() {
    fails_with(
        &["--dataflow", "/nonexistent/users.toml"],
        "/nonexistent/users.toml: cannot read the dataflow file",
    );
    let dir = temp_dir("cli");
    let bad = dir.join("bad.toml");
    let text = std::fs::read_to_string("dataflows/users_created.toml")
        .unwrap()
        .replace("key = \"id\"", "key = \"uid\"");
    std::fs::write(&bad, text).unwrap();
    let line = std::fs::read_to_string(&bad)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("key ="))
        .unwrap()
        + 1;
    fails_with(
        &["--dataflow", bad.to_str().unwrap()],
        &format!("bad.toml:{line}: key \"uid\" is not a declared field"),
    );
    let mut cmd = weir();
    cmd.args([
        "check",
        "dataflows/users_created.toml",
        "dataflows/orders.toml",
    ]);
    let (status, stdout, _) = run(cmd, Duration::from_secs(30));
    assert!(
        status.success()
            && stdout.lines().count() == 2
            && stdout.contains("users_created.toml: ok"),
        "{stdout}"
    );
    let mut cmd = weir();
    cmd.args(["check", bad.to_str().unwrap()]);
    let (status, _, stderr) = run(cmd, Duration::from_secs(30));
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn unreachable_broker_and_cassandra() {
    let closed = format!("127.0.0.1:{}", free_port());
    fails_with(
        &["--brokers", &closed, "--connect-timeout", "2s"],
        &format!("weir: kafka: cannot reach the brokers at {closed}"),
    );
    fails_with(
        &["--cassandra", &closed, "--connect-timeout", "2s"],
        &format!("weir: cassandra: cannot connect to {closed}"),
    );
}

#[test]
fn bad_values() {
    fails_with(
        &["--start", "yesterday"],
        "--start \"yesterday\": use earliest, latest or an RFC 3339 time",
    );
    fails_with(&["-n", "2"], "-n 2 needs --hostfile");
    fails_with(
        &["-n", "2", "-p", "2", "--hostfile", "/dev/null"],
        "-p 2 is out of range",
    );
    fails_with(
        &["--input", "/nonexistent"],
        "--input /nonexistent: cannot read the directory",
    );
    fails_with(
        &["--sqlite", "/nonexistent/dir/weir.db"],
        "sqlite /nonexistent/dir/weir.db",
    );
    fails_with(
        &[
            "--cassandra",
            "127.0.0.1:9",
            "--cassandra-tls-ca",
            "Cargo.toml",
        ],
        "--cassandra-tls-ca Cargo.toml: no certificate in the file",
    );
    fails_with(
        &["--cassandra", "127.0.0.1:9", "--cassandra-user", "weir"],
        "set both --cassandra-user and a password",
    );
}
