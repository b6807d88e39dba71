//! `weir produce`: users from the randomuser.me API, the built-in generator or a file, formatted
//! as the tutorial's Airflow DAG formatted them, produced to Kafka. It replaces the DAG.
//!
//! ```text
//!  --api URL ──(HTTP: timeouts, retries, breaker)──┐
//!  --synthetic ──(source::generator, seeded)───────┼─> format ─> Kafka topic (key = id)
//!  --from-file users.jsonl ────────────────────────┘        └─> stdout (--dry-run)
//! ```
//!
//! The contract:
//! - **Ids are stable.** A user's id is the API's `login.uuid` (generator and files carry their
//!   own), never a fresh random id per attempt; a retried request or a replayed file produces
//!   the same ids, so downstream upserts and distinct counts remove duplicates.
//! - **Only whole, valid users are produced.** A response is used once it arrived whole and
//!   parses; a malformed response or a user missing a field is counted as skipped and never
//!   produced. A failed attempt is retried ([`http`]), which cannot duplicate anything because
//!   nothing of it was produced.
//! - **Kafka**: the message key is the id (a user always lands in the same partition, which the
//!   pipeline's "latest row per user" relies on), the timestamp is `created_at`, the producer
//!   is idempotent with `acks=all` ([`kafka`]). Every delivery is counted as produced or failed;
//!   nothing is reported produced before the broker acknowledged it.
//! - **Formatting** is the pure function [`format::format_user`], field for field the
//!   tutorial's `format_data`, plus `nat`, `country` and `created_at` (fetch time, RFC 3339
//!   with milliseconds).
//! - **Synthetic users are the generator's**: `--synthetic --seed S` emits exactly the messages
//!   of [`crate::source::generator`] for seed S, in order, so the pipeline's tests and
//!   `weir produce` agree on what a user looks like. The generated topic is `--topic`'s when it
//!   is `users_created` or `user_events` ([`GeneratorConfig::for_topic`]; `--synthetic-topic`
//!   names it for a topic of another name), else the users: `user_events` are the events of
//!   the users the same flags produce, keyed by `event_id`; `--tombstones-per-mille N` makes N
//!   in 1,000 users messages tombstones of an earlier user (key = the user's id, a null value,
//!   the tombstone's own event time as the timestamp). Each message carries the generator's
//!   key and timestamp as they are.
//!
//! The run ends at `--count`, `--for`, the end of the file, or Ctrl-C, then waits for every
//! delivery. The summary counts fetched, produced, retried, skipped and failed.

pub mod http;
pub mod kafka;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use crate::data::user as format;
use crate::error::{Error, Result};
use crate::source::generator::GeneratorConfig;
use http::{ApiClient, Fetched, HttpConfig};
use kafka::{KafkaSink, KafkaSinkConfig};

/// Where users come from.
#[derive(Clone, Debug)]
pub enum ProduceSource {
    /// The randomuser.me API (or anything that answers like it).
    Api {
        /// HTTP settings.
        http: HttpConfig,
        /// Users per request.
        batch: usize,
        /// Interval between request starts.
        every: Duration,
    },
    /// The built-in generator, read in order (one partition); `rate` paces production.
    Synthetic(GeneratorConfig),
    /// A JSON-lines file of API responses, raw API users or formatted users.
    File(PathBuf),
}

/// Where users go.
#[derive(Clone, Debug)]
pub enum ProduceSink {
    /// A Kafka topic.
    Kafka(KafkaSinkConfig),
    /// JSON lines on stdout (`--dry-run`).
    Print,
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// A progress bar on stderr (a terminal).
    Bar,
    /// A plain line on stderr every so often.
    Log(Duration),
    /// Nothing but warnings.
    Quiet,
}

/// A resolved `weir produce` configuration.
#[derive(Clone, Debug)]
pub struct ProduceConfig {
    /// Source.
    pub source: ProduceSource,
    /// Sink.
    pub sink: ProduceSink,
    /// Stop after this many users were handed to the sink.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// Progress display.
    pub progress: ProgressMode,
}

/// Counters of a run, shared with the delivery callback and the progress display.
#[derive(Debug, Default)]
pub struct Stats {
    /// HTTP attempts.
    pub requests: AtomicU64,
    /// Users received (API), generated or read.
    pub fetched: AtomicU64,
    /// Users handed to the sink.
    pub sent: AtomicU64,
    /// Users acknowledged by Kafka (or printed).
    pub produced: AtomicU64,
    /// HTTP attempts retried.
    pub retried: AtomicU64,
    /// Responses skipped as malformed.
    pub skipped_responses: AtomicU64,
    /// Records skipped as malformed.
    pub skipped_records: AtomicU64,
    /// Requests given up after every retry.
    pub failed_requests: AtomicU64,
    /// Messages Kafka did not accept.
    pub failed_deliveries: AtomicU64,
    /// The last failure, for the final line.
    pub last_error: Mutex<String>,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// HTTP attempts.
    pub requests: u64,
    /// Users received, generated or read.
    pub fetched: u64,
    /// Users acknowledged (or printed).
    pub produced: u64,
    /// HTTP attempts retried.
    pub retried: u64,
    /// Malformed responses skipped.
    pub skipped_responses: u64,
    /// Malformed records skipped.
    pub skipped_records: u64,
    /// Requests given up.
    pub failed_requests: u64,
    /// Messages that failed or were still unacknowledged at the end.
    pub failed_deliveries: u64,
    /// The last failure, if any.
    pub last_error: String,
}

impl Summary {
    /// Skipped responses and records.
    pub fn skipped(&self) -> u64 {
        self.skipped_responses + self.skipped_records
    }

    /// Failed requests and deliveries.
    pub fn failed(&self) -> u64 {
        self.failed_requests + self.failed_deliveries
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "fetched {}, produced {}, retried {}, skipped {}, failed {}",
            self.fetched,
            self.produced,
            self.retried,
            self.skipped(),
            self.failed()
        )?;
        let mut details = Vec::new();
        if self.requests > 0 {
            details.push(plural(self.requests, "HTTP request"));
        }
        if self.skipped() > 0 {
            details.push(format!(
                "skipped {} and {}",
                plural(self.skipped_responses, "malformed response"),
                plural(self.skipped_records, "malformed record")
            ));
        }
        if self.failed() > 0 {
            details.push(format!(
                "failed {} and {}",
                plural(self.failed_requests, "request"),
                plural(self.failed_deliveries, "delivery")
            ));
        }
        if !details.is_empty() {
            write!(f, " ({})", details.join("; "))?;
        }
        Ok(())
    }
}

fn plural(n: u64, word: &str) -> String {
    match (n, word.strip_suffix('y')) {
        (1, _) => format!("1 {word}"),
        (n, Some(stem)) => format!("{n} {stem}ies"),
        (n, None) => format!("{n} {word}s"),
    }
}

impl Stats {
    fn summary(&self, undelivered: u64) -> Summary {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Summary {
            requests: get(&self.requests),
            fetched: get(&self.fetched),
            produced: get(&self.produced),
            retried: get(&self.retried),
            skipped_responses: get(&self.skipped_responses),
            skipped_records: get(&self.skipped_records),
            failed_requests: get(&self.failed_requests),
            failed_deliveries: get(&self.failed_deliveries) + undelivered,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// When to stop: Ctrl-C or the `--for` deadline.
#[derive(Clone, Debug)]
pub struct Stop {
    shutdown: Arc<AtomicBool>,
    deadline: Option<Instant>,
}

impl Stop {
    /// True once the run should stop.
    pub fn now(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Completes when the run should stop.
    pub async fn wait(&self) {
        while !self.now() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sleeps `d`, or less if the run should stop first.
    pub async fn sleep(&self, d: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.wait() => {}
        }
    }
}

/// Prints notes to people: above the progress bar on a terminal, plain lines otherwise.
#[derive(Clone, Debug)]
pub struct Reporter {
    bar: Option<indicatif::ProgressBar>,
}

impl Reporter {
    /// Prints one line.
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(format!("weir produce: {line}")),
            None => eprintln!("weir produce: {line}"),
        }
    }
}

/// Reports the first few of a kind of event one by one, then only counts them.
fn note_first(reporter: &Reporter, n: u64, line: &str, what: &str) {
    const SHOWN: u64 = 10;
    if n <= SHOWN {
        reporter.note(line);
    }
    if n == SHOWN {
        reporter.note(&format!("further {what} are counted, not shown"));
    }
}

/// Updates the bar, or prints a line every interval, from a thread of its own.
struct Ticker {
    done: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(mode: ProgressMode, bar: Option<indicatif::ProgressBar>, stats: Arc<Stats>) -> Ticker {
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        let thread = std::thread::Builder::new()
            .name("weir-produce-progress".into())
            .spawn(move || {
                let started = Instant::now();
                let mut last_line = Instant::now();
                let mut last_produced = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    let s = stats.summary(0);
                    match (mode, &bar) {
                        (ProgressMode::Bar, Some(bar)) => {
                            bar.set_position(s.produced);
                            use indicatif::HumanCount as N;
                            bar.set_message(format!(
                                "fetched {} · retried {} · skipped {} · failed {}",
                                N(s.fetched),
                                N(s.retried),
                                N(s.skipped()),
                                N(s.failed())
                            ));
                        }
                        (ProgressMode::Log(every), _) if last_line.elapsed() >= every => {
                            let rate = (s.produced - last_produced) as f64
                                / last_line.elapsed().as_secs_f64();
                            eprintln!(
                                "weir produce: {:.0}s: {} ({rate:.0} users/s)",
                                started.elapsed().as_secs_f64(),
                                s
                            );
                            last_line = Instant::now();
                            last_produced = s.produced;
                        }
                        _ => {}
                    }
                }
            })
            .ok();
        Ticker { done, thread }
    }

    fn stop(mut self) {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

enum Sink {
    Kafka(KafkaSink),
    Print(std::io::BufWriter<std::io::Stdout>),
}

impl Sink {
    /// Sends one message; `payload` `None` is a tombstone (a Kafka null value; `--dry-run`
    /// prints it as the line `null`).
    async fn send(
        &mut self,
        stats: &Stats,
        stop: &Stop,
        key: Option<&[u8]>,
        payload: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> Result<()> {
        stats.sent.fetch_add(1, Ordering::Relaxed);
        match self {
            Sink::Kafka(k) => {
                k.send(key, payload, timestamp_ms).await;
                Ok(())
            }
            Sink::Print(out) => {
                let line = payload.unwrap_or(b"null");
                match out.write_all(line).and_then(|()| out.write_all(b"\n")) {
                    Ok(()) => {
                        stats.produced.fetch_add(1, Ordering::Relaxed);
                        Ok(())
                    }
                    // `weir produce --dry-run | head`: the reader has what it wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                        stop.shutdown.store(true, Ordering::Relaxed);
                        Ok(())
                    }
                    Err(e) => Err(Error::Input(format!("writing to stdout: {e}"))),
                }
            }
        }
    }

    /// Waits for deliveries; returns how many never were acknowledged.
    fn finish(self) -> Result<u64> {
        match self {
            Sink::Kafka(k) => Ok(k.flush()),
            Sink::Print(mut out) => match out.flush() {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    Err(Error::Input(format!("writing to stdout: {e}")))
                }
                _ => Ok(0),
            },
        }
    }
}

/// Runs `weir produce` until the count, the duration, the file's end or `shutdown`.
pub fn run(config: ProduceConfig, shutdown: Arc<AtomicBool>) -> Result<Summary> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Input(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_async(config, shutdown))
}

async fn run_async(config: ProduceConfig, shutdown: Arc<AtomicBool>) -> Result<Summary> {
    let ProduceConfig {
        source,
        sink,
        count,
        duration,
        progress,
    } = config;
    let stats = Arc::new(Stats::default());
    let bar = (progress == ProgressMode::Bar).then(|| {
        let style = |template: &str| {
            indicatif::ProgressStyle::with_template(template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(
                            w,
                            "{} users/s",
                            indicatif::HumanCount(state.per_sec() as u64)
                        );
                    },
                )
                .progress_chars("=> ")
        };
        let bar = match count {
            Some(n) => indicatif::ProgressBar::new(n).with_style(style(
                "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} produced, {rate}, eta {eta} | {msg}",
            )),
            None => indicatif::ProgressBar::no_length().with_style(style(
                "{spinner} {elapsed_precise} {human_pos} produced, {rate} | {msg}",
            )),
        };
        bar.with_finish(indicatif::ProgressFinish::AndLeave)
    });
    let reporter = Reporter { bar: bar.clone() };
    let stop = Stop {
        shutdown,
        deadline: duration.map(|d| Instant::now() + d),
    };
    let mut sink = match sink {
        ProduceSink::Kafka(c) => {
            Sink::Kafka(KafkaSink::connect(&c, Arc::clone(&stats), reporter.clone()).await?)
        }
        ProduceSink::Print => Sink::Print(std::io::BufWriter::new(std::io::stdout())),
    };
    let ticker = Ticker::start(progress, bar.clone(), Arc::clone(&stats));
    let mut run = Run {
        stats: &stats,
        stop: &stop,
        reporter: &reporter,
        sink: &mut sink,
        count,
    };
    let result = match source {
        ProduceSource::Api { http, batch, every } => run.api(http, batch, every).await,
        ProduceSource::Synthetic(generator) => run.synthetic(generator).await,
        ProduceSource::File(path) => run.file(&path).await,
    };
    let undelivered = sink.finish();
    ticker.stop();
    if let Some(bar) = &bar {
        bar.set_position(stats.produced.load(Ordering::Relaxed));
        bar.finish();
    }
    result?;
    Ok(stats.summary(undelivered?))
}

struct Run<'a> {
    stats: &'a Stats,
    stop: &'a Stop,
    reporter: &'a Reporter,
    sink: &'a mut Sink,
    count: Option<u64>,
}

impl Run<'_> {
    fn remaining(&self) -> Option<u64> {
        self.count
            .map(|c| c.saturating_sub(self.stats.sent.load(Ordering::Relaxed)))
    }

    fn done(&self) -> bool {
        self.stop.now() || self.remaining() == Some(0)
    }

    fn skip_record(&self, error: &format::FormatError) {
        let n = self.stats.skipped_records.fetch_add(1, Ordering::Relaxed) + 1;
        note_first(
            self.reporter,
            n,
            &format!("skipped a malformed record: {error}"),
            "malformed records",
        );
    }

    async fn send_user(&mut self, user: &format::FormattedUser, timestamp_ms: i64) -> Result<()> {
        self.sink
            .send(
                self.stats,
                self.stop,
                Some(user.id.as_bytes()),
                Some(&user.to_json()),
                timestamp_ms,
            )
            .await
    }

    async fn api(&mut self, http: HttpConfig, batch: usize, every: Duration) -> Result<()> {
        let mut client = ApiClient::new(http)?;
        let mut next = Instant::now();
        while !self.done() {
            let n = self.remaining().map_or(batch, |r| (r as usize).min(batch));
            match client
                .fetch(n, self.stats, self.reporter, self.stop)
                .await?
            {
                Fetched::Stopped => break,
                Fetched::GaveUp(reason) => {
                    self.reporter
                        .note(&format!("gave up on a request: {reason}"));
                }
                Fetched::Body(body, fetched_at) => match format::parse_response(&body) {
                    Err(reason) => {
                        let n = self.stats.skipped_responses.fetch_add(1, Ordering::Relaxed) + 1;
                        note_first(
                            self.reporter,
                            n,
                            &format!("skipped a malformed response: {reason}"),
                            "malformed responses",
                        );
                    }
                    Ok(results) => {
                        self.stats
                            .fetched
                            .fetch_add(results.len() as u64, Ordering::Relaxed);
                        for raw in results.iter().take(n) {
                            match format::format_user(raw, fetched_at) {
                                Ok(user) => self.send_user(&user, fetched_at as i64).await?,
                                Err(e) => self.skip_record(&e),
                            }
                        }
                    }
                },
            }
            // The schedule counts from request starts, like a DAG's; a run that fell behind
            // starts the next request at once instead of bursting to catch up.
            next += every;
            let now = Instant::now();
            if next > now {
                self.stop.sleep(next - now).await;
            } else {
                next = now;
            }
        }
        Ok(())
    }

    /// The generator's messages of partition 0 in order (its global order), each with its own
    /// key (`keyed_message`: a user's id, an event's id, the deleted user's id for a tombstone;
    /// none for a malformed message whose id cannot be read), its value (none for a tombstone)
    /// and its event time as the timestamp.
    async fn synthetic(&mut self, generator: GeneratorConfig) -> Result<()> {
        let started = Instant::now();
        let (mut key, mut buf) = (Vec::with_capacity(64), Vec::with_capacity(1024));
        let mut index: u64 = 0;
        while !self.done() {
            if generator.rate > 0.0 {
                let due = started + Duration::from_secs_f64(index as f64 / generator.rate);
                // Sleep only when well ahead: timers tick in milliseconds.
                if due > Instant::now() + Duration::from_millis(5) {
                    self.stop.sleep(due - Instant::now()).await;
                    continue;
                }
            }
            let generated = generator.keyed_message(0, index as i64, &mut key, &mut buf);
            index += 1;
            self.stats.fetched.fetch_add(1, Ordering::Relaxed);
            self.sink
                .send(
                    self.stats,
                    self.stop,
                    generated.keyed.then_some(key.as_slice()),
                    (!generated.tombstone).then_some(buf.as_slice()),
                    generated.timestamp,
                )
                .await?;
        }
        Ok(())
    }

    async fn file(&mut self, path: &std::path::Path) -> Result<()> {
        use std::io::BufRead;
        let file = std::fs::File::open(path)
            .map_err(|e| Error::Input(format!("--from-file {}: {e}", path.display())))?;
        let mut reader = std::io::BufReader::new(file);
        let mut line = Vec::new();
        while !self.done() {
            line.clear();
            let read = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::Input(format!("--from-file {}: {e}", path.display())))?;
            if read == 0 {
                break;
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            for user in format::format_line(text, crate::time::now_ms()) {
                if self.done() {
                    break;
                }
                self.stats.fetched.fetch_add(1, Ordering::Relaxed);
                match user.and_then(|mut u| u.validate().map(|t| (u, t))) {
                    Ok((user, created_at)) => self.send_user(&user, created_at).await?,
                    Err(e) => self.skip_record(&e),
                }
            }
        }
        Ok(())
    }
}

/// The terminal decides: a bar when stderr is a terminal, else a line every `every`.
pub fn progress_mode(quiet: bool, every: Duration) -> ProgressMode {
    if quiet {
        ProgressMode::Quiet
    } else if std::io::stderr().is_terminal() {
        ProgressMode::Bar
    } else {
        ProgressMode::Log(every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_one_line_with_every_total() {
        let s = Summary {
            requests: 63,
            fetched: 600,
            produced: 598,
            retried: 3,
            skipped_responses: 1,
            skipped_records: 1,
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "fetched 600, produced 598, retried 3, skipped 2, failed 0 (63 HTTP requests; skipped 1 malformed response and 1 malformed record)"
        );
        let s = Summary {
            failed_requests: 2,
            failed_deliveries: 1,
            ..Summary::default()
        };
        assert_eq!(
            s.to_string(),
            "fetched 0, produced 0, retried 0, skipped 0, failed 3 (failed 2 requests and 1 delivery)"
        );
    }
}
