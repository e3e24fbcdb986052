//! Vulnerability scanning in the server: the `[scan]` configuration, a
//! bounded background queue fed by push events, advisory reloads, the pull
//! policy, the `/wharf/v1/scan/` API and the `wharf scan` command.
//!
//! Pushes never wait for a scan: the event hook only puts a job in a
//! bounded queue (dropping it, and counting the drop, when the queue is
//! full); workers, at most `concurrency` at a time, read the layers and
//! attach the results to the image as referrers.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc};
use wharf_registry::{Access, Action, Authorizer, Decision, Event, EventHook, RequestContext};
use wharf_registry::{RequestInfo, ResponseBody};
use wharf_scan::image::{self, is_scannable};
use wharf_scan::osv::fingerprint;
use wharf_scan::report::REPORT_MEDIA_TYPE;
use wharf_scan::sbom::{CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE};
use wharf_scan::{AdvisoryDb, Limits, Report, Severity};
use wharf_storage::Store;
use wharf_types::{Digest, ErrorBody, ErrorCode, Manifest, Reference, RepositoryName};

/// What the policy does with images that have findings at or above
/// `block_severity`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PolicyMode {
    /// Report only (findings are in the report and the metrics).
    Flag,
    /// Refuse manifest pulls with `403 DENIED`.
    Block,
}

/// `[scan]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ScanConfig {
    /// Scan images in the background when they are pushed.
    pub(crate) enabled: bool,
    /// OSV advisories: a directory of `*.json` records (searched
    /// recursively, `*.zip` archives inside included) or one zip file.
    pub(crate) advisories: PathBuf,
    /// Scans running at once.
    pub(crate) concurrency: usize,
    /// Scans waiting at most; pushes beyond it are not queued (counted in
    /// `wharf_scan_dropped`) and are picked up at the next reconciliation.
    pub(crate) queue_size: usize,
    /// Seconds between checks of the advisories for changes; 0 disables
    /// reloading.
    pub(crate) reload_interval_secs: u64,
    /// `flag` or `block`.
    pub(crate) policy: PolicyMode,
    /// The lowest severity the policy acts on.
    pub(crate) block_severity: Severity,
    /// Advisory ids (or aliases such as CVE ids) the policy ignores.
    pub(crate) exemptions: Vec<String>,
    /// Decompressed bytes read per layer.
    pub(crate) max_layer_bytes: u64,
    /// Largest package database or executable read into memory.
    pub(crate) max_file_bytes: u64,
}

impl Default for ScanConfig {
    fn default() -> Self {
        let limits = Limits::default();
        ScanConfig {
            enabled: false,
            advisories: PathBuf::new(),
            concurrency: 1,
            queue_size: 10_000,
            reload_interval_secs: 300,
            policy: PolicyMode::Flag,
            block_severity: Severity::Critical,
            exemptions: Vec::new(),
            max_layer_bytes: limits.max_layer_bytes,
            max_file_bytes: limits.max_binary_bytes,
        }
    }
}

impl ScanConfig {
    /// Checks values that parse but make no sense.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.advisories.as_os_str().is_empty() {
            return Err(
                "scan.advisories must name an OSV directory or zip file when scanning is on".into(),
            );
        }
        if self.concurrency == 0 || self.concurrency > 64 {
            return Err("scan.concurrency must be between 1 and 64".into());
        }
        if self.queue_size == 0 {
            return Err("scan.queue_size must be at least 1".into());
        }
        if self.block_severity == Severity::Unknown {
            return Err("scan.block_severity must be low, medium, high or critical".into());
        }
        if self.max_layer_bytes == 0 || self.max_file_bytes == 0 {
            return Err("scan.max_layer_bytes and scan.max_file_bytes must be positive".into());
        }
        Ok(())
    }

    fn limits(&self) -> Limits {
        let mut l = Limits::default();
        l.max_layer_bytes = self.max_layer_bytes;
        l.max_binary_bytes = self.max_file_bytes;
        l.max_file_bytes = self.max_file_bytes.min(l.max_file_bytes);
        l
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SeverityLabels {
    severity: &'static str,
}

/// Scan metrics (registered with the server's others).
#[derive(Debug, Default)]
pub(crate) struct ScanMetrics {
    completed: Counter,
    failed: Counter,
    skipped: Counter,
    dropped: Counter,
    queued: Gauge,
    running: Gauge,
    advisories: Gauge,
    findings: Family<SeverityLabels, Counter>,
    pulls_blocked: Counter,
}

impl ScanMetrics {
    pub(crate) fn register(registry: &mut prometheus_client::registry::Registry) -> ScanMetrics {
        let m = ScanMetrics::default();
        let r = registry.sub_registry_with_prefix("scan");
        r.register(
            "completed",
            "Image scans completed (including re-matches after advisory changes)",
            m.completed.clone(),
        );
        r.register("failed", "Image scans that failed", m.failed.clone());
        r.register(
            "skipped",
            "Pushed manifests not scanned (artifacts, not images)",
            m.skipped.clone(),
        );
        r.register(
            "dropped",
            "Scan jobs not queued because the queue was full",
            m.dropped.clone(),
        );
        r.register("queued", "Scan jobs waiting", m.queued.clone());
        r.register("running", "Scans in progress", m.running.clone());
        r.register("advisories", "Advisories loaded", m.advisories.clone());
        r.register(
            "findings",
            "Vulnerabilities found by completed scans, by severity",
            m.findings.clone(),
        );
        r.register(
            "pulls_blocked",
            "Manifest pulls refused by the scan policy",
            m.pulls_blocked.clone(),
        );
        m
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Job {
    repo: RepositoryName,
    digest: Digest,
    /// Read the layers even if a report exists.
    full: bool,
}

/// What the policy needs of an image's latest report.
#[derive(Debug, Clone)]
struct Verdict {
    /// (advisory id, aliases, severity) of each finding.
    findings: Vec<(String, Vec<String>, Severity)>,
    /// Why the image could not be scanned, if it could not.
    error: Option<String>,
}

const VERDICT_CACHE_ENTRIES: usize = 10_000;

/// Latest verdict per image; `None` when the image has no report.
type VerdictCache = HashMap<(RepositoryName, Digest), (std::time::Instant, Option<Arc<Verdict>>)>;

/// How long a cached verdict is trusted. Other nodes sharing the storage
/// may attach newer reports; this bounds how stale a node's view can be.
const VERDICT_TTL: Duration = Duration::from_secs(30);

/// The scanning service.
pub(crate) struct Scanner {
    store: Store,
    config: ScanConfig,
    limits: Limits,
    exemptions: HashSet<String>,
    db: RwLock<Arc<AdvisoryDb>>,
    tx: mpsc::Sender<Job>,
    pending: Mutex<HashSet<Job>>,
    verdicts: Mutex<VerdictCache>,
    metrics: Arc<crate::metrics::Metrics>,
    authorizer: Option<Arc<dyn Authorizer>>,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The registry event hook that queues scans.
pub(crate) struct ScanHook(Arc<Scanner>);

impl EventHook for ScanHook {
    fn on_event(&self, event: &Event) {
        if let Event::ManifestPushed {
            repository,
            digest,
            subject: None,
            ..
        } = event
        {
            self.0.enqueue(Job {
                repo: repository.clone(),
                digest: digest.clone(),
                full: true,
            });
        }
    }
}

impl Scanner {
    /// Starts scanning when `[scan]` enables it: checks the advisories path,
    /// then loads the advisories, reconciles stored images and runs the
    /// workers in the background.
    pub(crate) fn start(
        config: &crate::config::Config,
        store: Store,
        metrics: Arc<crate::metrics::Metrics>,
        authorizer: Option<Arc<dyn Authorizer>>,
    ) -> Result<Option<Arc<Scanner>>, String> {
        let c = &config.scan;
        if !c.enabled {
            return Ok(None);
        }
        std::fs::metadata(&c.advisories)
            .map_err(|e| format!("scan.advisories {}: {e}", c.advisories.display()))?;
        let (tx, rx) = mpsc::channel(c.queue_size);
        let scanner = Arc::new(Scanner {
            store,
            limits: c.limits(),
            exemptions: c.exemptions.iter().cloned().collect(),
            config: c.clone(),
            db: RwLock::new(Arc::new(AdvisoryDb::default())),
            tx,
            pending: Mutex::new(HashSet::new()),
            verdicts: Mutex::new(HashMap::new()),
            metrics,
            authorizer,
        });
        tokio::spawn(scanner.clone().run(rx));
        Ok(Some(scanner))
    }

    /// The hook to register with the registry.
    pub(crate) fn hook(self: &Arc<Self>) -> ScanHook {
        ScanHook(self.clone())
    }

    fn db(&self) -> Arc<AdvisoryDb> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn m(&self) -> &ScanMetrics {
        &self.metrics.scan
    }

    /// Queues a job without waiting (called from the event hook).
    fn enqueue(&self, job: Job) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !pending.insert(job.clone()) {
                return;
            }
        }
        // Counted before it is sent: a worker may take it at once.
        self.m().queued.inc();
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(e) => {
                self.m().queued.dec();
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                self.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&job);
                self.m().dropped.inc();
                tracing::warn!(repository = %job.repo, digest = %job.digest, "scan queue full; image not queued");
            }
        }
    }

    /// Queues a job, waiting for room (background reconciliation).
    async fn enqueue_wait(&self, job: Job) {
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            if !pending.insert(job.clone()) {
                return;
            }
        }
        self.m().queued.inc();
        if self.tx.send(job).await.is_err() {
            self.m().queued.dec();
        }
    }

    fn is_pending(&self, repo: &RepositoryName, digest: &Digest) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|j| &j.repo == repo && &j.digest == digest)
    }

    async fn load_db(&self) -> Result<(), String> {
        let path = self.config.advisories.clone();
        let db = tokio::task::spawn_blocking(move || AdvisoryDb::load(&path))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        for w in db.warnings().iter().take(10) {
            tracing::warn!(warning = %w, "advisory record skipped");
        }
        tracing::info!(advisories = db.len(), fingerprint = %db.fingerprint(), "advisories loaded");
        self.m().advisories.set(db.len() as i64);
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(db);
        Ok(())
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::Receiver<Job>) {
        if let Err(e) = self.load_db().await {
            tracing::error!(error = %e, path = %self.config.advisories.display(), "cannot load advisories; scans use none until they load");
        }
        // Images pushed while the server was down or scanning was off, and
        // reports made with other advisory data.
        tokio::spawn(self.clone().reconcile());
        if self.config.reload_interval_secs > 0 {
            tokio::spawn(self.clone().watch_advisories());
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        while let Some(job) = rx.recv().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let me = self.clone();
            tokio::spawn(async move {
                me.m().queued.dec();
                me.pending
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&job);
                me.m().running.inc();
                match me.process(&job).await {
                    Ok(()) => {}
                    Err(e) => {
                        me.m().failed.inc();
                        tracing::warn!(repository = %job.repo, digest = %job.digest, error = %e, "scan failed");
                    }
                }
                me.m().running.dec();
                drop(permit);
            });
        }
    }

    /// Polls the advisories' fingerprint; reloads and re-matches on change.
    async fn watch_advisories(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(self.config.reload_interval_secs));
        tick.tick().await;
        loop {
            tick.tick().await;
            let path = self.config.advisories.clone();
            let now = match tokio::task::spawn_blocking(move || fingerprint(&path)).await {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot check the advisories for changes");
                    continue;
                }
                Err(_) => continue,
            };
            if &now == self.db().fingerprint() {
                continue;
            }
            tracing::info!("advisories changed; reloading");
            match self.load_db().await {
                Ok(()) => self.clone().reconcile().await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reload advisories; keeping the previous ones")
                }
            }
        }
    }

    /// Queues every tagged image whose report is missing or was made with
    /// other advisory data (the job itself decides which).
    async fn reconcile(self: Arc<Self>) {
        let mut last_repo: Option<RepositoryName> = None;
        loop {
            let repos = match self.store.list_repositories(last_repo.as_ref(), 100).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "scan reconciliation: cannot list repositories");
                    return;
                }
            };
            for repo in &repos.items {
                let mut last_tag = None;
                loop {
                    let Ok(tags) = self.store.list_tags(repo, last_tag.as_ref(), 100).await else {
                        break;
                    };
                    let mut seen = HashSet::new();
                    for tag in &tags.items {
                        if let Ok(Some(digest)) = self.store.tag_target(repo, tag).await
                            && seen.insert(digest.clone())
                        {
                            self.enqueue_wait(Job {
                                repo: repo.clone(),
                                digest,
                                full: false,
                            })
                            .await;
                        }
                    }
                    last_tag = tags.items.last().cloned();
                    if !tags.more {
                        break;
                    }
                }
            }
            last_repo = repos.items.last().cloned();
            if !repos.more {
                break;
            }
        }
    }

    /// Scans one image (or re-matches its stored inventory) and attaches
    /// the results.
    async fn process(&self, job: &Job) -> Result<(), String> {
        let stored = self
            .store
            .get_manifest(&job.repo, &Reference::Digest(job.digest.clone()))
            .await
            .map_err(|e| e.to_string())?;
        let manifest = Manifest::parse(stored.bytes, Some(stored.info.media_type.as_str()))
            .map_err(|e| e.to_string())?;
        if !is_scannable(&manifest) {
            self.m().skipped.inc();
            return Ok(());
        }
        let db = self.db();
        let previous = if job.full {
            None
        } else {
            image::latest_report(&self.store, &job.repo, &job.digest)
                .await
                .map_err(|e| e.to_string())?
        };
        if let Some(p) = &previous
            && p.advisories.fingerprint == db.fingerprint().0
        {
            self.remember(&job.repo, &job.digest, Some(p));
            return Ok(());
        }
        // A report of a failed scan has no inventory to re-match.
        let previous = previous.filter(|p| p.error.is_none());
        let started = std::time::Instant::now();
        let scanned = image::scan(
            &self.store,
            &job.repo,
            &job.digest,
            &db,
            &self.limits,
            previous.as_ref(),
        )
        .await;
        let (report, inventory) = match scanned {
            Ok(r) => r,
            Err(e) if e.is_content_error() => {
                // The image itself cannot be read (malformed, or past a
                // limit): record that, so the policy can refuse it rather
                // than let a hostile layer evade scanning.
                let subject = wharf_scan::report::Subject {
                    repository: job.repo.to_string(),
                    digest: job.digest.to_string(),
                    media_type: manifest.media_type().to_string(),
                };
                let report =
                    Report::failed(subject, &db, e.to_string(), std::time::SystemTime::now());
                image::attach(&self.store, &job.repo, &report, None)
                    .await
                    .map_err(|e| e.to_string())?;
                self.remember(&job.repo, &job.digest, Some(&report));
                return Err(e.to_string());
            }
            Err(e) => return Err(e.to_string()),
        };
        image::attach(
            &self.store,
            &job.repo,
            &report,
            previous.is_none().then_some(&inventory),
        )
        .await
        .map_err(|e| e.to_string())?;
        self.remember(&job.repo, &job.digest, Some(&report));
        let m = self.m();
        m.completed.inc();
        for f in &report.findings {
            m.findings
                .get_or_create(&SeverityLabels {
                    severity: f.severity.as_str(),
                })
                .inc();
        }
        tracing::info!(
            repository = %job.repo,
            digest = %job.digest,
            packages = report.packages.len(),
            findings = report.summary.total,
            critical = report.summary.critical,
            high = report.summary.high,
            rematch = previous.is_some(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "image scanned"
        );
        Ok(())
    }

    fn remember(&self, repo: &RepositoryName, digest: &Digest, report: Option<&Report>) {
        let verdict = report.map(verdict_of);
        let mut cache = self.verdicts.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= VERDICT_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            (repo.clone(), digest.clone()),
            (std::time::Instant::now(), verdict),
        );
    }

    async fn verdict(&self, repo: &RepositoryName, digest: &Digest) -> Option<Arc<Verdict>> {
        let key = (repo.clone(), digest.clone());
        if let Some((at, v)) = self
            .verdicts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            && at.elapsed() < VERDICT_TTL
        {
            return v.clone();
        }
        let report = match image::latest_report(&self.store, repo, digest).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(repository = %repo, digest = %digest, error = %e, "cannot read the scan report");
                return None;
            }
        };
        self.remember(repo, digest, report.as_ref());
        report.map(|r| verdict_of(&r))
    }

    /// Applies the pull policy to a registry response: a successful
    /// manifest read of an image with unexempted findings at or above the
    /// threshold becomes `403 DENIED`.
    pub(crate) async fn enforce(
        &self,
        method: &Method,
        resp: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        if self.config.policy != PolicyMode::Block
            || !matches!(*method, Method::GET | Method::HEAD)
            || resp.status() != StatusCode::OK
        {
            return resp;
        }
        let Some(info) = resp.extensions().get::<RequestInfo>().cloned() else {
            return resp;
        };
        if info.route.map(|r| r.as_str()) != Some("manifest") {
            return resp;
        }
        let (Some(repo), Some(digest)) = (
            info.repository.clone(),
            resp.headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|s| Digest::parse(s).ok()),
        ) else {
            return resp;
        };
        let Some(verdict) = self.verdict(&repo, &digest).await else {
            return resp;
        };
        if let Some(error) = &verdict.error {
            self.m().pulls_blocked.inc();
            let message = format!(
                "image {digest} in {repo} could not be scanned ({error}); pulls are blocked by the scan policy until it can be"
            );
            let body = ErrorBody::new(ErrorCode::Denied, message)
                .with_detail(serde_json::json!({"policy": "scan", "scanError": error}));
            return denied(method, body, info);
        }
        let blocking: Vec<&(String, Vec<String>, Severity)> = verdict
            .findings
            .iter()
            .filter(|(id, aliases, sev)| {
                *sev >= self.config.block_severity
                    && *sev != Severity::Unknown
                    && !self.exemptions.contains(id)
                    && !aliases.iter().any(|a| self.exemptions.contains(a))
            })
            .collect();
        if blocking.is_empty() {
            return resp;
        }
        self.m().pulls_blocked.inc();
        let ids: Vec<&str> = blocking.iter().map(|(id, _, _)| id.as_str()).collect();
        let shown: Vec<&str> = ids.iter().take(10).copied().collect();
        let more = if ids.len() > shown.len() {
            format!(" and {} more", ids.len() - shown.len())
        } else {
            String::new()
        };
        let message = format!(
            "image {digest} in {repo} has {} vulnerabilities at or above {} severity ({}{more}); pulls are blocked by the scan policy. See /wharf/v1/scan/{repo}/{digest}, or exempt advisory ids in scan.exemptions",
            ids.len(),
            self.config.block_severity,
            shown.join(", "),
        );
        let body = ErrorBody::new(ErrorCode::Denied, message).with_detail(serde_json::json!({
            "policy": "scan",
            "severity": self.config.block_severity,
            "advisories": ids,
        }));
        denied(method, body, info)
    }

    /// `/wharf/v1/scan/<repository>/<reference>[?format=report|cyclonedx|spdx]`:
    /// `GET` answers the latest report (or SBOM); `POST` queues a full
    /// rescan.
    pub(crate) async fn api<B>(
        &self,
        req: &Request<B>,
        peer: std::net::SocketAddr,
    ) -> Response<ResponseBody> {
        let path = req.uri().path().trim_start_matches(API_PREFIX);
        let Some((name, reference)) = path.rsplit_once('/') else {
            return json_error(
                StatusCode::NOT_FOUND,
                ErrorCode::NameUnknown,
                "expected /wharf/v1/scan/<repository>/<tag or digest>",
            );
        };
        let repo = match RepositoryName::parse(name) {
            Ok(r) => r,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::NameInvalid,
                    &e.to_string(),
                );
            }
        };
        let reference = match Reference::parse(reference) {
            Ok(r) => r,
            Err(e) => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::ManifestInvalid,
                    &e.to_string(),
                );
            }
        };
        let action = match *req.method() {
            Method::GET | Method::HEAD => Action::Pull,
            Method::POST => Action::Push,
            _ => {
                return json_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    ErrorCode::Unsupported,
                    "use GET or POST",
                );
            }
        };
        if let Some(auth) = &self.authorizer {
            let ctx = RequestContext {
                headers: req.headers(),
                peer: Some(peer),
            };
            let access = [Access {
                action,
                repository: Some(repo.clone()),
            }];
            match auth.authorize(&ctx, &access).await {
                Decision::Allow => {}
                Decision::Challenge(c) => {
                    let mut r = json_error(
                        StatusCode::UNAUTHORIZED,
                        ErrorCode::Unauthorized,
                        "authentication required",
                    );
                    if let Ok(v) = HeaderValue::from_str(&c) {
                        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
                    }
                    return r;
                }
                Decision::Deny => {
                    return json_error(
                        StatusCode::FORBIDDEN,
                        ErrorCode::Denied,
                        "requested access to the resource is denied",
                    );
                }
                Decision::RateLimited => {
                    return json_error(
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorCode::TooManyRequests,
                        "too many requests",
                    );
                }
            }
        }
        let info = match self.store.stat_manifest(&repo, &reference).await {
            Ok(i) => i,
            Err(e) => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    ErrorCode::ManifestUnknown,
                    &e.to_string(),
                );
            }
        };
        if action == Action::Push {
            self.enqueue(Job {
                repo: repo.clone(),
                digest: info.digest.clone(),
                full: true,
            });
            return json(
                StatusCode::ACCEPTED,
                serde_json::json!({"status": "queued", "digest": info.digest}),
            );
        }
        let format = req
            .uri()
            .query()
            .and_then(|q| form_value(q, "format"))
            .unwrap_or_else(|| "report".into());
        let media_type = match format.as_str() {
            "report" => REPORT_MEDIA_TYPE,
            "cyclonedx" => CYCLONEDX_MEDIA_TYPE,
            "spdx" => SPDX_MEDIA_TYPE,
            _ => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::Unsupported,
                    "format must be report, cyclonedx or spdx",
                );
            }
        };
        match image::latest_artifact(&self.store, &repo, &info.digest, media_type).await {
            Ok(Some((_, content))) => {
                let mut r = Response::new(ResponseBody::full(content));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
                r
            }
            Ok(None) if self.is_pending(&repo, &info.digest) => json(
                StatusCode::ACCEPTED,
                serde_json::json!({"status": "queued", "digest": info.digest}),
            ),
            Ok(None) => json_error(
                StatusCode::NOT_FOUND,
                ErrorCode::ManifestUnknown,
                &format!("no scan results for {} yet", info.digest),
            ),
            Err(e) => json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unknown,
                &e.to_string(),
            ),
        }
    }
}

/// A `403 DENIED` response (headers only for `HEAD`).
fn denied(method: &Method, body: ErrorBody, info: RequestInfo) -> Response<ResponseBody> {
    let bytes = Bytes::from(body.to_json());
    let mut out = Response::new(if *method == Method::HEAD {
        ResponseBody::empty()
    } else {
        ResponseBody::full(bytes.clone())
    });
    *out.status_mut() = StatusCode::FORBIDDEN;
    out.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    out.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    out.extensions_mut().insert(info);
    out
}

fn verdict_of(r: &Report) -> Arc<Verdict> {
    Arc::new(Verdict {
        findings: r
            .findings
            .iter()
            .map(|f| (f.id.clone(), f.aliases.clone(), f.severity))
            .collect(),
        error: r.error.clone(),
    })
}

/// Where the scan API lives.
pub(crate) const API_PREFIX: &str = "/wharf/v1/scan/";

fn form_value(query: &str, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn json_error(status: StatusCode, code: ErrorCode, message: &str) -> Response<ResponseBody> {
    let mut r = Response::new(ResponseBody::full(Bytes::from(
        ErrorBody::new(code, message).to_json(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Output of `wharf scan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// A table of findings.
    Table,
    /// The report as JSON.
    Json,
    /// A CycloneDX 1.5 SBOM.
    Cyclonedx,
    /// An SPDX 2.3 SBOM.
    Spdx,
}

/// `wharf scan` options.
#[derive(Debug, clap::Args)]
pub(crate) struct ScanArgs {
    /// The image in the data directory: `REPOSITORY:TAG` or
    /// `REPOSITORY@DIGEST`. With `--layout`: its reference name in the
    /// layout's `index.json` (optional when it holds one image).
    image: Option<String>,
    /// Scan an image in an OCI image layout directory instead of the data
    /// directory (e.g. from `skopeo copy docker://... oci:DIR`).
    #[arg(long, value_name = "DIR")]
    layout: Option<PathBuf>,
    /// OSV advisories (directory or zip); default: `scan.advisories`.
    #[arg(long)]
    advisories: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: OutputFormat,
    /// Exit with status 1 when a finding is at or above this severity
    /// (exemptions from `scan.exemptions` apply).
    #[arg(long)]
    fail_on: Option<Severity>,
    /// Also attach the SBOMs and report to the image as referrers.
    #[arg(long)]
    attach: bool,
}

/// Runs `wharf scan` on an image in the configured storage or in an OCI
/// image layout.
pub(crate) async fn cli(config: crate::config::Config, args: ScanArgs) -> Result<(), String> {
    let path = args
        .advisories
        .clone()
        .filter(|p| !p.as_os_str().is_empty())
        .or_else(|| {
            (!config.scan.advisories.as_os_str().is_empty()).then(|| config.scan.advisories.clone())
        })
        .ok_or("no advisories: pass --advisories or set scan.advisories")?;
    let db = tokio::task::spawn_blocking(move || AdvisoryDb::load(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let limits = config.scan.limits();
    let (report, inventory) = match &args.layout {
        Some(dir) => {
            if args.attach {
                return Err("--attach needs an image in the data directory, not --layout".into());
            }
            let dir = dir.clone();
            let name = args.image.clone();
            let (inventory, subject) = tokio::task::spawn_blocking(move || {
                let layout = wharf_scan::layout::Layout::open(&dir, limits)?;
                let found = layout.find(name.as_deref())?;
                let inventory = layout.inventory(&found)?;
                let subject = wharf_scan::report::Subject {
                    repository: found
                        .name
                        .clone()
                        .unwrap_or_else(|| dir.display().to_string()),
                    digest: found.digest.to_string(),
                    media_type: found.media_type.clone(),
                };
                Ok::<_, wharf_scan::ScanError>((inventory, subject))
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
            let report = Report::new(subject, &inventory, &db, std::time::SystemTime::now());
            (report, inventory)
        }
        None => {
            let spec = args
                .image
                .as_deref()
                .ok_or("name an image (REPOSITORY:TAG or REPOSITORY@DIGEST) or pass --layout")?;
            let (name, reference) = match spec.rsplit_once('@') {
                Some((n, d)) => (n, d),
                None => match spec.rsplit_once(':') {
                    Some((n, t)) if !t.contains('/') => (n, t),
                    _ => (spec, "latest"),
                },
            };
            let repo = RepositoryName::parse(name).map_err(|e| format!("{spec}: {e}"))?;
            let reference = Reference::parse(reference).map_err(|e| format!("{spec}: {e}"))?;
            let store = crate::open_store(&config)?;
            let info = store
                .stat_manifest(&repo, &reference)
                .await
                .map_err(|e| format!("{spec}: {e}"))?;
            let (report, inventory) = image::scan(&store, &repo, &info.digest, &db, &limits, None)
                .await
                .map_err(|e| e.to_string())?;
            if args.attach {
                image::attach(&store, &repo, &report, Some(&inventory))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            (report, inventory)
        }
    };
    let described = wharf_scan::sbom::Described {
        repository: report.subject.repository.clone(),
        digest: report.subject.digest.clone(),
        created: report.scanned_at.clone(),
    };
    let out = match args.format {
        OutputFormat::Table => report.to_table(),
        OutputFormat::Json => serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?,
        OutputFormat::Cyclonedx => serde_json::to_string_pretty(
            &wharf_scan::sbom::cyclonedx::render(&described, &inventory),
        )
        .map_err(|e| e.to_string())?,
        OutputFormat::Spdx => {
            serde_json::to_string_pretty(&wharf_scan::sbom::spdx::render(&described, &inventory))
                .map_err(|e| e.to_string())?
        }
    };
    println!("{}", out.trim_end());
    if let Some(threshold) = args.fail_on {
        let exemptions: HashSet<String> = config.scan.exemptions.iter().cloned().collect();
        let blocking = report.blocking(threshold, &exemptions);
        if !blocking.is_empty() {
            return Err(format!(
                "{} findings at or above {threshold} severity",
                blocking.len()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn scan_section_from_file_and_environment() {
        let dir = tempfile::tempdir().unwrap();
        let osv = dir.path().join("osv");
        std::fs::create_dir(&osv).unwrap();
        let f = dir.path().join("wharf.toml");
        std::fs::write(
            &f,
            format!(
                "[scan]\nenabled = true\nadvisories = {:?}\nexemptions = [\"CVE-2023-5363\", \"GHSA-35jh-r3h4-6jhm\"]\n",
                osv.display().to_string()
            ),
        )
        .unwrap();
        let env = [
            ("WHARF_SCAN__POLICY", "block"),
            ("WHARF_SCAN__BLOCK_SEVERITY", "high"),
            ("WHARF_SCAN__CONCURRENCY", "3"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()));
        let c = Config::load(Some(&f), env).unwrap();
        assert!(c.scan.enabled);
        assert_eq!(c.scan.advisories, osv);
        assert_eq!(c.scan.policy, PolicyMode::Block);
        assert_eq!(c.scan.block_severity, Severity::High);
        assert_eq!(c.scan.concurrency, 3);
        assert_eq!(c.scan.exemptions.len(), 2);
        // The effective configuration round-trips.
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);

        for bad in [
            vec![("WHARF_SCAN__CONCURRENCY", "0")],
            vec![("WHARF_SCAN__BLOCK_SEVERITY", "unknown")],
            vec![("WHARF_SCAN__POLICY", "maybe")],
            vec![("WHARF_SCAN__MAX_LAYER_BYTES", "0")],
        ] {
            let env = bad.iter().map(|(k, v)| (k.to_string(), v.to_string()));
            assert!(Config::load(Some(&f), env).is_err(), "{bad:?}");
        }
        // Disabled scanning needs nothing.
        assert!(
            Config::load(None, Vec::new())
                .unwrap()
                .scan
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn limits_follow_the_configuration() {
        let c = ScanConfig {
            max_layer_bytes: 1 << 20,
            max_file_bytes: 1 << 30,
            ..ScanConfig::default()
        };
        let l = c.limits();
        assert_eq!(l.max_layer_bytes, 1 << 20);
        assert_eq!(l.max_binary_bytes, 1 << 30);
        // Package databases stay within the library's own cap.
        assert_eq!(l.max_file_bytes, Limits::default().max_file_bytes);
    }
}
