//! Servers a fault test owns: a tansu broker it can kill, restart and pause, and testbed's
//! fault proxy in front of it (the broker advertises the proxy, so every client connection,
//! Weir's and the test producer's, goes through it). `scripts/test-servers.sh` exports where
//! the binaries are; a test fails, never skips, when they are missing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, signal, wait_until};

fn binary(variable: &str, name: &str) -> PathBuf {
    let path = std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the tests through `bash scripts/test.sh` (it installs and starts the test servers)")
    });
    let path = PathBuf::from(path);
    let path = if name.is_empty() {
        path
    } else {
        path.join(name)
    };
    assert!(path.is_file(), "{variable}: {} is missing", path.display());
    path
}

/// testbed's fault proxy: `pass`, `latency MS`, `throttle B`, `blackhole`, `reset`, `refuse`.
pub struct FaultProxy {
    child: Child,
    /// Where clients connect.
    pub addr: String,
    control: String,
}

impl FaultProxy {
    /// A proxy on `port` forwarding to `to`, in `pass` mode.
    pub fn start(port: u16, to: &str) -> FaultProxy {
        let control = format!("127.0.0.1:{}", free_port());
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(binary("WEIR_TEST_TESTBED", "fault-proxy"))
            .args(["--listen", &addr, "--to", to, "--control", &control])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fault-proxy");
        let mut lines = BufReader::new(child.stdout.take().expect("its stdout")).lines();
        // It prints `listening ...` and `control ...` once both sockets are bound.
        for _ in 0..2 {
            lines
                .next()
                .expect("fault-proxy printed its addresses")
                .expect("fault-proxy's stdout");
        }
        FaultProxy {
            child,
            addr,
            control,
        }
    }

    /// Sends one command and checks the answer.
    pub fn set(&self, command: &str) {
        let mut stream = TcpStream::connect(&self.control).expect("the proxy's control port");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("a timeout");
        writeln!(stream, "{command}").expect("send a command");
        let mut answer = String::new();
        BufReader::new(&stream)
            .read_line(&mut answer)
            .expect("the proxy answers");
        assert_eq!(answer.trim(), "ok", "fault-proxy refused {command:?}");
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A tansu broker on its own sqlite storage, behind a [`FaultProxy`] it advertises.
pub struct Broker {
    dir: PathBuf,
    port: u16,
    advertised: u16,
    tansu: Option<Child>,
    /// The proxy clients go through.
    pub proxy: FaultProxy,
}

impl Broker {
    /// A fresh broker in `dir`.
    pub fn start(dir: &Path) -> Broker {
        let port = free_port();
        let advertised = free_port();
        let proxy = FaultProxy::start(advertised, &format!("127.0.0.1:{port}"));
        let mut broker = Broker {
            dir: dir.to_path_buf(),
            port,
            advertised,
            tansu: None,
            proxy,
        };
        broker.restart();
        broker
    }

    /// `bootstrap.servers` for clients: the proxy.
    pub fn addr(&self) -> String {
        self.proxy.addr.clone()
    }

    /// Starts tansu (again) on the same storage and port, and waits until it answers.
    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("the broker's directory");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .expect("the broker's log");
        // The sqlite path is relative to the working directory (an absolute URL is mangled).
        let child = Command::new(binary("WEIR_TEST_TANSU", ""))
            .current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{}", self.advertised),
                "--storage-engine",
                "sqlite://tansu.db",
            ])
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.tansu = Some(child);
        let tansu = binary("WEIR_TEST_TANSU", "");
        let broker = format!("tcp://127.0.0.1:{}", self.port);
        wait_until(Duration::from_secs(30), "tansu answers", || {
            Command::new(&tansu)
                .args(["topic", "list", "--broker", &broker])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.tansu.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the broker keeps its connections and answers nothing.
    pub fn pause(&self) {
        signal(
            self.tansu.as_ref().expect("a running broker"),
            libc::SIGSTOP,
        );
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(
            self.tansu.as_ref().expect("a running broker"),
            libc::SIGCONT,
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(child) = &self.tansu {
            let _ = unsafe { libc::kill(child.id() as i32, libc::SIGCONT) };
        }
        self.kill();
    }
}

/// Calls `each` every `every` for `total`.
pub fn repeatedly(total: Duration, every: Duration, mut each: impl FnMut()) {
    let started = Instant::now();
    while started.elapsed() < total {
        each();
        std::thread::sleep(every);
    }
}

/// testbed's CQL server (in memory: a restart would be an empty store, so store outages are
/// pauses and proxy faults), behind a [`FaultProxy`].
pub struct CqlServer {
    child: Child,
    /// The server itself (for reading the tables back).
    pub addr: String,
    /// The proxy Weir writes through.
    pub proxy: FaultProxy,
}

impl CqlServer {
    /// A fresh server; its port file goes in `dir`.
    pub fn start(dir: &Path) -> CqlServer {
        std::fs::create_dir_all(dir).expect("the server's directory");
        let port_file = dir.join("port");
        let child = Command::new(binary("WEIR_TEST_TESTBED", "cql-server"))
            .args(["--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .env("RUST_LIB_BACKTRACE", "0")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cql-server");
        let mut port = String::new();
        wait_until(
            Duration::from_secs(30),
            "cql-server writes its port",
            || {
                port = std::fs::read_to_string(&port_file).unwrap_or_default();
                !port.trim().is_empty()
            },
        );
        let addr = format!("127.0.0.1:{}", port.trim());
        let proxy = FaultProxy::start(free_port(), &addr);
        CqlServer { child, addr, proxy }
    }

    /// SIGSTOP.
    pub fn pause(&self) {
        signal(&self.child, libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&self) {
        signal(&self.child, libc::SIGCONT);
    }
}

impl Drop for CqlServer {
    fn drop(&mut self) {
        let _ = unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
