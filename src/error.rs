//! Infrastructure errors: typed, with a hint for people and a retry classification.
//!
//! Bad records are not errors (they travel as data to the dead-letter table); these are the
//! failures of configuration, brokers, databases and the cluster. Every message is one line
//! that says what is wrong and what to do.

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
    /// The sink could not be used.
    #[error("{0}")]
    Sink(String),
    /// An HTTP source (`weir produce --api`) answered in a way that retrying cannot fix.
    #[error("http: {0}")]
    Http(String),
    /// The input (generator or files) could not be read.
    #[error("input: {0}")]
    Input(String),
    /// Timely could not start the cluster.
    #[error("cluster: {0}; check --hostfile, -n and -p (every process needs the same hostfile and its own -p)")]
    Cluster(String),
}

impl Error {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) | Error::Spec(_) => 2,
            _ => 1,
        }
    }
}

/// Shorthand.
pub type Result<T, E = Error> = std::result::Result<T, E>;
