//! The crate's error type.

use std::path::PathBuf;

/// Why a scan, an extraction or an advisory load failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// A layer is not a tar archive (optionally gzip or zstd compressed),
    /// or its archive is malformed.
    #[error("layer {layer}: {message}")]
    Layer {
        /// Which layer (its digest or position).
        layer: String,
        /// What is wrong.
        message: String,
    },
    /// A configured limit was exceeded by client-controlled content.
    #[error("limit exceeded: {what} is larger than {limit}")]
    LimitExceeded {
        /// What was too large.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
    /// The image's manifest cannot be scanned (wrong type, bad JSON).
    #[error("image {digest}: {message}")]
    Image {
        /// The manifest digest.
        digest: String,
        /// What is wrong.
        message: String,
    },
    /// The advisory database cannot be read.
    #[error("advisories at {path}: {message}")]
    Advisories {
        /// The directory or archive.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The registry store failed.
    #[error(transparent)]
    Store(#[from] wharf_storage::StoreError),
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl ScanError {
    /// Whether the image's own content caused the failure (a malformed
    /// layer or manifest, a limit exceeded), as opposed to the storage or
    /// the advisories: scanning it again will fail the same way.
    pub fn is_content_error(&self) -> bool {
        matches!(
            self,
            ScanError::Layer { .. } | ScanError::LimitExceeded { .. } | ScanError::Image { .. }
        )
    }
}

/// Results of this crate.
pub type ScanResult<T> = Result<T, ScanError>;
