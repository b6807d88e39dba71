//! `cql-server`: an in-memory, single-node CQL (native protocol v4) server for integration
//! tests, built on the `kassandra` library (which has no server binary of its own).
//!
//! Usage: `cql-server [--listen IP:PORT] [--port-file PATH] [--auth USER:PASSWORD]
//! [--tls-cert PEM --tls-key PEM] [--writes store|discard]`
//!
//! * One `KassandraSession` (one database) is shared by every connection, behind a mutex.
//! * Each connection is served by a reader task (decode, execute, encode) and a writer task;
//!   clients may pipeline many requests (streams) per connection.
//! * kassandra panics on some inputs (counters, unimplemented opcodes, ...). Every call into it
//!   runs under `catch_unwind`, and a panic becomes a CQL `ServerError` response for that one
//!   request; the connection and the process keep running.
//! * kassandra's data model is incomplete: see /work/shared/TESTBED.md ("CQL: kassandra") for
//!   the queries that are silently wrong there. DELETE by full primary key is kassandra's own
//!   and right (prepared, alone or in a BATCH, as Weir's sink deletes a table input's
//!   tombstoned keys): `tests/smoke.rs` checks it; nothing is added here for it.
//! * `--auth USER:PASSWORD` requires PasswordAuthenticator logins, as Cassandra does: STARTUP
//!   is answered with AUTHENTICATE, and the client's AUTH_RESPONSE (SASL PLAIN) with
//!   AUTH_SUCCESS, or an AuthenticationError for a wrong user or password; nothing else is
//!   served before that. kassandra can neither parse AUTH_RESPONSE nor serialize AUTHENTICATE
//!   and AUTH_SUCCESS, so these frames are encoded here.
//! * `--tls-cert`/`--tls-key` serve TLS only (tokio-rustls), like a node with
//!   `client_encryption_options: enabled: true, optional: false`.
//! * `--writes discard` acknowledges prepared INSERTs (alone or in a BATCH) without executing
//!   them: no lock, no storage, so a sink benchmark measures the client and the network (with
//!   the fault proxy's latency in front) rather than kassandra's one mutex. DDL, SELECTs and
//!   unprepared statements still run; reads then see no rows.

use std::{
    any::Any,
    collections::HashSet,
    fs,
    io::{self, Write},
    net::SocketAddr,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Duration,
};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use kassandra::{
    cql::query::QueryString,
    error::DbError,
    frame::{
        self,
        request::{Request, RequestOpcode},
        response::{error::Error as CqlError, result::QueryResult, Response, ResponseOpcode},
        FrameFlags, FrameParams, ProtocolVersion,
    },
    KassandraSession,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpListener,
    sync::mpsc,
};
use tokio_rustls::TlsAcceptor;

const USAGE: &str = "usage: cql-server [--listen IP:PORT] [--port-file PATH] [--auth USER:PASSWORD]
                  [--tls-cert PEM --tls-key PEM] [--writes store|discard]
  --listen IP:PORT       address to bind (default 127.0.0.1:0, i.e. any free port)
  --port-file PATH       after binding, write the port number to PATH (atomically)
  --auth USER:PASSWORD   require this login (PasswordAuthenticator, SASL PLAIN)
  --tls-cert, --tls-key  serve TLS only, with this certificate chain and private key (PEM)
  --writes discard       acknowledge prepared INSERTs without storing them (sink benchmarks)
Prints one line `listening IP:PORT` to stdout once ready, then serves until killed.";

/// What the server tells clients it authenticates with: the name drivers expect from Cassandra.
const AUTHENTICATOR: &str = "org.apache.cassandra.auth.PasswordAuthenticator";

/// kassandra keeps the current keyspace (`USE ks`) inside the session, but here the session is
/// shared by all connections while `USE` is per connection in CQL. Before every call the
/// connection's own keyspace is put back into the session. kassandra has no way to *clear* it,
/// so a connection without `USE` gets this name, which no CQL statement can create: unqualified
/// table names then fail ("Keyspace or table does nor exist") instead of silently resolving
/// against another connection's keyspace.
const NO_KEYSPACE: &str = "\u{0}no keyspace selected (send USE or qualify the table name)";

/// Responses queued per connection before the reader waits for the writer.
const RESPONSE_QUEUE: usize = 1024;

type SharedSession = Arc<Mutex<KassandraSession>>;

/// `--writes discard`: the ids of prepared INSERTs, whose executions are acknowledged unrun.
type Discarded = Arc<RwLock<HashSet<u128>>>;

/// A response frame ready for `kassandra::frame::raw_response_sink`.
type OutFrame = (FrameParams, ResponseOpcode, Bytes);

/// The one login the server accepts.
#[derive(Debug)]
struct Credentials {
    user: String,
    password: String,
}

struct Args {
    listen: SocketAddr,
    port_file: Option<PathBuf>,
    auth: Option<Credentials>,
    /// Certificate chain and private key.
    tls: Option<(PathBuf, PathBuf)>,
    /// `--writes discard`.
    discard_writes: bool,
}

/// Parses the command line. `Ok(None)` means help was requested.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let known = [
        "--listen",
        "--port-file",
        "--auth",
        "--tls-cert",
        "--tls-key",
        "--writes",
    ];
    let Some(mut flags) = cql_server::parse_flags(args, &known)? else {
        return Ok(None);
    };
    let listen = flags
        .remove("--listen")
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listen = listen.parse::<SocketAddr>().map_err(|_| {
        format!("invalid --listen address '{listen}' (expected IP:PORT, e.g. 127.0.0.1:0)")
    })?;
    let auth = match flags.remove("--auth") {
        None => None,
        Some(text) => match text.split_once(':') {
            Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                Some(Credentials {
                    user: user.into(),
                    password: password.into(),
                })
            }
            _ => return Err("--auth needs USER:PASSWORD".into()),
        },
    };
    let tls = match (flags.remove("--tls-cert"), flags.remove("--tls-key")) {
        (Some(cert), Some(key)) => Some((cert.into(), key.into())),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together".into()),
    };
    let discard_writes = match flags.remove("--writes").as_deref() {
        None | Some("store") => false,
        Some("discard") => true,
        Some(other) => return Err(format!("--writes {other:?}: expected store or discard")),
    };
    Ok(Some(Args {
        listen,
        port_file: flags.remove("--port-file").map(PathBuf::from),
        auth,
        tls,
        discard_writes,
    }))
}

fn main() -> ExitCode {
    // kassandra's frame decoder builds an eyre error for every frame it reads (`ok_or(eyre!(..))`
    // for the flags), and eyre captures a backtrace for each when RUST_BACKTRACE is set: that
    // was most of the server's time (9 us per request). Panics still print theirs. Set before
    // any thread starts.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(serve()),
        Err(e) => {
            eprintln!("cql-server: error: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("cql-server: error: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    install_panic_hook();

    let tls = match &args.tls {
        None => None,
        Some((cert, key)) => match cql_server::server_config(cert, key, None) {
            Ok(config) => Some(TlsAcceptor::from(config)),
            Err(e) => {
                eprintln!("cql-server: error: TLS: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let auth = args.auth.map(Arc::new);
    let discarded: Option<Discarded> = args.discard_writes.then(Discarded::default);

    let listener = match TcpListener::bind(args.listen).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("cql-server: error: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("cql-server: error: cannot read the bound address: {e}");
            return ExitCode::FAILURE;
        }
    };

    if let Some(path) = &args.port_file {
        if let Err(e) = write_port_file(path, local.port()) {
            eprintln!(
                "cql-server: error: cannot write port file {}: {e}",
                path.display()
            );
            return ExitCode::FAILURE;
        }
    }

    // The readiness line. A closed stdout must not stop the server, so report and go on.
    let mut stdout = io::stdout().lock();
    if let Err(e) = writeln!(stdout, "listening {local}").and_then(|()| stdout.flush()) {
        eprintln!("cql-server: warning: cannot write the listening line to stdout: {e}");
    }
    drop(stdout);

    let session: SharedSession = Arc::new(Mutex::new(KassandraSession::new()));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Responses are small and latency matters far more than packet count.
                if let Err(e) = stream.set_nodelay(true) {
                    eprintln!("cql-server: {peer}: cannot set TCP_NODELAY: {e}");
                }
                let conn = Connection {
                    peer,
                    keyspace: None,
                    auth: auth.clone(),
                    authenticated: auth.is_none(),
                    discarded: discarded.clone(),
                };
                let session = Arc::clone(&session);
                match &tls {
                    None => {
                        tokio::spawn(serve_connection(stream, conn, session));
                    }
                    Some(acceptor) => {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            match acceptor.accept(stream).await {
                                Ok(stream) => serve_connection(stream, conn, session).await,
                                Err(e) => {
                                    eprintln!("cql-server: {peer}: TLS handshake failed: {e}")
                                }
                            }
                        });
                    }
                }
            }
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                eprintln!("cql-server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Writes the port to `path` via a temporary file and a rename, so a reader sees either no file
/// or the complete number (no trailing newline).
fn write_port_file(path: &Path, port: u16) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, port.to_string())?;
    fs::rename(&tmp, path).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Panics are caught and answered (see `handle_frame`); print each as one stderr line instead of
/// the default multi-line report.
fn install_panic_hook() {
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "cql-server: panic{location}: {}",
            panic_message(info.payload())
        );
    }));
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "(non-string panic payload)"
    }
}

/// Per-connection protocol state.
struct Connection {
    peer: SocketAddr,
    /// Set by a successful `USE ks` on this connection.
    keyspace: Option<String>,
    /// The login this server requires, if any.
    auth: Option<Arc<Credentials>>,
    /// True once the client logged in (from the start without `--auth`).
    authenticated: bool,
    /// `--writes discard`: the prepared INSERTs, shared by every connection.
    discarded: Option<Discarded>,
}

async fn serve_connection(
    stream: impl AsyncRead + AsyncWrite + Send + 'static,
    mut conn: Connection,
    session: SharedSession,
) {
    let peer = conn.peer;
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::channel::<OutFrame>(RESPONSE_QUEUE);
    let writer_task = tokio::spawn(write_responses(writer, rx, peer));

    let mut requests = frame::request_stream(reader);
    while let Some(item) = requests.next().await {
        match item {
            // Requests are executed in arrival order right here. All of them need the one
            // session mutex anyway, and the critical section is short, so blocking this worker
            // thread for it is cheaper than a hand-off to another thread per request.
            // Concurrency comes from many connections and from pipelining: the client does not
            // wait for one stream's answer before sending the next.
            Ok((params, opcode, body)) => {
                let response = if conn.authenticated && discards_frame(&conn, opcode, &body) {
                    // `--writes discard`, without decoding the values: the answer is Void.
                    raw_frame(
                        params.stream,
                        ResponseOpcode::Result,
                        Bytes::from_static(VOID),
                    )
                } else {
                    handle_frame(&session, &mut conn, params, opcode, &body)
                };
                if tx.send(response).await.is_err() {
                    break; // The writer has stopped (and said why).
                }
            }
            Err(e) => {
                // The codec cannot resynchronise after a bad frame, so close the connection.
                if !is_disconnect(&e) {
                    eprintln!("cql-server: {peer}: closing connection after a bad or truncated frame: {e}");
                }
                break;
            }
        }
    }
    drop(tx); // Lets the writer drain what is queued and finish.
    let _ = writer_task.await;
}

/// Sends queued responses, coalescing everything already queued into one flush.
async fn write_responses(
    writer: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<OutFrame>,
    peer: SocketAddr,
) {
    let mut sink = frame::raw_response_sink(writer);
    while let Some(first) = rx.recv().await {
        let mut result = sink.feed(first).await;
        while result.is_ok() {
            match rx.try_recv() {
                Ok(next) => result = sink.feed(next).await,
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = sink.flush().await;
        }
        if let Err(e) = result {
            if !is_disconnect(&e) {
                eprintln!("cql-server: {peer}: write failed, closing connection: {e}");
            }
            return;
        }
    }
}

/// True for the errors of a client that simply went away.
fn is_disconnect(e: &eyre::Report) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(cql_server::is_disconnect)
    })
}

/// Turns one request frame into one response frame. Never panics: kassandra is only called under
/// `catch_unwind`.
fn handle_frame(
    session: &Mutex<KassandraSession>,
    conn: &mut Connection,
    params: FrameParams,
    opcode: RequestOpcode,
    body: &[u8],
) -> OutFrame {
    let response = if params.version.is_unsupported() {
        // The message drivers look for before downgrading the protocol version.
        Response::unsupported_version()
    } else {
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
            authenticate(session, conn, opcode, body, params.flags).unwrap_or_else(|| {
                Reply::Kassandra(dispatch(session, conn, opcode, body, params.flags))
            })
        }));
        match outcome {
            Ok(Reply::Raw(opcode, body)) => return raw_frame(params.stream, opcode, body),
            Ok(Reply::Kassandra(response)) => response,
            Err(payload) => server_error(format!(
                "kassandra panicked on a {opcode:?} request: {}",
                panic_message(payload.as_ref())
            )),
        }
    };
    encode(params.stream, response, conn.peer)
}

/// Decodes and executes one request.
fn dispatch(
    session: &Mutex<KassandraSession>,
    conn: &mut Connection,
    opcode: RequestOpcode,
    body: &[u8],
    flags: FrameFlags,
) -> Response {
    // Parsing (including the CQL text) happens outside the session lock.
    let request = match Request::deserialize(opcode, body, flags) {
        Ok(request) => request,
        Err(e) => return Response::Error(e),
    };
    match request {
        Request::Options => Response::options(),
        Request::StartUp(options) => {
            // OPTIONS advertises no compression; refuse it rather than misread compressed frames.
            if options.contains_key("COMPRESSION") {
                protocol_error("compression is not supported by this server")
            } else {
                Response::Ready
            }
        }
        // Accept event registration (drivers register on their control connection) but never
        // push events: kassandra cannot serialize them, and a single node has no topology news.
        Request::Register { .. } => Response::Ready,
        // Never reached: `authenticate` answers AUTH_RESPONSE (kassandra cannot parse it).
        Request::AuthResponse => protocol_error("unexpected AUTH_RESPONSE"),
        Request::Query(query) => execute(session, conn, |s| s.process(query)),
        Request::Prepare(query) => {
            let insert = matches!(query, QueryString::Insert(_));
            let response = execute(session, conn, |s| s.prepare(query));
            if let (Some(discarded), true, Response::Result(QueryResult::Prepared(prepared))) =
                (&conn.discarded, insert, &response)
            {
                discarded
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(prepared.id);
            }
            response
        }
        // `--writes discard` answered prepared INSERTs before decoding (`discards_frame`).
        Request::Execute(execute_req) => execute(session, conn, |s| s.execute(execute_req)),
        Request::Batch(batch) => execute(session, conn, |s| s.process_batch(batch)),
    }
}

/// A RESULT body of kind Void.
const VOID: &[u8] = &[0, 0, 0, 1];

/// Whether `--writes discard` answers this EXECUTE or BATCH frame at once: every statement in
/// it is a prepared INSERT. Reads only the ids (and skips a batch's values by their lengths),
/// so an acknowledged write costs a few hundred nanoseconds; anything it cannot read goes the
/// usual way, where kassandra decodes it and answers errors.
fn discards_frame(conn: &Connection, opcode: RequestOpcode, body: &[u8]) -> bool {
    if conn.discarded.is_none() {
        return false;
    }
    /// `[short bytes]`: the bytes and the rest.
    fn short_bytes(input: &[u8]) -> Option<(&[u8], &[u8])> {
        let (length, rest) = input.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_be_bytes(*length));
        (rest.len() >= length).then(|| rest.split_at(length))
    }
    match opcode {
        RequestOpcode::Execute => short_bytes(body).is_some_and(|(id, _)| discards(conn, [id])),
        RequestOpcode::Batch => {
            let mut ids = Vec::new();
            let Some((_batch_type, rest)) = body.split_first() else {
                return false;
            };
            let Some((count, mut rest)) = rest.split_first_chunk::<2>() else {
                return false;
            };
            for _ in 0..u16::from_be_bytes(*count) {
                // kind 1: prepared, then the id and `[short]` values of `[bytes]` each.
                let Some((1, after_kind)) = rest.split_first() else {
                    return false;
                };
                let Some((id, after_id)) = short_bytes(after_kind) else {
                    return false;
                };
                let Some((values, mut after)) = after_id.split_first_chunk::<2>() else {
                    return false;
                };
                for _ in 0..u16::from_be_bytes(*values) {
                    let Some((length, tail)) = after.split_first_chunk::<4>() else {
                        return false;
                    };
                    let length = usize::try_from(i32::from_be_bytes(*length)).unwrap_or(0);
                    let Some(tail) = tail.get(length..) else {
                        return false;
                    };
                    after = tail;
                }
                ids.push(id);
                rest = after;
            }
            !ids.is_empty() && discards(conn, ids)
        }
        _ => false,
    }
}

/// Whether `--writes discard` acknowledges these statements unrun: every one is a prepared
/// INSERT.
fn discards<'a>(conn: &Connection, ids: impl IntoIterator<Item = &'a [u8]>) -> bool {
    let Some(discarded) = &conn.discarded else {
        return false;
    };
    let discarded = discarded.read().unwrap_or_else(PoisonError::into_inner);
    ids.into_iter().all(|id| {
        <[u8; 16]>::try_from(id).is_ok_and(|id| discarded.contains(&u128::from_be_bytes(id)))
    })
}

/// A response: encoded here, or by kassandra.
// One per request, moved once: the size difference costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Reply {
    /// A body kassandra cannot serialize (AUTHENTICATE, AUTH_SUCCESS).
    Raw(ResponseOpcode, Bytes),
    /// A response kassandra serializes.
    Kassandra(Response),
}

/// The login handshake (PasswordAuthenticator, SASL PLAIN), before kassandra sees a request.
/// `None`: not part of the handshake, dispatch as usual.
fn authenticate(
    session: &Mutex<KassandraSession>,
    conn: &mut Connection,
    opcode: RequestOpcode,
    body: &[u8],
    flags: FrameFlags,
) -> Option<Reply> {
    let Some(credentials) = conn.auth.clone() else {
        // kassandra panics on AUTH_RESPONSE; answer it as a server without authentication.
        return matches!(opcode, RequestOpcode::AuthResponse).then(|| {
            Reply::Kassandra(protocol_error(
                "authentication is not enabled on this server",
            ))
        });
    };
    if conn.authenticated {
        return matches!(opcode, RequestOpcode::AuthResponse)
            .then(|| Reply::Kassandra(protocol_error("already authenticated")));
    }
    Some(match opcode {
        RequestOpcode::Options => return None,
        RequestOpcode::Startup => match dispatch(session, conn, opcode, body, flags) {
            Response::Ready => {
                let mut out = BytesMut::new();
                put_string(&mut out, AUTHENTICATOR);
                Reply::Raw(ResponseOpcode::Authenticate, out.freeze())
            }
            refused => Reply::Kassandra(refused),
        },
        RequestOpcode::AuthResponse => match sasl_plain(body) {
            Some((user, password))
                if user == credentials.user.as_bytes()
                    && password == credentials.password.as_bytes() =>
            {
                conn.authenticated = true;
                let mut out = BytesMut::new();
                out.put_i32(-1); // [bytes] null: no final SASL token
                Reply::Raw(ResponseOpcode::AuthSuccess, out.freeze())
            }
            // Cassandra's own wording, which drivers show as is.
            _ => Reply::Kassandra(Response::Error(CqlError::new(
                DbError::AuthenticationError,
                "Provided username and/or password are incorrect",
            ))),
        },
        _ => Reply::Kassandra(Response::Error(CqlError::new(
            DbError::ProtocolError,
            "authentication required: send STARTUP and AUTH_RESPONSE first",
        ))),
    })
}

/// The user and password of an AUTH_RESPONSE body: a `[bytes]` SASL PLAIN token,
/// `authzid NUL user NUL password`.
fn sasl_plain(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let (length, token) = body.split_first_chunk::<4>()?;
    let token = token.get(..usize::try_from(i32::from_be_bytes(*length)).ok()?)?;
    let mut parts = token.splitn(3, |b| *b == 0);
    let (_authzid, user, password) = (parts.next()?, parts.next()?, parts.next()?);
    Some((user, password))
}

/// A `[string]`: u16 length, UTF-8.
fn put_string(out: &mut BytesMut, s: &str) {
    out.put_u16(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// A response frame whose body was encoded here.
fn raw_frame(stream: i16, opcode: ResponseOpcode, body: Bytes) -> OutFrame {
    let params = FrameParams {
        version: ProtocolVersion::V4,
        flags: FrameFlags::empty(),
        stream,
    };
    (params, opcode, body)
}

/// Runs `op` on the shared session with this connection's keyspace selected.
fn execute(
    session: &Mutex<KassandraSession>,
    conn: &mut Connection,
    op: impl FnOnce(&mut KassandraSession) -> Result<QueryResult, CqlError>,
) -> Response {
    let result = {
        // A panic in an earlier request poisons the mutex. kassandra's in-memory state is still
        // usable (at worst that one statement was half applied), so keep serving.
        let mut guard = session.lock().unwrap_or_else(PoisonError::into_inner);
        guard.use_keyspace(conn.keyspace.as_deref().unwrap_or(NO_KEYSPACE));
        op(&mut guard)
    };
    match result {
        Ok(result) => {
            if let QueryResult::SetKeyspace(set) = &result {
                conn.keyspace = Some(set.keyspace_name.clone());
            }
            Response::Result(result)
        }
        Err(e) => Response::Error(e),
    }
}

fn server_error(message: String) -> Response {
    Response::Error(CqlError::new(DbError::ServerError, message))
}

fn protocol_error(message: &str) -> Response {
    Response::Error(CqlError::new(DbError::ProtocolError, message))
}

/// Serializes a response body (under `catch_unwind`: some kassandra response types are
/// `unimplemented!()`) and wraps it for the raw response sink.
fn encode(stream: i16, response: Response, peer: SocketAddr) -> OutFrame {
    let serialize = |response: &Response| {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let mut body = BytesMut::new();
            let mut flags = FrameFlags::empty();
            response
                .serialize(&mut body, &mut flags)
                .map(|()| (body, flags))
        }))
        .map_err(|payload| format!("panic: {}", panic_message(payload.as_ref())))
        .and_then(|result| result.map_err(|e| e.to_string()))
    };

    let (opcode, body, flags) = match serialize(&response) {
        Ok((body, flags)) => (response_opcode(&response), body, flags),
        Err(why) => {
            eprintln!("cql-server: {peer}: cannot serialize a response: {why}");
            let fallback = server_error(format!(
                "cql-server could not serialize the response: {why}"
            ));
            // Error bodies are plain strings and integers; this cannot fail.
            let (body, flags) =
                serialize(&fallback).unwrap_or_else(|_| (BytesMut::new(), FrameFlags::empty()));
            (ResponseOpcode::Error, body, flags)
        }
    };
    let mut frame = raw_frame(stream, opcode, body.freeze());
    frame.0.flags = flags;
    frame
}

fn response_opcode(response: &Response) -> ResponseOpcode {
    match response {
        Response::Error(_) => ResponseOpcode::Error,
        Response::Ready => ResponseOpcode::Ready,
        Response::Authenticate(_) => ResponseOpcode::Authenticate,
        Response::Supported(_) => ResponseOpcode::Supported,
        Response::Result(_) => ResponseOpcode::Result,
        Response::Event(_) => ResponseOpcode::Event,
        Response::AuthChallenge(_) => ResponseOpcode::AuthChallenge,
        Response::AuthSuccess(_) => ResponseOpcode::AuthSuccess,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Args>, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn args() {
        let a = parse(&[]).unwrap().unwrap();
        assert_eq!(a.listen.to_string(), "127.0.0.1:0");
        assert!(a.port_file.is_none());

        let a = parse(&["--listen", "127.0.0.1:9042", "--port-file=/tmp/p"])
            .unwrap()
            .unwrap();
        assert_eq!(a.listen.port(), 9042);
        assert_eq!(a.port_file.unwrap(), PathBuf::from("/tmp/p"));

        assert!(parse(&["--help"]).unwrap().is_none());
        assert!(parse(&["--listen"]).is_err());
        assert!(parse(&["--listen", "localhost"]).is_err());
        assert!(parse(&["--port", "1"]).is_err());
        assert!(parse(&["--listen=127.0.0.1:1", "--listen=127.0.0.1:2"]).is_err());

        let a = parse(&[
            "--auth",
            "weir:s3cret:x",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .unwrap()
        .unwrap();
        let auth = a.auth.unwrap();
        assert_eq!(
            (auth.user.as_str(), auth.password.as_str()),
            ("weir", "s3cret:x")
        );
        assert_eq!(a.tls.unwrap().1, PathBuf::from("k.pem"));
        assert!(parse(&["--auth", "nopassword"]).is_err());
        assert!(parse(&["--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn sasl_plain_tokens() {
        let mut body = 12i32.to_be_bytes().to_vec();
        body.extend_from_slice(b"\0weir\0s3cret");
        assert_eq!(sasl_plain(&body), Some((&b"weir"[..], &b"s3cret"[..])));
        assert_eq!(sasl_plain(&body[..8]), None, "truncated");
        assert_eq!(
            sasl_plain(&[0, 0, 0, 3, b'a', 0, b'b']),
            None,
            "no password"
        );
    }
}
