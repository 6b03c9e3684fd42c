//! The one error type of the domain and its ports. Each variant says what kind of failure it
//! is; `daef-http` maps kinds to statuses, and no other crate picks a status.

use std::fmt;

/// A boxed error from a backend driver.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or breaks a rule; the message names the field at fault.
    #[error("{0}")]
    Invalid(String),
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(Resource),
    /// The request conflicts with the current state (for example a stale lease).
    #[error("{0}")]
    Conflict(String),
    /// A backend could not be reached or did not answer in time; retrying later may work.
    #[error("{backend} unavailable")]
    Unavailable {
        /// `postgres`, `redis`, …
        backend: &'static str,
        /// The driver's error; logged, never shown to clients.
        #[source]
        source: BoxError,
    },
    /// A backend answered with something it should not have, or an invariant was broken.
    #[error("{backend} error")]
    Backend {
        /// `postgres`, `redis`, `memory`, …
        backend: &'static str,
        /// The underlying error; logged, never shown to clients.
        #[source]
        source: BoxError,
    },
}

/// Resources a lookup can miss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    /// A job id.
    Job,
    /// A task id within a job.
    Task,
    /// A worker id.
    Worker,
    /// A schedule id.
    Schedule,
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Job => "job",
            Resource::Task => "task",
            Resource::Worker => "worker",
            Resource::Schedule => "schedule",
        })
    }
}

impl Error {
    /// An [`Error::Invalid`] with this message.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }

    /// An [`Error::Conflict`] with this message.
    pub fn conflict(msg: impl Into<String>) -> Self {
        Error::Conflict(msg.into())
    }

    /// An [`Error::Backend`] for an unexpected failure inside `backend`.
    pub fn backend(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Backend {
            backend,
            source: source.into(),
        }
    }

    /// An [`Error::Unavailable`] for a backend that cannot be reached.
    pub fn unavailable(backend: &'static str, source: impl Into<BoxError>) -> Self {
        Error::Unavailable {
            backend,
            source: source.into(),
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
