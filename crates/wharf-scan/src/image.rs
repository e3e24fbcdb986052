//! Scanning images held in a registry [`Store`], and attaching the results
//! to them as referrer artifacts (OCI manifests whose `subject` is the
//! image).

use std::collections::BTreeMap;
use std::io::Read;
use std::time::SystemTime;

use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use wharf_storage::{Store, body_from_bytes};
use wharf_types::media_type::{OCI_EMPTY, OCI_IMAGE_MANIFEST};
use wharf_types::{Descriptor, Digest, Manifest, MediaType, Reference, RepositoryName};

use crate::error::{ScanError, ScanResult};
use crate::layer::{Inventory, LayerStack};
use crate::limits::Limits;
use crate::osv::AdvisoryDb;
use crate::report::{REPORT_MEDIA_TYPE, Report, Subject};
use crate::sbom::{self, CYCLONEDX_MEDIA_TYPE, Described, SPDX_MEDIA_TYPE};

/// Annotation on every artifact this crate attaches.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// Annotation naming the advisory fingerprint a report was computed with.
pub const FINGERPRINT_ANNOTATION: &str = "dev.wharf.scan.advisories";
/// Most platform images read from one index.
const MAX_INDEX_CHILDREN: usize = 16;
/// Largest report or SBOM read back from the store.
const MAX_ARTIFACT_BYTES: u64 = 256 << 20;

/// Reads the packages of an image (an image manifest, or every platform
/// image of an index, merged) from the store.
pub async fn inventory(
    store: &Store,
    repo: &RepositoryName,
    digest: &Digest,
    limits: &Limits,
) -> ScanResult<Inventory> {
    let manifest = get_manifest(store, repo, digest).await?;
    if manifest.kind().is_index() {
        let mut merged = Inventory::default();
        let mut seen = std::collections::HashSet::new();
        let mut first = true;
        for child in manifest.manifests().iter().take(MAX_INDEX_CHILDREN) {
            let m = get_manifest(store, repo, &child.digest).await?;
            if m.kind().is_index() || !is_scannable(&m) {
                continue;
            }
            // Platform images are usually pushed (and scanned) before
            // their index: reuse their inventories.
            let inv = match latest_report(store, repo, &child.digest).await {
                Ok(Some(r)) => r.inventory(),
                _ => read_layers(store, repo, m.layers().to_vec(), limits).await?,
            };
            // Platform images normally share a distribution; when they do
            // not, none is recorded and distribution advisories of every
            // release apply (over-reporting rather than missing findings).
            if first {
                merged.distro = inv.distro;
                first = false;
            } else if merged.distro != inv.distro {
                merged.distro = None;
            }
            for p in inv.packages {
                if seen.insert((p.kind, p.name.clone(), p.version.clone())) {
                    merged.packages.push(p);
                }
            }
            merged.warnings.extend(inv.warnings);
        }
        return Ok(merged);
    }
    read_layers(store, repo, manifest.layers().to_vec(), limits).await
}

async fn get_manifest(
    store: &Store,
    repo: &RepositoryName,
    digest: &Digest,
) -> ScanResult<Manifest> {
    let stored = store
        .get_manifest(repo, &Reference::Digest(digest.clone()))
        .await?;
    Manifest::parse(stored.bytes, Some(stored.info.media_type.as_str())).map_err(|e| {
        ScanError::Image {
            digest: digest.to_string(),
            message: e.to_string(),
        }
    })
}

/// Whether a manifest is something to scan: an image or an index, not an
/// artifact (SBOMs, signatures, reports).
pub fn is_scannable(manifest: &Manifest) -> bool {
    if manifest.subject().is_some() {
        return false;
    }
    // For image manifests the artifact type falls back to the config's
    // media type: images have an image config.
    manifest.artifact_type().is_none_or(|t| {
        let t = t.as_str();
        t == wharf_types::media_type::OCI_IMAGE_CONFIG
            || t == wharf_types::media_type::DOCKER_CONFIG
    })
}

/// Streams each layer blob from the store into a [`LayerStack`] running on
/// a blocking thread; a few chunks are in flight at a time.
async fn read_layers(
    store: &Store,
    repo: &RepositoryName,
    layers: Vec<Descriptor>,
    limits: &Limits,
) -> ScanResult<Inventory> {
    if layers.len() > limits.max_layers {
        return Err(ScanError::LimitExceeded {
            what: "layer count",
            limit: limits.max_layers as u64,
        });
    }
    type Chunks = mpsc::Receiver<std::io::Result<Bytes>>;
    let (layer_tx, mut layer_rx) = mpsc::channel::<(String, Chunks)>(1);
    let limits = limits.clone();
    let worker = tokio::task::spawn_blocking(move || -> ScanResult<Inventory> {
        let mut stack = LayerStack::new(limits);
        while let Some((name, chunks)) = layer_rx.blocking_recv() {
            stack.apply(
                ChannelReader {
                    rx: chunks,
                    current: Bytes::new(),
                },
                &name,
            )?;
        }
        Ok(stack.finish())
    });
    for layer in layers {
        if layer.is_foreign() {
            continue; // not stored here (Windows base layers)
        }
        let mut blob = store.read_blob(repo, &layer.digest, None).await?;
        let (tx, rx) = mpsc::channel(4);
        if layer_tx.send((layer.digest.to_string(), rx)).await.is_err() {
            break; // the worker stopped with an error
        }
        while let Some(chunk) = blob.stream.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                break;
            }
        }
    }
    drop(layer_tx);
    worker
        .await
        .map_err(|e| ScanError::Io(std::io::Error::other(format!("scan worker: {e}"))))?
}

/// A blocking reader over chunks sent from async code.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// The artifacts attached to an image by [`attach`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    /// The CycloneDX SBOM manifest, when attached.
    pub cyclonedx: Option<Digest>,
    /// The SPDX SBOM manifest, when attached.
    pub spdx: Option<Digest>,
    /// The report manifest.
    pub report: Digest,
}

/// Scans an image in the store and matches it against `db`: a full scan
/// (layers read) when `previous` is `None`, otherwise the previous
/// report's packages are matched again (advisory updates).
pub async fn scan(
    store: &Store,
    repo: &RepositoryName,
    digest: &Digest,
    db: &AdvisoryDb,
    limits: &Limits,
    previous: Option<&Report>,
) -> ScanResult<(Report, Inventory)> {
    let info = store
        .stat_manifest(repo, &Reference::Digest(digest.clone()))
        .await?;
    let inventory = match previous {
        Some(r) => r.inventory(),
        None => inventory(store, repo, digest, limits).await?,
    };
    let subject = Subject {
        repository: repo.to_string(),
        digest: digest.to_string(),
        media_type: info.media_type.to_string(),
    };
    let report = Report::new(subject, &inventory, db, SystemTime::now());
    Ok((report, inventory))
}

/// Attaches a report (and, when `inventory` is given, CycloneDX and SPDX
/// SBOMs) to the image as referrers, then removes the artifacts of the
/// same types that this replaces.
pub async fn attach(
    store: &Store,
    repo: &RepositoryName,
    report: &Report,
    inventory: Option<&Inventory>,
) -> ScanResult<Attached> {
    let digest: Digest = report
        .subject
        .digest
        .parse()
        .map_err(|e: wharf_types::DigestError| ScanError::Image {
            digest: report.subject.digest.clone(),
            message: e.to_string(),
        })?;
    let info = store
        .stat_manifest(repo, &Reference::Digest(digest.clone()))
        .await?;
    let subject = Descriptor::new(info.media_type.clone(), digest.clone(), info.size);
    let created = report.scanned_at.clone();
    let mut annotations = BTreeMap::new();
    annotations.insert(CREATED_ANNOTATION.to_owned(), created.clone());
    annotations.insert(
        FINGERPRINT_ANNOTATION.to_owned(),
        report.advisories.fingerprint.clone(),
    );
    let mut attached = Attached {
        cyclonedx: None,
        spdx: None,
        report: Digest::sha256(b""),
    };
    if let Some(inv) = inventory {
        let described = Described {
            repository: repo.to_string(),
            digest: digest.to_string(),
            created: created.clone(),
        };
        let cdx = serde_json::to_vec(&sbom::cyclonedx::render(&described, inv)).unwrap_or_default();
        let spdx = serde_json::to_vec(&sbom::spdx::render(&described, inv)).unwrap_or_default();
        attached.cyclonedx = Some(
            push_artifact(
                store,
                repo,
                &subject,
                CYCLONEDX_MEDIA_TYPE,
                cdx.into(),
                &annotations,
            )
            .await?,
        );
        attached.spdx = Some(
            push_artifact(
                store,
                repo,
                &subject,
                SPDX_MEDIA_TYPE,
                spdx.into(),
                &annotations,
            )
            .await?,
        );
    }
    let body = serde_json::to_vec(report).unwrap_or_default();
    attached.report = push_artifact(
        store,
        repo,
        &subject,
        REPORT_MEDIA_TYPE,
        body.into(),
        &annotations,
    )
    .await?;
    Ok(attached)
}

/// Pushes one artifact manifest (empty config, one layer) referring to
/// `subject`, and deletes older artifacts of the same type on that subject.
async fn push_artifact(
    store: &Store,
    repo: &RepositoryName,
    subject: &Descriptor,
    artifact_type: &'static str,
    content: Bytes,
    annotations: &BTreeMap<String, String>,
) -> ScanResult<Digest> {
    let empty = Bytes::from_static(b"{}");
    let empty_digest = Digest::sha256(&empty);
    store
        .put_blob(repo, &empty_digest, body_from_bytes(empty.clone()), Some(2))
        .await?;
    let content_digest = Digest::sha256(&content);
    let size = content.len() as u64;
    store
        .put_blob(repo, &content_digest, body_from_bytes(content), Some(size))
        .await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_IMAGE_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": OCI_EMPTY, "digest": empty_digest.to_string(), "size": 2, "data": "e30="},
        "layers": [{"mediaType": artifact_type, "digest": content_digest.to_string(), "size": size}],
        "subject": {"mediaType": subject.media_type.as_str(), "digest": subject.digest.to_string(), "size": subject.size},
        "annotations": annotations,
    });
    let raw = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
    let parsed = Manifest::parse(raw, Some(OCI_IMAGE_MANIFEST)).map_err(|e| ScanError::Image {
        digest: subject.digest.to_string(),
        message: format!("artifact manifest: {e}"),
    })?;
    let digest = parsed.digest().clone();
    store
        .put_manifest(repo, &Reference::Digest(digest.clone()), &parsed)
        .await?;
    // Older artifacts of this type are replaced by this one. Only strictly
    // older ones: two scans of one image finishing together (on one node or
    // two) must not delete each other's results; readers take the latest.
    let kind = MediaType::from_static(artifact_type);
    let created = annotations
        .get(CREATED_ANNOTATION)
        .cloned()
        .unwrap_or_default();
    let older = store
        .list_referrers(repo, &subject.digest, Some(&kind), None, 1000)
        .await?;
    for d in older.items {
        let theirs = d
            .annotations
            .get(CREATED_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        if d.digest != digest && theirs < created {
            match store.delete_manifest(repo, &d.digest).await {
                Ok(()) | Err(wharf_storage::StoreError::ManifestUnknown { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(digest)
}

/// The most recent attached artifact of a type: its manifest digest and content.
pub async fn latest_artifact(
    store: &Store,
    repo: &RepositoryName,
    subject: &Digest,
    artifact_type: &'static str,
) -> ScanResult<Option<(Digest, Bytes)>> {
    let kind = MediaType::from_static(artifact_type);
    let page = store
        .list_referrers(repo, subject, Some(&kind), None, 1000)
        .await?;
    let Some(latest) = page.items.iter().max_by(|a, b| {
        let created = |d: &Descriptor| {
            d.annotations
                .get(CREATED_ANNOTATION)
                .cloned()
                .unwrap_or_default()
        };
        created(a)
            .cmp(&created(b))
            .then_with(|| a.digest.as_str().cmp(b.digest.as_str()))
    }) else {
        return Ok(None);
    };
    let manifest = match get_manifest(store, repo, &latest.digest).await {
        Ok(m) => m,
        // Replaced between the listing and the read.
        Err(ScanError::Store(wharf_storage::StoreError::ManifestUnknown { .. })) => {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let Some(layer) = manifest.layers().first() else {
        return Ok(None);
    };
    if layer.size > MAX_ARTIFACT_BYTES {
        return Err(ScanError::LimitExceeded {
            what: "attached artifact",
            limit: MAX_ARTIFACT_BYTES,
        });
    }
    let mut blob = store.read_blob(repo, &layer.digest, None).await?;
    let mut data = Vec::with_capacity(layer.size as usize);
    while let Some(chunk) = blob.stream.next().await {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
        if (data.len() + chunk.len()) as u64 > MAX_ARTIFACT_BYTES {
            return Err(ScanError::LimitExceeded {
                what: "attached artifact",
                limit: MAX_ARTIFACT_BYTES,
            });
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Some((latest.digest.clone(), Bytes::from(data))))
}

/// The most recent report attached to an image.
pub async fn latest_report(
    store: &Store,
    repo: &RepositoryName,
    subject: &Digest,
) -> ScanResult<Option<Report>> {
    match latest_artifact(store, repo, subject, REPORT_MEDIA_TYPE).await? {
        None => Ok(None),
        Some((d, data)) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| ScanError::Image {
                digest: d.to_string(),
                message: format!("stored report: {e}"),
            }),
    }
}
