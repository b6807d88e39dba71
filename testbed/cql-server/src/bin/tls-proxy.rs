//! `tls-proxy`: terminates TLS in front of a plaintext TCP server.
//!
//! The test setup puts it in front of a tansu 0.6 broker, which cannot serve TLS itself (its
//! `--cert` and `--key` flags conflict with each other, and the broker never uses its TLS
//! acceptor), so that Kafka clients are tested over TLS (`ssl`, `sasl_ssl`) against a real
//! broker. The broker must advertise the proxy's address (`--advertised-listener-url`), so that
//! clients reach every broker connection through the proxy.
//!
//! With `--client-ca`, a client certificate is checked against that CA when the client
//! presents one (a client without one is still served, so one proxy tests both cases).

use std::{net::SocketAddr, process::ExitCode, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const USAGE: &str =
    "usage: tls-proxy --listen IP:PORT --to IP:PORT --tls-cert PEM --tls-key PEM [--client-ca PEM]
  --listen IP:PORT       address to accept TLS connections on
  --to IP:PORT           plaintext server to forward each connection to
  --tls-cert, --tls-key  certificate chain and private key (PEM)
  --client-ca PEM        check client certificates against this CA (optional for clients)
Prints one line `listening IP:PORT` to stdout once ready, then serves until killed.";

#[tokio::main]
async fn main() -> ExitCode {
    let known = ["--listen", "--to", "--tls-cert", "--tls-key", "--client-ca"];
    let flags = match cql_server::parse_flags(std::env::args().skip(1), &known) {
        Ok(Some(flags)) => flags,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    let addr = |flag: &str| cql_server::addr_flag(&flags, flag);
    let (listen, to) = match (addr("--listen"), addr("--to")) {
        (Ok(listen), Ok(to)) => (listen, to),
        (Err(e), _) | (_, Err(e)) => return usage_error(&e),
    };
    let (Some(cert), Some(key)) = (flags.get("--tls-cert"), flags.get("--tls-key")) else {
        return usage_error("--tls-cert and --tls-key are required");
    };
    let client_ca = flags.get("--client-ca").map(std::path::Path::new);
    let acceptor = match cql_server::server_config(cert.as_ref(), key.as_ref(), client_ca) {
        Ok(config) => TlsAcceptor::from(config),
        Err(e) => {
            eprintln!("tls-proxy: error: TLS: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("tls-proxy: error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("listening {listen}");
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(forward(acceptor.clone(), stream, peer, to));
            }
            Err(e) => {
                eprintln!("tls-proxy: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Serves one connection: TLS handshake, connect to the backend, copy both ways until either
/// side closes.
async fn forward(acceptor: TlsAcceptor, stream: TcpStream, peer: SocketAddr, to: SocketAddr) {
    // Kafka requests are small and latency-bound, as on the broker itself.
    let _ = stream.set_nodelay(true);
    let mut tls = match acceptor.accept(stream).await {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("tls-proxy: {peer}: TLS handshake failed: {e}");
            return;
        }
    };
    let mut backend = match TcpStream::connect(to).await {
        Ok(backend) => backend,
        Err(e) => {
            eprintln!("tls-proxy: {peer}: cannot connect to {to}: {e}");
            return;
        }
    };
    let _ = backend.set_nodelay(true);
    if let Err(e) = tokio::io::copy_bidirectional(&mut tls, &mut backend).await {
        if !cql_server::is_disconnect(&e) {
            eprintln!("tls-proxy: {peer}: {e}");
        }
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("tls-proxy: error: {message}\n{USAGE}");
    ExitCode::from(2)
}
