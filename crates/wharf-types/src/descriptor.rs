//! Content descriptors.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::media_type::{self, MediaType};

/// A validated content descriptor: what a manifest says about a piece of
/// content it references.
///
/// Every field has already been checked (digest grammar, media type syntax,
/// size non-negative); the struct is plain data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: MediaType,
    /// Digest of the referenced content.
    pub digest: Digest,
    /// Size in bytes of the referenced content.
    pub size: u64,
    /// Locations the content may also be fetched from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Arbitrary metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform of the referenced manifest (in indexes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<oci_spec::image::Platform>,
    /// Artifact type of the referenced manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<MediaType>,
    /// Embedded content, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl Descriptor {
    /// A descriptor with only the required fields.
    ///
    /// ```
    /// use wharf_types::{Descriptor, Digest, MediaType};
    ///
    /// let d = Descriptor::new(MediaType::from_static("application/vnd.oci.empty.v1+json"), Digest::sha256(b"{}"), 2);
    /// assert_eq!(
    ///     serde_json::to_string(&d).unwrap(),
    ///     r#"{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2}"#
    /// );
    /// ```
    pub fn new(media_type: MediaType, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type,
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
            data: None,
        }
    }

    /// Whether the content is a non-distributable ("foreign") layer that
    /// clients fetch from `urls`, so a registry need not hold it.
    pub fn is_foreign(&self) -> bool {
        !self.urls.is_empty()
            && (self.media_type.is(media_type::DOCKER_FOREIGN_LAYER)
                || self
                    .media_type
                    .as_str()
                    .starts_with("application/vnd.oci.image.layer.nondistributable."))
    }
}

impl From<&Descriptor> for oci_spec::image::Descriptor {
    fn from(d: &Descriptor) -> Self {
        let mut o = oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::from(d.media_type.as_str()),
            d.size,
            oci_spec::image::Digest::from(&d.digest),
        );
        if !d.urls.is_empty() {
            o.set_urls(Some(d.urls.clone()));
        }
        if !d.annotations.is_empty() {
            o.set_annotations(Some(d.annotations.clone().into_iter().collect()));
        }
        o.set_platform(d.platform.clone());
        o.set_artifact_type(
            d.artifact_type
                .as_ref()
                .map(|a| oci_spec::image::MediaType::from(a.as_str())),
        );
        o.set_data(d.data.clone());
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_layers_need_urls_and_a_foreign_type() {
        let mut d = Descriptor::new(
            MediaType::from_static(media_type::DOCKER_FOREIGN_LAYER),
            Digest::sha256(b"x"),
            1,
        );
        assert!(!d.is_foreign());
        d.urls.push("https://example.com/layer".into());
        assert!(d.is_foreign());
        d.media_type = MediaType::from_static(media_type::OCI_LAYER_TAR_GZIP);
        assert!(!d.is_foreign());
        d.media_type = MediaType::from_static(media_type::OCI_LAYER_NONDISTRIBUTABLE_TAR_GZIP);
        assert!(d.is_foreign());
    }

    #[test]
    fn converts_to_oci_spec() {
        let mut d = Descriptor::new(
            MediaType::from_static(media_type::OCI_IMAGE_MANIFEST),
            Digest::sha256(b"m"),
            1,
        );
        d.artifact_type = Some(MediaType::from_static("application/vnd.example+json"));
        d.annotations.insert("k".into(), "v".into());
        let o = oci_spec::image::Descriptor::from(&d);
        assert_eq!(o.size(), 1);
        assert_eq!(o.digest().to_string(), d.digest.to_string());
        assert_eq!(
            o.artifact_type().as_ref().map(|m| m.to_string()),
            Some("application/vnd.example+json".to_owned())
        );
    }
}
