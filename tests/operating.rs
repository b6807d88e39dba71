//! Operating a running pipeline: the status page as a person sees it in Chromium, the
//! Prometheus metrics, lifecycle logs in JSON, and the signals.
//!
//! The browser test needs Debian's `chromium` and `chromium-driver` (scripts/test.sh installs
//! them); it fails, never skips, when they are missing.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running `weir` with its HTTP endpoint on a free port, killed on drop.
struct Running {
    child: Option<Child>,
    addr: String,
}

impl Running {
    fn start(extra: &[&str], dir: &Path) -> Running {
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        // Second-sized windows that close during the test, with lateness above the
        // generator's 2 s of disorder, so that only its deliberately late users are late.
        let dataflow = small_windows_dataflow(dir);
        let text = std::fs::read_to_string(&dataflow).unwrap();
        std::fs::write(
            &dataflow,
            text.replace("allowed_lateness = \"1s\"", "allowed_lateness = \"3s\""),
        )
        .unwrap();
        let mut cmd = weir();
        cmd.args([
            "-w",
            "2",
            "--dataflow",
            dataflow.to_str().unwrap(),
            "--sqlite",
            dir.join("weir.db").to_str().unwrap(),
            "--metrics-addr",
            &addr,
            "--partitions",
            "4",
            "--rate",
            "4000",
            "--malformed",
            "20",
            "--late",
            "5",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn weir");
        let running = Running {
            child: Some(child),
            addr,
        };
        wait_until(
            Duration::from_secs(30),
            "weir's /healthz never answered",
            || http_get(&running.addr, "/healthz").is_some_and(|(code, _)| code == 200),
        );
        running
    }

    /// Sends SIGTERM and returns (exit code, stderr).
    fn terminate(mut self) -> (Option<i32>, String) {
        let child = self.child.take().unwrap();
        signal(&child, libc::SIGTERM);
        let (status, _, stderr) = wait_output(child, Duration::from_secs(30));
        (status.code(), stderr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn metrics_count_what_was_read_and_logs_are_json_lifecycle_lines() {
    let dir = temp_dir("metrics");
    let running = Running::start(&["--log-format", "json"], &dir);
    // Wait for what the assertions below need (not a fixed time: a loaded machine may not have
    // closed a window yet): a window result and progress written, then more records read.
    let mut first = BTreeMap::new();
    wait_until(
        Duration::from_secs(60),
        "no window result and progress written",
        || {
            first = scrape(&running.addr);
            sum(&first, "weir_windows_written_total") > 0.0
                && sum(&first, "weir_progress_writes_total") > 0.0
        },
    );
    let mut second = BTreeMap::new();
    wait_until(Duration::from_secs(30), "no more records read", || {
        second = scrape(&running.addr);
        sum(&second, "weir_records_read_total") > sum(&first, "weir_records_read_total")
    });

    for name in [
        "weir_records_read_total",
        "weir_bytes_read_total",
        "weir_parse_errors_total",
        "weir_late_records_total",
        "weir_rows_written_total",
        "weir_write_duration_seconds_bucket",
        "weir_write_rows_in_flight",
        "weir_write_retries_total",
        "weir_event_time_frontier_seconds",
        "weir_frontier_lag_seconds",
        "weir_durable_frontier_seconds",
        "weir_kafka_high_watermark",
        "weir_source_position",
        "weir_consumer_lag_records",
        "weir_durable_offset",
        "weir_windows_written_total",
        "weir_progress_writes_total",
        "weir_build_info",
    ] {
        assert!(series(&second, name).count() > 0, "{name} is missing");
    }
    // One series per partition, with the partition's owner as its worker.
    let read: Vec<&String> = series(&second, "weir_records_read_total")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(read.len(), 4, "{read:?}");
    for k in &read {
        let partition: i32 = k.split("partition=\"").nth(1).unwrap()[..1]
            .parse()
            .unwrap();
        let owner = weir::source::assign::owner("users_created", partition, 2);
        assert!(k.contains(&format!("worker=\"{owner}\"")), "{k}");
    }
    let (read1, read2) = (
        sum(&first, "weir_records_read_total"),
        sum(&second, "weir_records_read_total"),
    );
    assert!(
        read1 > 0.0 && read2 > read1,
        "records read must grow: {read1} -> {read2}"
    );
    assert!(
        sum(&second, "weir_parse_errors_total") > 0.0,
        "malformed records are counted"
    );
    assert!(
        sum(&second, "weir_windows_written_total") > 0.0,
        "1 s windows have closed"
    );
    let written = sum(&second, "weir_rows_written_total");
    assert!(written > 0.0, "rows are written");
    // The frontier follows the generator's clock, which starts at this minute.
    let lag = series(&second, "weir_frontier_lag_seconds")
        .map(|(_, v)| v)
        .fold(0.0, f64::max);
    assert!(lag < 120.0, "frontier lag {lag}s");
    // Position never passes the high watermark; lag is their difference.
    for (k, position) in series(&second, "weir_source_position") {
        let labels = &k["weir_source_position".len()..];
        let high = second[&format!("weir_kafka_high_watermark{labels}")];
        let lag = second[&format!("weir_consumer_lag_records{labels}")];
        assert!(
            position <= high + 1.0 && lag == (high - position).max(0.0),
            "{k}"
        );
    }

    let (code, stderr) = running.terminate();
    assert_eq!(code, Some(0), "SIGTERM must exit 0:\n{stderr}");
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["message"].as_str())
        .collect();
    for wanted in [
        "serving the status page and /metrics",
        "start: dataflow users_created: no stored progress",
        "partitions assigned",
        "first write acknowledged by the store",
        "progress written",
        "shutdown requested",
        "stopped at a safe point",
    ] {
        assert!(
            messages.iter().any(|m| m.starts_with(wanted)),
            "no {wanted:?} event in {messages:#?}"
        );
    }
    // Lifecycle events, not one per record: thousands of records, a handful of lines.
    assert!(
        events.len() < 40,
        "{} log lines for {read2} records",
        events.len()
    );
}

#[test]
fn a_second_signal_exits_at_once_and_a_restart_is_still_exact() {
    let SqliteRun {
        spec,
        expected,
        db,
        args,
    } = sqlite_run("second_signal", &generator(31, 4, 16_000, 4000.0));
    let child = weir()
        .args(&args)
        // The first signal's clean stop waits up to this long for open writes; the second
        // signal must not wait at all.
        .args(["--shutdown-timeout", "60s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Signal once rows are being written (weir has started and installed its handlers).
    wait_until(Duration::from_secs(60), "no row was written", || {
        count_sqlite_rows(&db, &spec.tables.rows) > 0
    });
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGINT);
    let started = Instant::now();
    let (status, _, stderr) = wait_output(child, Duration::from_secs(30));
    assert!(
        status.code() == Some(130) || status.success(),
        "a second signal exits 130 (or the first finished first): {status}\n{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{stderr}");
    let mut restart = weir();
    restart.args(&args);
    let (status, _, stderr) = run(restart, Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    assert_tables_eq(&expected, &read_sqlite(&db, &spec), "after a second signal");
}

/// [`wait_until`] for async tests: polls `done` every 250 ms until it holds; fails the test
/// with `what` after `limit`.
async fn wait_until_async<F: std::future::Future<Output = bool>>(
    limit: Duration,
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let deadline = Instant::now() + limit;
    while !done().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// chromedriver on a free port, killed on drop.
struct Chromedriver(Child, u16);

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Chromedriver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is not installed: apt-get install chromium chromium-driver (scripts/test.sh does)");
    let driver = Chromedriver(child, port);
    wait_until(
        Duration::from_secs(20),
        "chromedriver did not start",
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
    );
    driver
}

/// Where the screenshot goes: the test artifact, and `WEIR_SCREENSHOT_OUT` when set (the
/// README's image is made that way).
fn screenshot_paths() -> Vec<PathBuf> {
    let mut paths = vec![PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png")];
    if let Ok(out) = std::env::var("WEIR_SCREENSHOT_OUT") {
        paths.push(PathBuf::from(out));
    }
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_chromium_shows_live_numbers_partitions_windows_and_rejects() {
    use fantoccini::{ClientBuilder, Locator};
    let dir = temp_dir("status_page");
    let running = Running::start(&[], &dir);
    let driver = chromedriver();
    let mut capabilities = serde_json::Map::new();
    let user_data = dir.join("chromium-profile");
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1250",
                format!("--user-data-dir={}", user_data.display()),
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.1))
        .await
        .expect("start headless chromium through chromedriver");
    client
        .goto(&format!("http://{}/", running.addr))
        .await
        .unwrap();

    let text = |id: &'static str| {
        let client = client.clone();
        async move {
            client
                .find(Locator::Id(id))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let number = |s: &str| s.replace(',', "").parse::<u64>().ok();
    // Wait until the page has data, windows have closed and some rejects were shown.
    wait_until_async(
        Duration::from_secs(30),
        "no windows or rejects on the page",
        || {
            let client = client.clone();
            async move {
                let windows = client
                    .find_all(Locator::Css("#windows tbody tr td:not(.empty)"))
                    .await
                    .unwrap();
                let rejects = client
                    .find_all(Locator::Css("#rejects tbody tr td.bad"))
                    .await
                    .unwrap();
                !windows.is_empty() && !rejects.is_empty()
            }
        },
    )
    .await;
    assert_eq!(text("dataflow-name").await, "users_created");
    assert_eq!(text("state").await, "running");
    let first = number(&text("records-total").await).expect("records read is a number");
    assert!(first > 0, "records read: {first}");
    // The page polls every second: wait for the count to change, without a reload.
    wait_until_async(
        Duration::from_secs(30),
        &format!("the records count must change without a reload (from {first})"),
        || {
            let second = text("records-total");
            async move { number(&second.await).expect("records read is a number") > first }
        },
    )
    .await;
    // The page rebuilds its tables and chart every second, so an element found by one
    // WebDriver call can be stale by the next: read what is needed in one script.
    let read = |script: &'static str| {
        let client = client.clone();
        async move { client.execute(script, vec![]).await.unwrap() }
    };
    let partitions = read(
        "return Array.from(document.querySelectorAll('#partitions tbody tr[data-partition]'), \
         r => r.dataset.partition)",
    )
    .await;
    assert_eq!(
        partitions,
        serde_json::json!(["0", "1", "2", "3"]),
        "one row per partition"
    );
    let workers = client
        .find_all(Locator::Css("#workers tbody tr"))
        .await
        .unwrap();
    assert_eq!(workers.len(), 2, "one row per worker");
    let chart = read(
        "const p = document.getElementById('chart-records'); \
         return p ? (p.getAttribute('d') || '') : ''",
    )
    .await;
    let chart = chart.as_str().unwrap_or_default();
    assert!(
        chart.matches('L').count() >= 2,
        "the throughput chart has points: {chart:?}"
    );
    let windows = text("windows").await;
    assert!(
        ["1s", "5s", "2s_every_500ms"]
            .iter()
            .any(|w| windows.contains(w)),
        "{windows}"
    );
    assert!(windows.contains("users="), "{windows}");
    let rejects = text("rejects").await;
    assert!(rejects.contains("dead letter"), "{rejects}");

    let png = client.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    for path in screenshot_paths() {
        std::fs::write(&path, &png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    client.close().await.unwrap();
    let (code, stderr) = running.terminate();
    assert_eq!(code, Some(0), "{stderr}");
}
