//! OCI distribution error codes, their HTTP status, and the wire body.
//!
//! This is the one table from error code to status. Errors elsewhere carry a
//! code (via [`OciError`]) and a human message; the JSON body is built here.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An error code from the OCI distribution specification, plus the few
/// extra codes Docker's registry API defines and clients understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Blob unknown to registry.
    BlobUnknown,
    /// Blob upload invalid.
    BlobUploadInvalid,
    /// Blob upload unknown to registry.
    BlobUploadUnknown,
    /// Provided digest did not match uploaded content.
    DigestInvalid,
    /// Manifest references a manifest or blob unknown to registry.
    ManifestBlobUnknown,
    /// Manifest invalid.
    ManifestInvalid,
    /// Manifest unknown to registry.
    ManifestUnknown,
    /// Invalid repository name.
    NameInvalid,
    /// Repository name not known to registry.
    NameUnknown,
    /// Provided length did not match content length.
    SizeInvalid,
    /// Authentication required.
    Unauthorized,
    /// Requested access to the resource is denied.
    Denied,
    /// The operation is unsupported.
    Unsupported,
    /// Too many requests.
    TooManyRequests,
    /// Manifest tag did not match URI (Docker API).
    TagInvalid,
    /// A requested byte range cannot be satisfied (Docker API).
    RangeInvalid,
    /// The request body is larger than the registry accepts.
    PayloadTooLarge,
    /// An unexpected server-side failure (Docker API `UNKNOWN`).
    Unknown,
    /// The service is temporarily unavailable (Docker API).
    Unavailable,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BlobUnknown,
        ErrorCode::BlobUploadInvalid,
        ErrorCode::BlobUploadUnknown,
        ErrorCode::DigestInvalid,
        ErrorCode::ManifestBlobUnknown,
        ErrorCode::ManifestInvalid,
        ErrorCode::ManifestUnknown,
        ErrorCode::NameInvalid,
        ErrorCode::NameUnknown,
        ErrorCode::SizeInvalid,
        ErrorCode::Unauthorized,
        ErrorCode::Denied,
        ErrorCode::Unsupported,
        ErrorCode::TooManyRequests,
        ErrorCode::TagInvalid,
        ErrorCode::RangeInvalid,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unknown,
        ErrorCode::Unavailable,
    ];

    /// The code string on the wire, e.g. `BLOB_UNKNOWN`.
    pub const fn as_str(self) -> &'static str {
        self.entry().0
    }

    /// The HTTP status this code is sent with.
    pub const fn status(self) -> u16 {
        self.entry().1
    }

    /// The specification's short description.
    pub const fn description(self) -> &'static str {
        self.entry().2
    }

    /// The table: wire string, HTTP status, description.
    const fn entry(self) -> (&'static str, u16, &'static str) {
        match self {
            ErrorCode::BlobUnknown => ("BLOB_UNKNOWN", 404, "blob unknown to registry"),
            ErrorCode::BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
            ErrorCode::BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                404,
                "blob upload unknown to registry",
            ),
            ErrorCode::DigestInvalid => (
                "DIGEST_INVALID",
                400,
                "provided digest did not match uploaded content",
            ),
            // 400 as in the reference implementation: the request is what is wrong.
            ErrorCode::ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                400,
                "manifest references a manifest or blob unknown to registry",
            ),
            ErrorCode::ManifestInvalid => ("MANIFEST_INVALID", 400, "manifest invalid"),
            ErrorCode::ManifestUnknown => ("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
            ErrorCode::NameInvalid => ("NAME_INVALID", 400, "invalid repository name"),
            ErrorCode::NameUnknown => {
                ("NAME_UNKNOWN", 404, "repository name not known to registry")
            }
            ErrorCode::SizeInvalid => (
                "SIZE_INVALID",
                400,
                "provided length did not match content length",
            ),
            ErrorCode::Unauthorized => ("UNAUTHORIZED", 401, "authentication required"),
            ErrorCode::Denied => ("DENIED", 403, "requested access to the resource is denied"),
            ErrorCode::Unsupported => ("UNSUPPORTED", 405, "the operation is unsupported"),
            ErrorCode::TooManyRequests => ("TOOMANYREQUESTS", 429, "too many requests"),
            ErrorCode::TagInvalid => ("TAG_INVALID", 400, "manifest tag did not match URI"),
            ErrorCode::RangeInvalid => ("RANGE_INVALID", 416, "invalid content range"),
            ErrorCode::PayloadTooLarge => ("SIZE_INVALID", 413, "payload too large"),
            ErrorCode::Unknown => ("UNKNOWN", 500, "unknown error"),
            ErrorCode::Unavailable => ("UNAVAILABLE", 503, "service unavailable"),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error that maps onto an OCI error code.
///
/// Implemented by every validation error in this crate; the registry and
/// storage crates implement it for theirs, so that turning any error into a
/// response goes through [`ErrorCode`].
pub trait OciError: std::error::Error {
    /// The wire code.
    fn code(&self) -> ErrorCode;

    /// The HTTP status; by default the code's status.
    fn status(&self) -> u16 {
        self.code().status()
    }

    /// Structured detail for the body, if any.
    fn detail(&self) -> Option<serde_json::Value> {
        None
    }
}

/// One entry of the error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The code string.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// Optional unstructured detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// The error body defined by the distribution specification:
/// `{"errors": [{"code": ..., "message": ..., "detail": ...}]}`.
///
/// ```
/// use wharf_types::{ErrorBody, ErrorCode};
///
/// let body = ErrorBody::new(ErrorCode::BlobUnknown, "blob unknown to registry");
/// assert_eq!(
///     String::from_utf8(body.to_json()).unwrap(),
///     r#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The errors.
    pub errors: Vec<ErrorInfo>,
}

impl ErrorBody {
    /// A body with one error.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            errors: vec![ErrorInfo {
                code: code.as_str().to_owned(),
                message: message.into(),
                detail: None,
            }],
        }
    }

    /// A body for any [`OciError`], using its `Display` as the message.
    pub fn from_error<E: OciError + ?Sized>(err: &E) -> Self {
        ErrorBody {
            errors: vec![ErrorInfo {
                code: err.code().as_str().to_owned(),
                message: err.to_string(),
                detail: err.detail(),
            }],
        }
    }

    /// Adds detail to the first error.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        if let Some(first) = self.errors.first_mut() {
            first.detail = Some(detail);
        }
        self
    }

    /// Serialized JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"errors":[{"code":"UNKNOWN","message":"error body serialization failed"}]}"#
                .to_vec()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_specification() {
        let expected = [
            ("BLOB_UNKNOWN", 404),
            ("BLOB_UPLOAD_INVALID", 400),
            ("BLOB_UPLOAD_UNKNOWN", 404),
            ("DIGEST_INVALID", 400),
            ("MANIFEST_BLOB_UNKNOWN", 400),
            ("MANIFEST_INVALID", 400),
            ("MANIFEST_UNKNOWN", 404),
            ("NAME_INVALID", 400),
            ("NAME_UNKNOWN", 404),
            ("SIZE_INVALID", 400),
            ("UNAUTHORIZED", 401),
            ("DENIED", 403),
            ("UNSUPPORTED", 405),
            ("TOOMANYREQUESTS", 429),
        ];
        for (code, (s, status)) in ErrorCode::ALL.iter().zip(expected) {
            assert_eq!(code.as_str(), s);
            assert_eq!(code.status(), status, "{s}");
        }
        assert_eq!(ErrorCode::PayloadTooLarge.status(), 413);
        assert_eq!(ErrorCode::RangeInvalid.status(), 416);
        assert!(ErrorCode::ALL.iter().all(|c| !c.description().is_empty()));
    }

    #[test]
    fn body_round_trips() {
        let body = ErrorBody::new(ErrorCode::NameUnknown, "no such repository")
            .with_detail(serde_json::json!({"name": "a/b"}));
        let back: ErrorBody = serde_json::from_slice(&body.to_json()).unwrap();
        assert_eq!(back, body);
    }
}
