//! Proptest strategies for every type in this crate (feature `proptest`).
//!
//! The `arb_*` strategies generate valid values; the `arb_invalid_*`
//! strategies generate near misses (one character, one length, one
//! separator off) that the parsers must reject. Use them to property-test
//! code built on Wharf:
//!
//! ```
//! use proptest::prelude::*;
//! use wharf_types::{RepositoryName, strategies::{arb_repository_name, arb_invalid_repository_name}};
//!
//! proptest!(|(name in arb_repository_name(), bad in arb_invalid_repository_name())| {
//!     // A storage layer might map names to paths: every valid name must stay inside its root.
//!     prop_assert!(!name.as_str().split('/').any(|c| c == ".." || c.is_empty()));
//!     prop_assert!(bad.parse::<RepositoryName>().is_err());
//! });
//! ```

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};

use crate::digest::{Algorithm, Digest};
use crate::manifest::Manifest;
use crate::media_type::{self, MediaType};
use crate::name::RepositoryName;
use crate::reference::Reference;
use crate::tag::Tag;
use crate::upload::UploadId;
use crate::{Descriptor, ManifestKind};

/// A supported digest algorithm (mostly SHA-256).
pub fn arb_algorithm() -> impl Strategy<Value = Algorithm> {
    prop_oneof![4 => Just(Algorithm::Sha256), 1 => Just(Algorithm::Sha512)]
}

/// A valid digest of random content.
pub fn arb_digest() -> impl Strategy<Value = Digest> {
    (arb_algorithm(), vec(any::<u8>(), 0..64)).prop_map(|(a, data)| Digest::compute(a, &data))
}

/// Digest strings that are almost valid: wrong length, uppercase hex, a
/// non-hex character, an unknown or malformed algorithm, a missing colon,
/// path traversal.
pub fn arb_invalid_digest() -> impl Strategy<Value = String> {
    prop_oneof![
        arb_digest().prop_map(|d| d.as_str()[..d.as_str().len() - 1].to_owned()),
        arb_digest().prop_map(|d| format!("{d}0")),
        arb_digest()
            .prop_filter("needs a letter", |d| d
                .hex()
                .contains(|c: char| c.is_ascii_alphabetic()))
            .prop_map(|d| d.as_str().to_ascii_uppercase().replacen("SHA", "sha", 1)),
        (
            arb_digest(),
            0usize..64,
            select(vec!['g', 'z', 'G', '/', '.', '%', ' ', 'é'])
        )
            .prop_map(|(d, i, c)| {
                let mut hex: Vec<char> = d.hex().chars().collect();
                hex[i] = c;
                format!("{}:{}", d.algorithm(), hex.into_iter().collect::<String>())
            }),
        arb_digest().prop_map(|d| d.as_str().replacen(':', "", 1)),
        arb_digest().prop_map(|d| format!("md5:{}", d.hex())),
        arb_digest().prop_map(|d| format!("SHA256:{}", d.hex())),
        arb_digest().prop_map(|d| format!("sha256+:{}", d.hex())),
        Just(
            "sha256:../../../../../../../../../../../../../../../../../../../../../../../../../"
                .to_owned()
        ),
    ]
}

fn component() -> impl Strategy<Value = String> {
    // alnum runs joined by the grammar's separators
    let alnum = "[a-z0-9]{1,8}";
    let sep = select(vec![".", "_", "__", "-", "--", "---"]);
    (alnum, vec((sep, alnum), 0..3)).prop_map(|(first, rest)| {
        let mut s = first;
        for (sep, run) in rest {
            s.push_str(sep);
            s.push_str(&run);
        }
        s
    })
}

/// A valid repository name with one to five components.
pub fn arb_repository_name() -> impl Strategy<Value = RepositoryName> {
    vec(component(), 1..=5).prop_filter_map("name within length limit", |parts| {
        RepositoryName::parse(&parts.join("/")).ok()
    })
}

fn valid_name() -> impl Strategy<Value = String> {
    arb_repository_name().prop_map(|n| n.as_str().to_owned())
}

/// Repository names that are almost valid: an uppercase letter, a bad
/// separator, an empty component, a disallowed character, or over-long.
pub fn arb_invalid_repository_name() -> impl Strategy<Value = String> {
    prop_oneof![
        valid_name().prop_map(|n| format!("{n}/")),
        valid_name().prop_map(|n| format!("/{n}")),
        valid_name().prop_map(|n| n.replacen('/', "//", 1) + "//x"),
        valid_name().prop_map(|n| format!("{n}X")),
        (
            valid_name(),
            select(vec!["..", "._", "___", "_-", "-_", ".-", "-."])
        )
            .prop_map(|(n, sep)| format!("{n}{sep}a")),
        (
            valid_name(),
            select(vec![' ', ':', '@', '%', '\\', '\0', 'é', '~'])
        )
            .prop_map(|(n, c)| format!("{n}{c}a")),
        valid_name().prop_map(|n| format!("../{n}")),
        valid_name().prop_map(|n| format!("{n}.")),
        Just("a".repeat(RepositoryName::MAX_LEN + 1)),
    ]
}

/// A valid tag.
pub fn arb_tag() -> impl Strategy<Value = Tag> {
    "[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}".prop_map(|s| {
        Tag::parse(&s).unwrap_or_else(|e| unreachable!("generated tag is valid: {e}"))
    })
}

/// Tags that are almost valid: a leading `.` or `-`, a disallowed
/// character, empty, or 129 characters.
pub fn arb_invalid_tag() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        arb_tag()
            .prop_map(|t| t.as_str().to_owned())
            .prop_map(|t| format!(".{t}")),
        arb_tag()
            .prop_map(|t| t.as_str().to_owned())
            .prop_map(|t| format!("-{t}")),
        (
            arb_tag().prop_map(|t| t.as_str().to_owned()),
            select(vec!['/', ':', '@', ' ', '+', 'é', '\n'])
        )
            .prop_map(|(t, c)| format!("{t}{c}")),
        "[a-z]{129,140}",
    ]
}

/// A valid reference (tag or digest).
pub fn arb_reference() -> impl Strategy<Value = Reference> {
    prop_oneof![
        arb_tag().prop_map(Reference::Tag),
        arb_digest().prop_map(Reference::Digest)
    ]
}

/// A valid upload id.
pub fn arb_upload_id() -> impl Strategy<Value = UploadId> {
    any::<[u8; 16]>().prop_map(|b| {
        let text = uuid::Builder::from_random_bytes(b).into_uuid().to_string();
        UploadId::parse(&text).unwrap_or_else(|e| unreachable!("uuid text is valid: {e}"))
    })
}

/// A valid media type, mostly well-known ones.
pub fn arb_media_type() -> impl Strategy<Value = MediaType> {
    prop_oneof![
        select(vec![
            media_type::OCI_IMAGE_CONFIG,
            media_type::OCI_EMPTY,
            media_type::OCI_LAYER_TAR,
            media_type::OCI_LAYER_TAR_GZIP,
            media_type::OCI_LAYER_TAR_ZSTD,
            media_type::DOCKER_LAYER_TAR_GZIP,
        ])
        .prop_map(MediaType::from_static),
        (
            "[a-z]{1,12}",
            "vnd\\.[a-z0-9]{1,10}(\\.[a-z0-9]{1,8}){0,3}(\\+json)?"
        )
            .prop_map(|(t, st)| MediaType::parse(&format!("{t}/{st}"))
                .unwrap_or_else(|e| unreachable!("generated media type is valid: {e}"))),
    ]
}

fn arb_annotations() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map("[a-z]{1,6}(\\.[a-z]{1,6}){0,2}", "\\PC{0,16}", 0..3)
}

/// A valid descriptor of a blob.
pub fn arb_descriptor() -> impl Strategy<Value = Descriptor> {
    (
        arb_media_type(),
        arb_digest(),
        0u64..(1 << 40),
        arb_annotations(),
    )
        .prop_map(|(mt, digest, size, annotations)| Descriptor {
            annotations,
            ..Descriptor::new(mt, digest, size)
        })
}

fn descriptor_json(d: &Descriptor) -> Value {
    serde_json::to_value(d).unwrap_or_else(|e| unreachable!("descriptors serialize: {e}"))
}

fn arb_extra_fields() -> impl Strategy<Value = BTreeMap<String, Value>> {
    btree_map(
        "x-[a-z]{1,8}",
        prop_oneof![
            any::<i64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            vec(any::<bool>(), 0..3).prop_map(|v| json!({ "list": v })),
        ],
        0..3,
    )
}

fn finish(doc: Value, extra: BTreeMap<String, Value>, pretty: bool) -> Manifest {
    let mut doc = doc;
    if let Value::Object(map) = &mut doc {
        map.extend(extra);
    }
    let raw = if pretty {
        serde_json::to_vec_pretty(&doc)
    } else {
        serde_json::to_vec(&doc)
    }
    .unwrap_or_else(|e| unreachable!("JSON values serialize: {e}"));
    Manifest::parse(Bytes::from(raw), None)
        .unwrap_or_else(|e| unreachable!("generated manifest is valid: {e}"))
}

/// A valid image manifest (OCI or Docker schema 2), sometimes with a
/// subject, an artifact type, annotations and unknown extension fields,
/// serialized compactly or pretty-printed.
pub fn arb_manifest() -> impl Strategy<Value = Manifest> {
    (
        prop_oneof![
            Just(ManifestKind::OciManifest),
            Just(ManifestKind::DockerManifest)
        ],
        arb_descriptor(),
        vec(arb_descriptor(), 0..6),
        proptest::option::of(arb_descriptor()),
        proptest::option::of(arb_media_type()),
        arb_annotations(),
        arb_extra_fields(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, config, layers, subject, artifact_type, annotations, extra, pretty)| {
                let mut doc = json!({
                    "schemaVersion": 2,
                    "mediaType": kind.media_type(),
                    "config": descriptor_json(&config),
                    "layers": layers.iter().map(descriptor_json).collect::<Vec<_>>(),
                });
                if kind == ManifestKind::OciManifest {
                    if let Some(s) = subject {
                        doc["subject"] = descriptor_json(&s);
                    }
                    if let Some(a) = artifact_type {
                        doc["artifactType"] = json!(a);
                    }
                    if !annotations.is_empty() {
                        doc["annotations"] = json!(annotations);
                    }
                }
                finish(doc, extra, pretty)
            },
        )
}

/// A valid image index (OCI or Docker manifest list) of image manifests.
pub fn arb_index() -> impl Strategy<Value = Manifest> {
    (
        prop_oneof![
            Just(ManifestKind::OciIndex),
            Just(ManifestKind::DockerManifestList)
        ],
        vec(arb_digest(), 0..6),
        proptest::option::of(arb_descriptor()),
        arb_extra_fields(),
        any::<bool>(),
    )
        .prop_map(|(kind, children, subject, extra, pretty)| {
            let child_type = if kind == ManifestKind::OciIndex {
                media_type::OCI_IMAGE_MANIFEST
            } else {
                media_type::DOCKER_MANIFEST_V2
            };
            let manifests: Vec<Value> = children
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    json!({
                        "mediaType": child_type,
                        "digest": d,
                        "size": 100 + i,
                        "platform": {"architecture": "amd64", "os": "linux"},
                    })
                })
                .collect();
            let mut doc = json!({
                "schemaVersion": 2,
                "mediaType": kind.media_type(),
                "manifests": manifests,
            });
            if let (ManifestKind::OciIndex, Some(s)) = (kind, subject) {
                doc["subject"] = descriptor_json(&s);
            }
            finish(doc, extra, pretty)
        })
}

/// Manifest documents that must be rejected: each takes a valid manifest
/// and breaks one rule (both layers and manifests, a bad digest, a negative
/// size, a mismatched mediaType, schema 1, truncated JSON, deep nesting).
pub fn arb_invalid_manifest() -> impl Strategy<Value = Bytes> {
    (arb_manifest(), 0usize..8).prop_map(|(m, which)| {
        let mut doc: Value = serde_json::from_slice(m.raw())
            .unwrap_or_else(|e| unreachable!("generated manifests are JSON: {e}"));
        match which {
            0 => doc["manifests"] = json!([]),
            1 => doc["config"]["digest"] = json!("sha256:1234"),
            2 => doc["config"]["size"] = json!(-1),
            3 => doc["mediaType"] = json!(media_type::OCI_IMAGE_INDEX),
            4 => doc["schemaVersion"] = json!(1),
            5 => {
                let raw = m.raw();
                return raw.slice(..raw.len() / 2);
            }
            6 => {
                doc["x-deep"] =
                    serde_json::from_str(&format!("{}{}", "[".repeat(40), "]".repeat(40)))
                        .unwrap_or_else(|e| unreachable!("nested arrays are JSON: {e}"))
            }
            _ => {
                if let Value::Object(map) = &mut doc {
                    map.remove("config");
                }
            }
        }
        Bytes::from(
            serde_json::to_vec(&doc).unwrap_or_else(|e| unreachable!("JSON values serialize: {e}")),
        )
    })
}
