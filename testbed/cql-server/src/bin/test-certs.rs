//! `test-certs DIR`: writes a throwaway certificate authority and what it signs, for the test
//! servers and the clients that test TLS against them:
//!
//! * `ca.pem`: the CA certificate (clients trust it);
//! * `server.pem`, `server.key`: for 127.0.0.1 and localhost (IP and DNS subject alternative
//!   names: the scylla driver checks the node's IP address, librdkafka the host name);
//! * `client.pem`, `client.key`: a client certificate (CN `weir-test-client`) for mutual TLS.
//!
//! Keys are ECDSA P-256, certificates valid from yesterday for 30 days. Nothing here is secret
//! beyond the test run: the files are made fresh for every run of the test servers.

use std::{fs, path::Path, process::ExitCode};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir] = args.as_slice() else {
        eprintln!(
            "usage: test-certs DIR (writes ca.pem, server.pem, server.key, client.pem, client.key)"
        );
        return ExitCode::from(2);
    };
    match write_all(Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("test-certs: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let rcgen_error = |e: rcgen::Error| e.to_string();

    let ca_key = KeyPair::generate().map_err(rcgen_error)?;
    let mut ca = params(&[], "weir test CA")?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).map_err(rcgen_error)?;
    write(dir, "ca.pem", &ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |names: &[&str], cn: &str, usage, file: &str| -> Result<(), String> {
        let key = KeyPair::generate().map_err(rcgen_error)?;
        let mut p = params(names, cn)?;
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &issuer).map_err(rcgen_error)?;
        write(dir, &format!("{file}.pem"), &cert.pem())?;
        write(dir, &format!("{file}.key"), &key.serialize_pem())
    };
    leaf(
        &["127.0.0.1", "localhost"],
        "127.0.0.1",
        ExtendedKeyUsagePurpose::ServerAuth,
        "server",
    )?;
    leaf(
        &[],
        "weir-test-client",
        ExtendedKeyUsagePurpose::ClientAuth,
        "client",
    )
}

/// Parameters with these subject alternative names (an IP address or a DNS name each) and
/// common name, valid from yesterday for 30 days.
fn params(names: &[&str], common_name: &str) -> Result<CertificateParams, String> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut p = CertificateParams::new(names).map_err(|e| e.to_string())?;
    p.distinguished_name.push(DnType::CommonName, common_name);
    let now = std::time::SystemTime::now();
    p.not_before = (now - std::time::Duration::from_secs(86_400)).into();
    p.not_after = (now + std::time::Duration::from_secs(30 * 86_400)).into();
    Ok(p)
}

fn write(dir: &Path, name: &str, pem: &str) -> Result<(), String> {
    let path = dir.join(name);
    fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))
}
