//! Software bills of materials: CycloneDX 1.5 and SPDX 2.3, both JSON.

pub mod cyclonedx;
pub mod spdx;

/// CycloneDX JSON media type (its artifact type as a referrer).
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// SPDX JSON media type (its artifact type as a referrer).
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// The image an SBOM describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Repository name.
    pub repository: String,
    /// Manifest digest.
    pub digest: String,
    /// Creation time (RFC 3339).
    pub created: String,
}

/// A stable UUID-shaped string derived from some text (SBOM serial numbers
/// and namespaces must be unique per document; these are unique per image).
pub(crate) fn uuid_from(text: &str) -> String {
    let d = wharf_types::Digest::sha256(text.as_bytes());
    let h = d.hex();
    format!(
        "{}-{}-5{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}
