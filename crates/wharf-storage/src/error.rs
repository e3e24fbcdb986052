//! The store's error type.

use wharf_types::{Digest, ErrorCode, ManifestError, OciError, RepositoryName, VerifyError};

use crate::backend::BackendError;

/// Why a store operation failed. Each variant maps onto an OCI error code
/// through [`OciError`]; storage failures are 5xx.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The repository has never had content.
    #[error("repository {0} is not known to the registry")]
    NameUnknown(RepositoryName),
    /// The blob is not stored, or not linked into this repository.
    #[error("blob {digest} is not known in repository {repo}")]
    BlobUnknown {
        /// The repository.
        repo: RepositoryName,
        /// The blob.
        digest: Digest,
    },
    /// No manifest under this tag or digest in the repository.
    #[error("manifest {reference} is not known in repository {repo}")]
    ManifestUnknown {
        /// The repository.
        repo: RepositoryName,
        /// The tag or digest asked for.
        reference: String,
    },
    /// A manifest references a blob or manifest the repository lacks.
    #[error("manifest references {digest}, which is not in repository {repo}")]
    ManifestBlobUnknown {
        /// The repository.
        repo: RepositoryName,
        /// The missing content.
        digest: Digest,
    },
    /// The manifest document is invalid.
    #[error(transparent)]
    ManifestInvalid(#[from] ManifestError),
    /// The manifest bytes do not hash to the digest in the URL.
    #[error("manifest digest {actual} does not match the reference {expected}")]
    ManifestDigestMismatch {
        /// The digest in the request.
        expected: Digest,
        /// The digest of the body.
        actual: Digest,
    },
    /// No upload session with this id in this repository.
    #[error("upload {0} is not known (it may have completed, been cancelled or expired)")]
    UploadUnknown(String),
    /// A chunk does not start where the upload currently ends.
    #[error("chunk starts at offset {requested}, but the upload has {current} bytes")]
    UploadOffset {
        /// Where the chunk claims to start.
        requested: u64,
        /// The upload's current length.
        current: u64,
    },
    /// Uploaded content does not match its digest or declared size.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The request body ended early or failed.
    #[error("request body failed: {0}")]
    Body(#[source] std::io::Error),
    /// A byte range outside the blob.
    #[error("range {start}-{end} is outside the blob of {size} bytes")]
    RangeNotSatisfiable {
        /// First byte asked for.
        start: u64,
        /// Last byte asked for (inclusive).
        end: u64,
        /// Blob size.
        size: u64,
    },
    /// Data in the backend is not what the store wrote (corruption).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend failed.
    #[error(transparent)]
    Backend(BackendError),
}

impl From<BackendError> for StoreError {
    fn from(e: BackendError) -> Self {
        match e {
            BackendError::Input(io) => {
                // A body that overran its declared length carries the
                // verification error inside the I/O error.
                match io
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<VerifyError>())
                {
                    Some(v) => StoreError::Verify(v.clone()),
                    None => StoreError::Body(io),
                }
            }
            other => StoreError::Backend(other),
        }
    }
}

impl OciError for StoreError {
    fn code(&self) -> ErrorCode {
        match self {
            StoreError::NameUnknown(_) => ErrorCode::NameUnknown,
            StoreError::BlobUnknown { .. } => ErrorCode::BlobUnknown,
            StoreError::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
            StoreError::ManifestBlobUnknown { .. } => ErrorCode::ManifestBlobUnknown,
            StoreError::ManifestInvalid(e) => e.code(),
            StoreError::ManifestDigestMismatch { .. } => ErrorCode::DigestInvalid,
            StoreError::UploadUnknown(_) => ErrorCode::BlobUploadUnknown,
            StoreError::UploadOffset { .. } => ErrorCode::RangeInvalid,
            StoreError::Verify(e) => e.code(),
            StoreError::Body(_) => ErrorCode::BlobUploadInvalid,
            StoreError::RangeNotSatisfiable { .. } => ErrorCode::RangeInvalid,
            StoreError::Corrupt(_) | StoreError::Backend(_) => ErrorCode::Unknown,
        }
    }

    fn detail(&self) -> Option<serde_json::Value> {
        match self {
            StoreError::BlobUnknown { digest, .. }
            | StoreError::ManifestBlobUnknown { digest, .. } => {
                Some(serde_json::json!({ "digest": digest }))
            }
            StoreError::ManifestUnknown { reference, .. } => {
                Some(serde_json::json!({ "reference": reference }))
            }
            StoreError::NameUnknown(name) => Some(serde_json::json!({ "name": name })),
            _ => None,
        }
    }
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;
