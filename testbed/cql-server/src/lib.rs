//! What the test servers share: their flag parsing and their TLS configuration.
//!
//! * `cql-server` (src/main.rs): the CQL server on kassandra, optionally with
//!   PasswordAuthenticator and TLS.
//! * `tls-proxy` (src/bin/tls-proxy.rs): terminates TLS in front of a plaintext server (tansu
//!   0.6 cannot serve TLS itself), optionally checking client certificates.
//! * `test-certs` (src/bin/test-certs.rs): writes a throwaway CA and the server and client
//!   certificates it signs.

use std::{collections::BTreeMap, io, path::Path, sync::Arc};

use tokio_rustls::rustls::{
    self,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};

/// The required `IP:PORT` flag `flag` of parsed flags.
pub fn addr_flag(
    flags: &BTreeMap<String, String>,
    flag: &str,
) -> Result<std::net::SocketAddr, String> {
    let text = flags
        .get(flag)
        .ok_or_else(|| format!("{flag} is required"))?;
    text.parse()
        .map_err(|_| format!("{flag} {text:?}: expected IP:PORT"))
}

/// Parses `--flag value` and `--flag=value` pairs; every flag in `known` may be given once.
/// `Ok(None)` means help was requested.
pub fn parse_flags(
    args: impl Iterator<Item = String>,
    known: &[&str],
) -> Result<Option<BTreeMap<String, String>>, String> {
    let mut flags = BTreeMap::new();
    let mut args = args;
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let (flag, inline_value) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown argument '{arg}'"));
        }
        if flags.contains_key(&flag) {
            return Err(format!("{flag} given more than once"));
        }
        let value = match inline_value {
            Some(value) => value,
            None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
        };
        if value.is_empty() {
            return Err(format!("{flag} needs a non-empty value"));
        }
        flags.insert(flag, value);
    }
    Ok(Some(flags))
}

/// A rustls server configuration from PEM files: the certificate chain, its private key and,
/// when given, the CA whose client certificates are accepted. A client without a certificate
/// is still accepted (so one server can test both); a client certificate that does not chain
/// to `client_ca` fails the handshake.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let pem_error = |path: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| pem_error(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, &e))?;
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem_error(ca, &e))? {
                roots
                    .add(cert.map_err(|e| pem_error(ca, &e))?)
                    .map_err(|e| pem_error(ca, &e))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| pem_error(ca, &e))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    builder
        .with_single_cert(certs, key_der)
        .map(Arc::new)
        .map_err(|e: rustls::Error| format!("{}: {e}", cert.display()))
}

/// True for the errors of a peer that simply went away.
pub fn is_disconnect(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<BTreeMap<String, String>>, String> {
        parse_flags(args.iter().map(|s| s.to_string()), &["--a", "--b"])
    }

    #[test]
    fn flags() {
        let f = parse(&["--a", "1", "--b=2"]).unwrap().unwrap();
        assert_eq!(f["--a"], "1");
        assert_eq!(f["--b"], "2");
        assert!(parse(&["-h"]).unwrap().is_none());
        assert!(parse(&["--c", "1"]).is_err());
        assert!(parse(&["--a"]).is_err());
        assert!(parse(&["--a="]).is_err());
        assert!(parse(&["--a=1", "--a=2"]).is_err());
    }
}
