//! `weir produce` end to end: a local randomuser-shaped HTTP server (with failures) or the
//! generator or a file -> weir produce -> tansu, read back with rdkafka (`assign()`).

mod common;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// A randomuser.me stand-in.

/// One scripted answer.
#[derive(Clone)]
enum Reply {
    /// 200 with `{"results": users, "info": ...}`.
    Users(Vec<Value>),
    /// An empty answer with this status.
    Status(u16),
    /// 429 with `Retry-After: seconds`.
    TooMany(u64),
    /// Headers and the start of a body, then nothing, ever.
    Hang,
    /// 200 with a complete HTTP body that is truncated JSON.
    Truncated(Vec<Value>),
}

struct Api {
    url: String,
    /// (when, request target) of every request.
    requests: Arc<Mutex<Vec<(Instant, String)>>>,
}

/// Serves `script` in order, then 503 forever.
fn api_server(script: Vec<Reply>) -> Api {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let script = Arc::new(Mutex::new(VecDeque::from(script)));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (script, log) = (Arc::clone(&script), Arc::clone(&log));
            std::thread::spawn(move || serve(stream, &script, &log));
        }
    });
    Api {
        url: format!("http://{addr}/api/"),
        requests,
    }
}

fn serve(
    mut stream: TcpStream,
    script: &Mutex<VecDeque<Reply>>,
    log: &Mutex<Vec<(Instant, String)>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split(' ').nth(1).unwrap_or_default().to_string();
    log.lock().unwrap().push((Instant::now(), target));
    let reply = script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Status(503));
    let respond = |stream: &mut TcpStream, status: &str, extra: &str, body: &[u8]| {
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
            body.len()
        );
        let _ = stream.write_all(body);
        let _ = stream.flush();
    };
    match reply {
        Reply::Users(users) => respond(&mut stream, "200 OK", "", &response(&users)),
        Reply::Status(code) => respond(&mut stream, &format!("{code} Oops"), "", b""),
        Reply::TooMany(seconds) => respond(
            &mut stream,
            "429 Too Many Requests",
            &format!("Retry-After: {seconds}\r\n"),
            b"",
        ),
        Reply::Truncated(users) => {
            let body = response(&users);
            respond(&mut stream, "200 OK", "", &body[..body.len() / 2]);
        }
        Reply::Hang => {
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"results\":[",
            );
            let _ = stream.flush();
            std::thread::sleep(Duration::from_secs(60));
        }
    }
}

fn response(users: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "results": users,
        "info": {"seed": "56d27f4a53bd5441", "results": users.len(), "page": 1, "version": "1.4"}
    }))
    .unwrap()
}

/// A user in the API's documented format; every third has a numeric postcode, names are
/// not ASCII.
fn raw_user(i: u32) -> Value {
    const FIRST: &[&str] = &["Åse", "Zoë", "Jørgen", "Mathéo", "Ольга", "美咲", "Ümit"];
    const LAST: &[&str] = &[
        "Søndergaard",
        "Müller",
        "García",
        "Dubois",
        "Петрова",
        "佐藤",
        "Çelik",
    ];
    let postcode = if i.is_multiple_of(3) {
        json!(10_000 + i)
    } else {
        json!(format!("N{i:04}"))
    };
    json!({
        "gender": if i.is_multiple_of(2) { "female" } else { "male" },
        "name": {"title": "Ms", "first": FIRST[i as usize % FIRST.len()], "last": LAST[i as usize % LAST.len()]},
        "location": {
            "street": {"number": 100 + i, "name": "Storgata"},
            "city": "Tromsø", "state": "Troms", "country": "Norway",
            "postcode": postcode,
            "coordinates": {"latitude": "69.6", "longitude": "18.9"},
            "timezone": {"offset": "+1:00", "description": "Brussels, Copenhagen, Madrid, Paris"}
        },
        "email": format!("user{i}@example.com"),
        "login": {
            "uuid": format!("00000000-0000-4000-8000-{i:012x}"),
            "username": format!("bluebird{i}"), "password": "pw", "salt": "s",
            "md5": "0", "sha1": "0", "sha256": "0"
        },
        "dob": {"date": "1990-01-02T03:04:05.678Z", "age": 36},
        "registered": {"date": "2010-05-06T07:08:09.010Z", "age": 16},
        "phone": format!("55-{i:04}"), "cell": "55-0000",
        "id": {"name": "FN", "value": format!("{i}")},
        "picture": {
            "large": format!("https://randomuser.me/api/portraits/women/{i}.jpg"),
            "medium": format!("https://randomuser.me/api/portraits/med/women/{i}.jpg"),
            "thumbnail": format!("https://randomuser.me/api/portraits/thumb/women/{i}.jpg")
        },
        "nat": "NO"
    })
}

fn users(range: std::ops::Range<u32>) -> Vec<Value> {
    range.map(raw_user).collect()
}

/// What the formatted record must be, written out from the rules (independently of
/// `weir::producer::format`).
fn expected(raw: &Value, created_at: &str) -> Value {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let l = &raw["location"];
    json!({
        "id": raw["login"]["uuid"],
        "first_name": raw["name"]["first"],
        "last_name": raw["name"]["last"],
        "gender": raw["gender"],
        "address": format!("{} {}, {}, {}, {}", s(&l["street"]["number"]), s(&l["street"]["name"]), s(&l["city"]), s(&l["state"]), s(&l["country"])),
        "post_code": s(&l["postcode"]),
        "email": raw["email"],
        "username": raw["login"]["username"],
        "dob": raw["dob"]["date"],
        "registered_date": raw["registered"]["date"],
        "phone": raw["phone"],
        "picture": raw["picture"]["medium"],
        "nat": raw["nat"],
        "country": l["country"],
        "created_at": created_at,
    })
}

// ---------------------------------------------------------------------------------------------
// Reading the topic back.

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Consumed {
    partition: i32,
    offset: i64,
    key: Option<String>,
    payload: String,
    timestamp: i64,
    /// A null value (Kafka tombstone); `payload` is then empty.
    null: bool,
}

/// Every message of `topic`, read with `assign()` from the beginning to the high watermarks.
fn consume_all(topic: &str) -> Vec<Consumed> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka_addr())
        .set("broker.address.family", "v4")
        .set("group.id", unique("produce_test"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let timeout = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(Some(topic), timeout).unwrap();
    let partitions: Vec<i32> = metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut ends = BTreeMap::new();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        let (_, high) = consumer.fetch_watermarks(topic, *p, timeout).unwrap();
        ends.insert(*p, high);
        list.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut positions: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while positions.iter().any(|(p, o)| *o < ends[p]) {
        assert!(Instant::now() < deadline, "reading {topic} back timed out");
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = message.unwrap();
        positions.insert(m.partition(), m.offset() + 1);
        out.push(Consumed {
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
            payload: String::from_utf8(m.payload().unwrap_or_default().to_vec()).unwrap(),
            timestamp: m.timestamp().to_millis().unwrap(),
            null: m.payload().is_none(),
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn kafka_args(topic: &str) -> Vec<String> {
    vec![
        "--brokers".into(),
        kafka_addr(),
        "--topic".into(),
        topic.into(),
        // The test broker listens on IPv4 only.
        "--kafka-config".into(),
        "broker.address.family=v4".into(),
    ]
}

fn produce_cmd(args: &[String]) -> (std::process::ExitStatus, String, String) {
    let mut cmd = weir();
    cmd.arg("produce").args(args);
    run(cmd, Duration::from_secs(120))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn summary_line(stderr: &str) -> &str {
    stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("weir produce: done;") || l.contains("nothing was produced"))
        .unwrap_or_else(|| panic!("no summary line in:\n{stderr}"))
}

/// Checks a consumed message against the raw user it came from: exact fields, key = id =
/// login.uuid, timestamp = created_at, created_at within the run.
#[track_caller]
fn assert_formatted(m: &Consumed, raw: &Value, run: (i64, i64)) {
    let payload: Value = serde_json::from_str(&m.payload).unwrap();
    let created_at = payload["created_at"].as_str().unwrap();
    assert_eq!(payload, expected(raw, created_at), "record differs");
    assert_eq!(
        m.key.as_deref(),
        raw["login"]["uuid"].as_str(),
        "key is login.uuid"
    );
    let t = weir::time::parse_rfc3339(created_at).unwrap();
    assert_eq!(m.timestamp, t, "message timestamp is created_at");
    assert!(
        created_at.len() == 24 && created_at.as_bytes()[19] == b'.' && created_at.ends_with('Z'),
        "RFC 3339 with milliseconds: {created_at}"
    );
    assert!(
        run.0 <= t && t <= run.1,
        "created_at {created_at} is the fetch time"
    );
}

fn now_ms() -> i64 {
    weir::time::now_ms() as i64
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn api_users_reach_the_topic_formatted_keyed_by_id_and_stamped_with_created_at() {
    let batches = [users(0..4), users(4..8), users(8..12)];
    let api = api_server(batches.iter().cloned().map(Reply::Users).collect());
    let topic = unique("users_api");
    let mut args = kafka_args(&topic);
    args.extend(strings(&[
        "--api",
        &api.url,
        "--batch",
        "4",
        "--count",
        "12",
        "--every",
        "0s",
        "--partitions",
        "3",
    ]));
    let started = now_ms();
    let (status, _, stderr) = produce_cmd(&args);
    let ended = now_ms();
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        summary_line(&stderr).contains("fetched 12, produced 12, retried 0, skipped 0, failed 0"),
        "{stderr}"
    );
    let requests = api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 3);
    assert!(
        requests.iter().all(|(_, t)| t == "/api/?results=4"),
        "{requests:?}"
    );

    let consumed = consume_all(&topic);
    assert_eq!(consumed.len(), 12, "{consumed:?}");
    let raw_by_id: BTreeMap<String, Value> = batches
        .iter()
        .flatten()
        .map(|u| (u["login"]["uuid"].as_str().unwrap().to_string(), u.clone()))
        .collect();
    let mut partition_of = BTreeMap::new();
    for m in &consumed {
        let raw = &raw_by_id[m.key.as_ref().unwrap()];
        assert_formatted(m, raw, (started, ended));
        partition_of.insert(m.key.clone().unwrap(), m.partition);
    }
    assert_eq!(partition_of.len(), 12, "every user once");
    // The literal record of one user with a numeric postcode and non-ASCII names.
    let zero = consumed
        .iter()
        .find(|m| m.key.as_deref() == Some("00000000-0000-4000-8000-000000000000"))
        .unwrap();
    let mut zero: Value = serde_json::from_str(&zero.payload).unwrap();
    zero.as_object_mut().unwrap().remove("created_at");
    assert_eq!(
        zero,
        json!({
            "id": "00000000-0000-4000-8000-000000000000",
            "first_name": "Åse", "last_name": "Søndergaard", "gender": "female",
            "address": "100 Storgata, Tromsø, Troms, Norway", "post_code": "10000",
            "email": "user0@example.com", "username": "bluebird0",
            "dob": "1990-01-02T03:04:05.678Z", "registered_date": "2010-05-06T07:08:09.010Z",
            "phone": "55-0000", "picture": "https://randomuser.me/api/portraits/med/women/0.jpg",
            "nat": "NO", "country": "Norway"
        })
    );

    // Replaying the same users from a file (whole responses, one per line) produces the same
    // ids again, and each lands in the partition it landed in before.
    let dir = temp_dir("produce_file");
    let file = dir.join("responses.jsonl");
    let lines: Vec<String> = batches
        .iter()
        .map(|b| String::from_utf8(response(b)).unwrap())
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let mut args = kafka_args(&topic);
    args.extend(strings(&["--from-file", file.to_str().unwrap()]));
    let (status, _, stderr) = produce_cmd(&args);
    assert!(status.success(), "{status}\n{stderr}");
    let consumed = consume_all(&topic);
    assert_eq!(consumed.len(), 24);
    for m in &consumed {
        assert_eq!(
            partition_of[m.key.as_ref().unwrap()],
            m.partition,
            "a user always lands in the same partition"
        );
    }
}

#[test]
fn failures_are_retried_or_skipped_and_nothing_is_duplicated() {
    let mut missing_email = raw_user(104);
    missing_email.as_object_mut().unwrap().remove("email");
    let b1 = users(100..103);
    let b2 = vec![raw_user(103), missing_email, raw_user(105)];
    let b3 = users(106..109);
    let api = api_server(vec![
        Reply::Status(500),
        Reply::TooMany(1),
        Reply::Hang,
        Reply::Users(b1.clone()),
        Reply::Truncated(users(200..203)),
        Reply::Users(b2.clone()),
        Reply::Users(b3.clone()),
    ]);
    let topic = unique("users_failures");
    let mut args = kafka_args(&topic);
    args.extend(strings(&[
        "--api",
        &api.url,
        "--batch",
        "3",
        "--count",
        "8",
        "--every",
        "0s",
        "--partitions",
        "2",
        "--timeout",
        "700ms",
        "--backoff",
        "50ms",
        "--retries",
        "5",
        "--breaker-after",
        "0",
    ]));
    let started = now_ms();
    let (status, _, stderr) = produce_cmd(&args);
    let ended = now_ms();
    assert!(status.success(), "{status}\n{stderr}");
    let summary = summary_line(&stderr);
    assert!(
        summary.contains("fetched 9, produced 8, retried 3, skipped 2, failed 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped a malformed response: not JSON"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipped a malformed record: missing field email"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");

    let requests = api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 7, "{requests:?}");
    let gap = |i: usize| requests[i].0 - requests[i - 1].0;
    assert!(
        gap(2) >= Duration::from_secs(1),
        "Retry-After: 1 honoured: {:?}",
        gap(2)
    );
    assert!(
        gap(3) >= Duration::from_millis(700),
        "the hung response timed out: {:?}",
        gap(3)
    );
    assert_eq!(requests[6].1, "/api/?results=3");

    let consumed = consume_all(&topic);
    let good: Vec<Value> = b1
        .iter()
        .chain([&b2[0], &b2[2]])
        .chain(b3.iter())
        .cloned()
        .collect();
    assert_eq!(consumed.len(), good.len(), "{consumed:?}");
    let keys: BTreeSet<_> = consumed.iter().map(|m| m.key.clone().unwrap()).collect();
    assert_eq!(keys.len(), consumed.len(), "no duplicates after retries");
    for raw in &good {
        let id = raw["login"]["uuid"].as_str().unwrap();
        let m = consumed
            .iter()
            .find(|m| m.key.as_deref() == Some(id))
            .unwrap_or_else(|| panic!("{id} missing"));
        assert_formatted(m, raw, (started, ended));
    }
}

#[test]
fn the_circuit_breaker_pauses_after_repeated_failures_and_says_so() {
    let api = api_server(vec![
        Reply::Status(500),
        Reply::Status(502),
        Reply::Status(503),
        Reply::Status(500),
        Reply::Users(users(300..302)),
    ]);
    let args = strings(&[
        "--api",
        &api.url,
        "--batch",
        "2",
        "--count",
        "2",
        "--dry-run",
        "--backoff",
        "10ms",
        "--retries",
        "10",
        "--breaker-after",
        "3",
        "--breaker-pause",
        "1500ms",
    ]);
    let (status, stdout, stderr) = produce_cmd(&args);
    assert!(status.success(), "{status}\n{stderr}");
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert_eq!(
        stderr
            .matches("circuit breaker open after 3 consecutive failures (last: HTTP 503")
            .count(),
        1,
        "opens after 3 failures:\n{stderr}"
    );
    assert_eq!(
        stderr
            .matches("circuit breaker still open: the trial request failed (HTTP 500")
            .count(),
        1,
        "and again when the trial request fails:\n{stderr}"
    );
    let requests = api.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 5);
    let gap = |i: usize| requests[i].0 - requests[i - 1].0;
    assert!(gap(1) < Duration::from_millis(1000) && gap(2) < Duration::from_millis(1000));
    assert!(
        gap(3) >= Duration::from_millis(1500),
        "paused: {:?}",
        gap(3)
    );
    assert!(
        gap(4) >= Duration::from_millis(1500),
        "paused again: {:?}",
        gap(4)
    );
}

#[test]
fn nothing_produced_and_unusable_settings_fail_with_one_clear_line() {
    // An API that always fails: every request is given up, nothing is produced.
    let api = api_server(vec![]);
    let (status, stdout, stderr) = produce_cmd(&strings(&[
        "--api",
        &api.url,
        "--dry-run",
        "--retries",
        "1",
        "--backoff",
        "10ms",
        "--for",
        "1s",
        "--every",
        "200ms",
        "-q",
    ]));
    assert!(!status.success(), "{stderr}");
    assert!(stdout.is_empty());
    let last = stderr.lines().last().unwrap();
    assert!(
        last.starts_with("weir produce: nothing was produced (fetched 0, produced 0")
            && last.contains("last error: HTTP 503"),
        "{stderr}"
    );

    // A status that retrying cannot fix stops at once.
    let api = api_server(vec![Reply::Status(404)]);
    let (status, _, stderr) =
        produce_cmd(&strings(&["--api", &api.url, "--dry-run", "--count", "1"]));
    assert!(!status.success());
    assert!(
        stderr.lines().last().unwrap().contains("answered HTTP 404")
            && api.requests.lock().unwrap().len() == 1,
        "{stderr}"
    );

    for (args, needle) in [
        (
            vec!["--synthetic", "--count", "1"],
            "weir produce needs --brokers",
        ),
        (
            vec!["--api", "not a url", "--dry-run"],
            "is not an http(s) URL",
        ),
        (vec!["--batch", "0", "--dry-run"], "--batch 0"),
        (
            vec!["--synthetic", "--from-file", "x", "--dry-run"],
            "cannot be used with",
        ),
        (
            vec!["--from-file", "/nonexistent/u.jsonl", "--dry-run"],
            "/nonexistent/u.jsonl",
        ),
    ] {
        let (status, _, stderr) = produce_cmd(&strings(&args));
        assert!(!status.success(), "{args:?}");
        assert!(
            stderr.lines().next().unwrap_or_default().contains(needle),
            "{args:?}:\n{stderr}"
        );
    }
    // Nobody listening.
    let port = free_port().to_string();
    let (status, _, stderr) = produce_cmd(&strings(&[
        "--synthetic",
        "--count",
        "1",
        "--brokers",
        &format!("127.0.0.1:{port}"),
        "--kafka-config",
        "broker.address.family=v4",
        "--kafka-timeout",
        "2s",
    ]));
    assert!(!status.success());
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("cannot reach Kafka"),
        "{stderr}"
    );
}

#[test]
fn a_missing_topic_is_an_error_unless_partitions_creates_it() {
    let topic = unique("users_missing");
    let mut args = kafka_args(&topic);
    args.extend(strings(&["--synthetic", "--count", "5"]));
    let (status, _, stderr) = produce_cmd(&args);
    assert!(!status.success());
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains(&format!("topic {topic} does not exist")),
        "{stderr}"
    );
    args.extend(strings(&["--partitions", "2"]));
    let (status, _, stderr) = produce_cmd(&args);
    assert!(status.success(), "{stderr}");
    let consumed = consume_all(&topic);
    assert_eq!(consumed.len(), 5);
    assert!(
        consumed
            .iter()
            .all(|m| m.partition == 0 || m.partition == 1),
        "created with 2 partitions: {consumed:?}"
    );
}

#[test]
fn a_message_kafka_refuses_is_counted_as_failed_and_the_rest_is_produced() {
    let topic = unique("users_refused");
    let dir = temp_dir("produce_refused");
    let file = dir.join("users.jsonl");
    let mut giant = raw_user(401);
    giant["location"]["street"]["name"] = json!("x".repeat(5000));
    let lines = [raw_user(400), giant, raw_user(402)].map(|u| u.to_string());
    std::fs::write(&file, lines.join("\n")).unwrap();
    let mut args = kafka_args(&topic);
    args.extend(strings(&[
        "--from-file",
        file.to_str().unwrap(),
        "--partitions",
        "1",
        // The client refuses messages over 2000 bytes.
        "--kafka-config",
        "message.max.bytes=2000",
    ]));
    let (status, _, stderr) = produce_cmd(&args);
    assert!(status.success(), "{stderr}");
    assert!(
        summary_line(&stderr).contains("fetched 3, produced 2, retried 0, skipped 0, failed 1 (failed 0 requests and 1 delivery)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("cannot produce the message keyed 00000000-0000-4000-8000-000000000191"),
        "{stderr}"
    );
    let keys: BTreeSet<_> = consume_all(&topic)
        .into_iter()
        .filter_map(|m| m.key)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "00000000-0000-4000-8000-000000000190".to_string(),
            "00000000-0000-4000-8000-000000000192".to_string()
        ])
    );
}

#[test]
fn synthetic_users_are_the_generators_deterministic_for_the_seed() {
    let epoch = "2026-11-21T10:00:00Z";
    let count = 3000;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let topic = unique("users_synthetic");
        let mut args = kafka_args(&topic);
        args.extend(strings(&[
            "--synthetic",
            "--seed",
            "9",
            "--count",
            &count.to_string(),
            "--epoch",
            epoch,
            "--partitions",
            "4",
        ]));
        let (status, _, stderr) = produce_cmd(&args);
        assert!(status.success(), "{stderr}");
        assert!(
            summary_line(&stderr)
                .contains("fetched 3000, produced 3000, retried 0, skipped 0, failed 0"),
            "{stderr}"
        );
        let mut consumed = consume_all(&topic);
        consumed.sort();
        runs.push(consumed);
    }
    assert_eq!(
        runs[0], runs[1],
        "the same seed gives the same messages, partitions and keys"
    );

    // Exactly the built-in generator's users for that seed: no duplicates, late or
    // malformed ones unless asked.
    let mut g = generator(9, 4, count, 0.0);
    g.duplicates_per_mille = 0;
    g.late_per_mille = 0;
    g.malformed_per_mille = 0;
    let expected: BTreeSet<(String, i64)> = generated(&g)
        .into_values()
        .flatten()
        .map(|m| (String::from_utf8(m.payload).unwrap(), m.timestamp.unwrap()))
        .collect();
    let got: BTreeSet<(String, i64)> = runs[0]
        .iter()
        .map(|m| (m.payload.clone(), m.timestamp))
        .collect();
    assert_eq!(got.len(), runs[0].len(), "no duplicates");
    assert_eq!(got, expected);
    for m in &runs[0] {
        let v: Value = serde_json::from_str(&m.payload).unwrap();
        assert_eq!(m.key.as_deref(), v["id"].as_str(), "keyed by id");
        assert_eq!(
            Some(m.timestamp),
            weir::time::parse_rfc3339(v["created_at"].as_str().unwrap())
        );
    }

    // --dry-run prints them, in the generator's order, with no broker.
    let (status, stdout, stderr) = produce_cmd(&strings(&[
        "--synthetic",
        "--seed",
        "9",
        "--count",
        "20",
        "--epoch",
        epoch,
        "--dry-run",
    ]));
    assert!(status.success(), "{stderr}");
    let mut one = generator(9, 1, 20, 0.0);
    one.duplicates_per_mille = 0;
    one.late_per_mille = 0;
    one.malformed_per_mille = 0;
    let in_order: Vec<String> = generated(&one)[&0]
        .iter()
        .map(|m| String::from_utf8(m.payload.clone()).unwrap())
        .collect();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), in_order);
}

#[test]
fn dry_run_replays_a_file_of_responses_raw_users_and_formatted_users() {
    let dir = temp_dir("produce_dry");
    let file = dir.join("mixed.jsonl");
    let mut no_uuid = raw_user(7);
    no_uuid["login"].as_object_mut().unwrap().remove("uuid");
    let formatted = expected(&raw_user(9), "2026-11-21T10:00:00.000Z");
    let lines = [
        String::from_utf8(response(&users(0..2))).unwrap(),
        raw_user(5).to_string(),
        formatted.to_string(),
        "{\"results\": [".to_string(),
        no_uuid.to_string(),
        String::new(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let started = now_ms();
    let (status, stdout, stderr) = produce_cmd(&strings(&[
        "--from-file",
        file.to_str().unwrap(),
        "--dry-run",
    ]));
    let ended = now_ms();
    assert!(status.success(), "{stderr}");
    let out: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(out.len(), 4, "{stdout}");
    for (got, raw) in out.iter().zip([raw_user(0), raw_user(1), raw_user(5)]) {
        let created_at = got["created_at"].as_str().unwrap();
        assert_eq!(got, &expected(&raw, created_at));
        let t = weir::time::parse_rfc3339(created_at).unwrap();
        assert!(started <= t && t <= ended);
    }
    assert_eq!(out[3], formatted, "a formatted user is replayed as it is");
    assert!(
        summary_line(&stderr).contains("fetched 6, produced 4, retried 0, skipped 2, failed 0"),
        "{stderr}"
    );
    assert!(stderr.contains("missing field login.uuid"), "{stderr}");
}

#[test]
fn the_pipeline_reads_what_produce_wrote_and_equals_the_oracle() {
    // The tutorial end to end without the DAG: weir produce -> Kafka -> weir -> tables. With
    // duplicates and late users asked for, keys (one partition per user) and timestamps
    // matter downstream. The oracle folds the topic as it is, partition by partition.
    let topic = unique("users_e2e");
    let mut args = kafka_args(&topic);
    args.extend(strings(&[
        "--synthetic",
        "--seed",
        "5",
        "--count",
        "3000",
        "--epoch",
        "2026-11-21T10:00:00Z",
        "--duplicates",
        "30",
        "--late",
        "20",
        "--partitions",
        "3",
    ]));
    let (status, _, stderr) = produce_cmd(&args);
    assert!(status.success(), "{stderr}");
    let consumed = consume_all(&topic);
    assert_eq!(consumed.len(), 3000);
    let mut partition_of = BTreeMap::new();
    for m in &consumed {
        let key = m.key.clone().unwrap();
        let first = *partition_of.entry(key).or_insert(m.partition);
        assert_eq!(
            first, m.partition,
            "a user sent twice lands in one partition"
        );
    }
    let mut data = Dataset::new();
    for m in &consumed {
        data.entry(m.partition).or_default().push(Msg::new(
            m.offset,
            m.payload.clone().into_bytes(),
            Some(m.timestamp),
        ));
    }
    for messages in data.values_mut() {
        messages.sort_by_key(|m| m.offset);
    }
    let spec = spec("dataflows/users_created.toml");
    let expected = oracle(&spec, &data);
    let rows = &expected[&spec.tables.rows];
    assert!(
        rows.len() < 3000,
        "some users were sent twice: {}",
        rows.len()
    );
    assert!(
        !expected[&spec.tables.late].is_empty(),
        "some users are late"
    );

    let db = temp_dir("produce_e2e").join("weir.db");
    let mut cmd = weir();
    cmd.args([
        "--brokers",
        &kafka_addr(),
        "--topic",
        &topic,
        "--until",
        "end",
    ])
    .args(["--kafka-config", "broker.address.family=v4", "-w", "2"])
    .arg("--sqlite")
    .arg(&db);
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert!(status.success(), "{stderr}");
    assert_tables_eq(
        &expected,
        &read_sqlite(&db, &spec),
        "produce -> kafka -> weir",
    );
}

/// An event as documented (README "Joins"): nothing more, nothing less.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Event {
    event_id: uuid::Uuid,
    user_id: uuid::Uuid,
    #[serde(rename = "type")]
    kind: String,
    amount: Option<f64>,
    created_at: String,
}

#[test]
fn synthetic_events_and_tombstones_reach_kafka_keyed_with_null_values() {
    // The users (with tombstones) and their events, as the joined dataflow reads them. The
    // topics have names of their own, so --synthetic-topic picks the events' generator.
    let count = 3000;
    let flags = [
        "--synthetic",
        "--seed",
        "12",
        "--count",
        "3000",
        "--epoch",
        "2026-11-21T10:00:00Z",
        "--tombstones-per-mille",
        "30",
        "--partitions",
        "3",
    ];
    let users_topic = unique("users_tombstones");
    let events_topic = unique("user_events");
    let mut consumed = Vec::new();
    for (topic, extra) in [
        (&users_topic, &[][..]),
        (&events_topic, &["--synthetic-topic", "user_events"][..]),
    ] {
        let mut args = kafka_args(topic);
        args.extend(strings(&flags));
        args.extend(strings(extra));
        let (status, _, stderr) = produce_cmd(&args);
        assert!(status.success(), "{stderr}");
        assert!(
            summary_line(&stderr)
                .contains("fetched 3000, produced 3000, retried 0, skipped 0, failed 0"),
            "{stderr}"
        );
        consumed.push(consume_all(topic));
    }
    let (users, events) = (&consumed[0], &consumed[1]);

    // Exactly the generator's messages (one generator partition: its global order), each
    // with its key, its value or a null one, and its timestamp.
    let mut g = generator(12, 1, count, 0.0);
    g.duplicates_per_mille = 0;
    g.late_per_mille = 0;
    g.malformed_per_mille = 0;
    g.tombstones_per_mille = 30;
    type Made = (Option<String>, Option<String>, i64);
    let as_made = |g: &weir::source::generator::GeneratorConfig| {
        let mut made: Vec<Made> = generated(g)[&0]
            .iter()
            .map(|m| {
                (
                    m.key.clone().map(|k| String::from_utf8(k).unwrap()),
                    (!m.tombstone).then(|| String::from_utf8(m.payload.clone()).unwrap()),
                    m.timestamp.unwrap(),
                )
            })
            .collect();
        made.sort();
        made
    };
    let as_read = |c: &[Consumed]| {
        let mut read: Vec<Made> = c
            .iter()
            .map(|m| {
                (
                    m.key.clone(),
                    (!m.null).then(|| m.payload.clone()),
                    m.timestamp,
                )
            })
            .collect();
        read.sort();
        read
    };
    assert_eq!(as_read(users), as_made(&g), "the users topic");
    let events_g = g.for_topic("user_events").unwrap();
    assert_eq!(as_read(events), as_made(&events_g), "the events topic");

    // Users: keyed by id, stamped with created_at; tombstones are null values keyed by the id
    // of a user earlier in the same partition.
    let mut ids = BTreeSet::new();
    let mut tombstones = 0;
    for m in users {
        let key = m.key.as_deref().expect("every users message has a key");
        if m.null {
            tombstones += 1;
            assert!(m.payload.is_empty());
            let earlier = users.iter().any(|u| {
                u.partition == m.partition
                    && u.offset < m.offset
                    && !u.null
                    && u.key.as_deref() == Some(key)
            });
            assert!(
                earlier,
                "{m:?}: a tombstone of an earlier user of its partition"
            );
        } else {
            let v: Value = serde_json::from_str(&m.payload).unwrap();
            assert_eq!(v["id"].as_str(), Some(key), "keyed by id");
            assert_eq!(
                Some(m.timestamp),
                weir::time::parse_rfc3339(v["created_at"].as_str().unwrap())
            );
            ids.insert(key.to_string());
        }
    }
    assert!(
        (count as usize * 15 / 1000..count as usize * 45 / 1000).contains(&tombstones),
        "{tombstones} tombstones for 30 per 1,000"
    );

    // Events: the documented fields, keyed by event_id, stamped with created_at, about the
    // users of the users topic (a few about nobody).
    let mut kinds = BTreeMap::new();
    let mut known = 0;
    for m in events {
        assert!(!m.null, "events have no tombstones");
        let event: Event =
            serde_json::from_str(&m.payload).unwrap_or_else(|e| panic!("{e}: {}", m.payload));
        assert_eq!(m.key, Some(event.event_id.to_string()), "keyed by event_id");
        assert_eq!(
            Some(m.timestamp),
            weir::time::parse_rfc3339(&event.created_at),
            "stamped with created_at"
        );
        match event.amount {
            Some(amount) => {
                assert_eq!(event.kind, "purchase", "{}", m.payload);
                assert!(
                    m.payload.contains(&format!("\"amount\":{amount:.2},")),
                    "two decimals: {}",
                    m.payload
                );
            }
            None => assert_ne!(event.kind, "purchase", "{}", m.payload),
        }
        *kinds.entry(event.kind).or_insert(0) += 1;
        known += ids.contains(&event.user_id.to_string()) as usize;
    }
    assert_eq!(
        kinds.keys().collect::<Vec<_>>(),
        ["login", "page_view", "purchase"]
    );
    assert!(
        known * 10 > events.len() * 9 && known < events.len(),
        "{known} of {} events are about a user of the users topic",
        events.len()
    );

    // --topic user_events picks the events by itself; --dry-run prints a tombstone as `null`.
    let (status, stdout, stderr) = produce_cmd(&strings(&[
        "--synthetic",
        "--topic",
        "user_events",
        "--count",
        "5",
        "--dry-run",
    ]));
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 5, "{stdout}");
    for line in stdout.lines() {
        serde_json::from_str::<Event>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
    // (Few enough lines for the pipe: `run` reads stdout once the process has ended.)
    let (status, stdout, stderr) = produce_cmd(&strings(&[
        "--synthetic",
        "--count",
        "100",
        "--tombstones-per-mille",
        "200",
        "--dry-run",
    ]));
    assert!(status.success(), "{stderr}");
    let nulls = stdout.lines().filter(|l| *l == "null").count();
    assert!(
        nulls > 5 && stdout.lines().count() == 100,
        "{nulls} null lines"
    );
}
