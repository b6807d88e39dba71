//! Secrets and client security: the one place where Kafka's security flags become librdkafka
//! settings, and where anything that could hold a credential is kept from being shown.
//!
//! Contract:
//! - A password lives in a [`Secret`], whose `Debug` and `Display` print `***`. Its value
//!   leaves it only through [`Secret::expose`], into the client library that needs it.
//! - Kafka settings (`--kafka-config`, `--kafka-config-file` and the ones the security flags
//!   map to) live in [`KafkaSettings`], whose `Debug` shows the value of every key that can
//!   hold a credential ([`is_secret_key`]) as `***`.
//! - No error echoes a setting's value: a malformed `--kafka-config` item or properties-file
//!   line is named by its position, and rdkafka's configuration errors, whose text carries the
//!   value, are rewritten by [`kafka_error`].
//! - Broker lists and Cassandra contact points cannot carry credentials: librdkafka and the
//!   scylla driver have no `user:password@host` form, and [`no_credentials_in`] refuses one
//!   (without echoing it). So the source and sink descriptions on the start-up log line, the
//!   status page and `weir_build_info` never contain a credential.
//! - librdkafka's and the scylla driver's own log lines are off unless `WEIR_LOG` asks for
//!   them (see `main.rs`); neither logs passwords.
//!
//! Kafka flags map onto librdkafka settings in [`KafkaSecurity::settings`], used by the
//! consumer (`source::kafka`) and the producer (`producer::kafka`) alike. Later settings win:
//! the properties file first, then the security flags, then `--kafka-config`.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::ValueEnum;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientContext;

use crate::error::{Error, Result};

/// A credential. Shown as `***` by `Debug` and `Display`; [`Secret::expose`] hands the value to
/// the client that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value, for the client library only: never format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Parts of librdkafka keys whose values are credentials (or point at a private key).
const SECRET_KEY_PARTS: [&str; 7] = [
    "password",
    "secret",
    "sasl.jaas.config",
    "sasl.oauthbearer.config",
    "ssl.key",
    "ssl.keystore",
    "token",
];

/// True when a librdkafka setting's value must never be shown.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

/// The value of a setting as it may be shown: `***` for secret keys.
pub fn redact<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_key(key) {
        "***"
    } else {
        value
    }
}

/// Refuses a host list that carries credentials (`user:password@host`), naming only the flag:
/// the list itself may hold the secret.
pub fn no_credentials_in(flag: &str, hosts: &str) -> Result<()> {
    if hosts.contains('@') {
        return Err(Error::Config(format!(
            "{flag}: a host list holds host:port entries only, and this one contains '@' (not shown: it may hold a credential); pass credentials with their own flags"
        )));
    }
    Ok(())
}

/// librdkafka settings in the order they are applied (a later key wins). `Debug` redacts.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaSettings(Vec<(String, String)>);

impl KafkaSettings {
    /// Settings from `(key, value)` pairs.
    pub fn new(entries: Vec<(String, String)>) -> Self {
        KafkaSettings(entries)
    }

    /// Parses `key=value` items (`--kafka-config`). A malformed item is named by its
    /// position, never shown.
    pub fn parse_items(flag: &str, items: &[Secret]) -> Result<Self> {
        let entries = items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                key_value(item.expose()).ok_or_else(|| {
                    Error::Config(format!(
                        "{flag}: item {} of {} is not key=value (items are not shown: they may hold secrets)",
                        i + 1,
                        items.len()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        Ok(KafkaSettings(entries))
    }

    /// Parses a librdkafka properties file: `key=value` lines; blank lines and lines starting
    /// with `#` are skipped. A malformed line is named by its number, never shown.
    pub fn parse_properties(origin: &str, text: &str) -> Result<Self> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            entries.push(key_value(line).ok_or_else(|| {
                Error::Config(format!(
                    "{origin}:{}: expected key=value (the line is not shown: it may hold a secret)",
                    n + 1
                ))
            })?);
        }
        Ok(KafkaSettings(entries))
    }

    /// The value that applies for `key` (the last one set, under its name or an alias).
    pub fn get(&self, key: &str) -> Option<&str> {
        let alias = ALIASES
            .iter()
            .find(|(name, _)| *name == key)
            .map(|(_, alias)| *alias);
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key || Some(k.as_str()) == alias)
            .map(|(_, v)| v.as_str())
    }

    fn set(&mut self, key: &str, value: impl Into<String>) {
        self.0.push((key.to_string(), value.into()));
    }

    fn extend(&mut self, other: &KafkaSettings) {
        self.0.extend(other.0.iter().cloned());
    }

    /// Applies every setting to a librdkafka configuration, in order.
    pub fn apply(&self, config: &mut rdkafka::ClientConfig) {
        for (key, value) in &self.0 {
            config.set(key, value);
        }
    }
}

impl fmt::Debug for KafkaSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, v)| format!("{k}={}", redact(k, v))))
            .finish()
    }
}

/// librdkafka's aliases of the keys checked here (Confluent Cloud's client.properties uses
/// `sasl.mechanisms`).
const ALIASES: [(&str, &str); 1] = [("sasl.mechanism", "sasl.mechanisms")];

fn key_value(text: &str) -> Option<(String, String)> {
    let (key, value) = text.split_once('=')?;
    let key = key.trim();
    (!key.is_empty()).then(|| (key.to_string(), value.trim().to_string()))
}

/// `security.protocol`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SecurityProtocol {
    /// No TLS, no authentication (librdkafka's default).
    #[value(name = "plaintext")]
    Plaintext,
    /// TLS.
    #[value(name = "ssl")]
    Ssl,
    /// SASL authentication without TLS (SCRAM never sends the password; PLAIN does).
    #[value(name = "sasl_plaintext")]
    SaslPlaintext,
    /// SASL authentication over TLS.
    #[value(name = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    fn librdkafka(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// `sasl.mechanism`: the ones built into this librdkafka (no GSSAPI: it needs libsasl2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    /// Username and password, sent as they are (use it with TLS only).
    #[value(name = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn librdkafka(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Kafka security as the flags give it, files already read; [`KafkaSecurity::settings`]
/// turns it into librdkafka settings.
#[derive(Clone, Debug, Default)]
pub struct KafkaSecurity {
    /// `--kafka-security-protocol`.
    pub protocol: Option<SecurityProtocol>,
    /// `--kafka-sasl-mechanism`.
    pub mechanism: Option<SaslMechanism>,
    /// `--kafka-sasl-username`.
    pub username: Option<String>,
    /// `--kafka-sasl-password`, `WEIR_KAFKA_SASL_PASSWORD` or `--kafka-sasl-password-file`.
    pub password: Option<Secret>,
    /// `--kafka-tls-ca`.
    pub tls_ca: Option<PathBuf>,
    /// `--kafka-tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--kafka-tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--kafka-config-file`, applied first.
    pub file: KafkaSettings,
    /// `--kafka-config`, applied last.
    pub extra: KafkaSettings,
}

/// How to name a setting in an error: its flag and its librdkafka key.
const USERNAME: &str = "--kafka-sasl-username (sasl.username)";
const PASSWORD: &str =
    "a password (WEIR_KAFKA_SASL_PASSWORD, --kafka-sasl-password-file or sasl.password)";

impl KafkaSecurity {
    /// The librdkafka settings, checked as a whole (whichever of file, flags or
    /// `--kafka-config` set them).
    pub fn settings(&self) -> Result<KafkaSettings> {
        let KafkaSecurity {
            protocol,
            mechanism,
            username,
            password,
            tls_ca,
            tls_cert,
            tls_key,
            file,
            extra,
        } = self;
        if let Some(key) = ["bootstrap.servers", "metadata.broker.list"]
            .into_iter()
            .find(|k| file.get(k).is_some() || extra.get(k).is_some())
        {
            return Err(Error::Config(format!(
                "{key} is set in --kafka-config-file or --kafka-config; name the brokers with --brokers only (the logs and the status page show --brokers)"
            )));
        }
        let mut s = file.clone();
        if let Some(p) = protocol {
            s.set("security.protocol", p.librdkafka());
        }
        if let Some(m) = mechanism {
            s.set("sasl.mechanism", m.librdkafka());
        }
        if let Some(u) = username {
            s.set("sasl.username", u);
        }
        if let Some(p) = password {
            s.set("sasl.password", p.expose());
        }
        for (key, path) in [
            ("ssl.ca.location", tls_ca),
            ("ssl.certificate.location", tls_cert),
            ("ssl.key.location", tls_key),
        ] {
            if let Some(path) = path {
                s.set(key, path.display().to_string());
            }
        }
        s.extend(extra);

        let sasl_set = ["sasl.mechanism", "sasl.username", "sasl.password"]
            .iter()
            .any(|k| s.get(k).is_some());
        let tls_files = [
            "ssl.ca.location",
            "ssl.certificate.location",
            "ssl.key.location",
        ]
        .into_iter()
        .filter(|k| s.get(k).is_some())
        .collect::<Vec<_>>();
        if s.get("security.protocol").is_none() {
            // Credentials are never sent without TLS unless asked for: SASL alone means
            // sasl_ssl.
            if sasl_set {
                s.set("security.protocol", "SASL_SSL");
            } else if !tls_files.is_empty() {
                s.set("security.protocol", "SSL");
            }
        }
        let has = |key: &str| s.get(key).is_some();
        let protocol = s
            .get("security.protocol")
            .unwrap_or("plaintext")
            .to_ascii_lowercase();
        let sasl = protocol.starts_with("sasl_");
        let tls = protocol.ends_with("ssl");
        if has("sasl.password") && !has("sasl.username") {
            return Err(Error::Config(format!(
                "a Kafka SASL password needs {USERNAME}"
            )));
        }
        if sasl {
            match s.get("sasl.mechanism") {
                None => {
                    return Err(Error::Config(format!(
                        "security protocol {protocol} needs --kafka-sasl-mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (sasl.mechanism)"
                    )))
                }
                Some(m @ ("PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512"))
                    if !has("sasl.username") || !has("sasl.password") =>
                {
                    return Err(Error::Config(format!(
                        "SASL mechanism {m} needs {USERNAME} and {PASSWORD}"
                    )))
                }
                Some(_) => {}
            }
        } else if sasl_set {
            return Err(Error::Config(format!(
                "Kafka SASL settings are given but the security protocol is {protocol}; use --kafka-security-protocol sasl_ssl (or sasl_plaintext)"
            )));
        }
        if !tls && !tls_files.is_empty() {
            return Err(Error::Config(format!(
                "Kafka TLS files ({}) are given but the security protocol is {protocol}; use --kafka-security-protocol ssl or sasl_ssl",
                tls_files.join(", ")
            )));
        }
        if has("ssl.certificate.location") != has("ssl.key.location") {
            return Err(Error::Config(
                "a Kafka client certificate needs both --kafka-tls-cert (ssl.certificate.location) and --kafka-tls-key (ssl.key.location)".into(),
            ));
        }
        if tls && !has("ssl.ca.location") && s.get("ssl.ca.pem").is_none() {
            // OpenSSL is built from source (rdkafka's ssl-vendored), so its compiled-in CA
            // directory does not exist here: `probe` finds the system's CA bundle instead.
            s.set("ssl.ca.location", "probe");
        }
        Ok(s)
    }
}

/// Rewrites an rdkafka error for people: configuration errors name the setting but never its
/// value (rdkafka's own text includes it).
pub fn kafka_error(e: &KafkaError) -> String {
    match e {
        KafkaError::ClientConfig(_, description, key, _value) => {
            format!("setting {key}: {description}")
        }
        e => e.to_string(),
    }
}

/// The cause of a failed connection as librdkafka reported it (for example "SASL
/// authentication error: ... invalid-proof" or "SSL handshake failed: ... certificate verify
/// failed"), kept by the client context to name it in the one error line. Authentication and
/// TLS errors take precedence over later, vaguer ones ("all brokers are down").
#[derive(Clone, Debug, Default)]
pub struct ClientErrors(Arc<Mutex<Option<(bool, String)>>>);

impl ClientErrors {
    /// Records a global client error (librdkafka retries it by itself).
    pub fn record(&self, error: &KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        tracing::debug!("kafka client: {error}: {reason}");
        let decisive = matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) || reason.contains("SSL")
            || reason.contains("SASL");
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if decisive || last.as_ref().is_none_or(|(was_decisive, _)| !was_decisive) {
            *last = Some((decisive, reason.to_string()));
        }
    }

    /// `; the client said: ...` and a hint, or `otherwise` when no error was recorded.
    pub fn explain_or(&self, otherwise: &str) -> String {
        let last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, reason)) = last.as_ref() else {
            return otherwise.to_string();
        };
        let hint = if reason.contains("SASL") {
            "; check --kafka-sasl-username, the password and --kafka-sasl-mechanism"
        } else if reason.contains("certificate verify failed") {
            "; check --kafka-tls-ca"
        } else if reason.contains("SSL") {
            "; check --kafka-security-protocol and the TLS files"
        } else {
            ""
        };
        format!("; the client said: {reason}{hint}")
    }
}

impl ClientContext for ClientErrors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&error, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret(s.into())
    }

    fn settings(security: KafkaSecurity) -> Vec<(String, String)> {
        security.settings().unwrap().0
    }

    fn error(security: KafkaSecurity) -> String {
        security.settings().unwrap_err().to_string()
    }

    fn scram(user: &str, password: &str) -> KafkaSecurity {
        KafkaSecurity {
            mechanism: Some(SaslMechanism::ScramSha512),
            username: Some(user.into()),
            password: Some(secret(password)),
            ..Default::default()
        }
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn secrets_and_secret_keys_are_not_shown() {
        let s = secret("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        assert_eq!(s.expose(), "hunter2");
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.key.pem",
            "ssl.keystore.password",
            "sasl.jaas.config",
            "sasl.oauthbearer.client.secret",
            "sasl.oauthbearer.config",
            "SASL.PASSWORD",
            "some.token",
        ] {
            assert!(is_secret_key(key), "{key}");
            assert_eq!(redact(key, "hunter2"), "***");
        }
        for key in ["sasl.username", "bootstrap.servers", "ssl.ca.location"] {
            assert_eq!(redact(key, "v"), "v", "{key}");
        }
        let settings = KafkaSettings::new(pairs(&[
            ("sasl.username", "alice"),
            ("sasl.password", "hunter2"),
        ]));
        assert_eq!(
            format!("{settings:?}"),
            r#"["sasl.username=alice", "sasl.password=***"]"#
        );
    }

    #[test]
    fn malformed_items_and_lines_are_named_not_shown() {
        let e = KafkaSettings::parse_items(
            "--kafka-config",
            &[secret("acks=all"), secret("sasl.password:hunter2")],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("item 2 of 2 is not key=value"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");

        let text = "# Confluent Cloud\n\nsasl.username = alice\nsasl.password=a=b\n";
        let parsed = KafkaSettings::parse_properties("client.properties", text).unwrap();
        assert_eq!(
            parsed.0,
            pairs(&[("sasl.username", "alice"), ("sasl.password", "a=b")])
        );
        let e = KafkaSettings::parse_properties("client.properties", "acks=1\nhunter2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("client.properties:2: expected key=value"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn flags_map_onto_librdkafka_settings_in_order() {
        let mut s = scram("alice", "pw");
        s.protocol = Some(SecurityProtocol::SaslSsl);
        s.tls_ca = Some("/ca.pem".into());
        s.tls_cert = Some("/client.pem".into());
        s.tls_key = Some("/client.key".into());
        s.file = KafkaSettings::new(pairs(&[("sasl.username", "from-file"), ("acks", "1")]));
        s.extra = KafkaSettings::new(pairs(&[("sasl.username", "from-config")]));
        let got = s.settings().unwrap();
        assert_eq!(
            got.0,
            pairs(&[
                ("sasl.username", "from-file"),
                ("acks", "1"),
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "alice"),
                ("sasl.password", "pw"),
                ("ssl.ca.location", "/ca.pem"),
                ("ssl.certificate.location", "/client.pem"),
                ("ssl.key.location", "/client.key"),
                ("sasl.username", "from-config"),
            ])
        );
        assert_eq!(got.get("sasl.username"), Some("from-config"), "last wins");
    }

    #[test]
    fn the_protocol_defaults_to_tls_whenever_credentials_or_tls_files_are_given() {
        let s = settings(scram("alice", "pw"));
        assert!(s.contains(&("security.protocol".into(), "SASL_SSL".into())));
        assert!(
            s.contains(&("ssl.ca.location".into(), "probe".into())),
            "system CAs: {s:?}"
        );
        let s = settings(KafkaSecurity {
            tls_ca: Some("/ca.pem".into()),
            ..Default::default()
        });
        assert!(s.contains(&("security.protocol".into(), "SSL".into())));
        assert!(!s.contains(&("ssl.ca.location".into(), "probe".into())));
        let mut plain = scram("alice", "pw");
        plain.protocol = Some(SecurityProtocol::SaslPlaintext);
        let s = settings(plain);
        assert!(!s.iter().any(|(k, _)| k == "ssl.ca.location"), "{s:?}");
        assert!(settings(KafkaSecurity::default()).is_empty(), "nothing set");
        // The whole configuration from a file: checked the same way.
        let file = KafkaSecurity {
            file: KafkaSettings::new(pairs(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.username", "alice"),
                ("sasl.password", "pw"),
            ])),
            ..Default::default()
        };
        assert_eq!(settings(file).len(), 5);
    }

    #[test]
    fn combinations_that_cannot_work_fail_with_one_line() {
        let cases: Vec<(KafkaSecurity, &str)> = vec![
            (
                KafkaSecurity {
                    mechanism: Some(SaslMechanism::ScramSha256),
                    ..Default::default()
                },
                "SASL mechanism SCRAM-SHA-256 needs --kafka-sasl-username",
            ),
            (
                KafkaSecurity {
                    password: Some(secret("hunter2")),
                    ..Default::default()
                },
                "a Kafka SASL password needs --kafka-sasl-username",
            ),
            (
                KafkaSecurity {
                    username: Some("alice".into()),
                    password: Some(secret("hunter2")),
                    ..Default::default()
                },
                "security protocol sasl_ssl needs --kafka-sasl-mechanism",
            ),
            (
                KafkaSecurity {
                    protocol: Some(SecurityProtocol::Ssl),
                    ..scram("alice", "hunter2")
                },
                "Kafka SASL settings are given but the security protocol is ssl",
            ),
            (
                KafkaSecurity {
                    protocol: Some(SecurityProtocol::SaslPlaintext),
                    tls_ca: Some("/ca.pem".into()),
                    ..scram("alice", "hunter2")
                },
                "Kafka TLS files (ssl.ca.location) are given but the security protocol is sasl_plaintext",
            ),
            (
                KafkaSecurity {
                    tls_cert: Some("/client.pem".into()),
                    ..Default::default()
                },
                "a Kafka client certificate needs both --kafka-tls-cert",
            ),
            (
                KafkaSecurity {
                    file: KafkaSettings::new(pairs(&[("bootstrap.servers", "other:9092")])),
                    ..Default::default()
                },
                "bootstrap.servers is set in --kafka-config-file or --kafka-config; name the brokers with --brokers only",
            ),
        ];
        for (security, expected) in cases {
            let e = error(security);
            assert!(e.starts_with(expected), "expected {expected:?}, got {e:?}");
            assert!(!e.contains('\n') && !e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn credentials_in_host_lists_are_refused_without_echo() {
        no_credentials_in("--brokers", "a:9092,b:9092").unwrap();
        let e = no_credentials_in("--brokers", "alice:hunter2@a:9092")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--brokers: ") && !e.contains("hunter2"),
            "{e}"
        );
    }

    #[test]
    fn client_config_errors_do_not_show_the_value() {
        let mut c = rdkafka::ClientConfig::new();
        c.set("sasl.pasword", "hunter2");
        let e = c
            .create::<rdkafka::producer::BaseProducer>()
            .err()
            .expect("unknown setting");
        assert!(e.to_string().contains("hunter2"), "rdkafka shows it: {e}");
        let shown = kafka_error(&e);
        assert!(
            shown.contains("sasl.pasword") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
