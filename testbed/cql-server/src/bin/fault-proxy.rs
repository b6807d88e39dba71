//! `fault-proxy`: a TCP proxy between a client and a server whose faults a test switches while
//! traffic flows, for the fault tests (issue 16) and the simulated-cluster benchmark (issue 17).
//!
//! Modes, set over the control port (one command per line, answered `ok` or `error: ...`):
//!
//! - `pass`: forward both ways, as fast as the sockets go.
//! - `latency MS`: every byte from the server reaches the client MS milliseconds after the
//!   proxy read it (requests are not delayed), so each round trip gains MS ms. Throughput is
//!   not limited: chunks are pipelined, each waits only for its own deadline.
//! - `throttle BYTES`: at most BYTES bytes a second each way per connection (a token bucket).
//! - `blackhole`: nothing is forwarded either way; new connections are accepted and never
//!   answered. Connections stay open; `pass` resumes them with nothing lost.
//! - `reset`: every open connection is closed at once with a TCP reset (SO_LINGER 0); the
//!   mode stays what it was, so a test sends it again for "reset every few seconds".
//! - `refuse`: the listening socket is closed, so new connections are refused; open ones keep
//!   their mode. Any other mode opens it again.
//!
//! `latency` and `throttle` combine (`latency 5` then `throttle 100000`); `pass` clears both.
//! Every wait is bounded by the mode changing: a connection in `blackhole` waits for the next
//! command, not forever on its own.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
    time::Instant,
};

const USAGE: &str = "usage: fault-proxy --listen IP:PORT --to IP:PORT --control IP:PORT
  --listen IP:PORT   address clients connect to
  --to IP:PORT       server each connection is forwarded to
  --control IP:PORT  line commands: pass | latency MS | throttle BYTES_PER_S | blackhole |
                     reset | refuse (each answered `ok`)
Prints `listening IP:PORT` and `control IP:PORT` to stdout once ready, then serves until killed.";

/// What the proxy does to traffic now.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Mode {
    /// Added to each server -> client chunk.
    latency: Duration,
    /// Bytes per second each way per connection, or unlimited.
    throttle: Option<u64>,
    blackhole: bool,
    refuse: bool,
    /// Incremented by `reset`: connections opened under an older value are reset.
    resets: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let known = ["--listen", "--to", "--control"];
    let flags = match cql_server::parse_flags(std::env::args().skip(1), &known) {
        Ok(Some(flags)) => flags,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e),
    };
    let addr = |flag: &str| cql_server::addr_flag(&flags, flag);
    let (listen, to, control) = match (addr("--listen"), addr("--to"), addr("--control")) {
        (Ok(l), Ok(t), Ok(c)) => (l, t, c),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return usage_error(&e),
    };
    let control = match TcpListener::bind(control).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fault-proxy: error: cannot listen on {control} (control): {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("fault-proxy: error: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Port 0 binds a free port: print the ones bound.
    let listen = listener.local_addr().unwrap_or(listen);
    println!("listening {listen}");
    println!(
        "control {}",
        control.local_addr().map_or("?".into(), |a| a.to_string())
    );
    let (mode_tx, mode_rx) = watch::channel(Mode::default());
    let mode_tx = Arc::new(mode_tx);
    tokio::spawn(serve_control(control, Arc::clone(&mode_tx)));
    accept_loop(Some(listener), listen, to, mode_rx).await
}

/// Accepts clients while the mode is not `refuse`; closes and reopens the listener as it
/// changes.
async fn accept_loop(
    mut listener: Option<TcpListener>,
    listen: SocketAddr,
    to: SocketAddr,
    mut mode: watch::Receiver<Mode>,
) -> ExitCode {
    loop {
        let refuse = mode.borrow().refuse;
        match (&listener, refuse) {
            (Some(_), true) => listener = None,
            (None, false) => match TcpListener::bind(listen).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    eprintln!("fault-proxy: error: cannot listen on {listen} again: {e}");
                    return ExitCode::FAILURE;
                }
            },
            _ => {}
        }
        let Some(l) = &listener else {
            if mode.changed().await.is_err() {
                return ExitCode::SUCCESS;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => match accepted {
                Ok((client, _)) => {
                    tokio::spawn(connection(client, to, mode.clone()));
                }
                Err(e) => {
                    eprintln!("fault-proxy: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            changed = mode.changed() => if changed.is_err() {
                return ExitCode::SUCCESS;
            },
        }
    }
}

/// One control connection: a command per line.
async fn serve_control(listener: TcpListener, mode: Arc<watch::Sender<Mode>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mode = Arc::clone(&mode);
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = match command(&mode, line.trim()) {
                    Ok(()) => "ok\n".to_string(),
                    Err(e) => format!("error: {e}\n"),
                };
                if write.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Applies one control command.
fn command(mode: &watch::Sender<Mode>, line: &str) -> Result<(), String> {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let number = |words: &mut std::str::SplitWhitespace| -> Result<u64, String> {
        let text = words
            .next()
            .ok_or_else(|| format!("{verb}: a number is required"))?;
        text.parse()
            .map_err(|_| format!("{verb} {text:?}: expected a whole number"))
    };
    let mut next = *mode.borrow();
    match verb {
        "pass" => {
            next = Mode {
                resets: next.resets,
                ..Mode::default()
            }
        }
        "latency" => {
            next.latency = Duration::from_millis(number(&mut words)?);
            next.blackhole = false;
            next.refuse = false;
        }
        "throttle" => {
            let rate = number(&mut words)?;
            if rate == 0 {
                return Err("throttle 0: use blackhole to stop traffic".into());
            }
            next.throttle = Some(rate);
            next.blackhole = false;
            next.refuse = false;
        }
        "blackhole" => {
            next.blackhole = true;
            next.refuse = false;
        }
        "refuse" => next.refuse = true,
        "reset" => next.resets += 1,
        other => {
            return Err(format!(
                "unknown command {other:?}: pass, latency MS, throttle BYTES_PER_S, blackhole, reset or refuse"
            ))
        }
    }
    mode.send_replace(next);
    Ok(())
}

/// Serves one client: connects to the server (unless black-holed), then copies both ways
/// under the mode until either side closes or a reset.
async fn connection(mut client: TcpStream, to: SocketAddr, mut mode: watch::Receiver<Mode>) {
    let born = mode.borrow().resets;
    // A black-holed connection is accepted and not answered until the mode changes.
    while mode.borrow().blackhole {
        if mode.changed().await.is_err() {
            return;
        }
        if mode.borrow().resets != born {
            reset(client);
            return;
        }
    }
    // Bounded: a server that does not answer within 10 s is a refused connection to the client.
    let mut server =
        match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(to)).await {
            Ok(Ok(server)) => server,
            Ok(Err(_)) | Err(_) => {
                reset(client);
                return;
            }
        };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let reset_now = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let mut watcher = mode.clone();
        tokio::select! {
            // Requests: no added latency. Responses: the mode's latency. Either side closing
            // ends the connection.
            _ = pipe(&mut client_read, &mut server_write, mode.clone(), false) => false,
            _ = pipe(&mut server_read, &mut client_write, mode.clone(), true) => false,
            _ = async {
                while watcher.borrow().resets == born {
                    if watcher.changed().await.is_err() {
                        return;
                    }
                }
            } => true,
        }
    };
    if reset_now {
        reset(client);
        reset(server);
    }
}

/// Closes a socket with a TCP reset.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Copies `from` to `to` under the mode until `from` closes or a write fails: held while
/// black-holed, each chunk delayed by the latency (when `delayed`) and paced by the throttle.
async fn pipe(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    mode: watch::Receiver<Mode>,
    delayed: bool,
) {
    // Chunks read, with the time each may be written; a reader and a writer, so a delayed
    // chunk does not hold back reading the next one.
    let (chunks_tx, mut chunks_rx) = mpsc::channel::<(Instant, Vec<u8>)>(1024);
    let mut reader_mode = mode.clone();
    let reader = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            while reader_mode.borrow().blackhole {
                if reader_mode.changed().await.is_err() {
                    return;
                }
            }
            let n = match from.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let latency = if delayed {
                reader_mode.borrow().latency
            } else {
                Duration::ZERO
            };
            if chunks_tx
                .send((Instant::now() + latency, buffer[..n].to_vec()))
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let mut writer_mode = mode;
    let writer = async move {
        // Token bucket: bytes that may be written now; refilled at the throttle's rate, up to
        // one second's worth.
        let (mut tokens, mut refilled) = (0f64, Instant::now());
        while let Some((due, chunk)) = chunks_rx.recv().await {
            // Tokio's timer ticks in milliseconds: a latency is rounded up to the next tick.
            if due > Instant::now() {
                tokio::time::sleep_until(due).await;
            }
            let mut at = 0;
            while at < chunk.len() {
                while writer_mode.borrow().blackhole {
                    if writer_mode.changed().await.is_err() {
                        return;
                    }
                }
                let throttle = writer_mode.borrow().throttle;
                let n = match throttle {
                    None => chunk.len() - at,
                    Some(rate) => {
                        let now = Instant::now();
                        let earned = now.duration_since(refilled).as_secs_f64() * rate as f64;
                        tokens = (tokens + earned).min(rate as f64);
                        refilled = now;
                        if tokens < 1.0 {
                            let wait = (1.0 - tokens) / rate as f64;
                            tokio::time::sleep(Duration::from_secs_f64(wait.max(0.001))).await;
                            continue;
                        }
                        let n = (tokens as usize).min(chunk.len() - at);
                        tokens -= n as f64;
                        n
                    }
                };
                if to.write_all(&chunk[at..at + n]).await.is_err() {
                    return;
                }
                at += n;
            }
        }
    };
    // The reader ending (the source closed) drops the channel's sender; the writer then
    // writes what is queued and ends.
    tokio::join!(reader, writer);
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("fault-proxy: error: {message}\n{USAGE}");
    ExitCode::from(2)
}
