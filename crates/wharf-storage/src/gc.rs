//! Online garbage collection and integrity checking.
//!
//! Garbage collection marks from every repository's tags (and, unless told
//! otherwise, every manifest), following index children and referrers, then
//! sweeps blobs that nothing references. It runs while pushes continue:
//!
//! - a blob is kept if it, or any link to it, was written or touched within
//!   the grace period (a push uploads blobs first and the manifest last;
//!   checking a blob with `HEAD` touches its link);
//! - manifests pushed after the mark started are marked again right before
//!   the sweep;
//! - staged uploads are not blobs yet and are never touched, except by the
//!   expiry of abandoned sessions.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use wharf_types::{Digest, Digester, ManifestParser, RepositoryName};

use crate::backend::{BackendExt, ListOptions, MetaEntry, MetaOp};
use crate::error::{StoreError, StoreResult};
use crate::keys;
use crate::manifests::{Revision, from_json, parse_digest};
use crate::store::Store;

/// Garbage collection settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GcOptions {
    /// Content written or used more recently than this is never deleted.
    pub grace: Duration,
    /// Also delete manifests that no tag (and no live index or subject)
    /// reaches. Off by default: untagged manifests are still pulled by digest.
    pub delete_untagged: bool,
    /// Report what would be deleted without deleting.
    pub dry_run: bool,
    /// Expire upload sessions idle for longer than this.
    pub upload_expiry: Option<Duration>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            grace: Duration::from_secs(3600),
            delete_untagged: false,
            dry_run: false,
            upload_expiry: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl GcOptions {
    /// Options with a grace period.
    pub fn with_grace(grace: Duration) -> Self {
        GcOptions {
            grace,
            ..Self::default()
        }
    }
}

/// What a garbage collection run did (or would do, in a dry run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Repositories scanned.
    pub repositories: u64,
    /// Blobs deleted.
    pub blobs_deleted: u64,
    /// Bytes freed by deleted blobs.
    pub bytes_freed: u64,
    /// Blobs kept.
    pub blobs_kept: u64,
    /// Untagged manifests deleted.
    pub manifests_deleted: u64,
    /// Upload sessions (and orphaned staged bytes) expired.
    pub uploads_expired: u64,
}

/// Progress of a long-running operation, for progress bars and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    /// What is being done.
    pub phase: &'static str,
    /// Items done in this phase.
    pub done: u64,
    /// Bytes processed in this phase.
    pub bytes: u64,
}

/// What a scrub found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScrubReport {
    /// Blobs checked.
    pub blobs_checked: u64,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Blobs whose bytes no longer match their digest, with what they hash to.
    pub corrupt: Vec<(Digest, Digest)>,
    /// Blobs that could not be read, with the error.
    pub unreadable: Vec<(Digest, String)>,
}

const PAGE: usize = 1000;
/// How long before a collection's start its re-mark looks for manifests
/// pushed while it marked (see `gc_with_progress`).
const REMARK_MARGIN: Duration = Duration::from_secs(5);

impl Store {
    /// Runs garbage collection once.
    pub async fn gc(&self, options: &GcOptions) -> StoreResult<GcReport> {
        self.gc_with_progress(options, |_| {}).await
    }

    /// Runs garbage collection once, reporting progress.
    pub async fn gc_with_progress(
        &self,
        options: &GcOptions,
        mut progress: impl FnMut(&Progress) + Send,
    ) -> StoreResult<GcReport> {
        let started = SystemTime::now();
        let cutoff = started
            .checked_sub(options.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut report = GcReport::default();
        let mut live: HashSet<Digest> = HashSet::new();
        let mut recent: HashSet<Digest> = HashSet::new();
        // The revisions the mark phase decided about, with their times.
        let mut seen: HashMap<RepositoryName, HashMap<Digest, SystemTime>> = HashMap::new();

        let repos = self.all_repositories().await?;
        for repo in &repos {
            report.repositories += 1;
            let listed = self
                .mark_repository(repo, options, cutoff, &mut live, &mut recent, &mut report)
                .await?;
            seen.insert(repo.clone(), listed);
            progress(&Progress {
                phase: "mark",
                done: report.repositories,
                bytes: 0,
            });
        }

        // Sweep candidates: stored, unreferenced, old, with no recent link.
        let mut candidates = Vec::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.backend.blob_list(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for b in page {
                if live.contains(&b.digest) || recent.contains(&b.digest) || b.modified >= cutoff {
                    report.blobs_kept += 1;
                } else {
                    candidates.push(b);
                }
            }
        }

        // Re-mark what was pushed while we were marking. Record times may
        // be coarser than `started` (the filesystem backend keeps
        // milliseconds) or come from another clock (an object store's), so
        // the window opens a little before the start: re-marking a manifest
        // twice only costs a read.
        let remark_since = started
            .checked_sub(REMARK_MARGIN)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        for repo in &repos {
            self.mark_new_manifests(repo, remark_since, seen.get(repo), &mut live)
                .await?;
        }
        let new_repos = self.all_repositories().await?;
        for repo in new_repos.iter().filter(|r| !repos.contains(r)) {
            self.mark_new_manifests(repo, SystemTime::UNIX_EPOCH, None, &mut live)
                .await?;
        }

        for blob in candidates {
            // A request that just found the blob stored holds it: keep it
            // this time.
            let Some(_guard) = self.try_sweep_guard(&blob.digest) else {
                report.blobs_kept += 1;
                continue;
            };
            if live.contains(&blob.digest) || self.recently_linked(&blob.digest, cutoff).await? {
                report.blobs_kept += 1;
                continue;
            }
            report.blobs_deleted += 1;
            report.bytes_freed += blob.size;
            if !options.dry_run {
                let holders = self.repositories_holding(&blob.digest, usize::MAX).await?;
                let mut ops = Vec::new();
                for repo in holders {
                    ops.push(MetaOp::Delete(keys::blob_link(&repo, &blob.digest)));
                    ops.push(MetaOp::Delete(keys::holder(&blob.digest, &repo)));
                }
                // Content first: a link without content reads as unknown,
                // so a crash between the two steps is harmless.
                self.backend.blob_delete(&blob.digest).await?;
                self.forget_manifest(&blob.digest);
                if !ops.is_empty() {
                    self.backend.meta_apply(ops).await?;
                }
            }
            progress(&Progress {
                phase: "sweep",
                done: report.blobs_deleted,
                bytes: report.bytes_freed,
            });
        }

        if let Some(expiry) = options.upload_expiry
            && !options.dry_run
        {
            report.uploads_expired = self.expire_uploads(expiry).await? as u64;
        }
        Ok(report)
    }

    async fn all_repositories(&self) -> StoreResult<Vec<RepositoryName>> {
        let mut out = Vec::new();
        let mut last: Option<RepositoryName> = None;
        loop {
            let page = self.list_repositories(last.as_ref(), PAGE).await?;
            out.extend(page.items.iter().cloned());
            if !page.more {
                break;
            }
            last = page.items.last().cloned();
        }
        Ok(out)
    }

    async fn list_all(&self, prefix: &str, values: bool) -> StoreResult<Vec<MetaEntry>> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .backend
                .meta_list(
                    prefix,
                    ListOptions {
                        start_after: after.clone(),
                        limit: PAGE,
                        values,
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            let full = page.len() == PAGE;
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
    }

    /// The digests a manifest references (blobs and child manifests) and
    /// its subject. Unreadable manifests reference nothing (and are kept).
    async fn manifest_edges(&self, digest: &Digest) -> StoreResult<(Vec<Digest>, Vec<Digest>)> {
        let bytes = match self.cached_manifest(digest) {
            Some(b) => b,
            None => match self.backend.blob_bytes(digest).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => return Ok((Vec::new(), Vec::new())),
                Err(e) => return Err(e.into()),
            },
        };
        let parser = ManifestParser::new()
            .max_size(u64::MAX)
            .digest_algorithm(digest.algorithm());
        match parser.parse(bytes, None) {
            Ok(m) => Ok((
                m.blob_references().map(|d| d.digest.clone()).collect(),
                m.manifest_references().map(|d| d.digest.clone()).collect(),
            )),
            Err(_) => Ok((Vec::new(), Vec::new())),
        }
    }

    async fn mark_repository(
        &self,
        repo: &RepositoryName,
        options: &GcOptions,
        cutoff: SystemTime,
        live: &mut HashSet<Digest>,
        recent: &mut HashSet<Digest>,
        report: &mut GcReport,
    ) -> StoreResult<HashMap<Digest, SystemTime>> {
        let rev_prefix = keys::revisions_prefix(repo);
        let mut revisions: HashMap<Digest, (Revision, SystemTime)> = HashMap::new();
        for e in self.list_all(&rev_prefix, true).await? {
            let Ok(d) = Digest::parse(keys::after_prefix(&e.key, &rev_prefix)) else {
                continue;
            };
            let Some(raw) = &e.value else { continue };
            let rev: Revision = from_json(raw)?;
            revisions.insert(d, (rev, e.modified));
        }

        let mut roots: Vec<Digest> = Vec::new();
        for e in self.list_all(&keys::tags_prefix(repo), true).await? {
            if let Some(raw) = &e.value {
                roots.push(parse_digest(raw)?);
            }
        }
        for (d, (_, modified)) in &revisions {
            if !options.delete_untagged || *modified >= cutoff {
                roots.push(d.clone());
            }
        }

        // Fixpoint: children of live indexes, and referrers of live subjects.
        let mut marked: HashSet<Digest> = HashSet::new();
        let mut blobs: HashSet<Digest> = HashSet::new();
        let mut work = roots;
        loop {
            while let Some(d) = work.pop() {
                if !revisions.contains_key(&d) || !marked.insert(d.clone()) {
                    continue;
                }
                let (b, children) = self.manifest_edges(&d).await?;
                blobs.extend(b);
                work.extend(children);
            }
            let referrers: Vec<Digest> = revisions
                .iter()
                .filter(|(d, (rev, _))| {
                    !marked.contains(*d) && rev.subject.as_ref().is_some_and(|s| marked.contains(s))
                })
                .map(|(d, _)| d.clone())
                .collect();
            if referrers.is_empty() {
                break;
            }
            work = referrers;
        }

        if options.delete_untagged {
            for (d, (rev, _)) in &revisions {
                if marked.contains(d) {
                    continue;
                }
                report.manifests_deleted += 1;
                if !options.dry_run {
                    let mut ops = vec![MetaOp::Delete(keys::revision(repo, d))];
                    if let Some(s) = &rev.subject {
                        ops.push(MetaOp::Delete(keys::referrer(repo, s, d)));
                    }
                    self.backend.meta_apply(ops).await?;
                }
            }
        }
        live.extend(marked);
        live.extend(blobs);

        let link_prefix = keys::blob_links_prefix(repo);
        for e in self.list_all(&link_prefix, false).await? {
            if e.modified >= cutoff
                && let Ok(d) = Digest::parse(keys::after_prefix(&e.key, &link_prefix))
            {
                recent.insert(d);
            }
        }
        Ok(revisions.into_iter().map(|(d, (_, t))| (d, t)).collect())
    }

    async fn mark_new_manifests(
        &self,
        repo: &RepositoryName,
        since: SystemTime,
        seen: Option<&HashMap<Digest, SystemTime>>,
        live: &mut HashSet<Digest>,
    ) -> StoreResult<()> {
        let prefix = keys::revisions_prefix(repo);
        for e in self.list_all(&prefix, false).await? {
            if e.modified < since {
                continue;
            }
            let Ok(d) = Digest::parse(keys::after_prefix(&e.key, &prefix)) else {
                continue;
            };
            // The mark phase decided about this very record already.
            if seen.and_then(|s| s.get(&d)) == Some(&e.modified) {
                continue;
            }
            let (blobs, children) = self.manifest_edges(&d).await?;
            live.insert(d);
            live.extend(blobs);
            live.extend(children);
        }
        Ok(())
    }

    async fn recently_linked(&self, digest: &Digest, cutoff: SystemTime) -> StoreResult<bool> {
        for repo in self.repositories_holding(digest, usize::MAX).await? {
            match self.backend.meta_get(&keys::blob_link(&repo, digest)).await {
                Ok(m) if m.modified >= cutoff => return Ok(true),
                Ok(_) => {}
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(false)
    }

    /// Re-hashes every stored blob and reports those whose bytes no longer
    /// match their digest.
    pub async fn scrub(
        &self,
        mut progress: impl FnMut(&Progress) + Send,
    ) -> StoreResult<ScrubReport> {
        let mut report = ScrubReport::default();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.backend.blob_list(after.as_ref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.digest.clone());
            for blob in page {
                let mut d = Digester::new(blob.digest.algorithm());
                let result: Result<(), StoreError> = async {
                    let mut stream = self.backend.blob_read(&blob.digest, None).await?;
                    while let Some(chunk) = stream.next().await {
                        d.update(&chunk?);
                    }
                    Ok(())
                }
                .await;
                report.blobs_checked += 1;
                report.bytes_checked += d.len();
                match result {
                    Err(e) => report.unreadable.push((blob.digest.clone(), e.to_string())),
                    Ok(()) => {
                        let actual = d.finish();
                        if actual != blob.digest {
                            report.corrupt.push((blob.digest.clone(), actual));
                        }
                    }
                }
                progress(&Progress {
                    phase: "scrub",
                    done: report.blobs_checked,
                    bytes: report.bytes_checked,
                });
            }
        }
        Ok(report)
    }
}
