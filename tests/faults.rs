//! The world failing around Weir: a broker killed and restarted on its storage, paused for
//! 30 s, its connections reset every two seconds, and blackholed for 60 s, while Weir reads
//! from it into SQLite and into Cassandra. Weir waits and resumes by itself; meanwhile
//! `/metrics` and the status page show the partitions as stalled with the reason, `/healthz`
//! answers and `/readyz` says not ready. Past `--source-stall-timeout` it stops with exit
//! code 1 and one line, and a restart resumes. The final tables equal the oracle's.
//!
//! The store: a CQL server slowed to 50 ms a write, its connections reset, paused for 30 s
//! and blackholed, while Weir writes to it; writes are retried within `--store-retry-timeout`,
//! `/readyz` says `sink retrying`, and the rows waiting for the store stay bounded by
//! `--max-in-flight`; past the budget, exit 1 and one line. SQLite on a full disk and on a
//! read-only filesystem: exit 1, one line; a restart after the fix ends exact.
//!
//! Each test runs its own servers (tansu, the CQL server) behind its own fault proxy (the
//! broker advertises the proxy, so Weir's and the producer's connections all go through it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::servers::{repeatedly, Broker, CqlServer};
use common::*;

/// Where Weir writes.
enum Sink {
    Sqlite(PathBuf),
    Cassandra(String),
}

impl Sink {
    fn args(&self) -> Vec<String> {
        match self {
            Sink::Sqlite(db) => vec!["--sqlite".into(), db.display().to_string()],
            Sink::Cassandra(keyspace) => cassandra_sink_args(&cassandra_addr(), keyspace),
        }
    }

    fn tables(&self, spec: &weir::spec::DataflowSpec) -> Tables {
        match self {
            Sink::Sqlite(db) => read_sqlite(db, spec),
            Sink::Cassandra(keyspace) => read_cassandra(&cassandra_addr(), keyspace, spec),
        }
    }
}

/// A `weir` reading `topic` from `broker` with its HTTP endpoint on a free port; its stderr
/// goes to a file.
struct Weir {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

impl Weir {
    fn start(broker: &Broker, topic: &str, sink: &Sink, dir: &Path, extra: &[&str]) -> Weir {
        let mut args: Vec<String> = ["--brokers", &broker.addr(), "--topic", topic]
            .iter()
            .chain(&["--kafka-config", "broker.address.family=v4"])
            .chain(&["--partition-discovery", "2s"])
            .map(|s| s.to_string())
            .collect();
        args.extend(sink.args());
        args.extend(extra.iter().map(|s| s.to_string()));
        Weir::spawn(&args, dir)
    }

    /// `weir` with `args`, at `-w 2`, progress every 50 ms.
    fn spawn(args: &[String], dir: &Path) -> Weir {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join(format!("weir-{}.log", unique("run")));
        let mut cmd = weir();
        cmd.args(["-w", "2", "--metrics-addr", &addr])
            .args(["--progress-interval", "50ms"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("a log file"));
        let child = cmd.spawn().expect("start weir");
        let mut weir = Weir {
            child: Some(child),
            addr,
            log,
        };
        wait_until(Duration::from_secs(60), "weir serves /healthz", || {
            weir.assert_running();
            http_get(&weir.addr, "/healthz").is_some()
        });
        weir
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("a running weir")
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.child().try_wait().expect("wait for weir") {
            panic!("weir exited early ({status}):\n{}", self.stderr());
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until every partition has been read to `total` messages in all.
    fn wait_read(&mut self, total: usize, what: &str) {
        wait_until(Duration::from_secs(180), what, || {
            self.assert_running();
            std::thread::sleep(Duration::from_millis(100));
            sum(&scrape(&self.addr), "weir_source_position") as usize == total
        });
    }

    /// Waits until the partitions show as stalled on every surface, with the liveness check
    /// still answering.
    fn wait_stalled(&mut self, what: &str) {
        wait_until(Duration::from_secs(60), what, || {
            self.assert_running();
            std::thread::sleep(Duration::from_millis(200));
            let stalled = sum(&scrape(&self.addr), "weir_source_stalled") >= 1.0;
            let ready = http_get(&self.addr, "/readyz");
            let status = http_get(&self.addr, "/api/status").map(|(_, body)| body);
            stalled
                && ready.is_some_and(|(code, body)| code == 503 && body.contains("stalled"))
                && status.is_some_and(|s| s.contains("\"stalled\":\""))
                && http_get(&self.addr, "/healthz").is_some_and(|(code, _)| code == 200)
        });
    }

    /// Waits until `/readyz` says ready again.
    fn wait_ready(&mut self, what: &str) {
        wait_until(Duration::from_secs(60), what, || {
            self.assert_running();
            std::thread::sleep(Duration::from_millis(100));
            http_get(&self.addr, "/readyz").is_some_and(|(code, _)| code == 200)
        });
    }

    /// SIGTERM, and its exit status (bounded).
    fn stop(mut self) -> ExitStatus {
        signal(self.child(), libc::SIGTERM);
        self.wait_exit(Duration::from_secs(60))
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child().try_wait().expect("wait for weir") {
                self.child = None;
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "weir did not exit within {limit:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The messages of stage `k` of `stages`: the same slice of every partition.
fn stage(data: &Dataset, k: usize, stages: usize) -> Dataset {
    data.iter()
        .map(|(p, messages)| {
            let n = messages.len();
            (*p, messages[k * n / stages..(k + 1) * n / stages].to_vec())
        })
        .collect()
}

/// Every broker fault in turn while one `weir` reads, then the stall bound, then the end.
fn broker_faults(name: &str, sink: Sink, dir: &Path) {
    const STAGES: usize = 7;
    let spec = spec("dataflows/users_created.toml");
    let data = generated(&generator(41, 4, 14_000, 0.0));
    let expected = oracle(&spec, &data);
    assert_interesting(&expected, &spec);
    let mut broker = Broker::start(&dir.join("tansu"));
    let topic = unique("users");
    let mut produced = 0;
    let mut produce_stage = |broker: &Broker, k: usize| {
        let part = stage(&data, k, STAGES);
        produce_to(&broker.addr(), &topic, &part, k == 0);
        produced += part.values().map(Vec::len).sum::<usize>();
        produced
    };

    let total = produce_stage(&broker, 0);
    let mut weir = Weir::start(
        &broker,
        &topic,
        &sink,
        dir,
        &["--source-stall-timeout", "off"],
    );
    weir.wait_read(total, "stage 0 read");
    weir.wait_ready("ready after the first stage");

    // 1. The broker killed, then restarted on the same storage.
    broker.kill();
    weir.wait_stalled("stalled while the broker is dead");
    broker.restart();
    let total = produce_stage(&broker, 1);
    weir.wait_read(total, "stage 1 read after the broker's restart");
    weir.wait_ready("ready after the restart");

    // 2. The broker paused for 30 s (it keeps its connections and answers nothing).
    let paused = Instant::now();
    broker.pause();
    weir.wait_stalled("stalled while the broker is paused");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(paused.elapsed()));
    broker.resume();
    let total = produce_stage(&broker, 2);
    weir.wait_read(total, "stage 2 read after the pause");

    // 3. Every connection reset every 2 s while Weir reads a stage (throttled, so that the
    //    resets land mid-read).
    let total = produce_stage(&broker, 3);
    broker.proxy.set("throttle 100000");
    repeatedly(Duration::from_secs(12), Duration::from_secs(2), || {
        broker.proxy.set("reset")
    });
    broker.proxy.set("pass");
    weir.wait_read(total, "stage 3 read through the resets");

    // 4. A 60 s blackhole, starting while Weir reads a stage.
    let total = produce_stage(&broker, 4);
    broker.proxy.set("throttle 100000");
    std::thread::sleep(Duration::from_millis(500));
    let holed = Instant::now();
    broker.proxy.set("blackhole");
    weir.wait_stalled("stalled while the broker is blackholed");
    std::thread::sleep(Duration::from_secs(60).saturating_sub(holed.elapsed()));
    broker.proxy.set("pass");
    weir.wait_read(total, "stage 4 read after the blackhole");
    weir.wait_ready("ready after the blackhole");
    assert!(weir.stop().success(), "SIGTERM after the faults: exit 0");

    // 5. Past the bound: exit 1 with one line, and a restart resumes.
    let total = produce_stage(&broker, 5);
    let mut bounded = Weir::start(
        &broker,
        &topic,
        &sink,
        dir,
        &["--source-stall-timeout", "3s"],
    );
    bounded.wait_read(total, "stage 5 read");
    broker.proxy.set("blackhole");
    let status = bounded.wait_exit(Duration::from_secs(90));
    broker.proxy.set("pass");
    assert_eq!(status.code(), Some(1), "a stall past the bound exits 1");
    let stderr = bounded.stderr();
    let last = last_line(&stderr);
    assert!(
        last.contains("could not be read for") && last.contains("--source-stall-timeout"),
        "one clear last line names the stall and the flag: {last:?}"
    );

    let total = produce_stage(&broker, 6);
    assert_eq!(total, data.values().map(Vec::len).sum::<usize>());
    // To the end of the topic, so that the input ends and every window closes.
    let mut last_run = Weir::start(&broker, &topic, &sink, dir, &["--until", "end"]);
    let status = last_run.wait_exit(Duration::from_secs(180));
    assert!(
        status.success(),
        "the last run: {status}\n{}",
        last_run.stderr()
    );
    assert_tables_eq(&expected, &sink.tables(&spec), name);
}

#[test]
fn broker_faults_kafka_to_sqlite_wait_resume_and_equal_the_oracle() {
    let dir = temp_dir("faults_sqlite");
    let sink = Sink::Sqlite(dir.join("weir.db"));
    broker_faults("broker faults, kafka -> sqlite", sink, &dir);
}

#[test]
fn broker_faults_kafka_to_cassandra_wait_resume_and_equal_the_oracle() {
    let dir = temp_dir("faults_cassandra");
    let sink = Sink::Cassandra(unique("ks"));
    broker_faults("broker faults, kafka -> cassandra", sink, &dir);
}

/// A tmpfs the test mounts (root is available on the test machines), unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).expect("a mount point");
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            path,
        );
        Tmpfs(path.to_path_buf())
    }

    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], &self.0);
    }
}

fn mount(args: &[&str], path: &Path) {
    let status = std::process::Command::new("mount")
        .args(args)
        .arg(path)
        .status()
        .expect("run mount");
    assert!(
        status.success(),
        "mount {args:?} {}: {status}",
        path.display()
    );
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn sqlite_on_a_full_disk_or_a_read_only_filesystem_stops_with_one_line_and_a_restart_ends_exact() {
    let dir = temp_dir("faults_disk");
    let dataflow = small_windows_dataflow(&dir);
    let spec = spec(dataflow.to_str().expect("a UTF-8 path"));
    let g = generator(43, 4, 12_000, 0.0);
    let expected = oracle(&spec, &generated(&g));
    let disk = Tmpfs::mount(&dir.join("disk"), "1m");
    let db = disk.0.join("weir.db");
    let args = sqlite_args(&g, &dataflow, &db);

    // 1. The disk fills mid-run.
    let mut cmd = weir();
    cmd.args(&args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert_eq!(status.code(), Some(1), "a full disk exits 1:\n{stderr}");
    let line = last_line(&stderr);
    assert!(
        line.contains("full") && line.contains("free space and restart"),
        "one line says the disk is full and what to do: {line:?}"
    );
    // 2. The file's filesystem made read-only.
    disk.remount("ro");
    let mut cmd = weir();
    cmd.args(&args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert_eq!(
        status.code(),
        Some(1),
        "a read-only file exits 1:\n{stderr}"
    );
    let line = last_line(&stderr);
    assert!(
        line.starts_with("weir: sqlite") && line.contains(&db.display().to_string()),
        "one line names the database: {line:?}"
    );
    // 3. Space freed and writable again: the restart ends exact. (Had a progress record gone
    //    past the rows it covers, they would be missing now.)
    disk.remount("rw,size=256m");
    let mut cmd = weir();
    cmd.args(&args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(300));
    assert!(status.success(), "after space is freed: {status}\n{stderr}");
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        "after a full disk and a read-only filesystem",
    );
}

/// The most rows the store tests let wait for the store (`--max-in-flight`).
const MAX_IN_FLIGHT: usize = 5_000;

/// Waits until `weir` is retrying writes, checking meanwhile that the rows waiting for the
/// store stay bounded (the source pauses at `--max-in-flight`).
fn wait_retrying(weir: &mut Weir, what: &str) {
    let mut most = 0.0f64;
    wait_until(Duration::from_secs(60), what, || {
        weir.assert_running();
        std::thread::sleep(Duration::from_millis(200));
        most = most.max(sum(&scrape(&weir.addr), "weir_write_rows_in_flight"));
        assert!(
            most <= 2.0 * MAX_IN_FLIGHT as f64,
            "{most} rows in flight: the source must pause at --max-in-flight {MAX_IN_FLIGHT}"
        );
        http_get(&weir.addr, "/readyz")
            .is_some_and(|(code, body)| code == 503 && body.contains("sink retrying"))
            && http_get(&weir.addr, "/healthz").is_some_and(|(code, _)| code == 200)
    });
}

#[test]
fn store_paused_reset_blackholed_and_slowed_loses_and_repeats_nothing() {
    let dir = temp_dir("faults_store");
    let cql = CqlServer::start(&dir.join("cql"));
    let dataflow = small_windows_dataflow(&dir);
    let spec = spec(dataflow.to_str().expect("a UTF-8 path"));
    let g = generator(44, 4, 100_000, 1_000.0);
    let expected = oracle(&spec, &generated(&g));
    assert_interesting(&expected, &spec);
    let args = |g: &weir::source::generator::GeneratorConfig, keyspace: &str, extra: &[&str]| {
        let mut args = generator_args(g);
        args.extend(
            ["--dataflow", dataflow.to_str().expect("a UTF-8 path")]
                .iter()
                .chain(&["--max-in-flight", &MAX_IN_FLIGHT.to_string()])
                .chain(extra)
                .map(|s| s.to_string()),
        );
        args.extend(cassandra_sink_args(&cql.proxy.addr, keyspace));
        args
    };
    let rows_written = |weir: &Weir| sum(&scrape(&weir.addr), "weir_rows_written_total");

    let keyspace = unique("ks");
    let mut weir = Weir::spawn(&args(&g, &keyspace, &[]), &dir);
    wait_until(Duration::from_secs(60), "rows written", || {
        std::thread::sleep(Duration::from_millis(100));
        rows_written(&weir) > 0.0
    });
    // 1. Every write slowed to 50 ms.
    cql.proxy.set("latency 50");
    let before = rows_written(&weir);
    std::thread::sleep(Duration::from_secs(10));
    weir.assert_running();
    assert!(rows_written(&weir) > before, "slow writes still progress");
    cql.proxy.set("pass");
    // 2. Every connection reset every 2 s.
    repeatedly(Duration::from_secs(10), Duration::from_secs(2), || {
        cql.proxy.set("reset")
    });
    // 3. The store paused for 30 s: requests time out and are retried.
    let paused = Instant::now();
    cql.pause();
    wait_retrying(&mut weir, "retrying while the store is paused");
    std::thread::sleep(Duration::from_secs(30).saturating_sub(paused.elapsed()));
    cql.resume();
    weir.wait_ready("ready after the pause");
    // 4. A 20 s blackhole.
    let holed = Instant::now();
    cql.proxy.set("blackhole");
    wait_retrying(&mut weir, "retrying while the store is blackholed");
    std::thread::sleep(Duration::from_secs(20).saturating_sub(holed.elapsed()));
    cql.proxy.set("pass");
    let status = weir.wait_exit(Duration::from_secs(300));
    assert!(status.success(), "{status}\n{}", weir.stderr());
    assert_tables_eq(
        &expected,
        &read_cassandra(&cql.addr, &keyspace, &spec),
        "store paused, reset, blackholed and slowed",
    );

    // 5. Past the retry budget: exit 1 with one line, and a restart resumes exactly.
    let g = generator(45, 4, 20_000, 2_000.0);
    let expected = oracle(&spec, &generated(&g));
    let keyspace = unique("ks");
    let bounded = [
        "--store-retry-timeout",
        "3s",
        "--cassandra-request-timeout",
        "1s",
    ];
    let mut weir = Weir::spawn(&args(&g, &keyspace, &bounded), &dir);
    wait_until(Duration::from_secs(60), "rows written", || {
        std::thread::sleep(Duration::from_millis(100));
        rows_written(&weir) > 0.0
    });
    cql.proxy.set("blackhole");
    let status = weir.wait_exit(Duration::from_secs(60));
    cql.proxy.set("pass");
    assert_eq!(status.code(), Some(1), "past the retry budget: exit 1");
    let stderr = weir.stderr();
    let line = last_line(&stderr);
    assert!(
        line.contains("writes failed for") && line.contains("--store-retry-timeout"),
        "one line names the failing writes and the flag: {line:?}"
    );
    let mut weir = Weir::spawn(&args(&g, &keyspace, &[]), &dir);
    let status = weir.wait_exit(Duration::from_secs(300));
    assert!(status.success(), "{status}\n{}", weir.stderr());
    assert_tables_eq(
        &expected,
        &read_cassandra(&cql.addr, &keyspace, &spec),
        "after the retry budget ran out and a restart",
    );
}
