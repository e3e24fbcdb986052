//! The one error type of this crate.

use wharf_storage::BackendError;

/// A failure talking to the object store, named by meaning.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The object (or multipart upload) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The server answered with an error status.
    #[error("{method} {key}: HTTP {status} {code}: {message}")]
    Status {
        /// Request method.
        method: String,
        /// Object key (empty for bucket requests).
        key: String,
        /// HTTP status.
        status: u16,
        /// S3 error code (`SlowDown`, `AccessDenied`, ...), when given.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The request did not get an answer (connection, timeout, TLS).
    #[error("{context}: {source}")]
    Transport {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from the object store: {0}")]
    Protocol(String),
    /// The settings are unusable.
    #[error("invalid S3 settings: {0}")]
    Config(String),
}

impl From<S3Error> for BackendError {
    fn from(e: S3Error) -> Self {
        match e {
            S3Error::NotFound(what) => BackendError::NotFound(what),
            other => BackendError::Other(Box::new(other)),
        }
    }
}
