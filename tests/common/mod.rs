//! Shared test harness: data sets, the oracle ([`oracle`], which shares no code with Weir),
//! table readers for SQLite and Cassandra, the test servers' addresses, and helpers to run the
//! `weir` binary.
//!
//! The oracle is a plain sequential computation over the same messages: partitions in offset
//! order, lateness from each partition's own history, windows folded into maps. The engine's
//! tables must equal it exactly.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub mod in_process;
mod oracle;
pub mod servers;
#[allow(unused_imports)] // oracle_inputs: only tests of joined dataflows use it
pub use oracle::{oracle, oracle_inputs};

use weir::schema::Value;
use weir::sink::{Cell, ColumnType, TableSet};
use weir::source::generator::{GeneratedTopic, GeneratorConfig};
use weir::spec::DataflowSpec;

/// Every table, by name: its rows, each rendered as strings.
pub type Tables = BTreeMap<String, BTreeSet<Vec<String>>>;

/// A message of the data set.
#[derive(Clone, Debug)]
pub struct Msg {
    pub offset: i64,
    pub payload: Vec<u8>,
    pub timestamp: Option<i64>,
    /// The Kafka key (what a table input's tombstone deletes).
    pub key: Option<Vec<u8>>,
    /// A null value (Kafka tombstone); the payload is then empty.
    pub tombstone: bool,
}

impl Msg {
    /// A message with a value and no key.
    pub fn new(offset: i64, payload: Vec<u8>, timestamp: Option<i64>) -> Msg {
        Msg {
            offset,
            payload,
            timestamp,
            key: None,
            tombstone: false,
        }
    }

    /// A tombstone (null value) of `key`.
    pub fn tombstone(offset: i64, key: &[u8], timestamp: Option<i64>) -> Msg {
        Msg {
            offset,
            payload: Vec::new(),
            timestamp,
            key: Some(key.to_vec()),
            tombstone: true,
        }
    }
}

/// Partition -> messages in offset order.
pub type Dataset = BTreeMap<i32, Vec<Msg>>;

pub fn spec(path: &str) -> DataflowSpec {
    DataflowSpec::load(Path::new(path)).unwrap_or_else(|e| panic!("{e}"))
}

/// A generator configuration with plenty of duplicates, late and malformed records.
pub fn generator(seed: u64, partitions: i32, count: u64, rate: f64) -> GeneratorConfig {
    GeneratorConfig {
        seed,
        partitions,
        count: Some(count),
        rate,
        epoch_ms: 1_795_255_200_000, // 2026-11-21T10:00:00Z
        duplicates_per_mille: 40,
        late_per_mille: 20,
        malformed_per_mille: 20,
        topic: GeneratedTopic::Users,
        tombstones_per_mille: 0,
        events_per_user: 1,
    }
}

/// The generator flags for the same configuration.
pub fn generator_args(g: &GeneratorConfig) -> Vec<String> {
    vec![
        "--seed".into(),
        g.seed.to_string(),
        "--partitions".into(),
        g.partitions.to_string(),
        "--count".into(),
        g.count.unwrap_or(0).to_string(),
        "--rate".into(),
        g.rate.to_string(),
        "--epoch".into(),
        weir::time::rfc3339(g.epoch_ms),
        "--duplicates".into(),
        g.duplicates_per_mille.to_string(),
        "--late".into(),
        g.late_per_mille.to_string(),
        "--malformed".into(),
        g.malformed_per_mille.to_string(),
    ]
}

/// The messages the generator makes.
pub fn generated(g: &GeneratorConfig) -> Dataset {
    let mut data = Dataset::new();
    let mut buf = Vec::new();
    for p in 0..g.partitions {
        let messages = (0..g.partition_len(p).unwrap_or(0))
            .map(|o| {
                let mut key = Vec::new();
                let m = g.keyed_message(p, o, &mut key, &mut buf);
                Msg {
                    key: (!key.is_empty()).then_some(key),
                    tombstone: m.tombstone,
                    ..Msg::new(o, buf.clone(), Some(m.timestamp))
                }
            })
            .collect();
        data.insert(p, messages);
    }
    data
}

/// The messages of a file-source directory (offsets are byte positions).
pub fn from_files(dir: &Path) -> Dataset {
    let files = weir::source::file::partition_files(dir).unwrap();
    let mut data = Dataset::new();
    for (p, file) in files.iter().enumerate() {
        let bytes = std::fs::read(file).unwrap();
        let mut offset = 0i64;
        let mut messages = Vec::new();
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let payload = line.strip_suffix(b"\n").unwrap_or(line).to_vec();
            messages.push(Msg::new(offset, payload, None));
            offset += line.len() as i64;
        }
        data.insert(p as i32, messages);
    }
    data
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One cell as a string, the same way for every store.
pub fn render_cell(cell: &Cell) -> String {
    match cell {
        Cell::Null => "null".into(),
        Cell::Text(s) => s.to_string(),
        Cell::Int(i) => i.to_string(),
        Cell::Bigint(i) | Cell::Timestamp(i) => i.to_string(),
        Cell::Double(f) => f.to_string(),
        Cell::Boolean(b) => b.to_string(),
        Cell::Uuid(u) => uuid::Uuid::from_u128(*u).to_string(),
        Cell::Blob(b) => hex(b),
    }
}

pub fn render_cells(cells: &[Cell]) -> Vec<String> {
    cells.iter().map(render_cell).collect()
}

/// Polls `done` every 10 ms until it holds; fails the test with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The rows of one table of a database that another process may be writing; 0 while the
/// database or the table does not exist yet.
pub fn count_sqlite_rows(path: &Path, table: &str) -> usize {
    let Ok(db) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return 0;
    };
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
        r.get::<_, i64>(0)
    })
    .map_or(0, |n| n as usize)
}

/// A scylla session builder for the test CQL server (no `system.peers`: no schema agreement
/// or metadata fetches).
pub fn cql_builder(addr: &str) -> scylla::client::session_builder::SessionBuilder {
    scylla::client::session_builder::SessionBuilder::new()
        .known_node(addr)
        .auto_await_schema_agreement(false)
        .fetch_schema_metadata(false)
}

/// A scylla session for the test CQL server.
pub async fn cql_session(addr: &str) -> scylla::client::session::Session {
    cql_builder(addr)
        .build()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test CQL server at {addr}: {e}"))
}

/// Reads every table of `spec` (but progress) from Cassandra, whole, with paging.
pub fn read_cassandra(addr: &str, keyspace: &str, spec: &DataflowSpec) -> Tables {
    read_cassandra_with(cql_builder(addr), keyspace, spec)
}

/// [`read_cassandra`] through a session of this builder (credentials, TLS).
pub fn read_cassandra_with(
    builder: scylla::client::session_builder::SessionBuilder,
    keyspace: &str,
    spec: &DataflowSpec,
) -> Tables {
    use futures::TryStreamExt;
    use scylla::value::CqlValue;
    let tables = TableSet::new(spec);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let session = builder
            .build()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the test CQL server: {e}"));
        let mut out = Tables::new();
        for table in &tables.tables[..TableSet::PROGRESS] {
            let query = format!(
                "SELECT {} FROM {keyspace}.{}",
                table.column_list(),
                table.name
            );
            let rows: Vec<scylla::value::Row> = session
                .query_iter(query, ())
                .await
                .unwrap()
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

/// Asserts two sets of tables are equal, showing the first differences.
#[track_caller]
pub fn assert_tables_eq(expected: &Tables, actual: &Tables, what: &str) {
    // Reasons whose wording the oracle cannot know are compared by their fixed start.
    let normalized = |rows: &BTreeSet<Vec<String>>| -> BTreeSet<Vec<String>> {
        rows.iter()
            .map(|row| row.iter().map(|c| oracle::normalize(c)).collect())
            .collect()
    };
    for (name, rows) in expected {
        let rows = &normalized(rows);
        let got = normalized(&actual.get(name).cloned().unwrap_or_default());
        if &got != rows {
            let missing: Vec<_> = rows.difference(&got).take(3).collect();
            let extra: Vec<_> = got.difference(rows).take(3).collect();
            panic!(
                "{what}: table {name} differs: expected {} rows, found {}.\n  missing (first 3): {missing:?}\n  unexpected (first 3): {extra:?}",
                rows.len(),
                got.len()
            );
        }
    }
}

/// Sanity: the data set exercises what it should.
pub fn assert_interesting(tables: &Tables, spec: &DataflowSpec) {
    let t = &spec.tables;
    for name in [&t.rows, &t.by_value, &t.by_window, &t.dead_letters, &t.late] {
        assert!(
            !tables[name].is_empty(),
            "the oracle's {name} is empty: the data set is too tame"
        );
    }
}

/// The address of the test Kafka broker (tansu), from the test command.
pub fn kafka_addr() -> String {
    std::env::var("WEIR_TEST_KAFKA").unwrap_or_else(|_| {
        panic!("WEIR_TEST_KAFKA is not set: run the suite with `bash scripts/test.sh`, which installs and starts tansu")
    })
}

/// The address of the test CQL server, from the test command.
pub fn cassandra_addr() -> String {
    std::env::var("WEIR_TEST_CASSANDRA").unwrap_or_else(|_| {
        panic!("WEIR_TEST_CASSANDRA is not set: run the suite with `bash scripts/test.sh`, which builds and starts the CQL test server")
    })
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh temporary directory.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(&format!("weir_{prefix}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `weir` binary with quiet output, in the crate directory.
pub fn weir() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_weir"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("WEIR_FAILPOINTS")
        .env("WEIR_QUIET", "1")
        // Tests run in parallel; the ones about the HTTP endpoint pick their own port.
        .env("WEIR_METRICS_ADDR", "off")
        .stdin(Stdio::null());
    c
}

/// Runs a command to completion with a time limit; returns status, stdout and stderr.
pub fn run(mut command: Command, limit: Duration) -> (ExitStatus, String, String) {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn weir");
    wait_output(child, limit)
}

/// Waits for a child with a time limit (kills it and panics on timeout).
pub fn wait_output(mut child: Child, limit: Duration) -> (ExitStatus, String, String) {
    let started = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            return (
                output.status,
                String::from_utf8_lossy(&output.stdout).into(),
                String::from_utf8_lossy(&output.stderr).into(),
            );
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "weir did not finish within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a signal to a child process.
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// A plain HTTP/1.0 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    std::io::Write::write_all(&mut stream, request.as_bytes()).ok()?;
    let mut response = String::new();
    std::io::Read::read_to_string(&mut stream, &mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Prometheus text format -> series (name with labels) -> value.
pub fn scrape(addr: &str) -> BTreeMap<String, f64> {
    let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// The sum of every series of metric `name`.
pub fn sum(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    series(metrics, name).map(|(_, v)| v).sum()
}

/// The series of metric `name` (any labels) and their values.
pub fn series<'a>(
    metrics: &'a BTreeMap<String, f64>,
    name: &'a str,
) -> impl Iterator<Item = (&'a String, f64)> + 'a {
    metrics
        .iter()
        .filter(move |(k, _)| k.split('{').next() == Some(name))
        .map(|(k, v)| (k, *v))
}

/// Creates a topic on the test broker and produces the data set into it, partition by
/// partition, checking that the broker assigned the data set's offsets.
pub fn produce(topic: &str, data: &Dataset) {
    produce_with(topic, data, true)
}

fn produce_with(topic: &str, data: &Dataset, create: bool) {
    produce_to(&kafka_addr(), topic, data, create)
}

/// A client configuration for the test brokers at `brokers` (IPv4 only).
pub fn kafka_client_config(brokers: &str) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("broker.address.family", "v4");
    config
}

/// Creates `topic` with `partitions` partitions (one replica).
pub async fn create_topic(config: &rdkafka::ClientConfig, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<_> = config.create().expect("an admin client");
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let result = admin
        .create_topics([&new], &AdminOptions::new())
        .await
        .expect("create topic");
    for r in result {
        r.unwrap_or_else(|(t, e)| panic!("create topic {t}: {e}"));
    }
}

/// The last line of a run's stderr that is not blank: its one error line, when it failed.
pub fn last_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
}

/// The flags that write `keyspace` on the CQL test server at `addr`.
pub fn cassandra_sink_args(addr: &str, keyspace: &str) -> Vec<String> {
    [
        "--cassandra",
        addr,
        "--keyspace",
        keyspace,
        "--cassandra-test-server",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Produces `data` to `topic` on `brokers` (creating the topic first when `create`), checking
/// that the broker's offsets are the data set's.
pub fn produce_to(brokers: &str, topic: &str, data: &Dataset, create: bool) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = kafka_client_config(brokers);
        if create {
            create_topic(&config, topic, data.len() as i32).await;
        }
        // Idempotence keeps each partition's order with several requests in flight, so the
        // broker's offsets are the data set's.
        let producer: FutureProducer = config
            .clone()
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .create()
            .unwrap();
        for (partition, messages) in data {
            let mut pending = Vec::new();
            for m in messages {
                let key = format!("{partition}-{}", m.offset);
                let mut record = FutureRecord::to(topic)
                    .partition(*partition)
                    .payload(&m.payload)
                    .key(&key);
                if let Some(ts) = m.timestamp {
                    record = record.timestamp(ts);
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
}

/// Labels for `Value` in test messages.
pub fn label(v: &Value) -> String {
    v.label().into_string()
}

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

/// The small-windows users dataflow, changed by `edit`, written to `dir/name.toml`.
pub fn variant(dir: &Path, name: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let base = std::fs::read_to_string(small_windows_dataflow(dir)).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, edit(base)).unwrap();
    path
}

/// Removes the `[[windows]]` block named `window`.
pub fn without_window(text: String, window: &str) -> String {
    let block = format!("[[windows]]\nname = \"{window}\"\n");
    let start = text
        .find(&block)
        .unwrap_or_else(|| panic!("no window {window}"));
    let end = text[start + block.len()..]
        .find("\n\n")
        .map_or(text.len(), |e| start + block.len() + e + 2);
    format!("{}{}", &text[..start], &text[end..])
}

/// The failpoints every crash loop arms (and "random": a kill by the test at a random moment).
pub const CRASH_POINTS: [&str; 6] = [
    "sink.after_data_write",
    "sink.mid_batch",
    "source.parse",
    "progress.before_write",
    "progress.after_write",
    "random",
];

/// Kills weir again and again, at each of `points` in turn (and at random moments for
/// "random"), then lets it finish. Returns the number of kills. Fails unless every named
/// failpoint really fired (weir says so on stderr before it kills itself) at least once: a kill
/// by the test's own deadline is not a failpoint's.
pub fn crash_loop(
    args: &[String],
    points: &[&str],
    min_kills: usize,
    seed: u64,
    ranges: &KillRanges,
) -> usize {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = 0;
    let mut attempt = 0;
    let mut fired: BTreeMap<String, usize> = BTreeMap::new();
    while kills < min_kills
        || points
            .iter()
            .any(|p| *p != "random" && !fired.contains_key(*p))
    {
        attempt += 1;
        assert!(
            attempt < min_kills * 3,
            "only {kills} kills in {attempt} runs (failpoints fired: {fired:?}): the input ends too soon for this test"
        );
        let point = points[attempt % points.len()];
        let mut cmd = weir();
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped());
        let at = match point {
            "source.parse" => rng.u64(ranges.parse.clone()),
            "sink.mid_batch" => rng.u64(ranges.mid_batch.clone()),
            "sink.after_data_write" => rng.u64(ranges.after_write.clone()),
            "random" => 0,
            _ => rng.u64(ranges.progress.clone()),
        };
        if point != "random" {
            cmd.env("WEIR_FAILPOINTS", format!("{point}={at}"));
        }
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap();
        // Read stderr while it runs, so that a chatty run cannot fill the pipe and stall.
        let mut pipe = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        });
        let deadline = Instant::now()
            + if point == "random" {
                Duration::from_millis(rng.u64(ranges.random_ms.clone()))
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
            *fired.entry(point.to_string()).or_default() += 1;
        }
        eprintln!(
            "attempt {attempt}: {point}={at} -> {status} after {:?}{}",
            started.elapsed(),
            if fired_here { " (fired)" } else { "" }
        );
        match status.signal() {
            Some(9) => kills += 1,
            _ if status.success() => {}
            _ => panic!("weir failed (not killed): {status}\n{stderr}"),
        }
    }
    eprintln!("failpoints fired: {fired:?}");
    let mut cmd = weir();
    cmd.args(args);
    let (status, _, stderr) = run(cmd, Duration::from_secs(300));
    assert!(status.success(), "final run failed: {status}\n{stderr}");
    kills
}

/// Where the failpoints fire: the n-th pass, n drawn from these ranges.
pub struct KillRanges {
    pub parse: std::ops::Range<u64>,
    pub mid_batch: std::ops::Range<u64>,
    pub after_write: std::ops::Range<u64>,
    pub progress: std::ops::Range<u64>,
    pub random_ms: std::ops::Range<u64>,
}

/// A generated data set through the small-windows dataflow into SQLite at `-w 2`: what the
/// crash and signal tests run.
pub struct SqliteRun {
    /// The dataflow.
    pub spec: DataflowSpec,
    /// The oracle's tables for the data set.
    pub expected: Tables,
    /// The database file.
    pub db: PathBuf,
    /// `weir`'s arguments.
    pub args: Vec<String>,
}

/// `weir`'s arguments for `g` through `dataflow` into `db` at `-w 2`.
pub fn sqlite_args(g: &GeneratorConfig, dataflow: &Path, db: &Path) -> Vec<String> {
    let mut args = generator_args(g);
    args.extend([
        "-w".into(),
        "2".into(),
        "--dataflow".into(),
        dataflow.display().to_string(),
        "--sqlite".into(),
        db.display().to_string(),
    ]);
    args
}

/// Prepares a [`SqliteRun`] of `g` in a fresh directory named after `name`.
pub fn sqlite_run(name: &str, g: &GeneratorConfig) -> SqliteRun {
    let dir = temp_dir(name);
    let dataflow = small_windows_dataflow(&dir);
    let spec = spec(dataflow.to_str().unwrap());
    let expected = oracle(&spec, &generated(g));
    let db = dir.join("weir.db");
    let args = sqlite_args(g, &dataflow, &db);
    SqliteRun {
        spec,
        expected,
        db,
        args,
    }
}

/// A [`SqliteRun`] whose arguments name no shape (no `-w`), with progress every 20 ms, for
/// tests that change the shape between runs; and its directory.
pub fn sqlite_run_of_any_shape(name: &str, g: &GeneratorConfig) -> (SqliteRun, PathBuf) {
    let dir = temp_dir(name);
    let dataflow = small_windows_dataflow(&dir);
    let spec = spec(dataflow.to_str().unwrap());
    let expected = oracle(&spec, &generated(g));
    let db = dir.join("weir.db");
    let mut args = generator_args(g);
    args.extend(["--dataflow".into(), dataflow.display().to_string()]);
    args.extend(["--sqlite".into(), db.display().to_string()]);
    args.extend(["--progress-interval".into(), "20ms".into()]);
    let run = SqliteRun {
        spec,
        expected,
        db,
        args,
    };
    (run, dir)
}

/// A fresh hostfile in `dir` for a cluster of 2 processes on free loopback ports.
pub fn hostfile(dir: &Path) -> PathBuf {
    let path = dir.join(format!("{}.txt", unique("hosts")));
    std::fs::write(
        &path,
        format!("127.0.0.1:{}\n127.0.0.1:{}\n", free_port(), free_port()),
    )
    .unwrap();
    path
}

/// Reads every table of `spec` but progress and the backfill log from a SQLite file: with
/// `[[inputs]]` also the other inputs' rows, dead-letter and late tables and an inner join's
/// unmatched table.
pub fn read_sqlite(path: &Path, spec: &DataflowSpec) -> Tables {
    let tables = TableSet::new(spec);
    let db =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut out = Tables::new();
    for (i, table) in tables.tables.iter().enumerate() {
        if i == TableSet::PROGRESS || i == TableSet::BACKFILLS {
            continue;
        }
        let mut statement = db
            .prepare(&format!(
                "SELECT {} FROM {}",
                table.column_list(),
                table.name
            ))
            .unwrap_or_else(|e| panic!("{}: {e}", table.name));
        let types: Vec<ColumnType> = table.columns.iter().map(|(_, t)| *t).collect();
        let rows: BTreeSet<Vec<String>> = statement
            .query_map([], |r| {
                Ok(types
                    .iter()
                    .enumerate()
                    .map(|(i, ty)| {
                        use rusqlite::types::ValueRef;
                        match (r.get_ref(i).unwrap(), ty) {
                            (ValueRef::Null, _) => "null".into(),
                            (ValueRef::Integer(v), ColumnType::Boolean) => (v != 0).to_string(),
                            (ValueRef::Integer(v), _) => v.to_string(),
                            (ValueRef::Real(v), _) => v.to_string(),
                            (ValueRef::Text(t), _) => String::from_utf8_lossy(t).into_owned(),
                            (ValueRef::Blob(b), _) => hex(b),
                        }
                    })
                    .collect())
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        out.insert(table.name.clone(), rows);
    }
    out
}
