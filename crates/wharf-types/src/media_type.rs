//! Media types (RFC 6838) and the ones the registry knows by name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::digest::truncate;
use crate::error::{ErrorCode, OciError};

/// OCI image manifest.
pub const OCI_IMAGE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_IMAGE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image configuration.
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// The OCI empty descriptor's media type (`{}`, used by artifacts).
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// OCI uncompressed layer.
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// OCI gzip layer.
pub const OCI_LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// OCI zstd layer.
pub const OCI_LAYER_TAR_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// OCI non-distributable layer (deprecated, may carry `urls`).
pub const OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP: &str =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image configuration.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker gzip layer.
pub const DOCKER_LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker foreign (non-distributable) layer.
pub const DOCKER_FOREIGN_LAYER: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// Docker schema 1 manifest (rejected).
pub const DOCKER_MANIFEST_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Docker schema 1 signed manifest (rejected).
pub const DOCKER_MANIFEST_V1_SIGNED: &str =
    "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Why a string is not a valid [`MediaType`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid media type (RFC 6838 type/subtype)")]
pub struct MediaTypeError(String);

impl OciError for MediaTypeError {
    fn code(&self) -> ErrorCode {
        ErrorCode::ManifestInvalid
    }
}

/// A validated media type `type/subtype` following RFC 6838 section 4.2,
/// without parameters.
///
/// ```
/// use wharf_types::MediaType;
///
/// let mt: MediaType = "application/vnd.example.sbom+json".parse().unwrap();
/// assert_eq!(mt.as_str(), "application/vnd.example.sbom+json");
/// assert!("not a media type".parse::<MediaType>().is_err());
/// // A Content-Type header may carry parameters; they are dropped.
/// let ct = MediaType::from_content_type("application/vnd.oci.image.manifest.v1+json; charset=utf-8").unwrap();
/// assert!(ct.is(wharf_types::media_type::OCI_IMAGE_MANIFEST));
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaType(Box<str>);

impl MediaType {
    /// Parses a bare `type/subtype`.
    pub fn parse(s: &str) -> Result<Self, MediaTypeError> {
        let valid = s
            .split_once('/')
            .is_some_and(|(t, st)| is_restricted_name(t) && is_restricted_name(st));
        if !valid {
            return Err(MediaTypeError(truncate(s)));
        }
        Ok(MediaType(s.into()))
    }

    /// Parses the media type out of a `Content-Type` header value, dropping
    /// parameters and surrounding whitespace.
    pub fn from_content_type(header: &str) -> Result<Self, MediaTypeError> {
        let bare = header.split(';').next().unwrap_or("").trim();
        Self::parse(bare)
    }

    /// A media type known at compile time. Panics if `s` is not valid, so use
    /// it only with literals (the constants in this module are valid).
    pub fn from_static(s: &'static str) -> Self {
        match Self::parse(s) {
            Ok(m) => m,
            Err(e) => panic!("invalid static media type: {e}"),
        }
    }

    /// The string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Case-insensitive comparison with a media type string, as RFC 6838 requires.
    pub fn is(&self, other: &str) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

/// `restricted-name = restricted-name-first *126restricted-name-chars`.
fn is_restricted_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 127
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..].iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#' | b'$' | b'&' | b'-' | b'^' | b'_' | b'.' | b'+'
                )
        })
}

impl FromStr for MediaType {
    type Err = MediaTypeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MediaType::parse(s)
    }
}

impl fmt::Display for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MediaType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaType({})", self.0)
    }
}

impl AsRef<str> for MediaType {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for MediaType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MediaType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        MediaType::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_constants_are_valid() {
        for s in [
            OCI_IMAGE_MANIFEST,
            OCI_IMAGE_INDEX,
            OCI_IMAGE_CONFIG,
            OCI_EMPTY,
            OCI_LAYER_TAR,
            OCI_LAYER_TAR_GZIP,
            OCI_LAYER_TAR_ZSTD,
            OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP,
            DOCKER_MANIFEST_V2,
            DOCKER_MANIFEST_LIST,
            DOCKER_CONFIG,
            DOCKER_LAYER_TAR_GZIP,
            DOCKER_FOREIGN_LAYER,
            DOCKER_MANIFEST_V1,
            DOCKER_MANIFEST_V1_SIGNED,
        ] {
            assert_eq!(MediaType::from_static(s).as_str(), s);
        }
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "/",
            "application",
            "application/",
            "/json",
            "application/json; charset=utf-8",
            "application/js on",
            ".application/json",
            "application/+json",
            "a/b/c",
        ] {
            assert!(MediaType::parse(bad).is_err(), "{bad}");
        }
        assert!(MediaType::parse(&format!("a/{}", "b".repeat(128))).is_err());
        assert!(MediaType::parse(&format!("a/{}", "b".repeat(127))).is_ok());
    }

    #[test]
    fn content_type_parameters_are_dropped() {
        let m = MediaType::from_content_type("  application/json ; charset=utf-8").unwrap();
        assert_eq!(m.as_str(), "application/json");
        assert!(m.is("Application/JSON"));
    }
}
