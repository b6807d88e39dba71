//! Resolution of the Kafka security flags shared by `weir run` and `weir produce`.

use super::cli::KafkaSecurityArgs;
use super::files::{self, secret_from};
use crate::error::Result;
use crate::security::{KafkaSecurity, KafkaSettings};

impl KafkaSecurityArgs {
    /// Reads the password and properties files, checks that the files given exist, and
    /// returns the librdkafka settings to apply after the client's own.
    pub fn resolve(&self) -> Result<KafkaSettings> {
        let KafkaSecurityArgs {
            kafka_security_protocol,
            kafka_sasl_mechanism,
            kafka_sasl_username,
            kafka_sasl_password,
            kafka_sasl_password_file,
            kafka_tls_ca,
            kafka_tls_cert,
            kafka_tls_key,
            kafka_config_file,
            kafka_config,
        } = self;
        let password = secret_from(
            "the Kafka SASL password: --kafka-sasl-password (WEIR_KAFKA_SASL_PASSWORD) or --kafka-sasl-password-file",
            kafka_sasl_password,
            kafka_sasl_password_file,
            "--kafka-sasl-password-file",
        )?;
        for (flag, path) in [
            ("--kafka-tls-ca", kafka_tls_ca),
            ("--kafka-tls-cert", kafka_tls_cert),
            ("--kafka-tls-key", kafka_tls_key),
        ] {
            if let Some(path) = path {
                files::readable(flag, path)?;
            }
        }
        let file = match kafka_config_file {
            None => KafkaSettings::default(),
            Some(path) => {
                let origin = path.display().to_string();
                let text = files::read("--kafka-config-file", path)?;
                KafkaSettings::parse_properties(&origin, &text)?
            }
        };
        KafkaSecurity {
            protocol: *kafka_security_protocol,
            mechanism: *kafka_sasl_mechanism,
            username: kafka_sasl_username.clone(),
            password,
            tls_ca: kafka_tls_ca.clone(),
            tls_cert: kafka_tls_cert.clone(),
            tls_key: kafka_tls_key.clone(),
            file,
            extra: KafkaSettings::parse_items("--kafka-config", kafka_config)?,
        }
        .settings()
    }
}
