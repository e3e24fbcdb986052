//! The scenarios, and the driver that interleaves targets round by round.

use std::future::Future;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode, header};

use super::client::{Conn, Progress, Req, Target, TargetKind, origin_form};
use super::data::{self, Blob, Data};
use super::report::{Kind, Measurement, Report, ScenarioReport, TargetInfo};
use super::{Config, Error, Scenario};

struct Ctx {
    cfg: Config,
    data: Data,
    prefix: String,
}

/// What earlier scenarios left on a target for later ones to reuse.
#[derive(Default)]
struct State {
    /// Repository, digest and size of the last large blob pushed.
    large: Option<(String, String, u64)>,
    /// Repository and length of the manifest tagged `latest` there.
    manifest: Option<(String, u64)>,
    /// Repository holding `list_tags` tags.
    taglist: Option<String>,
}

fn run_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
}

pub(crate) async fn run_all(cfg: &Config, targets: Vec<Arc<Target>>) -> Report {
    let wall = Instant::now();
    let id = run_id();
    let prefix = if cfg.repo_prefix.is_empty() {
        format!("wharf-bench-{:08x}", id as u32)
    } else {
        cfg.repo_prefix.clone()
    };
    let ctx = Ctx {
        cfg: cfg.clone(),
        data: Data::new(id),
        prefix: prefix.clone(),
    };
    let infos: Vec<TargetInfo> = targets
        .iter()
        .map(|t| TargetInfo {
            name: t.name.clone(),
            url: t.url.clone(),
        })
        .collect();
    let mut states: Vec<State> = targets.iter().map(|_| State::default()).collect();
    let rounds = cfg.rounds.max(1);
    let mut reports = Vec::new();
    for &sc in &cfg.scenarios {
        let mut results: Vec<Result<Vec<Measurement>, String>> =
            targets.iter().map(|_| Ok(Vec::new())).collect();
        let skipped: Vec<bool> = targets.iter().map(|t| t.skip.contains(&sc)).collect();
        for (i, t) in targets.iter().enumerate() {
            if skipped[i] {
                continue;
            }
            if let Err(e) = setup(&ctx, sc, t, &mut states[i]).await {
                let msg = format!("setup: {e}");
                if !cfg.quiet {
                    eprintln!("{} on {}: {msg}", sc.name(), t.name);
                }
                results[i] = Err(msg);
            }
        }
        for round in 0..rounds {
            // A B, then B A: a drift in machine speed hits both alike.
            let order: Vec<usize> = if round % 2 == 0 {
                (0..targets.len()).collect()
            } else {
                (0..targets.len()).rev().collect()
            };
            for i in order {
                if results[i].is_err() || skipped[i] {
                    continue;
                }
                let label = format!(
                    "{} [{}] round {}/{rounds}",
                    sc.name(),
                    targets[i].name,
                    round + 1
                );
                let cpu0 = targets[i].pid.and_then(proc_cpu_secs);
                let result = run_round(&ctx, sc, &targets[i], &mut states[i], round, &label).await;
                let cpu1 = targets[i].pid.and_then(proc_cpu_secs);
                match result {
                    Ok(mut ms) => {
                        if let (Some(c0), Some(c1), Some(pid), false) =
                            (cpu0, cpu1, targets[i].pid, ms.is_empty())
                        {
                            ms.push(server_measurement(&ms, c1 - c0, pid));
                        }
                        if let Ok(acc) = &mut results[i] {
                            for m in ms {
                                match acc.iter_mut().find(|a| a.key == m.key) {
                                    Some(a) => a.merge(&m),
                                    None => acc.push(m),
                                }
                            }
                        }
                    }
                    Err(e) => {
                        if !cfg.quiet {
                            eprintln!("{label}: {e}");
                        }
                        results[i] = Err(e.to_string());
                    }
                }
            }
        }
        reports.push(ScenarioReport::build(sc.name(), &infos, &results));
    }
    Report {
        tool: format!("wharf-bench {}", env!("CARGO_PKG_VERSION")),
        repo_prefix: prefix,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(wall.elapsed().as_secs()),
        wall_secs: wall.elapsed().as_secs_f64(),
        targets: infos,
        config: cfg.clone(),
        scenarios: reports,
    }
}

async fn setup(ctx: &Ctx, sc: Scenario, t: &Arc<Target>, st: &mut State) -> Result<(), Error> {
    if t.kind != TargetKind::Registry {
        return Ok(());
    }
    let label = format!("{} [{}] setup", sc.name(), t.name);
    match sc {
        Scenario::PullLarge => {
            if st.large.as_ref().is_some_and(|l| l.2 == ctx.cfg.size) {
                return Ok(());
            }
            let blob = ctx.data.blob(ctx.cfg.size);
            let repo = format!("{}/large", ctx.prefix);
            let p = Arc::new(Progress::default());
            let ticker = Ticker::start(label, p.clone(), ctx.cfg.quiet);
            let mut conn = Conn::new(t.clone()).with_progress(p.clone());
            // Some registries refuse a large single-request body (413, and
            // close the connection): chunks then, on a new connection, so
            // the download can still be measured.
            let r = match push_mono(&mut conn, &repo, &blob).await {
                Ok(()) => Ok(()),
                Err(_) => {
                    let mut conn = Conn::new(t.clone()).with_progress(p);
                    push_chunked(&mut conn, &repo, &blob, ctx.cfg.chunk.max(1)).await
                }
            };
            ticker.finish();
            r?;
            st.large = Some((repo, blob.digest, blob.size));
        }
        Scenario::ManifestGet | Scenario::ManifestHead => {
            if st.manifest.is_some() {
                return Ok(());
            }
            let repo = format!("{}/manifest", ctx.prefix);
            let config = ctx.data.config();
            let layers: Vec<Blob> = (0..3).map(|_| ctx.data.blob(ctx.cfg.small_size)).collect();
            let refs: Vec<&Blob> = layers.iter().collect();
            let m = data::manifest(&config, &refs, "latest", ctx.cfg.manifest_size);
            let mut conn = Conn::new(t.clone());
            for b in std::iter::once(&config).chain(&layers) {
                push_mono(&mut conn, &repo, b).await?;
            }
            put_manifest(&mut conn, &repo, "latest", &m).await?;
            st.manifest = Some((repo, m.len() as u64));
        }
        Scenario::TagList => {
            if st.taglist.is_some() {
                return Ok(());
            }
            let repo = format!("{}/taglist", ctx.prefix);
            let config = ctx.data.config();
            let layer = ctx.data.blob(ctx.cfg.small_size);
            let m = data::manifest(&config, &[&layer], "taglist", 0);
            let mut conn = Conn::new(t.clone());
            push_mono(&mut conn, &repo, &config).await?;
            push_mono(&mut conn, &repo, &layer).await?;
            let p = Arc::new(Progress::default());
            let ticker = Ticker::start(label, p.clone(), ctx.cfg.quiet);
            let next = Arc::new(AtomicUsize::new(0));
            let count = ctx.cfg.list_tags;
            let width = tag_width(count);
            let started = Instant::now();
            let max_setup = ctx.cfg.max_setup;
            let deadline = started + max_setup;
            let outs = workers(ctx.cfg.clients, |_| {
                let (t, p, next, repo, m) =
                    (t.clone(), p.clone(), next.clone(), repo.clone(), m.clone());
                async move {
                    let mut conn = Conn::new(t);
                    let mut meas = Measurement::new("", Kind::Rate("tags/s"));
                    while Instant::now() < deadline {
                        // Give up early when the pace so far cannot fill
                        // the repository in time.
                        let spent = started.elapsed();
                        if spent > Duration::from_secs(5) {
                            let done = p.ops.load(Ordering::Relaxed) as f64;
                            if done * max_setup.as_secs_f64() / spent.as_secs_f64() < count as f64 {
                                break;
                            }
                        }
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            break;
                        }
                        let tag = format!("t{i:0width$}");
                        match put_manifest(&mut conn, &repo, &tag, &m).await {
                            Ok(()) => {
                                p.ops.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                p.errors.fetch_add(1, Ordering::Relaxed);
                                meas.fail(e);
                            }
                        }
                    }
                    vec![meas]
                }
            })
            .await;
            ticker.finish();
            let merged = merge_workers(outs, Duration::ZERO);
            if let Some(e) = merged.iter().find_map(|m| m.first_error.clone()) {
                return Err(e.into());
            }
            let pushed = p.ops.load(Ordering::Relaxed);
            if pushed < count as u64 {
                return Err(format!(
                    "only {pushed} of {count} tags pushed in {:.0?}, too slow to fill the \
                     repository within {:?} (--max-setup)",
                    started.elapsed(),
                    ctx.cfg.max_setup
                )
                .into());
            }
            st.taglist = Some(repo);
        }
        _ => {}
    }
    Ok(())
}

async fn run_round(
    ctx: &Ctx,
    sc: Scenario,
    t: &Arc<Target>,
    st: &mut State,
    round: usize,
    label: &str,
) -> Result<Vec<Measurement>, Error> {
    let cfg = &ctx.cfg;
    let rounds = cfg.rounds.max(1);
    let slice = cfg.duration / rounds as u32;
    let p = Arc::new(Progress::default());
    if t.kind != TargetKind::Registry && sc != Scenario::HttpGet {
        return reference_round(ctx, sc, t, label, p).await;
    }
    match sc {
        Scenario::PushLargeMono | Scenario::PushLargeChunked => {
            let blob = ctx.data.blob(cfg.size);
            let repo = format!("{}/large", ctx.prefix);
            let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
            let mut conn = Conn::new(t.clone()).with_progress(p);
            let mut m = Measurement::new("", Kind::Throughput);
            let start = Instant::now();
            let r = if sc == Scenario::PushLargeChunked {
                push_chunked(&mut conn, &repo, &blob, cfg.chunk.max(1)).await
            } else {
                push_mono(&mut conn, &repo, &blob).await
            };
            m.elapsed = start.elapsed();
            ticker.finish();
            match r {
                Ok(()) => {
                    m.ops = 1;
                    m.bytes = blob.size;
                    m.hist.record(m.elapsed);
                    st.large = Some((repo, blob.digest, blob.size));
                }
                Err(e) => m.fail(e),
            }
            Ok(vec![m])
        }
        Scenario::PullLarge => {
            let (repo, digest, size) = st.large.clone().ok_or("no large blob pushed")?;
            let path = format!("/v2/{repo}/blobs/{digest}");
            Ok(vec![download(cfg, t, &path, Some(size), label, p).await])
        }
        Scenario::PushSmall => {
            let blobs: Arc<Vec<Blob>> = Arc::new(
                (0..cfg.small_count)
                    .map(|_| ctx.data.blob(cfg.small_size))
                    .collect(),
            );
            let repo = format!("{}/small", ctx.prefix);
            let next = Arc::new(AtomicUsize::new(0));
            let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
            let start = Instant::now();
            let deadline = start + cfg.max_round;
            let outs = workers(cfg.clients, |_| {
                let (t, p, next, repo, blobs) = (
                    t.clone(),
                    p.clone(),
                    next.clone(),
                    repo.clone(),
                    blobs.clone(),
                );
                async move {
                    let mut conn = Conn::new(t);
                    let mut m = Measurement::new("", Kind::Rate("blobs/s"));
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(blob) = blobs.get(i) else { break };
                        let t0 = Instant::now();
                        match push_mono(&mut conn, &repo, blob).await {
                            Ok(()) => {
                                m.ops += 1;
                                m.hist.record(t0.elapsed());
                                p.ops.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                p.errors.fetch_add(1, Ordering::Relaxed);
                                m.fail(e);
                            }
                        }
                    }
                    vec![m]
                }
            })
            .await;
            let elapsed = start.elapsed();
            ticker.finish();
            let merged = merge_workers(outs, elapsed);
            note_cut_short(cfg, label, &merged, cfg.small_count);
            Ok(merged)
        }
        Scenario::ManifestGet | Scenario::ManifestHead => {
            let (repo, len) = st.manifest.clone().ok_or("no manifest pushed")?;
            let path = format!("/v2/{repo}/manifests/latest");
            Ok(request_rate(cfg, t, sc, path, Some(len), label, p, slice).await)
        }
        Scenario::TagPush => {
            let repo = format!("{}/tags-r{round}", ctx.prefix);
            let config = ctx.data.config();
            let layer = ctx.data.blob(cfg.small_size);
            let mut conn = Conn::new(t.clone());
            push_mono(&mut conn, &repo, &config).await?;
            push_mono(&mut conn, &repo, &layer).await?;
            let manifests: Arc<Vec<Bytes>> = Arc::new(
                (0..cfg.tag_count)
                    .map(|i| data::manifest(&config, &[&layer], &format!("r{round}-{i}"), 0))
                    .collect(),
            );
            let width = tag_width(cfg.tag_count);
            let next = Arc::new(AtomicUsize::new(0));
            let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
            let start = Instant::now();
            let deadline = start + cfg.max_round;
            let outs = workers(cfg.clients, |_| {
                let (t, p, next, repo, manifests) = (
                    t.clone(),
                    p.clone(),
                    next.clone(),
                    repo.clone(),
                    manifests.clone(),
                );
                async move {
                    let mut conn = Conn::new(t);
                    let mut m = Measurement::new("", Kind::Rate("tags/s"));
                    while Instant::now() < deadline {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = manifests.get(i) else { break };
                        let tag = format!("t{i:0width$}");
                        let t0 = Instant::now();
                        match put_manifest(&mut conn, &repo, &tag, body).await {
                            Ok(()) => {
                                m.ops += 1;
                                m.hist.record(t0.elapsed());
                                p.ops.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                p.errors.fetch_add(1, Ordering::Relaxed);
                                m.fail(e);
                            }
                        }
                    }
                    vec![m]
                }
            })
            .await;
            let elapsed = start.elapsed();
            ticker.finish();
            let merged = merge_workers(outs, elapsed);
            note_cut_short(cfg, label, &merged, cfg.tag_count);
            Ok(merged)
        }
        Scenario::TagList => {
            let repo = st.taglist.clone().ok_or("no tag-list repository")?;
            let n = cfg.list_tags;
            let width = tag_width(n);
            let page = cfg.page_size.max(1);
            let iters = cfg.list_iters.div_ceil(rounds).max(1);
            let full_iters = cfg.full_list_iters.div_ceil(rounds).max(1);
            let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
            let mut conn = Conn::new(t.clone());
            let mut pm = Measurement::new("page", Kind::Latency);
            let mut returned = 0usize;
            let mut rng = Rng(0x7a6 ^ round as u64);
            let start = Instant::now();
            for k in 0..iters {
                let path = if k % 8 == 0 || n <= page {
                    format!("/v2/{repo}/tags/list?n={page}")
                } else {
                    let at = rng.below(n - page);
                    format!("/v2/{repo}/tags/list?n={page}&last=t{at:0width$}")
                };
                let t0 = Instant::now();
                match conn.send(Req::new(Method::GET, &path)).await {
                    Ok(r) if r.status == StatusCode::OK => {
                        pm.hist.record(t0.elapsed());
                        pm.ops += 1;
                        returned += tags_in(&r.body);
                        p.ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => pm.fail(format!("GET {path}: {}", r.status)),
                    Err(e) => pm.fail(e),
                }
            }
            pm.elapsed = start.elapsed();
            if pm.ops > 0 {
                pm.extras
                    .push(("tags per page", returned as f64 / pm.ops as f64));
            }
            let mut fm = Measurement::new("full", Kind::Latency);
            let start = Instant::now();
            for _ in 0..full_iters {
                let t0 = Instant::now();
                match list_all(&mut conn, &repo).await {
                    Ok((total, requests)) => {
                        fm.hist.record(t0.elapsed());
                        fm.ops += 1;
                        p.ops.fetch_add(1, Ordering::Relaxed);
                        if total != n {
                            fm.fail(format!("listed {total} tags, expected {n}"));
                        }
                        fm.extras =
                            vec![("tags listed", total as f64), ("requests", requests as f64)];
                    }
                    Err(e) => fm.fail(e),
                }
            }
            fm.elapsed = start.elapsed();
            ticker.finish();
            Ok(vec![pm, fm])
        }
        Scenario::Mixed => mixed(ctx, t, round, label, p).await,
        Scenario::HttpGet => {
            let path = t.path.clone();
            Ok(request_rate(cfg, t, sc, path, None, label, p, slice).await)
        }
    }
}

/// A reference target's round: a static server answers the manifest
/// scenarios with its small file and `pull-large` with its large file; a
/// directory takes the large pushes as a file write plus `fdatasync`.
/// Other scenarios do not apply (no measurement).
async fn reference_round(
    ctx: &Ctx,
    sc: Scenario,
    t: &Arc<Target>,
    label: &str,
    p: Arc<Progress>,
) -> Result<Vec<Measurement>, Error> {
    let cfg = &ctx.cfg;
    let slice = cfg.duration / cfg.rounds.max(1) as u32;
    let file = |name: &str| format!("{}/{name}", t.path.trim_end_matches('/'));
    match (&t.kind, sc) {
        (TargetKind::Static, Scenario::ManifestGet | Scenario::ManifestHead) => {
            let path = file(&cfg.static_small);
            Ok(request_rate(cfg, t, sc, path, None, label, p, slice).await)
        }
        (TargetKind::Static, Scenario::PullLarge) => Ok(vec![
            download(cfg, t, &file(&cfg.static_large), None, label, p).await,
        ]),
        (TargetKind::Disk(dir), Scenario::PushLargeMono | Scenario::PushLargeChunked) => {
            let blob = ctx.data.blob(cfg.size);
            let path = dir.join(format!("wharf-bench-{}.tmp", &blob.digest[7..23]));
            let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
            let mut m = Measurement::new("", Kind::Throughput);
            let start = Instant::now();
            let pieces = blob.pieces.clone();
            let progress = p.clone();
            let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                use std::io::Write;
                let mut f = std::fs::File::create(&path)?;
                for piece in &pieces {
                    f.write_all(piece)?;
                    progress
                        .bytes
                        .fetch_add(piece.len() as u64, Ordering::Relaxed);
                }
                f.sync_data()?;
                drop(f);
                std::fs::remove_file(&path)
            })
            .await;
            m.elapsed = start.elapsed();
            ticker.finish();
            match written {
                Ok(Ok(())) => {
                    m.ops = 1;
                    m.bytes = blob.size;
                    m.hist.record(m.elapsed);
                }
                Ok(Err(e)) => m.fail(format!("write to {}: {e}", dir.display())),
                Err(e) => m.fail(e),
            }
            Ok(vec![m])
        }
        _ => Ok(Vec::new()),
    }
}

/// `GET`s `path` `pull_count` times on one connection, bodies discarded;
/// each must have `size` bytes when given.
async fn download(
    cfg: &Config,
    t: &Arc<Target>,
    path: &str,
    size: Option<u64>,
    label: &str,
    p: Arc<Progress>,
) -> Measurement {
    let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
    let mut conn = Conn::new(t.clone()).with_progress(p.clone());
    let mut m = Measurement::new("", Kind::Throughput);
    let start = Instant::now();
    for _ in 0..cfg.pull_count.max(1) {
        let t0 = Instant::now();
        match conn.send(Req::new(Method::GET, path).discard()).await {
            Ok(r) if r.status == StatusCode::OK && size.is_none_or(|s| r.body_len == s) => {
                m.ops += 1;
                m.bytes += r.body_len;
                m.hist.record(t0.elapsed());
                p.ops.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => m.fail(format!(
                "GET {path}: {} with {} bytes",
                r.status, r.body_len
            )),
            Err(e) => m.fail(e),
        }
    }
    m.elapsed = start.elapsed();
    ticker.finish();
    m
}

/// `connections` connections sending `GET` (or `HEAD` for
/// `manifest-head`) of `path` until `slice` is over. Manifest scenarios
/// send the `Accept` header of a pulling client and check the length;
/// `http-get` counts the bytes.
#[allow(clippy::too_many_arguments)]
async fn request_rate(
    cfg: &Config,
    t: &Arc<Target>,
    sc: Scenario,
    path: String,
    len: Option<u64>,
    label: &str,
    p: Arc<Progress>,
    slice: Duration,
) -> Vec<Measurement> {
    let head = sc == Scenario::ManifestHead;
    let count_bytes = sc == Scenario::HttpGet;
    let path = Arc::new(path);
    let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
    let start = Instant::now();
    let deadline = start + slice;
    let outs = workers(cfg.connections, |_| {
        let (t, p, path) = (t.clone(), p.clone(), path.clone());
        async move {
            let mut conn = Conn::new(t);
            if count_bytes {
                conn = conn.with_progress(p.clone());
            }
            let mut m = Measurement::new("", Kind::Rate("req/s"));
            let method = if head { Method::HEAD } else { Method::GET };
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let mut req = Req::new(method.clone(), &path);
                if !count_bytes {
                    req = req.header(header::ACCEPT, data::ACCEPT);
                } else {
                    req = req.discard();
                }
                match conn.send(req).await {
                    Ok(r)
                        if r.status == StatusCode::OK
                            && (head || len.is_none_or(|l| r.body_len == l)) =>
                    {
                        m.ops += 1;
                        if count_bytes {
                            m.bytes += r.body_len;
                        }
                        m.hist.record(t0.elapsed());
                        p.ops.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        p.errors.fetch_add(1, Ordering::Relaxed);
                        m.fail(format!(
                            "{method} {path}: {} ({} bytes)",
                            r.status, r.body_len
                        ));
                    }
                    Err(e) => {
                        p.errors.fetch_add(1, Ordering::Relaxed);
                        m.fail(e);
                    }
                }
            }
            vec![m]
        }
    })
    .await;
    let elapsed = start.elapsed();
    ticker.finish();
    merge_workers(outs, elapsed)
}

struct Image {
    repo: String,
    tag: String,
    blobs: Vec<Blob>,
    manifest: Bytes,
}

async fn mixed(
    ctx: &Ctx,
    t: &Arc<Target>,
    round: usize,
    label: &str,
    p: Arc<Progress>,
) -> Result<Vec<Measurement>, Error> {
    let cfg = &ctx.cfg;
    let images: Arc<Vec<Image>> = Arc::new(
        (0..cfg.mixed_images)
            .map(|i| {
                let config = ctx.data.config();
                let layers: Vec<Blob> = (0..cfg.mixed_layers)
                    .map(|_| ctx.data.blob(cfg.mixed_layer_size))
                    .collect();
                let refs: Vec<&Blob> = layers.iter().collect();
                let tag = format!("r{round}-i{i}");
                let manifest = data::manifest(&config, &refs, &tag, 0);
                let mut blobs = vec![config];
                blobs.extend(layers);
                Image {
                    repo: format!("{}/mixed-{}", ctx.prefix, i % cfg.mixed_repos.max(1)),
                    tag,
                    blobs,
                    manifest,
                }
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let pushed: Arc<Mutex<Vec<usize>>> = Arc::new(Mutex::new(Vec::new()));
    let exhausted = Arc::new(AtomicBool::new(false));
    let pulls = cfg.mixed_pulls_per_push;
    let ticker = Ticker::start(label.to_owned(), p.clone(), cfg.quiet);
    let start = Instant::now();
    let deadline = start + cfg.duration / cfg.rounds.max(1) as u32;
    let outs = workers(cfg.clients, |w| {
        let (t, p, next, images, pushed, exhausted) = (
            t.clone(),
            p.clone(),
            next.clone(),
            images.clone(),
            pushed.clone(),
            exhausted.clone(),
        );
        async move {
            let mut conn = Conn::new(t);
            let mut push = Measurement::new("push", Kind::Rate("images/s"));
            let mut pull = Measurement::new("pull", Kind::Rate("images/s"));
            let mut rng = Rng(0x9e37 + w as u64 * 7919 + round as u64);
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(img) = images.get(i) else {
                    exhausted.store(true, Ordering::Relaxed);
                    break;
                };
                let t0 = Instant::now();
                match push_image(&mut conn, img).await {
                    Ok(bytes) => {
                        push.ops += 1;
                        push.bytes += bytes;
                        push.hist.record(t0.elapsed());
                        p.ops.fetch_add(1, Ordering::Relaxed);
                        p.bytes.fetch_add(bytes, Ordering::Relaxed);
                        if let Ok(mut v) = pushed.lock() {
                            v.push(i);
                        }
                    }
                    Err(e) => {
                        p.errors.fetch_add(1, Ordering::Relaxed);
                        push.fail(e);
                    }
                }
                for _ in 0..pulls {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let j = match pushed.lock() {
                        Ok(v) if !v.is_empty() => v[rng.below(v.len())],
                        _ => break,
                    };
                    let t0 = Instant::now();
                    match pull_image(&mut conn, &images[j]).await {
                        Ok(bytes) => {
                            pull.ops += 1;
                            pull.bytes += bytes;
                            pull.hist.record(t0.elapsed());
                            p.ops.fetch_add(1, Ordering::Relaxed);
                            p.bytes.fetch_add(bytes, Ordering::Relaxed);
                        }
                        Err(e) => {
                            p.errors.fetch_add(1, Ordering::Relaxed);
                            pull.fail(e);
                        }
                    }
                }
            }
            vec![push, pull]
        }
    })
    .await;
    let elapsed = start.elapsed();
    ticker.finish();
    if exhausted.load(Ordering::Relaxed) && !cfg.quiet {
        eprintln!(
            "{label}: all {} prepared images pushed before the time was up (raise --mixed-images)",
            cfg.mixed_images
        );
    }
    Ok(merge_workers(outs, elapsed))
}

// ---- protocol steps ----

async fn start_upload(conn: &mut Conn, repo: &str) -> Result<String, Error> {
    let path = format!("/v2/{repo}/blobs/uploads/");
    conn.send(Req::new(Method::POST, &path))
        .await?
        .expect(StatusCode::ACCEPTED, "POST blobs/uploads/")?
        .location()
}

fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// `POST` then one `PUT` with the whole body.
async fn push_mono(conn: &mut Conn, repo: &str, blob: &Blob) -> Result<(), Error> {
    let loc = start_upload(conn, repo).await?;
    let path = with_digest(&loc, &blob.digest);
    conn.send(
        Req::new(Method::PUT, &path)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .body(&blob.pieces),
    )
    .await?
    .expect(StatusCode::CREATED, "PUT blob")?;
    Ok(())
}

/// `POST`, `PATCH` per chunk, then a closing empty `PUT`.
async fn push_chunked(conn: &mut Conn, repo: &str, blob: &Blob, chunk: u64) -> Result<(), Error> {
    let mut loc = start_upload(conn, repo).await?;
    let mut off = 0;
    while off < blob.size {
        let end = (off + chunk).min(blob.size);
        let pieces = blob.slice(off, end);
        let range = format!("{off}-{}", end - 1);
        loc = conn
            .send(
                Req::new(Method::PATCH, &loc)
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_RANGE, &range)
                    .body(&pieces),
            )
            .await?
            .expect(StatusCode::ACCEPTED, "PATCH chunk")?
            .location()?;
        off = end;
    }
    conn.send(Req::new(Method::PUT, &with_digest(&loc, &blob.digest)))
        .await?
        .expect(StatusCode::CREATED, "PUT closing upload")?;
    Ok(())
}

async fn put_manifest(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    body: &Bytes,
) -> Result<(), Error> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    conn.send(
        Req::new(Method::PUT, &path)
            .header(header::CONTENT_TYPE, data::MANIFEST_TYPE)
            .body(std::slice::from_ref(body)),
    )
    .await?
    .expect(StatusCode::CREATED, "PUT manifest")?;
    Ok(())
}

/// Pushes an image as a client does: `HEAD` each blob, upload the missing
/// ones, then the manifest. Returns the bytes sent.
async fn push_image(conn: &mut Conn, img: &Image) -> Result<u64, Error> {
    let mut bytes = 0;
    for b in &img.blobs {
        let path = format!("/v2/{}/blobs/{}", img.repo, b.digest);
        let r = conn.send(Req::new(Method::HEAD, &path)).await?;
        if r.status == StatusCode::OK {
            continue;
        }
        push_mono(conn, &img.repo, b).await?;
        bytes += b.size;
    }
    put_manifest(conn, &img.repo, &img.tag, &img.manifest).await?;
    Ok(bytes + img.manifest.len() as u64)
}

/// Pulls an image: manifest by tag, then every blob. Returns the bytes read.
async fn pull_image(conn: &mut Conn, img: &Image) -> Result<u64, Error> {
    let path = format!("/v2/{}/manifests/{}", img.repo, img.tag);
    let r = conn
        .send(Req::new(Method::GET, &path).header(header::ACCEPT, data::ACCEPT))
        .await?
        .expect(StatusCode::OK, "GET manifest")?;
    if r.body != img.manifest {
        return Err(format!("GET {path}: different manifest ({} bytes)", r.body.len()).into());
    }
    let mut bytes = r.body_len;
    for b in &img.blobs {
        let path = format!("/v2/{}/blobs/{}", img.repo, b.digest);
        let r = conn
            .send(Req::new(Method::GET, &path).discard())
            .await?
            .expect(StatusCode::OK, "GET blob")?;
        if r.body_len != b.size {
            return Err(format!("GET {path}: {} bytes, expected {}", r.body_len, b.size).into());
        }
        bytes += r.body_len;
    }
    Ok(bytes)
}

fn tags_in(body: &[u8]) -> usize {
    #[derive(serde::Deserialize)]
    struct Tags {
        tags: Option<Vec<String>>,
    }
    serde_json::from_slice::<Tags>(body)
        .ok()
        .and_then(|t| t.tags)
        .map_or(0, |t| t.len())
}

/// Lists every tag, following `Link` headers. Returns (tags, requests).
async fn list_all(conn: &mut Conn, repo: &str) -> Result<(usize, usize), Error> {
    let mut path = format!("/v2/{repo}/tags/list");
    let mut total = 0;
    let mut requests = 0;
    loop {
        let r = conn
            .send(Req::new(Method::GET, &path))
            .await?
            .expect(StatusCode::OK, "GET tags/list")?;
        requests += 1;
        total += tags_in(&r.body);
        let next = r
            .header(header::LINK)
            .filter(|l| l.contains("rel=\"next\""))
            .and_then(|l| Some(l[l.find('<')? + 1..l.find('>')?].to_owned()));
        match next {
            Some(n) if requests < 100_000 => path = origin_form(&n)?,
            _ => return Ok((total, requests)),
        }
    }
}

fn tag_width(count: usize) -> usize {
    count.saturating_sub(1).max(1).to_string().len().max(5)
}

// ---- plumbing ----

/// CPU seconds (user + system) a process has used so far.
fn proc_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th fields, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// Peak resident set size of a process so far, in MiB.
fn proc_peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The server's CPU time and memory over a round.
fn server_measurement(round: &[Measurement], cpu_secs: f64, pid: u32) -> Measurement {
    let mut m = Measurement::new("server", Kind::Server);
    m.ops = round.iter().map(|r| r.ops).sum();
    m.elapsed = round.iter().map(|r| r.elapsed).max().unwrap_or_default();
    m.cpu_secs = cpu_secs;
    if let Some(rss) = proc_peak_rss_mib(pid) {
        m.extras.push(("peak RSS MiB", rss));
    }
    m
}

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if n == 0 {
            0
        } else {
            (self.0 % n as u64) as usize
        }
    }
}

/// Runs `n` tasks and collects what each measured.
async fn workers<F, Fut>(n: usize, f: F) -> Vec<Vec<Measurement>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Vec<Measurement>> + Send + 'static,
{
    let handles: Vec<_> = (0..n.max(1)).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::new();
    for h in handles {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => {
                let mut m = Measurement::new("", Kind::Latency);
                m.fail(format!("worker died: {e}"));
                out.push(vec![m]);
            }
        }
    }
    out
}

/// Says when a count scenario stopped at `max_round` before its count.
fn note_cut_short(cfg: &Config, label: &str, merged: &[Measurement], count: usize) {
    let done: u64 = merged.iter().map(|m| m.ops + m.errors).sum();
    if done < count as u64 && !cfg.quiet {
        eprintln!(
            "{label}: stopped after {:?} with {done} of {count} done (--max-round); rated on those",
            cfg.max_round
        );
    }
}

/// Merges the workers' measurements (by position) over `elapsed` wall time.
fn merge_workers(outs: Vec<Vec<Measurement>>, elapsed: Duration) -> Vec<Measurement> {
    let mut merged: Vec<Measurement> = Vec::new();
    for out in outs {
        for (i, m) in out.into_iter().enumerate() {
            match merged.get_mut(i) {
                Some(a) => a.merge(&m),
                None => merged.push(m),
            }
        }
    }
    for m in &mut merged {
        m.elapsed = elapsed;
    }
    merged
}

/// The progress line on standard error.
struct Ticker {
    handle: Option<tokio::task::JoinHandle<()>>,
    label: String,
    progress: Arc<Progress>,
    start: Instant,
    quiet: bool,
}

fn progress_line(label: &str, p: &Progress, secs: f64) -> String {
    let ops = p.ops.load(Ordering::Relaxed);
    let bytes = p.bytes.load(Ordering::Relaxed) as f64 / 1e6;
    let errors = p.errors.load(Ordering::Relaxed);
    let rate = |v: f64| if secs > 0.0 { v / secs } else { 0.0 };
    let mut s = format!(
        "{label}: {secs:5.1}s  {ops} ops ({:.0}/s)",
        rate(ops as f64)
    );
    if bytes > 0.0 {
        s.push_str(&format!("  {bytes:.0} MB ({:.0} MB/s)", rate(bytes)));
    }
    if errors > 0 {
        s.push_str(&format!("  {errors} errors"));
    }
    s
}

impl Ticker {
    fn start(label: String, progress: Arc<Progress>, quiet: bool) -> Ticker {
        let start = Instant::now();
        let handle = (!quiet).then(|| {
            let (label, p) = (label.clone(), progress.clone());
            tokio::spawn(async move {
                let tty = std::io::stderr().is_terminal();
                let tick = if tty {
                    Duration::from_millis(250)
                } else {
                    Duration::from_secs(5)
                };
                loop {
                    tokio::time::sleep(tick).await;
                    let line = progress_line(&label, &p, start.elapsed().as_secs_f64());
                    if tty {
                        eprint!("\r\x1b[K{line}");
                    } else {
                        eprintln!("{line}");
                    }
                }
            })
        });
        Ticker {
            handle,
            label,
            progress,
            start,
            quiet,
        }
    }

    fn finish(mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
        if !self.quiet {
            let line = progress_line(
                &self.label,
                &self.progress,
                self.start.elapsed().as_secs_f64(),
            );
            if std::io::stderr().is_terminal() {
                eprintln!("\r\x1b[K{line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
