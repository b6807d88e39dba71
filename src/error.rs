//! Infrastructure errors: typed, with a hint for people and a retry class.
//!
//! Bad records are not errors (they travel as data to the dead-letter table, see
//! [`crate::data::reject`]); these are the failures of configuration, brokers, databases and
//! the cluster. Every message is one line that says what is wrong and what to do.
//!
//! Each error has an [`ErrorClass`]: a *transient* one (a timeout, an unavailable or
//! overloaded node, a reset connection) is worth retrying with backoff; a *permanent* one (a
//! bad login, a refused authorization, an invalid statement, a schema that does not match)
//! fails the same way every time and stops at once. Threads that do I/O on the engine's
//! behalf (store writers, readers) report what stops them to a [`FirstError`], which the
//! runtime returns from `run`; nothing below the binary ends the process.

use std::sync::{Arc, Mutex};

/// Whether retrying can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Retry with backoff: the same request may succeed later.
    Transient,
    /// Stop: the same request fails the same way every time.
    Permanent,
}

/// Any failure that stops Weir.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag, file or setting that cannot work.
    #[error("{0}")]
    Config(String),
    /// A dataflow file that does not validate.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// Kafka could not be used.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The sink could not be set up or used.
    #[error("{0}")]
    Sink(String),
    /// A store request failed (after its retries, when the failure was transient).
    #[error("{message}")]
    Store {
        /// What failed, for people.
        message: String,
        /// Whether the failure itself was transient.
        class: ErrorClass,
    },
    /// An HTTP source (`weir produce --api`) answered in a way that retrying cannot fix.
    #[error("http: {0}")]
    Http(String),
    /// The input (generator or files) could not be read.
    #[error("input: {0}")]
    Input(String),
    /// The dataflow file changed in a way its stored outputs cannot follow (see
    /// [`crate::resume`]); nothing was written.
    #[error("{0}")]
    Changed(String),
    /// Timely could not start the cluster.
    #[error("cluster: {0}; check --hostfile, -n and -p (every process needs the same hostfile and its own -p)")]
    Cluster(String),
    /// Another process of the cluster went away (it died, or its connection broke) or did not
    /// reach its safe point in time.
    #[error(
        "cluster: {0}; stopping: restart every process (Weir resumes from the stored progress)"
    )]
    PeerLost(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Spec(_) | Error::Changed(_) => 2,
            _ => 1,
        }
    }

    /// Whether retrying the failed request can help.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Store { class, .. } => *class,
            _ => ErrorClass::Permanent,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The first infrastructure error that any thread of the engine reported.
///
/// A store writer or a reader that cannot go on reports here and stops *without*
/// acknowledging or releasing anything: the write stays unacknowledged, so the sink keeps its
/// capability and no progress covers it ("wedge, never lie"). The runtime's worker loops look
/// at it after every step and return the error from `run`.
#[derive(Clone, Debug, Default)]
pub struct FirstError(Arc<Mutex<Reported>>);

/// The reported error's message, and the error until the first worker takes it.
#[derive(Debug, Default)]
struct Reported {
    message: Option<String>,
    error: Option<Error>,
}

impl FirstError {
    fn lock(&self) -> std::sync::MutexGuard<'_, Reported> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `error` unless an earlier one is recorded.
    pub fn report(&self, error: Error) {
        let mut reported = self.lock();
        if reported.message.is_none() {
            tracing::error!("{error}");
            reported.message = Some(error.to_string());
            reported.error = Some(error);
        }
    }

    /// Whether an error was reported.
    pub fn is_set(&self) -> bool {
        self.lock().message.is_some()
    }

    /// The error, for the first caller; every later caller gets one with the same message
    /// (each worker returns an error, one of them the original).
    pub fn take(&self) -> Option<Error> {
        let mut reported = self.lock();
        let class = reported
            .error
            .as_ref()
            .map_or(ErrorClass::Permanent, Error::class);
        reported.error.take().or_else(|| {
            reported
                .message
                .clone()
                .map(|message| Error::Store { message, class })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_error_wins_and_every_worker_sees_one() {
        let first = FirstError::default();
        assert!(!first.is_set());
        first.report(Error::Sink("disk full".into()));
        first.report(Error::Sink("later".into()));
        assert!(first.is_set());
        assert_eq!(
            first.take().map(|e| e.to_string()).as_deref(),
            Some("disk full")
        );
        assert_eq!(
            first.take().map(|e| e.to_string()).as_deref(),
            Some("disk full")
        );
    }
}
