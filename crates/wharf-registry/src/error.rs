//! The registry's error type and its one mapping onto responses.

use http::{HeaderValue, Response, StatusCode, header};
use wharf_storage::StoreError;
use wharf_types::{ErrorBody, ErrorCode, ManifestError, OciError};

use crate::body::ResponseBody;
use crate::params::ParamError;
use crate::route::RouteError;

/// Why a request failed. Every variant maps onto an OCI error code and an
/// HTTP status through [`OciError`]; [`RegistryError::into_response`] is the
/// only place a failure becomes a response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The path is not an endpoint, or one of its parts is invalid.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A query parameter or header is malformed.
    #[error(transparent)]
    Param(#[from] ParamError),
    /// A parameter has the wrong OCI meaning (e.g. an invalid `mount` digest).
    #[error("{message}")]
    Invalid {
        /// The error code.
        code: ErrorCode,
        /// What is wrong.
        message: String,
    },
    /// The manifest document is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chunk does not continue the upload; the response carries the
    /// upload's current range.
    #[error("chunk starts at {requested}, but the upload has {current} bytes")]
    ChunkOutOfOrder {
        /// Where the chunk claims to start.
        requested: u64,
        /// Bytes received so far.
        current: u64,
        /// The upload's location, for the `Location` header.
        location: String,
    },
    /// A range outside the blob; the response says its size.
    #[error("requested range is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable {
        /// The blob's size.
        size: u64,
    },
    /// The request body is larger than allowed.
    #[error("request body is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The method is not allowed on this endpoint.
    #[error("method {method} is not allowed on this endpoint")]
    MethodNotAllowed {
        /// The method used.
        method: http::Method,
        /// The methods allowed.
        allow: &'static str,
    },
    /// Deletes are disabled by configuration.
    #[error("deletes are disabled on this registry")]
    DeleteDisabled,
    /// Authentication is required.
    #[error("authentication required")]
    Unauthorized {
        /// The `WWW-Authenticate` challenge to send.
        challenge: String,
        /// A message for the client.
        message: String,
    },
    /// The caller may not do this.
    #[error("requested access to the resource is denied")]
    Denied,
    /// Too many requests (rate limited).
    #[error("too many requests")]
    TooManyRequests,
}

impl RegistryError {
    /// An invalid-input error with a code.
    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        RegistryError::Invalid {
            code,
            message: message.into(),
        }
    }
}

impl OciError for RegistryError {
    fn code(&self) -> ErrorCode {
        match self {
            RegistryError::Route(RouteError::NotFound) => ErrorCode::NameUnknown,
            RegistryError::Route(RouteError::Name(e)) => e.code(),
            RegistryError::Route(RouteError::Digest(e)) => e.code(),
            RegistryError::Route(RouteError::Reference(e)) => e.code(),
            RegistryError::Route(RouteError::UploadId(e)) => e.code(),
            RegistryError::Param(p) if p.what == "Range" => ErrorCode::RangeInvalid,
            RegistryError::Param(p) if p.what == "Content-Range" => ErrorCode::BlobUploadInvalid,
            // "An invalid set of parameters", in the specification's words.
            RegistryError::Param(_) => ErrorCode::Unsupported,
            RegistryError::Invalid { code, .. } => *code,
            RegistryError::Manifest(e) => e.code(),
            RegistryError::Store(e) => e.code(),
            // The specification's code for a chunk that does not continue
            // the upload, sent with 416 and the current Range.
            RegistryError::ChunkOutOfOrder { .. } => ErrorCode::BlobUploadInvalid,
            RegistryError::RangeNotSatisfiable { .. } => ErrorCode::RangeInvalid,
            RegistryError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            RegistryError::MethodNotAllowed { .. } | RegistryError::DeleteDisabled => {
                ErrorCode::Unsupported
            }
            RegistryError::Unauthorized { .. } => ErrorCode::Unauthorized,
            RegistryError::Denied => ErrorCode::Denied,
            RegistryError::TooManyRequests => ErrorCode::TooManyRequests,
        }
    }

    fn status(&self) -> u16 {
        match self {
            RegistryError::Route(RouteError::NotFound) => 404,
            RegistryError::ChunkOutOfOrder { .. } => 416,
            RegistryError::Param(p) if p.what == "Range" => 416,
            RegistryError::Param(p) if p.what == "Content-Range" => 416,
            RegistryError::Param(_) => 400,
            // An upload id that cannot exist is simply unknown.
            RegistryError::Route(RouteError::UploadId(_)) => 404,
            _ => self.code().status(),
        }
    }

    fn detail(&self) -> Option<serde_json::Value> {
        match self {
            RegistryError::Store(e) => e.detail(),
            _ => None,
        }
    }
}

impl RegistryError {
    /// The response for this error: status, JSON body and any headers the
    /// error needs (`WWW-Authenticate`, `Range`, `Allow`, ...).
    pub fn into_response(self) -> Response<ResponseBody> {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = ErrorBody::from_error(&self).to_json();
        let mut resp = Response::new(ResponseBody::full(body.into()));
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        match &self {
            RegistryError::Unauthorized { challenge, .. } => {
                if let Ok(v) = HeaderValue::from_str(challenge) {
                    h.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            RegistryError::ChunkOutOfOrder {
                current, location, ..
            } => {
                if let Ok(v) = HeaderValue::from_str(&crate::handlers::range_header(*current)) {
                    h.insert(header::RANGE, v);
                }
                if let Ok(v) = HeaderValue::from_str(location) {
                    h.insert(header::LOCATION, v);
                }
            }
            RegistryError::RangeNotSatisfiable { size } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            RegistryError::Store(StoreError::RangeNotSatisfiable { size, .. }) => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            RegistryError::MethodNotAllowed { allow, .. } => {
                h.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            _ => {}
        }
        resp
    }
}
