//! Fetching users from the randomuser.me API: timeouts, retries with exponential backoff and
//! jitter, `Retry-After`, and a circuit breaker.
//!
//! An attempt is retried when it may succeed later: the connection failed or timed out (also
//! while reading the body: a response that never ends), or the server answered 5xx, 408 or 429.
//! The wait is the server's `Retry-After` when it sends one, else `backoff * 2^attempt` capped
//! at `max_backoff`, drawn uniformly from its upper half (jitter, so that many producers do not
//! retry in step). Other 4xx answers mean the request itself is wrong: the run stops with the
//! status. After `breaker_after` consecutive failed attempts the breaker opens: no request is
//! sent for `breaker_pause`, and a line says so; then one request is let through, and one more
//! failure reopens it.
//!
//! A retry never duplicates users: a response is only used once it was received whole, and
//! users are identified by the API's own `login.uuid`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Reporter, Stats, Stop};
use crate::error::{Error, Result};

/// How to reach the API and how hard to try.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// The API URL; `results=N` is set on it per request.
    pub url: String,
    /// TCP + TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout, body included.
    pub timeout: Duration,
    /// Retries per request after the first attempt.
    pub retries: u32,
    /// First backoff.
    pub backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
    /// Consecutive failed attempts that open the breaker.
    pub breaker_after: u32,
    /// How long an open breaker pauses.
    pub breaker_pause: Duration,
}

/// The longest `Retry-After` honoured; a larger one is capped (and reported as such).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// What one request came to.
#[derive(Debug)]
pub enum Fetched {
    /// The body of a successful response, and when it was received (epoch ms).
    Body(Vec<u8>, u64),
    /// Every retry failed; the reason of the last failure.
    GaveUp(String),
    /// Shutdown or the deadline came first.
    Stopped,
}

enum Attempt {
    Ok(Vec<u8>),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Fatal(String),
}

/// Counts consecutive failures; opens (pauses) after `after` of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaker {
    after: u32,
    consecutive: u32,
}

impl Breaker {
    /// A closed breaker that opens after `after` consecutive failures (0: never).
    pub fn new(after: u32) -> Self {
        Breaker {
            after,
            consecutive: 0,
        }
    }

    /// A success closes the breaker.
    pub fn success(&mut self) {
        self.consecutive = 0;
    }

    /// Records a failure. After the breaker opens, the next attempt is a trial: one more
    /// failure opens it again.
    pub fn failure(&mut self) -> BreakerState {
        if self.after == 0 {
            return BreakerState::Closed;
        }
        self.consecutive += 1;
        if self.consecutive > self.after {
            self.consecutive = self.after;
            BreakerState::Reopened
        } else if self.consecutive == self.after {
            BreakerState::Opened
        } else {
            BreakerState::Closed
        }
    }
}

/// What a failure did to the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Still closed: retry after the backoff.
    Closed,
    /// Opened now: pause.
    Opened,
    /// The trial after a pause failed: pause again.
    Reopened,
}

/// The wait before retry number `attempt` (0-based): `base * 2^attempt` capped at `max`, drawn
/// uniformly from its upper half.
pub fn backoff(attempt: u32, base: Duration, max: Duration, rng: &mut fastrand::Rng) -> Duration {
    let ceiling = base
        .checked_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max);
    let half = ceiling / 2;
    half + Duration::from_nanos(rng.u64(0..=(ceiling - half).as_nanos() as u64))
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (relative to `now_ms`).
pub fn parse_retry_after(value: &str, now_ms: u64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value)
        .ok()?
        .timestamp_millis();
    Some(Duration::from_millis((at - now_ms as i64).max(0) as u64))
}

/// A client of the API.
pub struct ApiClient {
    client: reqwest::Client,
    url: reqwest::Url,
    config: HttpConfig,
    breaker: Breaker,
    rng: fastrand::Rng,
}

impl HttpConfig {
    /// The API's URL, checked (pure: no request is made).
    pub fn checked_url(&self) -> Result<reqwest::Url> {
        reqwest::Url::parse(&self.url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                Error::Config(format!(
                    "--api {:?} is not an http(s) URL like https://randomuser.me/api/",
                    self.url
                ))
            })
    }
}

impl ApiClient {
    /// Checks the URL and builds the client.
    pub fn new(config: HttpConfig) -> Result<Self> {
        let url = config.checked_url()?;
        let client = reqwest::Client::builder()
            // A dead host or a black-holed route fails in seconds, not the OS's minutes.
            .connect_timeout(config.connect_timeout)
            // Bounds the whole exchange, body included: a response that never ends is a
            // failed attempt, retried, instead of a stuck producer.
            .timeout(config.timeout)
            // Tells the API's operators who is calling.
            .user_agent(concat!(
                "weir/",
                env!("CARGO_PKG_VERSION"),
                " (weir produce)"
            ))
            .build()
            .map_err(|e| Error::Http(format!("cannot build the HTTP client: {e}")))?;
        Ok(ApiClient {
            client,
            url,
            breaker: Breaker::new(config.breaker_after),
            config,
            rng: fastrand::Rng::new(),
        })
    }

    /// The URL asking for `n` users.
    pub fn request_url(&self, n: usize) -> reqwest::Url {
        let mut url = self.url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "results")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(kept)
            .append_pair("results", &n.to_string());
        url
    }

    async fn attempt(&self, url: &reqwest::Url) -> Attempt {
        let retry = |reason: String| Attempt::Retry {
            reason,
            after: None,
        };
        let response = match self.client.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => return Attempt::Fatal(format!("{url}: {e}")),
            Err(e) => return retry(describe(&e)),
        };
        let status = response.status();
        if status.is_success() {
            return match response.bytes().await {
                Ok(body) => Attempt::Ok(body.to_vec()),
                Err(e) => retry(format!("reading the response: {}", describe(&e))),
            };
        }
        let reason = format!("HTTP {status}");
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            let after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, crate::time::now_ms()));
            return Attempt::Retry { reason, after };
        }
        Attempt::Fatal(format!(
            "the API answered {reason} for {url}; check --api (this is not retried)"
        ))
    }

    /// Fetches `n` users, retrying as the module doc says.
    pub async fn fetch(
        &mut self,
        n: usize,
        stats: &Stats,
        reporter: &Reporter,
        stop: &Stop,
    ) -> Result<Fetched> {
        let url = self.request_url(n);
        let mut attempt = 0;
        loop {
            if stop.now() {
                return Ok(Fetched::Stopped);
            }
            stats.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = tokio::select! {
                outcome = self.attempt(&url) => outcome,
                _ = stop.wait() => return Ok(Fetched::Stopped),
            };
            let (reason, after) = match outcome {
                Attempt::Ok(body) => {
                    self.breaker.success();
                    return Ok(Fetched::Body(body, crate::time::now_ms()));
                }
                Attempt::Fatal(message) => return Err(Error::Http(message)),
                Attempt::Retry { reason, after } => (reason, after),
            };
            *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = reason.clone();
            let breaker = self.breaker.failure();
            let pause = self.config.breaker_pause;
            if attempt >= self.config.retries {
                stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                if breaker != BreakerState::Closed {
                    self.breaker_note(breaker, &reason, pause, reporter);
                    stop.sleep(pause).await;
                }
                return Ok(Fetched::GaveUp(reason));
            }
            let mut wait = match after {
                Some(after) if after > MAX_RETRY_AFTER => {
                    reporter.note(&format!(
                        "the API asks to wait {}; waiting {} (the most weir honours)",
                        humantime::format_duration(after),
                        humantime::format_duration(MAX_RETRY_AFTER)
                    ));
                    MAX_RETRY_AFTER
                }
                Some(after) => after,
                None => backoff(
                    attempt,
                    self.config.backoff,
                    self.config.max_backoff,
                    &mut self.rng,
                ),
            };
            if breaker == BreakerState::Closed {
                reporter.note(&format!(
                    "{reason}; retry {} of {} in {}",
                    attempt + 1,
                    self.config.retries,
                    humantime::format_duration(round_ms(wait))
                ));
            } else {
                wait = wait.max(pause);
                self.breaker_note(breaker, &reason, wait, reporter);
            }
            stats.retried.fetch_add(1, Ordering::Relaxed);
            stop.sleep(wait).await;
            attempt += 1;
        }
    }
}

impl ApiClient {
    fn breaker_note(
        &self,
        state: BreakerState,
        reason: &str,
        pause: Duration,
        reporter: &Reporter,
    ) {
        let pause = humantime::format_duration(round_ms(pause));
        reporter.note(&match state {
            BreakerState::Reopened => {
                format!("circuit breaker still open: the trial request failed ({reason}); pausing {pause}")
            }
            _ => format!(
                "circuit breaker open after {} consecutive failures (last: {reason}); pausing {pause} before the next request",
                self.config.breaker_after
            ),
        });
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

/// A transport error in a few words, with its root cause.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "broken response body"
    } else {
        "request failed"
    };
    let mut root: &dyn std::error::Error = e;
    while let Some(source) = root.source() {
        root = source;
    }
    format!("{what}: {root}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut rng = fastrand::Rng::with_seed(1);
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 0..40 {
            let ceiling = (base * 2u32.saturating_pow(attempt.min(20))).min(max);
            for _ in 0..50 {
                let d = backoff(attempt, base, max, &mut rng);
                assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
            }
        }
        assert_eq!(backoff(3, Duration::ZERO, max, &mut rng), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_seconds_or_an_http_date() {
        assert_eq!(parse_retry_after("3", 0), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 ", 0), Some(Duration::ZERO));
        let now = crate::time::parse_rfc3339("2015-10-21T07:27:58Z").unwrap() as u64;
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now + 10_000),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn breaker_opens_after_n_failures_and_reopens_on_a_failed_trial() {
        use BreakerState::*;
        let mut b = Breaker::new(3);
        assert_eq!(
            [b.failure(), b.failure(), b.failure()],
            [Closed, Closed, Opened]
        );
        assert_eq!(b.failure(), Reopened, "the trial after a pause failed");
        assert_eq!(b.failure(), Reopened);
        b.success();
        assert_eq!(
            [b.failure(), b.failure(), b.failure()],
            [Closed, Closed, Opened]
        );
        let mut never = Breaker::new(0);
        assert!((0..100).all(|_| never.failure() == Closed));
    }

    #[test]
    fn results_is_set_and_other_parameters_kept() {
        let client = ApiClient::new(HttpConfig {
            url: "https://randomuser.me/api/?nat=us,dk&results=3".into(),
            connect_timeout: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            retries: 0,
            backoff: Duration::ZERO,
            max_backoff: Duration::ZERO,
            breaker_after: 0,
            breaker_pause: Duration::ZERO,
        })
        .unwrap();
        assert_eq!(
            client.request_url(10).as_str(),
            "https://randomuser.me/api/?nat=us%2Cdk&results=10"
        );
        assert!(ApiClient::new(HttpConfig {
            url: "ftp://x".into(),
            ..client.config.clone()
        })
        .is_err());
    }
}
