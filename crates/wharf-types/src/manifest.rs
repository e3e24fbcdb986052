//! Manifests and indexes, parsed and validated, keeping their raw bytes.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;

use crate::descriptor::Descriptor;
use crate::digest::{Algorithm, Digest};
use crate::error::{ErrorCode, OciError};
use crate::media_type::{self, MediaType};

/// What kind of document a manifest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ManifestKind {
    /// `application/vnd.oci.image.manifest.v1+json`
    OciManifest,
    /// `application/vnd.oci.image.index.v1+json`
    OciIndex,
    /// `application/vnd.docker.distribution.manifest.v2+json`
    DockerManifest,
    /// `application/vnd.docker.distribution.manifest.list.v2+json`
    DockerManifestList,
}

impl ManifestKind {
    /// The kind's media type.
    pub const fn media_type(self) -> &'static str {
        match self {
            ManifestKind::OciManifest => media_type::OCI_IMAGE_MANIFEST,
            ManifestKind::OciIndex => media_type::OCI_IMAGE_INDEX,
            ManifestKind::DockerManifest => media_type::DOCKER_MANIFEST_V2,
            ManifestKind::DockerManifestList => media_type::DOCKER_MANIFEST_LIST,
        }
    }

    /// Whether documents of this kind list other manifests.
    pub const fn is_index(self) -> bool {
        matches!(
            self,
            ManifestKind::OciIndex | ManifestKind::DockerManifestList
        )
    }

    /// The kind for a media type, if it is one of the four supported ones.
    pub fn from_media_type(mt: &str) -> Option<Self> {
        [
            ManifestKind::OciManifest,
            ManifestKind::OciIndex,
            ManifestKind::DockerManifest,
            ManifestKind::DockerManifestList,
        ]
        .into_iter()
        .find(|k| k.media_type().eq_ignore_ascii_case(mt))
    }

    /// Media types a client may send in `Accept` to get any manifest kind.
    pub const ALL_MEDIA_TYPES: &'static [&'static str] = &[
        media_type::OCI_IMAGE_MANIFEST,
        media_type::OCI_IMAGE_INDEX,
        media_type::DOCKER_MANIFEST_V2,
        media_type::DOCKER_MANIFEST_LIST,
    ];
}

/// Why a document is not an acceptable manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Larger than the configured limit; checked before parsing.
    #[error("manifest is {size} bytes; the limit is {max} bytes")]
    TooLarge {
        /// The document's size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Not a JSON object of the expected shape.
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    /// Docker schema 1 manifests are obsolete and insecure.
    #[error("Docker schema 1 manifests are not supported; push an OCI or Docker schema 2 manifest")]
    Schema1,
    /// `schemaVersion` is missing or not 2.
    #[error("manifest schemaVersion must be 2, found {0}")]
    SchemaVersion(String),
    /// The `mediaType` field and the `Content-Type` header disagree.
    #[error("manifest mediaType {field:?} does not match Content-Type {content_type:?}")]
    MediaTypeMismatch {
        /// The document's `mediaType`.
        field: String,
        /// The request's `Content-Type`.
        content_type: String,
    },
    /// A media type that is not one of the supported manifest kinds.
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    /// Neither `mediaType` nor `Content-Type` nor the shape tells the kind.
    #[error(
        "cannot tell the manifest kind: no mediaType field, no Content-Type, and neither layers nor manifests"
    )]
    UnknownKind,
    /// An image manifest that also lists manifests, or an index with layers.
    #[error("manifest has both layers and manifests")]
    LayersAndManifests,
    /// A required field is absent.
    #[error("{kind} is missing the required field {field}")]
    MissingField {
        /// The manifest kind.
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field the kind does not allow.
    #[error("{kind} must not have the field {field}")]
    UnexpectedField {
        /// The manifest kind.
        kind: &'static str,
        /// The field.
        field: &'static str,
    },
    /// A field whose value is invalid; `path` is like `layers[2].digest`.
    #[error("{path}: {reason}")]
    InvalidField {
        /// JSON path of the field.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

impl OciError for ManifestError {
    fn code(&self) -> ErrorCode {
        match self {
            ManifestError::TooLarge { .. } => ErrorCode::PayloadTooLarge,
            ManifestError::Schema1 => ErrorCode::Unsupported,
            _ => ErrorCode::ManifestInvalid,
        }
    }
}

/// Options for [`Manifest`] parsing.
///
/// ```
/// use bytes::Bytes;
/// use wharf_types::{ManifestError, ManifestParser};
///
/// let parser = ManifestParser::new().max_size(16);
/// let err = parser.parse(Bytes::from_static(b"{\"schemaVersion\": 2, \"manifests\": []}"), None).unwrap_err();
/// assert!(matches!(err, ManifestError::TooLarge { max: 16, .. }));
/// ```
#[derive(Debug, Clone)]
pub struct ManifestParser {
    max_size: u64,
    algorithm: Algorithm,
}

impl Default for ManifestParser {
    fn default() -> Self {
        ManifestParser {
            max_size: Manifest::DEFAULT_MAX_SIZE,
            algorithm: Algorithm::Sha256,
        }
    }
}

impl ManifestParser {
    /// Default options: 4 MiB limit, SHA-256.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest accepted document in bytes.
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// Algorithm for the manifest's own digest.
    pub fn digest_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Parses and validates `raw`. `content_type` is the request's
    /// `Content-Type` header, if any.
    pub fn parse(&self, raw: Bytes, content_type: Option<&str>) -> Result<Manifest, ManifestError> {
        if raw.len() as u64 > self.max_size {
            return Err(ManifestError::TooLarge {
                size: raw.len() as u64,
                max: self.max_size,
            });
        }
        check_nesting(&raw, MAX_NESTING)?;
        let doc: RawManifest =
            serde_json::from_slice(&raw).map_err(|e| ManifestError::Json(e.to_string()))?;
        let kind = detect_kind(&doc, content_type)?;
        let media_type = MediaType::from_static(kind.media_type());
        let kind_name = kind.media_type();

        let config = doc
            .config
            .map(|d| d.validate("config".into()))
            .transpose()?;
        let layers = validate_all(doc.layers.as_deref(), "layers")?;
        let manifests = validate_all(doc.manifests.as_deref(), "manifests")?;
        if kind.is_index() {
            if doc.manifests.is_none() {
                return Err(ManifestError::MissingField {
                    kind: kind_name,
                    field: "manifests",
                });
            }
            if config.is_some() {
                return Err(ManifestError::UnexpectedField {
                    kind: kind_name,
                    field: "config",
                });
            }
        } else {
            if config.is_none() {
                return Err(ManifestError::MissingField {
                    kind: kind_name,
                    field: "config",
                });
            }
            if doc.layers.is_none() {
                return Err(ManifestError::MissingField {
                    kind: kind_name,
                    field: "layers",
                });
            }
        }
        let subject = doc
            .subject
            .map(|d| d.validate("subject".into()))
            .transpose()?;
        let artifact_type = doc
            .artifact_type
            .map(|a| parse_media_type(&a, || "artifactType".into()))
            .transpose()?;

        let digest = Digest::compute(self.algorithm, &raw);
        Ok(Manifest {
            raw,
            digest,
            media_type,
            kind,
            config,
            layers,
            manifests,
            subject,
            artifact_type,
            annotations: doc.annotations.unwrap_or_default(),
        })
    }
}

/// Real manifests nest a handful of levels; anything deeper is abuse.
const MAX_NESTING: usize = 32;

/// Rejects documents nested deeper than `max` arrays/objects, in one pass.
/// Unknown fields are skipped by the parser without a depth limit, so this
/// bounds the work a hostile document can cause anywhere in the pipeline.
fn check_nesting(raw: &[u8], max: usize) -> Result<(), ManifestError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in raw {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ManifestError::Json(format!(
                        "document is nested deeper than {max} levels"
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn validate_all(
    list: Option<&[RawDescriptor]>,
    field: &str,
) -> Result<Vec<Descriptor>, ManifestError> {
    list.unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, d)| d.clone().validate(format!("{field}[{i}]")))
        .collect()
}

fn detect_kind(
    doc: &RawManifest,
    content_type: Option<&str>,
) -> Result<ManifestKind, ManifestError> {
    let field = doc.media_type.as_deref();
    let header = content_type
        .map(|ct| ct.split(';').next().unwrap_or("").trim())
        .filter(|ct| !ct.is_empty());
    let is_schema1 = |mt: &str| {
        mt.eq_ignore_ascii_case(media_type::DOCKER_MANIFEST_V1)
            || mt.eq_ignore_ascii_case(media_type::DOCKER_MANIFEST_V1_SIGNED)
    };
    if doc.schema_version == Some(1)
        || field.is_some_and(is_schema1)
        || header.is_some_and(is_schema1)
    {
        return Err(ManifestError::Schema1);
    }
    match doc.schema_version {
        Some(2) => {}
        Some(v) => return Err(ManifestError::SchemaVersion(v.to_string())),
        None => return Err(ManifestError::SchemaVersion("none".into())),
    }
    if doc.layers.is_some() && doc.manifests.is_some() {
        return Err(ManifestError::LayersAndManifests);
    }
    if let (Some(f), Some(h)) = (field, header)
        && !f.eq_ignore_ascii_case(h)
    {
        return Err(ManifestError::MediaTypeMismatch {
            field: crate::digest::truncate(f),
            content_type: crate::digest::truncate(h),
        });
    }
    match field.or(header) {
        Some(mt) => ManifestKind::from_media_type(mt)
            .ok_or_else(|| ManifestError::UnsupportedMediaType(crate::digest::truncate(mt))),
        // OCI documents may omit mediaType; fall back to the shape.
        None if doc.manifests.is_some() => Ok(ManifestKind::OciIndex),
        None if doc.config.is_some() || doc.layers.is_some() => Ok(ManifestKind::OciManifest),
        None => Err(ManifestError::UnknownKind),
    }
}

fn parse_media_type(s: &str, path: impl Fn() -> String) -> Result<MediaType, ManifestError> {
    MediaType::parse(s).map_err(|e| ManifestError::InvalidField {
        path: path(),
        reason: e.to_string(),
    })
}

/// The wire shape, before validation. Unknown fields are ignored here; they
/// survive in the raw bytes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    urls: Option<Vec<String>>,
    annotations: Option<BTreeMap<String, String>>,
    platform: Option<oci_spec::image::Platform>,
    artifact_type: Option<String>,
    data: Option<String>,
}

impl RawDescriptor {
    fn validate(self, path: String) -> Result<Descriptor, ManifestError> {
        let at = |field: &str| format!("{path}.{field}");
        let media_type = parse_media_type(&self.media_type, || at("mediaType"))?;
        let digest = Digest::parse(&self.digest).map_err(|e| ManifestError::InvalidField {
            path: at("digest"),
            reason: e.to_string(),
        })?;
        let size = u64::try_from(self.size).map_err(|_| ManifestError::InvalidField {
            path: at("size"),
            reason: format!("size must not be negative, found {}", self.size),
        })?;
        let artifact_type = self
            .artifact_type
            .map(|a| parse_media_type(&a, || at("artifactType")))
            .transpose()?;
        Ok(Descriptor {
            media_type,
            digest,
            size,
            urls: self.urls.unwrap_or_default(),
            annotations: self.annotations.unwrap_or_default(),
            platform: self.platform,
            artifact_type,
            data: self.data,
        })
    }
}

/// A validated manifest or index together with the exact bytes it was
/// parsed from.
///
/// The raw bytes are the source of truth: they are what is stored, hashed
/// and served. The parsed fields exist to check references and answer
/// referrers queries; nothing is ever re-serialized.
///
/// ```
/// use bytes::Bytes;
/// use wharf_types::{Manifest, ManifestKind};
///
/// let raw = Bytes::from_static(br#"{
///   "schemaVersion": 2,
///   "mediaType": "application/vnd.oci.image.manifest.v1+json",
///   "artifactType": "application/vnd.example.sbom",
///   "config": {"mediaType": "application/vnd.oci.empty.v1+json",
///              "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2},
///   "layers": [],
///   "x-unknown-field": {"kept": true}
/// }"#);
/// let m = Manifest::parse(raw.clone(), Some("application/vnd.oci.image.manifest.v1+json")).unwrap();
/// assert_eq!(m.kind(), ManifestKind::OciManifest);
/// assert_eq!(m.artifact_type().unwrap().as_str(), "application/vnd.example.sbom");
/// assert_eq!(m.raw(), &raw);
/// assert_eq!(m.digest(), &wharf_types::Digest::sha256(&raw));
/// ```
#[derive(Debug, Clone)]
pub struct Manifest {
    raw: Bytes,
    digest: Digest,
    media_type: MediaType,
    kind: ManifestKind,
    config: Option<Descriptor>,
    layers: Vec<Descriptor>,
    manifests: Vec<Descriptor>,
    subject: Option<Descriptor>,
    artifact_type: Option<MediaType>,
    annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// The default size limit: 4 MiB, what the specification says registries
    /// should accept at least.
    pub const DEFAULT_MAX_SIZE: u64 = 4 * 1024 * 1024;

    /// Parses with default options (see [`ManifestParser`]).
    pub fn parse(raw: Bytes, content_type: Option<&str>) -> Result<Self, ManifestError> {
        ManifestParser::default().parse(raw, content_type)
    }

    /// The exact bytes.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Digest of the exact bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Size of the exact bytes.
    pub fn size(&self) -> u64 {
        self.raw.len() as u64
    }

    /// The media type to serve the manifest with.
    pub fn media_type(&self) -> &MediaType {
        &self.media_type
    }

    /// The kind.
    pub fn kind(&self) -> ManifestKind {
        self.kind
    }

    /// The config descriptor (image manifests only).
    pub fn config(&self) -> Option<&Descriptor> {
        self.config.as_ref()
    }

    /// The layer descriptors (image manifests only).
    pub fn layers(&self) -> &[Descriptor] {
        &self.layers
    }

    /// The child manifest descriptors (indexes only).
    pub fn manifests(&self) -> &[Descriptor] {
        &self.manifests
    }

    /// The manifest this one refers to, if any (the referrers API subject).
    pub fn subject(&self) -> Option<&Descriptor> {
        self.subject.as_ref()
    }

    /// Top-level annotations.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The artifact type: the `artifactType` field, or for an image manifest
    /// without one, the config's media type (the specification's fallback).
    pub fn artifact_type(&self) -> Option<&MediaType> {
        self.artifact_type
            .as_ref()
            .or_else(|| self.config.as_ref().map(|c| &c.media_type))
    }

    /// Blobs this manifest needs in the repository: the config and the
    /// layers, except non-distributable layers fetched from elsewhere.
    pub fn blob_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(self.layers.iter())
            .filter(|d| !d.is_foreign())
    }

    /// Manifests this index needs in the repository.
    pub fn manifest_references(&self) -> impl Iterator<Item = &Descriptor> {
        self.manifests.iter()
    }

    /// The descriptor a referrers response lists for this manifest.
    pub fn referrer_descriptor(&self) -> Descriptor {
        Descriptor {
            artifact_type: self.artifact_type().cloned(),
            annotations: self.annotations.clone(),
            ..Descriptor::new(self.media_type.clone(), self.digest.clone(), self.size())
        }
    }

    /// The document as an oci-spec image manifest, for callers that want the
    /// full typed model (image manifests only).
    pub fn to_oci_image_manifest(&self) -> Option<oci_spec::image::ImageManifest> {
        if self.kind.is_index() {
            return None;
        }
        serde_json::from_slice(&self.raw).ok()
    }

    /// The document as an oci-spec image index (indexes only).
    pub fn to_oci_image_index(&self) -> Option<oci_spec::image::ImageIndex> {
        if !self.kind.is_index() {
            return None;
        }
        serde_json::from_slice(&self.raw).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn desc(mt: &str, data: &[u8]) -> serde_json::Value {
        json!({"mediaType": mt, "digest": Digest::sha256(data).to_string(), "size": data.len()})
    }

    fn image() -> serde_json::Value {
        json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_MANIFEST,
            "config": desc(media_type::OCI_IMAGE_CONFIG, b"{}"),
            "layers": [desc(media_type::OCI_LAYER_TAR_GZIP, b"layer")],
        })
    }

    fn parse(v: &serde_json::Value, ct: Option<&str>) -> Result<Manifest, ManifestError> {
        Manifest::parse(Bytes::from(serde_json::to_vec(v).unwrap()), ct)
    }

    #[test]
    fn image_manifest_fields() {
        let mut v = image();
        v["subject"] = desc(media_type::OCI_IMAGE_MANIFEST, b"subject");
        v["annotations"] = json!({"org.example": "1"});
        let m = parse(&v, Some(media_type::OCI_IMAGE_MANIFEST)).unwrap();
        assert_eq!(m.kind(), ManifestKind::OciManifest);
        assert_eq!(m.blob_references().count(), 2);
        assert_eq!(m.manifest_references().count(), 0);
        assert_eq!(m.subject().unwrap().digest, Digest::sha256(b"subject"));
        // Fallback: artifactType is the config media type.
        assert_eq!(
            m.artifact_type().unwrap().as_str(),
            media_type::OCI_IMAGE_CONFIG
        );
        let r = m.referrer_descriptor();
        assert_eq!(r.digest, *m.digest());
        assert_eq!(r.size, m.raw().len() as u64);
        assert_eq!(r.annotations["org.example"], "1");
        assert!(m.to_oci_image_manifest().is_some());
        assert!(m.to_oci_image_index().is_none());
    }

    #[test]
    fn index_and_docker_kinds() {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_IMAGE_INDEX,
            "manifests": [desc(media_type::OCI_IMAGE_MANIFEST, b"a"), desc(media_type::OCI_IMAGE_MANIFEST, b"b")],
        });
        let m = parse(&index, None).unwrap();
        assert_eq!(m.kind(), ManifestKind::OciIndex);
        assert_eq!(m.manifest_references().count(), 2);
        assert_eq!(m.blob_references().count(), 0);
        assert!(m.to_oci_image_index().is_some());

        let mut list = index.clone();
        list["mediaType"] = json!(media_type::DOCKER_MANIFEST_LIST);
        assert_eq!(
            parse(&list, Some(media_type::DOCKER_MANIFEST_LIST))
                .unwrap()
                .kind(),
            ManifestKind::DockerManifestList
        );
        let mut docker = image();
        docker["mediaType"] = json!(media_type::DOCKER_MANIFEST_V2);
        assert_eq!(
            parse(&docker, None).unwrap().kind(),
            ManifestKind::DockerManifest
        );
    }

    #[test]
    fn kind_from_header_or_shape() {
        let mut v = image();
        v.as_object_mut().unwrap().remove("mediaType");
        assert_eq!(parse(&v, None).unwrap().kind(), ManifestKind::OciManifest);
        let m = parse(&v, Some(media_type::DOCKER_MANIFEST_V2)).unwrap();
        assert_eq!(m.kind(), ManifestKind::DockerManifest);
        assert_eq!(m.media_type().as_str(), media_type::DOCKER_MANIFEST_V2);
        let idx = json!({"schemaVersion": 2, "manifests": []});
        assert_eq!(parse(&idx, None).unwrap().kind(), ManifestKind::OciIndex);
        assert_eq!(
            parse(&json!({"schemaVersion": 2}), None).unwrap_err(),
            ManifestError::UnknownKind
        );
    }

    #[test]
    fn header_parameters_are_ignored_but_mismatch_is_rejected() {
        let v = image();
        assert!(
            parse(
                &v,
                Some("application/vnd.oci.image.manifest.v1+json; charset=utf-8")
            )
            .is_ok()
        );
        assert!(matches!(
            parse(&v, Some(media_type::OCI_IMAGE_INDEX)),
            Err(ManifestError::MediaTypeMismatch { .. })
        ));
    }

    #[test]
    fn rejects_structural_errors() {
        let mut both = image();
        both["manifests"] = json!([]);
        assert_eq!(
            parse(&both, None).unwrap_err(),
            ManifestError::LayersAndManifests
        );

        let mut no_config = image();
        no_config.as_object_mut().unwrap().remove("config");
        assert!(matches!(
            parse(&no_config, None),
            Err(ManifestError::MissingField {
                field: "config",
                ..
            })
        ));
        let mut no_layers = image();
        no_layers.as_object_mut().unwrap().remove("layers");
        assert!(matches!(
            parse(&no_layers, None),
            Err(ManifestError::MissingField {
                field: "layers",
                ..
            })
        ));

        let idx_with_config = json!({
            "schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX,
            "manifests": [], "config": desc(media_type::OCI_IMAGE_CONFIG, b"{}"),
        });
        assert!(matches!(
            parse(&idx_with_config, None),
            Err(ManifestError::UnexpectedField {
                field: "config",
                ..
            })
        ));
        let idx_no_manifests =
            json!({"schemaVersion": 2, "mediaType": media_type::OCI_IMAGE_INDEX});
        assert!(matches!(
            parse(&idx_no_manifests, None),
            Err(ManifestError::MissingField {
                field: "manifests",
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_descriptors_with_a_path() {
        let mut v = image();
        v["layers"][0]["digest"] = json!("sha256:XYZ");
        let err = parse(&v, None).unwrap_err();
        assert!(
            matches!(&err, ManifestError::InvalidField { path, .. } if path == "layers[0].digest"),
            "{err}"
        );

        let mut v = image();
        v["layers"][0]["size"] = json!(-1);
        assert!(
            matches!(parse(&v, None), Err(ManifestError::InvalidField { path, .. }) if path == "layers[0].size")
        );

        let mut v = image();
        v["config"]["mediaType"] = json!("not a type");
        assert!(
            matches!(parse(&v, None), Err(ManifestError::InvalidField { path, .. }) if path == "config.mediaType")
        );

        let mut v = image();
        v["artifactType"] = json!("bogus");
        assert!(
            matches!(parse(&v, None), Err(ManifestError::InvalidField { path, .. }) if path == "artifactType")
        );

        let mut v = image();
        v["layers"][0].as_object_mut().unwrap().remove("size");
        assert!(matches!(parse(&v, None), Err(ManifestError::Json(_))));
    }

    #[test]
    fn schema1_and_versions() {
        let s1 = json!({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []});
        let err = parse(&s1, None).unwrap_err();
        assert_eq!(err, ManifestError::Schema1);
        assert_eq!(err.code(), ErrorCode::Unsupported);
        assert_eq!(
            parse(&image(), Some(media_type::DOCKER_MANIFEST_V1_SIGNED)).unwrap_err(),
            ManifestError::Schema1
        );
        let mut v3 = image();
        v3["schemaVersion"] = json!(3);
        assert!(matches!(
            parse(&v3, None),
            Err(ManifestError::SchemaVersion(_))
        ));
        let mut none = image();
        none.as_object_mut().unwrap().remove("schemaVersion");
        assert!(matches!(
            parse(&none, None),
            Err(ManifestError::SchemaVersion(_))
        ));
    }

    #[test]
    fn unsupported_media_type() {
        let mut v = image();
        v["mediaType"] = json!("application/vnd.example.thing+json");
        assert!(matches!(
            parse(&v, None),
            Err(ManifestError::UnsupportedMediaType(_))
        ));
    }

    #[test]
    fn broken_json_and_deep_nesting_are_errors_not_panics() {
        for raw in [
            &b""[..],
            b"{",
            b"[]",
            b"null",
            b"\"str\"",
            b"{\"schemaVersion\": 2, \"schemaVersion\": 2, \"manifests\": []}",
            b"\xff\xfe",
        ] {
            assert!(Manifest::parse(Bytes::copy_from_slice(raw), None).is_err());
        }
        let deep = format!(
            "{{\"schemaVersion\":2,\"manifests\":[],\"x\":{}{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            Manifest::parse(Bytes::from(deep), None),
            Err(ManifestError::Json(m)) if m.contains("nested")
        ));
        // Brackets inside strings do not count.
        let mut v = image();
        v["annotations"] = json!({"k": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{"});
        assert!(parse(&v, None).is_ok());
    }

    #[test]
    fn size_limit_is_checked_before_parsing() {
        let big = Bytes::from(vec![b' '; 5 * 1024 * 1024]);
        let err = Manifest::parse(big, None).unwrap_err();
        assert!(
            matches!(err, ManifestError::TooLarge { max, .. } if max == Manifest::DEFAULT_MAX_SIZE)
        );
        assert_eq!(err.code(), ErrorCode::PayloadTooLarge);
        assert_eq!(err.status(), 413);
    }

    #[test]
    fn unknown_fields_survive_in_raw_bytes() {
        let mut v = image();
        v["vendor.extension"] = json!({"nested": [1, 2, 3]});
        let raw = Bytes::from(serde_json::to_vec_pretty(&v).unwrap());
        let m = Manifest::parse(raw.clone(), None).unwrap();
        assert_eq!(m.raw(), &raw);
        assert_eq!(m.digest(), &Digest::sha256(&raw));
    }

    #[test]
    fn sha512_manifest_digest() {
        let raw = Bytes::from(serde_json::to_vec(&image()).unwrap());
        let m = ManifestParser::new()
            .digest_algorithm(Algorithm::Sha512)
            .parse(raw.clone(), None)
            .unwrap();
        assert_eq!(m.digest(), &Digest::compute(Algorithm::Sha512, &raw));
    }

    #[test]
    fn foreign_layers_are_not_required_blobs() {
        let mut v = image();
        v["mediaType"] = json!(media_type::DOCKER_MANIFEST_V2);
        let mut foreign = desc(media_type::DOCKER_FOREIGN_LAYER, b"win");
        foreign["urls"] = json!(["https://example.com/base.tar.gz"]);
        v["layers"].as_array_mut().unwrap().push(foreign);
        let m = parse(&v, None).unwrap();
        assert_eq!(m.layers().len(), 2);
        assert_eq!(m.blob_references().count(), 2); // config + the regular layer
    }
}
