//! Security against the test servers: Kafka SASL SCRAM logins (tansu with
//! `--authentication`), SASL over TLS and client certificates (tansu behind testbed's
//! tls-proxy), Cassandra PasswordAuthenticator and TLS (testbed's cql-server); flag
//! combinations that cannot work; and no secret printed anywhere (logs at debug, the status
//! page, /metrics).
//!
//! The servers, users and certificates come from `scripts/test-servers.sh`; a test that needs
//! one fails when its variable is missing.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use weir::source::generator::GeneratorConfig;

/// A variable the test servers export.
fn server_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite with `bash scripts/test.sh` (or `source scripts/test-servers.sh`), which starts the secured test servers")
    })
}

/// A SCRAM user both authenticated brokers know.
struct KafkaUser {
    name: String,
    password: String,
    mechanism: String,
}

fn kafka_user(mechanism: &str) -> KafkaUser {
    server_env("WEIR_TEST_KAFKA_USERS")
        .split_whitespace()
        .filter_map(|entry| {
            let mut parts = entry.splitn(3, ':');
            Some(KafkaUser {
                name: parts.next()?.into(),
                password: parts.next()?.into(),
                mechanism: parts.next()?.into(),
            })
        })
        .find(|u| u.mechanism == mechanism)
        .unwrap_or_else(|| panic!("WEIR_TEST_KAFKA_USERS has no {mechanism} user"))
}

fn tls_file(name: &str) -> PathBuf {
    Path::new(&server_env("WEIR_TEST_TLS_DIR")).join(name)
}

/// The flags naming a SASL user (the password is passed by each test its own way).
fn sasl_flags(user: &KafkaUser) -> Vec<String> {
    strings(&[
        "--kafka-sasl-mechanism",
        &user.mechanism,
        "--kafka-sasl-username",
        &user.name,
        // The test brokers listen on IPv4 only.
        "--kafka-config",
        "broker.address.family=v4",
    ])
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Synthetic users with duplicates, late and malformed ones, in one partition: the topic
/// then holds exactly the generator's messages in order, so the oracle needs no read-back.
fn users(seed: u64, count: u64) -> GeneratorConfig {
    let mut g = generator(seed, 1, count, 0.0);
    g.duplicates_per_mille = 30;
    g.late_per_mille = 20;
    g.malformed_per_mille = 10;
    g
}

/// `weir produce --synthetic` of `g` into a new one-partition topic.
fn produce_users(brokers: &str, topic: &str, g: &GeneratorConfig, flags: &[String]) -> Command {
    let mut cmd = weir();
    cmd.arg("produce")
        .args(["--brokers", brokers, "--topic", topic, "--partitions", "1"])
        .args(["--synthetic", "--seed", &g.seed.to_string()])
        .args(["--count", &g.count.unwrap_or(0).to_string()])
        .args(["--epoch", &weir::time::rfc3339(g.epoch_ms)])
        .args(["--duplicates", &g.duplicates_per_mille.to_string()])
        .args(["--late", &g.late_per_mille.to_string()])
        .args(["--malformed", &g.malformed_per_mille.to_string()])
        .args(["--kafka-timeout", "10s"])
        .args(flags);
    cmd
}

#[track_caller]
fn succeeds(cmd: Command, what: &str) -> String {
    let (status, _, stderr) = run(cmd, Duration::from_secs(120));
    assert!(status.success(), "{what}: {status}\n{stderr}");
    stderr
}

/// Runs the pipeline over `topic` to its end into a new SQLite file and compares every
/// table with the oracle of `g`.
#[track_caller]
fn pipeline_equals_the_oracle(brokers: &str, topic: &str, g: &GeneratorConfig, mut cmd: Command) {
    let db = temp_dir("security").join("weir.db");
    cmd.args([
        "--brokers",
        brokers,
        "--topic",
        topic,
        "--until",
        "end",
        "-w",
        "2",
    ])
    .arg("--sqlite")
    .arg(&db);
    succeeds(cmd, &format!("pipeline over {topic}"));
    let spec = spec("dataflows/users_created.toml");
    let expected = oracle(&spec, &generated(g));
    assert_interesting(&expected, &spec);
    assert_tables_eq(&expected, &read_sqlite(&db, &spec), topic);
}

/// A failed run: non-zero exit within `limit`, one line on stderr containing every needle,
/// and none of the secrets anywhere in the output.
#[track_caller]
fn fails_with_one_line(cmd: Command, limit: Duration, needles: &[&str], secrets: &[&str]) {
    let started = Instant::now();
    let (status, stdout, stderr) = run(cmd, limit + Duration::from_secs(30));
    let elapsed = started.elapsed();
    assert!(!status.success(), "should fail:\n{stderr}");
    assert!(
        elapsed < limit,
        "took {elapsed:?}, more than {limit:?}:\n{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    for needle in needles {
        assert!(
            lines[0].contains(needle),
            "expected {needle:?} in:\n{stderr}"
        );
    }
    for secret in secrets {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret was printed:\n{stderr}"
        );
    }
}

/// `weir produce --synthetic` of a few users to `topic`, giving up on Kafka after 3 s.
fn produce_a_few(brokers: &str, topic: &str) -> Command {
    let mut cmd = weir();
    cmd.args(["produce", "--brokers", brokers, "--topic", topic])
        .args(["--synthetic", "--count", "5", "--kafka-timeout", "3s"]);
    cmd
}

/// The pipeline to the end of its topic, giving up on Kafka after 3 s.
fn run_to_the_end(brokers: &str) -> Command {
    let mut cmd = weir();
    cmd.args(["--brokers", brokers, "--until", "end"])
        .args(["--connect-timeout", "3s"]);
    cmd
}

/// What a failure to connect to Kafka may take: the 3 s timeout and process start-up.
const KAFKA_FAILS_WITHIN: Duration = Duration::from_secs(3 + 5);

#[test]
fn scram_logins_from_env_file_and_properties_produce_and_the_pipeline_equals_the_oracle() {
    let brokers = server_env("WEIR_TEST_KAFKA_SASL");
    let (u256, u512) = (kafka_user("SCRAM-SHA-256"), kafka_user("SCRAM-SHA-512"));
    let g = users(71, 2000);
    let topic = unique("users_sasl");

    // SCRAM-SHA-512, the password from the environment; --partitions creates the topic
    // through the admin client, logged in the same way.
    let mut produce = produce_users(&brokers, &topic, &g, &sasl_flags(&u512));
    produce
        .args(["--kafka-security-protocol", "sasl_plaintext"])
        .env("WEIR_KAFKA_SASL_PASSWORD", &u512.password);
    let stderr = succeeds(produce, "produce with SCRAM-SHA-512");
    assert!(stderr.contains("produced 2000,"), "{stderr}");

    // SCRAM-SHA-256, the password from a file (with the newline editors add).
    let dir = temp_dir("sasl_files");
    let password_file = dir.join("kafka-password");
    std::fs::write(&password_file, format!("{}\n", u256.password)).unwrap();
    let mut run = weir();
    run.args(sasl_flags(&u256))
        .args(["--kafka-security-protocol", "sasl_plaintext"])
        .arg("--kafka-sasl-password-file")
        .arg(&password_file);
    pipeline_equals_the_oracle(&brokers, &topic, &g, run);

    // Everything from a librdkafka properties file (Confluent Cloud style).
    let properties = dir.join("client.properties");
    std::fs::write(
        &properties,
        format!(
            "# written by the test\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanisms=SCRAM-SHA-512\nsasl.username={}\nsasl.password={}\nbroker.address.family=v4\n",
            u512.name, u512.password
        ),
    )
    .unwrap();
    let mut run = weir();
    run.arg("--kafka-config-file").arg(&properties);
    pipeline_equals_the_oracle(&brokers, &topic, &g, run);
}

#[test]
fn a_wrong_kafka_password_fails_with_one_clear_line_within_the_connect_timeout() {
    let brokers = server_env("WEIR_TEST_KAFKA_SASL");
    let user = kafka_user("SCRAM-SHA-256");
    let wrong = "not-the-password-0451";
    let secrets = [wrong, user.password.as_str()];
    let needles = [
        "SASL authentication error",
        "check --kafka-sasl-username, the password",
    ];
    let limit = KAFKA_FAILS_WITHIN;

    let mut produce = produce_a_few(&brokers, &unique("users_wrong"));
    produce
        .args(["--partitions", "1"])
        .args(sasl_flags(&user))
        .args(["--kafka-security-protocol", "sasl_plaintext"])
        .env("WEIR_KAFKA_SASL_PASSWORD", wrong);
    fails_with_one_line(produce, limit, &needles, &secrets);

    let mut run = run_to_the_end(&brokers);
    run.args(sasl_flags(&user))
        .args(["--kafka-security-protocol", "sasl_plaintext"])
        .args(["--kafka-sasl-password", wrong]);
    fails_with_one_line(run, limit, &needles, &secrets);

    // No login at all against a broker that requires one.
    let mut run = run_to_the_end(&brokers);
    run.args(["--kafka-config", "broker.address.family=v4"]);
    fails_with_one_line(run, limit, &["cannot reach the brokers"], &[]);
}

#[test]
fn sasl_over_tls_works_with_the_ca_and_fails_clearly_without_it() {
    let brokers = server_env("WEIR_TEST_KAFKA_TLS");
    let user = kafka_user("SCRAM-SHA-256");
    let ca = tls_file("ca.pem");
    let g = users(72, 1500);
    let topic = unique("users_tls");

    // No --kafka-security-protocol: SASL with a CA means sasl_ssl.
    let mut flags = sasl_flags(&user);
    flags.extend(["--kafka-tls-ca".into(), ca.display().to_string()]);
    let mut produce = produce_users(&brokers, &topic, &g, &flags);
    produce.env("WEIR_KAFKA_SASL_PASSWORD", &user.password);
    succeeds(produce, "produce over sasl_ssl");
    let mut run = weir();
    run.args(&flags)
        .env("WEIR_KAFKA_SASL_PASSWORD", &user.password);
    pipeline_equals_the_oracle(&brokers, &topic, &g, run);

    // Without the CA the system's CA bundle is used, which does not know the test CA.
    let mut produce = produce_a_few(&brokers, &topic);
    produce
        .args(sasl_flags(&user))
        .env("WEIR_KAFKA_SASL_PASSWORD", &user.password);
    fails_with_one_line(
        produce,
        KAFKA_FAILS_WITHIN,
        &["certificate verify failed", "check --kafka-tls-ca"],
        &[&user.password],
    );
}

#[test]
fn a_client_certificate_is_presented_and_checked() {
    let brokers = server_env("WEIR_TEST_KAFKA_TLS");
    let user = kafka_user("SCRAM-SHA-512");
    let ca = tls_file("ca.pem").display().to_string();
    let topic = unique("users_mtls");
    let produce = |cert: &Path, key: &Path, create: bool| {
        let mut cmd = produce_a_few(&brokers, &topic);
        cmd.args(["--kafka-tls-ca", &ca])
            .args(sasl_flags(&user))
            .arg("--kafka-tls-cert")
            .arg(cert)
            .arg("--kafka-tls-key")
            .arg(key)
            .env("WEIR_KAFKA_SASL_PASSWORD", &user.password);
        if create {
            cmd.args(["--partitions", "1"]);
        }
        cmd
    };
    succeeds(
        produce(&tls_file("client.pem"), &tls_file("client.key"), true),
        "a client certificate of the test CA",
    );

    // A certificate of another CA: the proxy checks it and refuses the handshake. (The other
    // CA has the test CA's name: OpenSSL sends a client certificate only when its issuer is
    // among the CA names the server asks for, and a client without one is let in.)
    let other = temp_dir("other_ca");
    let (cert, key) = other_ca_client_certificate(&other);
    fails_with_one_line(
        produce(&cert, &key, false),
        KAFKA_FAILS_WITHIN,
        &["the client said:", "alert"],
        &[&user.password],
    );
}

/// A client certificate and key signed by a CA the test servers do not know, named like the
/// test CA (testbed's test-certs).
fn other_ca_client_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name
        .push(DnType::CommonName, "weir test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "weir-test-client");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (cert_path, key_path) = (dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

/// The secure CQL server, its login, and a scylla session builder that logs in over TLS.
struct SecureCassandra {
    addr: String,
    user: String,
    password: String,
    ca: PathBuf,
}

fn secure_cassandra() -> SecureCassandra {
    SecureCassandra {
        addr: server_env("WEIR_TEST_CASSANDRA_SECURE"),
        user: server_env("WEIR_TEST_CASSANDRA_USER"),
        password: server_env("WEIR_TEST_CASSANDRA_PASSWORD"),
        ca: PathBuf::from(server_env("WEIR_TEST_TLS_CA")),
    }
}

impl SecureCassandra {
    /// Flags for the sink (the password is passed by each test its own way).
    fn flags(&self, keyspace: &str) -> Vec<String> {
        strings(&[
            "--cassandra",
            &self.addr,
            "--keyspace",
            keyspace,
            "--cassandra-test-server",
            "--cassandra-user",
            &self.user,
            "--cassandra-tls-ca",
            self.ca.to_str().unwrap(),
        ])
    }

    fn read(&self, keyspace: &str, spec: &weir::spec::DataflowSpec) -> Tables {
        let tls = weir::sink::cassandra::CassandraTls {
            ca: Some(self.ca.clone()),
        };
        let builder = cql_builder(&self.addr)
            .user(&self.user, &self.password)
            .tls_context(Some(std::sync::Arc::new(tls.client_config().unwrap())));
        read_cassandra_with(builder, keyspace, spec)
    }
}

#[test]
fn cassandra_login_over_tls_writes_the_oracle_tables() {
    let cassandra = secure_cassandra();
    let spec = spec("dataflows/users_created.toml");
    let g = generator(73, 2, 2000, 0.0);
    let expected = oracle(&spec, &generated(&g));
    assert_interesting(&expected, &spec);

    // The password from WEIR_CASSANDRA_PASSWORD.
    let keyspace = unique("ks_secure");
    let mut cmd = weir();
    cmd.args(cassandra.flags(&keyspace))
        .args(generator_args(&g))
        .args(["-w", "2"])
        .env("WEIR_CASSANDRA_PASSWORD", &cassandra.password);
    succeeds(cmd, "cassandra, password from the environment");
    assert_tables_eq(&expected, &cassandra.read(&keyspace, &spec), "env password");

    // The password from --cassandra-password-file.
    let keyspace = unique("ks_secure");
    let file = temp_dir("cassandra_password").join("password");
    std::fs::write(&file, format!("{}\n", cassandra.password)).unwrap();
    let mut cmd = weir();
    cmd.args(cassandra.flags(&keyspace))
        .args(generator_args(&g))
        .arg("--cassandra-password-file")
        .arg(&file);
    succeeds(cmd, "cassandra, password from a file");
    assert_tables_eq(
        &expected,
        &cassandra.read(&keyspace, &spec),
        "file password",
    );
}

#[test]
fn a_wrong_cassandra_password_or_an_unknown_ca_fails_with_one_clear_line() {
    let cassandra = secure_cassandra();
    let wrong = "not-the-password-0452";
    let limit = Duration::from_secs(3 * 2 + 5);
    let g = generator(74, 2, 100, 0.0);
    let secure = |keyspace: &str| {
        let mut cmd = weir();
        cmd.args(cassandra.flags(keyspace))
            .args(generator_args(&g))
            .args(["--connect-timeout", "3s"]);
        cmd
    };

    let mut cmd = secure("ks_wrong");
    cmd.env("WEIR_CASSANDRA_PASSWORD", wrong);
    fails_with_one_line(
        cmd,
        limit,
        &[
            "Provided username and/or password are incorrect",
            "check --cassandra-user and the password",
        ],
        &[wrong, &cassandra.password],
    );

    // TLS with the system's CA roots only: the test CA is unknown.
    let mut cmd = weir();
    cmd.args(["--cassandra", &cassandra.addr, "--cassandra-test-server"])
        .args(["--cassandra-user", &cassandra.user, "--cassandra-tls"])
        .args(generator_args(&g))
        .args(["--connect-timeout", "3s"])
        .env("WEIR_CASSANDRA_PASSWORD", &cassandra.password);
    fails_with_one_line(
        cmd,
        limit,
        &["UnknownIssuer", "check --cassandra-tls-ca"],
        &[&cassandra.password],
    );
}

#[test]
fn flag_combinations_that_cannot_work_fail_with_one_line_and_exit_2() {
    let dir = temp_dir("security_flags");
    let empty = dir.join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let bad_properties = dir.join("bad.properties");
    std::fs::write(&bad_properties, "acks=all\nsasl.password hunter2\n").unwrap();
    let secret = "hunter2";
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--kafka-sasl-mechanism", "SCRAM-SHA-256"],
            "SASL mechanism SCRAM-SHA-256 needs --kafka-sasl-username",
        ),
        (
            vec!["--kafka-sasl-password", secret],
            "a Kafka SASL password needs --kafka-sasl-username",
        ),
        (
            vec![
                "--kafka-sasl-username",
                "alice",
                "--kafka-sasl-password-file",
                "/nonexistent/pw",
            ],
            "--kafka-sasl-password-file /nonexistent/pw: No such file",
        ),
        (
            vec![
                "--kafka-sasl-username",
                "alice",
                "--kafka-sasl-password-file",
                empty.to_str().unwrap(),
            ],
            "is empty",
        ),
        (
            vec![
                "--kafka-sasl-password",
                secret,
                "--kafka-sasl-password-file",
                empty.to_str().unwrap(),
            ],
            "set the Kafka SASL password",
        ),
        (
            vec!["--kafka-tls-cert", "/nonexistent/client.pem"],
            "--kafka-tls-cert /nonexistent/client.pem: No such file",
        ),
        (
            vec!["--kafka-tls-cert", empty.to_str().unwrap()],
            "a Kafka client certificate needs both --kafka-tls-cert",
        ),
        (
            vec![
                "--kafka-security-protocol",
                "plaintext",
                "--kafka-tls-ca",
                empty.to_str().unwrap(),
            ],
            "Kafka TLS files (ssl.ca.location) are given but the security protocol is plaintext",
        ),
        (
            vec!["--kafka-config-file", bad_properties.to_str().unwrap()],
            "bad.properties:2: expected key=value",
        ),
        (
            vec!["--kafka-config", "sasl.password:hunter2"],
            "--kafka-config: item 1 of 1 is not key=value",
        ),
    ];
    for (flags, needle) in cases {
        for produce in [false, true] {
            let mut cmd = weir();
            if produce {
                cmd.args(["produce", "--synthetic"]);
            }
            cmd.args(["--brokers", "127.0.0.1:9"]).args(&flags);
            let (status, stdout, stderr) = run(cmd, Duration::from_secs(30));
            assert_eq!(status.code(), Some(2), "{flags:?}: {stderr}");
            assert_eq!(stderr.lines().count(), 1, "{flags:?}: one line:\n{stderr}");
            assert!(
                stderr.contains(needle),
                "{flags:?}: expected {needle:?}:\n{stderr}"
            );
            assert!(
                !stderr.contains(secret) && !stdout.contains(secret),
                "{stderr}"
            );
        }
    }

    // Credentials in host lists are refused without being echoed.
    for flags in [
        vec!["--brokers", "alice:hunter2@127.0.0.1:9"],
        vec!["--cassandra", "alice:hunter2@127.0.0.1:9"],
    ] {
        let mut cmd = weir();
        cmd.args(&flags);
        let (status, _, stderr) = run(cmd, Duration::from_secs(30));
        assert_eq!(status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("contains '@'") && !stderr.contains(secret),
            "{stderr}"
        );
    }

    // --help shows the variables, never their values.
    let mut cmd = weir();
    cmd.arg("--help")
        .env("WEIR_KAFKA_SASL_PASSWORD", secret)
        .env("WEIR_CASSANDRA_PASSWORD", secret)
        .env("WEIR_KAFKA_CONFIG", format!("sasl.password={secret}"));
    let (status, stdout, _) = run(cmd, Duration::from_secs(30));
    assert!(status.success());
    assert!(stdout.contains("WEIR_KAFKA_SASL_PASSWORD") && !stdout.contains(secret));
}

/// Collects everything a pipe yields, on its own thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// GET `path` from the status server; `None` while it does not answer.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.starts_with("HTTP/1.").then_some(response)
}

#[test]
fn secrets_appear_nowhere_in_logs_the_status_page_or_metrics() {
    let brokers = server_env("WEIR_TEST_KAFKA_SASL");
    let (u256, u512) = (kafka_user("SCRAM-SHA-256"), kafka_user("SCRAM-SHA-512"));
    let cassandra = secure_cassandra();
    let decoy = "decoy-key-password-0453";
    let g = users(75, 500);
    let topic = unique("users_redaction");
    let mut produce = produce_users(&brokers, &topic, &g, &sasl_flags(&u512));
    produce
        .args(["--kafka-security-protocol", "sasl_plaintext"])
        .env("WEIR_KAFKA_SASL_PASSWORD", &u512.password);
    succeeds(produce, "produce");

    // Secrets by every route: a flag, environment variables, a properties file.
    let properties = temp_dir("redaction").join("client.properties");
    // librdkafka's own debug output too, where the login and the settings are.
    std::fs::write(
        &properties,
        format!("ssl.key.password={decoy}\ndebug=security,conf,broker\n"),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let keyspace = unique("ks_redaction");
    let mut cmd = weir();
    cmd.args(["--brokers", &brokers, "--topic", &topic])
        .args(sasl_flags(&u256))
        .args(["--kafka-security-protocol", "sasl_plaintext"])
        .args(["--kafka-sasl-password", &u256.password])
        .arg("--kafka-config-file")
        .arg(&properties)
        .args(cassandra.flags(&keyspace))
        .args(["--log-format", "json", "--metrics-addr", &addr])
        .env("WEIR_LOG", "debug,weir=debug")
        .env("WEIR_CASSANDRA_PASSWORD", &cassandra.password)
        .env_remove("WEIR_QUIET")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Read the output while it runs: debug logs would fill a pipe and block the process.
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());

    // Wait until every record was read, so that the page has partitions, windows and rejects.
    let end = format!(" {}", generated(&g)[&0].len());
    let deadline = Instant::now() + Duration::from_secs(90);
    let (status_json, metrics) = loop {
        assert!(
            Instant::now() < deadline,
            "the metrics never showed the whole topic read"
        );
        if let Some(status) = child.try_wait().unwrap() {
            panic!("weir stopped: {status}\n{}", stderr.join().unwrap());
        }
        std::thread::sleep(Duration::from_millis(200));
        if let (Some(status), Some(metrics)) =
            (http_get(&addr, "/api/status"), http_get(&addr, "/metrics"))
        {
            let at_end = |l: &str| l.starts_with("weir_source_position{") && l.ends_with(&end);
            if metrics.lines().any(at_end) {
                break (status, metrics);
            }
        }
    };
    let page = http_get(&addr, "/").unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("weir did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    assert!(status.success(), "SIGTERM must exit 0: {status}\n{stderr}");

    // What was looked at is the real thing.
    assert!(
        stderr.contains("\"level\":\"DEBUG\""),
        "debug logs: {stderr}"
    );
    assert!(stderr.contains("SASL"), "librdkafka's login logs: {stderr}");
    assert!(
        status_json.contains(&format!("kafka {brokers} topic {topic}")),
        "{status_json}"
    );
    assert!(metrics.contains("weir_build_info{"), "{metrics}");
    for secret in [
        u256.password.as_str(),
        u512.password.as_str(),
        cassandra.password.as_str(),
        decoy,
    ] {
        for (what, text) in [
            ("stderr", &stderr),
            ("stdout", &stdout),
            ("/api/status", &status_json),
            ("/metrics", &metrics),
            ("/", &page),
        ] {
            assert!(!text.contains(secret), "a secret appears in {what}");
        }
    }
}
