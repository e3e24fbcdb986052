//! Manifests, tags and referrers.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wharf_types::{Descriptor, Digest, Manifest, MediaType, Reference, RepositoryName, Tag};

use crate::backend::{BackendExt, ListOptions, MetaOp};
use crate::error::{StoreError, StoreResult};
use crate::keys;
use crate::store::Store;

/// What is recorded for each manifest in a repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Revision {
    pub(crate) media_type: MediaType,
    pub(crate) size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) subject: Option<Digest>,
}

/// A manifest's identity without its bytes (for `HEAD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// Digest of the exact bytes.
    pub digest: Digest,
    /// The media type it was pushed with.
    pub media_type: MediaType,
    /// Size of the bytes.
    pub size: u64,
}

/// A stored manifest: its identity and exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    /// Digest, media type and size.
    pub info: ManifestInfo,
    /// The bytes exactly as pushed.
    pub bytes: Bytes,
}

/// The outcome of a manifest push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedManifest {
    /// Digest of the manifest.
    pub digest: Digest,
    /// The subject it refers to, if any (for the `OCI-Subject` header).
    pub subject: Option<Digest>,
    /// The manifest the tag pointed to before, if a tag moved.
    pub previous: Option<Digest>,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// Whether more items follow the last one.
    pub more: bool,
}

impl Store {
    /// Stores a validated manifest in `repo`, under its digest and, when
    /// `reference` is a tag, under that tag. Every blob and child manifest
    /// it references must already be in the repository.
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
        manifest: &Manifest,
    ) -> StoreResult<PushedManifest> {
        let digest = manifest.digest();
        if let Reference::Digest(expected) = reference
            && expected != digest
        {
            return Err(StoreError::ManifestDigestMismatch {
                expected: expected.clone(),
                actual: digest.clone(),
            });
        }
        self.check_references(repo, manifest).await?;

        let revision = Revision {
            media_type: manifest.media_type().clone(),
            size: manifest.size(),
            subject: manifest.subject().map(|s| s.digest.clone()),
        };
        let mut ops = vec![
            MetaOp::PutIfAbsent(keys::catalog(repo), Bytes::new()),
            MetaOp::Put(keys::revision(repo, digest), to_json(&revision)?),
        ];
        if let Some(subject) = manifest.subject() {
            ops.push(MetaOp::Put(
                keys::referrer(repo, &subject.digest, digest),
                to_json(&manifest.referrer_descriptor())?,
            ));
        }
        let mut previous = None;
        if let Reference::Tag(tag) = reference {
            previous = self.tag_target(repo, tag).await?;
            // The tag is written last: a reader that sees it finds everything
            // it points to.
            ops.push(MetaOp::Put(
                keys::tag(repo, tag),
                Bytes::from(digest.to_string()),
            ));
        }
        // The content first, then the records, in one step (one atomic
        // transaction where the backend can): a tag never points to
        // missing content.
        self.backend
            .blob_put_with_meta(digest, manifest.raw().clone(), ops)
            .await?;
        self.cache_manifest(digest, manifest.raw());
        Ok(PushedManifest {
            digest: digest.clone(),
            subject: manifest.subject().map(|s| s.digest.clone()),
            previous: previous.filter(|p| p != digest),
        })
    }

    async fn check_references(
        &self,
        repo: &RepositoryName,
        manifest: &Manifest,
    ) -> StoreResult<()> {
        let missing = |d: &Descriptor| StoreError::ManifestBlobUnknown {
            repo: repo.clone(),
            digest: d.digest.clone(),
        };
        let blobs = manifest.blob_references().map(|d| async move {
            match self.stat_blob(repo, &d.digest).await {
                Ok(_) => Ok(()),
                Err(StoreError::BlobUnknown { .. }) => Err(missing(d)),
                Err(e) => Err(e),
            }
        });
        futures::future::try_join_all(blobs).await?;
        let children = manifest.manifest_references().map(|d| async move {
            match self
                .backend
                .meta_value(&keys::revision(repo, &d.digest))
                .await?
            {
                Some(_) => Ok(()),
                None => Err(missing(d)),
            }
        });
        futures::future::try_join_all(children).await?;
        Ok(())
    }

    /// The digest a tag points to, if the tag exists.
    pub async fn tag_target(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
    ) -> StoreResult<Option<Digest>> {
        match self.backend.meta_value(&keys::tag(repo, tag)).await? {
            None => Ok(None),
            Some(raw) => parse_digest(&raw).map(Some),
        }
    }

    /// Resolves a reference and returns the manifest's identity.
    pub async fn stat_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> StoreResult<ManifestInfo> {
        let unknown = || StoreError::ManifestUnknown {
            repo: repo.clone(),
            reference: reference.to_string(),
        };
        let digest = match reference {
            Reference::Digest(d) => d.clone(),
            Reference::Tag(t) => self.tag_target(repo, t).await?.ok_or_else(unknown)?,
        };
        let raw = self
            .backend
            .meta_value(&keys::revision(repo, &digest))
            .await?
            .ok_or_else(unknown)?;
        let rev: Revision = from_json(&raw)?;
        Ok(ManifestInfo {
            digest,
            media_type: rev.media_type,
            size: rev.size,
        })
    }

    /// Resolves a reference and returns the manifest with its exact bytes.
    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &Reference,
    ) -> StoreResult<StoredManifest> {
        let info = self.stat_manifest(repo, reference).await?;
        let bytes = match self.cached_manifest(&info.digest) {
            Some(b) => b,
            None => {
                let b = match self.backend.blob_bytes(&info.digest).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => {
                        return Err(StoreError::Corrupt(format!(
                            "manifest {} is recorded in {repo} but its content is missing",
                            info.digest
                        )));
                    }
                    Err(e) => return Err(e.into()),
                };
                crate::blobs::verify_stored(&info.digest, &b)?;
                self.cache_manifest(&info.digest, &b);
                b
            }
        };
        Ok(StoredManifest { info, bytes })
    }

    /// Deletes a manifest from `repo`, with every tag pointing to it and its
    /// entry in its subject's referrers.
    pub async fn delete_manifest(&self, repo: &RepositoryName, digest: &Digest) -> StoreResult<()> {
        let key = keys::revision(repo, digest);
        let raw =
            self.backend
                .meta_value(&key)
                .await?
                .ok_or_else(|| StoreError::ManifestUnknown {
                    repo: repo.clone(),
                    reference: digest.to_string(),
                })?;
        let rev: Revision = from_json(&raw)?;
        let mut ops = Vec::new();
        // Tags first: a reader never follows a tag to a missing manifest.
        let prefix = keys::tags_prefix(repo);
        let mut after = None;
        loop {
            let page = self
                .backend
                .meta_list(
                    &prefix,
                    ListOptions {
                        start_after: after.clone(),
                        limit: 1000,
                        values: true,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            for e in page {
                if e.value
                    .as_deref()
                    .map(parse_digest)
                    .and_then(Result::ok)
                    .as_ref()
                    == Some(digest)
                {
                    ops.push(MetaOp::Delete(e.key));
                }
            }
        }
        if let Some(subject) = &rev.subject {
            ops.push(MetaOp::Delete(keys::referrer(repo, subject, digest)));
        }
        ops.push(MetaOp::Delete(key));
        self.backend.meta_apply(ops).await?;
        Ok(())
    }

    /// Deletes a tag; the manifest stays, reachable by digest.
    pub async fn delete_tag(&self, repo: &RepositoryName, tag: &Tag) -> StoreResult<()> {
        let key = keys::tag(repo, tag);
        if self.backend.meta_value(&key).await?.is_none() {
            return Err(StoreError::ManifestUnknown {
                repo: repo.clone(),
                reference: tag.to_string(),
            });
        }
        self.backend.meta_delete(key).await?;
        Ok(())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n`.
    pub async fn list_tags(
        &self,
        repo: &RepositoryName,
        last: Option<&Tag>,
        n: usize,
    ) -> StoreResult<Page<Tag>> {
        self.require_repository(repo).await?;
        let prefix = keys::tags_prefix(repo);
        let entries = self
            .backend
            .meta_list(
                &prefix,
                ListOptions {
                    start_after: last.map(|t| keys::tag(repo, t)),
                    limit: n.saturating_add(1),
                    values: false,
                },
            )
            .await?;
        let mut items: Vec<Tag> = entries
            .iter()
            .filter_map(|e| Tag::parse(keys::after_prefix(&e.key, &prefix)).ok())
            .collect();
        let more = items.len() > n;
        items.truncate(n);
        Ok(Page { items, more })
    }

    /// Repositories in lexical order, after `last`, at most `n`.
    pub async fn list_repositories(
        &self,
        last: Option<&RepositoryName>,
        n: usize,
    ) -> StoreResult<Page<RepositoryName>> {
        let entries = self
            .backend
            .meta_list(
                keys::CATALOG_PREFIX,
                ListOptions {
                    start_after: last.map(keys::catalog),
                    limit: n.saturating_add(1),
                    values: false,
                },
            )
            .await?;
        let mut items: Vec<RepositoryName> = entries
            .iter()
            .filter_map(|e| keys::repo_from_catalog(&e.key))
            .collect();
        let more = items.len() > n;
        items.truncate(n);
        Ok(Page { items, more })
    }

    /// Manifests in `repo` whose subject is `subject`, optionally only those
    /// of one artifact type, in digest order after `last`, at most `n`.
    pub async fn list_referrers(
        &self,
        repo: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&MediaType>,
        last: Option<&Digest>,
        n: usize,
    ) -> StoreResult<Page<Descriptor>> {
        let prefix = keys::referrers_prefix(repo, subject);
        let mut items = Vec::new();
        let mut after = last.map(|d| keys::referrer(repo, subject, d));
        loop {
            let want = n.saturating_add(1) - items.len();
            let page = self
                .backend
                .meta_list(
                    &prefix,
                    ListOptions {
                        start_after: after.clone(),
                        limit: want.max(64),
                        values: true,
                    },
                )
                .await?;
            let exhausted = page.len() < want.max(64);
            let Some(last_entry) = page.last() else { break };
            after = Some(last_entry.key.clone());
            for e in page {
                let Some(raw) = e.value else { continue };
                let d: Descriptor = from_json(&raw)?;
                if artifact_type.is_none_or(|a| d.artifact_type.as_ref() == Some(a)) {
                    items.push(d);
                }
                if items.len() > n {
                    break;
                }
            }
            if items.len() > n || exhausted {
                break;
            }
        }
        let more = items.len() > n;
        items.truncate(n);
        Ok(Page { items, more })
    }
}

pub(crate) fn parse_digest(raw: &[u8]) -> StoreResult<Digest> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| Digest::parse(s).ok())
        .ok_or_else(|| StoreError::Corrupt("a tag does not hold a valid digest".into()))
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> StoreResult<Bytes> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| StoreError::Corrupt(format!("serialize: {e}")))
}

pub(crate) fn from_json<T: for<'de> Deserialize<'de>>(raw: &[u8]) -> StoreResult<T> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt(format!("stored record: {e}")))
}
