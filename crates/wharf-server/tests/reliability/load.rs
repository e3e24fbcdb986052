//! Load: a bounded soak of mixed traffic, and many large streaming uploads
//! at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::{Client, StatusCode};
use wharf_types::{Algorithm, Digester};

use crate::client::{Rng, files_under, get, image_manifest, open_fds, proc_status, rss_kib};
use crate::common::{Wharf, free_port, sha256};

/// What the soak's clients counted.
#[derive(Default)]
struct Counts {
    requests: AtomicU64,
    pushes: AtomicU64,
    pulls: AtomicU64,
    lists: AtomicU64,
    server_errors: AtomicU64,
}

/// One client of the soak: pushes images (monolithic and chunked), pulls
/// and verifies its own images, checks blobs, lists tags and the catalog.
async fn soak_client(
    base: String,
    k: u64,
    pool: Arc<Vec<(String, Bytes)>>,
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    errors: Arc<Mutex<Vec<String>>>,
) {
    let client = Client::new();
    let mut rng = Rng::new(4000 + k);
    let repo = format!("soak/r{}", k % 4);
    // tag -> manifest bytes, as this client last pushed it.
    let mut mine: Vec<(String, Bytes)> = Vec::new();
    let mut n = 0u64;
    let fail = |what: String| errors.lock().expect("errors").push(what);
    let check = |status: StatusCode, expected: StatusCode, what: &str| {
        counts.requests.fetch_add(1, Ordering::Relaxed);
        if status.is_server_error() {
            counts.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        if status != expected {
            fail(format!("{what}: {status}, expected {expected}"));
            return false;
        }
        true
    };
    while !stop.load(Ordering::Relaxed) {
        let op = rng.range(0, 10);
        if op < 3 || mine.is_empty() {
            // Push: a fresh config, a layer from the shared pool.
            let (ld, layer) = &pool[rng.range(0, pool.len() as u64) as usize];
            let config = Bytes::from(format!("{{\"k\":{k},\"n\":{n}}}"));
            let cd = sha256(&config);
            let ok = async {
                let r = client
                    .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={cd}"))
                    .body(config.clone())
                    .send()
                    .await
                    .ok()?;
                if !check(r.status(), StatusCode::CREATED, "config push") {
                    return None;
                }
                if rng.range(0, 4) == 0 {
                    let r = client
                        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                        .send()
                        .await
                        .ok()?;
                    if !check(r.status(), StatusCode::ACCEPTED, "upload start") {
                        return None;
                    }
                    let loc = r.headers().get("location")?.to_str().ok()?.to_owned();
                    let half = layer.len() / 2;
                    let r = client
                        .patch(format!("{base}{loc}"))
                        .header("Content-Range", format!("0-{}", half - 1))
                        .body(layer.slice(..half))
                        .send()
                        .await
                        .ok()?;
                    if !check(r.status(), StatusCode::ACCEPTED, "PATCH") {
                        return None;
                    }
                    let r = client
                        .put(format!("{base}{loc}?digest={ld}"))
                        .header("Content-Range", format!("{half}-{}", layer.len() - 1))
                        .body(layer.slice(half..))
                        .send()
                        .await
                        .ok()?;
                    if !check(r.status(), StatusCode::CREATED, "chunked push") {
                        return None;
                    }
                } else {
                    let r = client
                        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={ld}"))
                        .body(layer.clone())
                        .send()
                        .await
                        .ok()?;
                    if !check(r.status(), StatusCode::CREATED, "layer push") {
                        return None;
                    }
                }
                let m = Bytes::from(image_manifest(
                    (&cd, config.len()),
                    &[(ld.clone(), layer.len())],
                ));
                let tag = format!("c{k}-{}", n % 16);
                let r = client
                    .put(format!("{base}/v2/{repo}/manifests/{tag}"))
                    .header("Content-Type", crate::client::OCI_MANIFEST)
                    .body(m.clone())
                    .send()
                    .await
                    .ok()?;
                if !check(r.status(), StatusCode::CREATED, "manifest push") {
                    return None;
                }
                mine.retain(|(t, _)| *t != tag);
                mine.push((tag, m));
                Some(())
            }
            .await;
            if ok.is_none() {
                fail(format!("push {n} by client {k} failed"));
            }
            counts.pushes.fetch_add(1, Ordering::Relaxed);
            n += 1;
        } else if op < 7 {
            // Pull one of this client's images and verify every byte.
            let (tag, m) = mine[rng.range(0, mine.len() as u64) as usize].clone();
            let ok = async {
                let r = client
                    .get(format!("{base}/v2/{repo}/manifests/{tag}"))
                    .header("Accept", crate::client::OCI_MANIFEST)
                    .send()
                    .await
                    .ok()?;
                if !check(r.status(), StatusCode::OK, "manifest pull") {
                    return None;
                }
                let body = r.bytes().await.ok()?;
                if body != m {
                    fail(format!("{repo}:{tag}: another manifest"));
                }
                for d in crate::client::referenced_blobs(&m) {
                    let r = client
                        .get(format!("{base}/v2/{repo}/blobs/{d}"))
                        .send()
                        .await
                        .ok()?;
                    if !check(r.status(), StatusCode::OK, "blob pull") {
                        return None;
                    }
                    let body = r.bytes().await.ok()?;
                    if sha256(&body) != d {
                        fail(format!("{repo}: blob {d} with wrong bytes"));
                    }
                }
                Some(())
            }
            .await;
            if ok.is_none() {
                fail(format!("pull of {repo}:{tag} failed"));
            }
            counts.pulls.fetch_add(1, Ordering::Relaxed);
        } else if op < 8 {
            let (ld, _) = &pool[rng.range(0, pool.len() as u64) as usize];
            if let Ok(r) = client
                .head(format!("{base}/v2/{repo}/blobs/{ld}"))
                .send()
                .await
            {
                // Another client may not have pushed it here yet.
                counts.requests.fetch_add(1, Ordering::Relaxed);
                if !matches!(r.status(), StatusCode::OK | StatusCode::NOT_FOUND) {
                    check(r.status(), StatusCode::OK, "HEAD blob");
                }
            } else {
                fail("HEAD failed".into());
            }
        } else {
            let url = if op == 8 {
                format!("{base}/v2/{repo}/tags/list?n=10")
            } else {
                format!("{base}/v2/_catalog?n=3")
            };
            match client.get(&url).send().await {
                Ok(r) => {
                    check(r.status(), StatusCode::OK, "list");
                    let _ = r.bytes().await;
                }
                Err(e) => fail(format!("{url}: {e}")),
            }
            counts.lists.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn soak(seconds: u64) {
    crate::common::install_crypto();
    let metrics = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let w = Wharf::start_env(
        dir,
        &data,
        &[],
        &[("WHARF_METRICS__LISTEN", metrics.as_str())],
        false,
    );
    let pid = w.pid();
    let base = w.url.clone();
    let mut rng = Rng::new(41);
    // 48 layers, either side of the inline threshold, shared by all.
    let pool: Arc<Vec<(String, Bytes)>> = Arc::new(
        (0..48)
            .map(|i| {
                let len = if i % 4 == 0 {
                    rng.range(1_100_000, 1_600_000)
                } else {
                    rng.range(500, 300_000)
                };
                let b = Bytes::from(rng.bytes(len as usize));
                (sha256(&b), b)
            })
            .collect(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            runtime.spawn(soak_client(
                base.clone(),
                k,
                pool.clone(),
                stop.clone(),
                counts.clone(),
                errors.clone(),
            ))
        })
        .collect();
    // Samples of (seconds, RSS kB, open fds), every 2 s.
    let started = Instant::now();
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(2));
        samples.push((started.elapsed().as_secs_f64(), rss_kib(pid), open_fds(pid)));
        let e = errors.lock().expect("errors");
        assert!(e.is_empty(), "soak errors: {:?}", &e[..e.len().min(10)]);
    }
    stop.store(true, Ordering::Relaxed);
    runtime.block_on(async {
        for t in tasks {
            t.await.expect("client");
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors = errors.lock().expect("errors");
    assert!(
        errors.is_empty(),
        "soak errors: {:?}",
        &errors[..errors.len().min(10)]
    );
    let c = &counts;
    let requests = c.requests.load(Ordering::Relaxed);
    assert_eq!(c.server_errors.load(Ordering::Relaxed), 0, "5xx answers");
    let storage_errors = get(&metrics, "/metrics")
        .text()
        .lines()
        .find_map(|l| {
            l.strip_prefix("wharf_storage_errors_total ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    assert_eq!(storage_errors.trim(), "0", "the server counted 5xx answers");

    // Flat after warm-up: the last quarter against the first samples after
    // a warm-up of a quarter of the run (at least 10 s).
    let warm = (seconds as f64 / 4.0).max(10.0);
    let after: Vec<&(f64, u64, usize)> = samples.iter().filter(|s| s.0 > warm).collect();
    assert!(after.len() >= 4, "too few samples after warm-up");
    let early = &after[..after.len().div_ceil(4).max(2)];
    let late = &after[after.len() * 3 / 4..];
    let base_rss = early.iter().map(|s| s.1).max().unwrap_or(0);
    let base_fds = early.iter().map(|s| s.2).max().unwrap_or(0);
    let late_rss = late.iter().map(|s| s.1).max().unwrap_or(0);
    let late_fds = late.iter().map(|s| s.2).max().unwrap_or(0);
    eprintln!(
        "soak {seconds} s: {requests} requests ({:.0}/s; {} pushes, {} pulls, {} lists), 0 errors; RSS {} MiB after warm-up, {} MiB at the end (peak {} MiB); open fds {base_fds} after warm-up, {late_fds} at the end",
        requests as f64 / elapsed,
        c.pushes.load(Ordering::Relaxed),
        c.pulls.load(Ordering::Relaxed),
        c.lists.load(Ordering::Relaxed),
        base_rss / 1024,
        late_rss / 1024,
        proc_status(pid, "VmHWM") / 1024,
    );
    // Within 10%, plus an allowance for noise in small numbers; a short
    // run is still filling its caches (manifests: 8 MiB, the metadata
    // database's pages) after its warm-up.
    let slack_kib = if seconds < 60 { 12 << 10 } else { 4 << 10 };
    assert!(
        late_rss <= base_rss + base_rss / 10 + slack_kib,
        "memory grew: {base_rss} kB after warm-up, {late_rss} kB at the end"
    );
    assert!(
        late_fds <= base_fds + base_fds / 10 + 3,
        "open files grew: {base_fds} after warm-up, {late_fds} at the end"
    );
    // No leftover upload files.
    let stage = files_under(&data.join("stage"));
    let tmp = files_under(&data.join("tmp"));
    assert!(
        stage.is_empty() && tmp.is_empty(),
        "leftover files: {stage:?} {tmp:?}"
    );
    drop(w);
}

#[test]
fn soak_short() {
    soak(20);
}

#[test]
#[ignore = "long-running (WHARF_SOAK_SECS, default 300 s): run by .ci/run"]
fn soak_mixed_traffic() {
    let seconds = std::env::var("WHARF_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    soak(seconds);
}

/// `len` bytes derived from `seed`, as a stream of 1 MiB chunks, hashed on
/// the way out.
fn generated_body(seed: u64, len: u64, hash: Arc<Mutex<Option<Digester>>>) -> reqwest::Body {
    let mut block = Rng::new(seed).bytes(1 << 20);
    let mut sent = 0u64;
    let stream = futures::stream::poll_fn(move |_| {
        if sent >= len {
            return std::task::Poll::Ready(None);
        }
        let n = (len - sent).min(block.len() as u64) as usize;
        // Vary every block, so no two uploads or blocks are alike.
        block[..8].copy_from_slice(&sent.to_le_bytes());
        let chunk = Bytes::copy_from_slice(&block[..n]);
        if let Some(d) = hash.lock().expect("hash").as_mut() {
            d.update(&chunk);
        }
        sent += n as u64;
        std::task::Poll::Ready(Some(Ok::<_, std::io::Error>(chunk)))
    });
    reqwest::Body::wrap_stream(stream)
}

/// 16 concurrent 1 GiB streaming uploads: the server's memory stays
/// bounded by concurrency times its per-upload buffers, not by blob size.
fn concurrent_large_uploads(uploads: u64, size: u64) {
    crate::common::install_crypto();
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let w = Wharf::start_env(dir, &data, &[], &[], false);
    let pid = w.pid();
    let base = w.url.clone();
    // Warm up, then measure.
    let _ = get(&w.addr, "/v2/");
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_kib(pid);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        })
    };
    let started = Instant::now();
    let results: Vec<(String, u16, u16)> = runtime.block_on(async {
        let client = Client::new();
        let tasks: Vec<_> = (0..uploads)
            .map(|i| {
                let client = client.clone();
                let base = base.clone();
                tokio::spawn(async move {
                    let repo = format!("big/u{i}");
                    let r = client
                        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
                        .send()
                        .await
                        .expect("start");
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                    let loc = r.headers()["location"]
                        .to_str()
                        .expect("location")
                        .to_owned();
                    let hash = Arc::new(Mutex::new(Some(Digester::new(Algorithm::Sha256))));
                    let r = client
                        .patch(format!("{base}{loc}"))
                        .body(generated_body(500 + i, size, hash.clone()))
                        .send()
                        .await
                        .expect("PATCH");
                    let patched = r.status().as_u16();
                    let digest = hash
                        .lock()
                        .expect("hash")
                        .take()
                        .expect("hasher")
                        .finish()
                        .to_string();
                    let r = client
                        .put(format!("{base}{loc}?digest={digest}"))
                        .send()
                        .await
                        .expect("PUT");
                    (format!("{repo}@{digest}"), patched, r.status().as_u16())
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.expect("upload"));
        }
        out
    });
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().expect("sampler");
    for (what, patched, put) in &results {
        assert_eq!((*patched, *put), (202, 201), "{what}");
    }
    // Each blob is there, with its size.
    for (what, _, _) in &results {
        let (repo, digest) = what.split_once('@').expect("repo@digest");
        let r = crate::common::raw_request(
            &w.addr,
            "HEAD",
            &format!("/v2/{repo}/blobs/{digest}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(size.to_string().as_str()));
    }
    let total_mib = (uploads * size) >> 20;
    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    eprintln!(
        "{uploads} concurrent uploads of {} MiB: {total_mib} MiB in {:.1} s ({:.0} MiB/s); server RSS {} MiB before, peak {} MiB (+{growth_mib} MiB, {:.1} MiB per upload)",
        size >> 20,
        elapsed.as_secs_f64(),
        total_mib as f64 / elapsed.as_secs_f64(),
        rss_before / 1024,
        peak / 1024,
        growth_mib as f64 / uploads as f64
    );
    // Bounded by concurrency x buffers (a few MiB per upload), never by
    // the blob size.
    assert!(
        growth_mib <= uploads * 8,
        "server memory grew by {growth_mib} MiB for {uploads} uploads"
    );
    drop(w);
}

#[test]
fn four_concurrent_64_mib_uploads_use_bounded_memory() {
    concurrent_large_uploads(4, 64 << 20);
}

/// Free space, in MiB, of the filesystem holding `path` (from `df`).
fn free_mib(path: &std::path::Path) -> u64 {
    let out = std::process::Command::new("df")
        .arg("-Pk")
        .arg(path)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

#[test]
#[ignore = "long-running (16 x 1 GiB uploads, about a minute, about 20 GiB free in the temp dir, smaller uploads on a smaller disk): run by .ci/run"]
fn sixteen_concurrent_1_gib_uploads_use_bounded_memory() {
    // WHARF_BIG_UPLOAD_MIB sets the size of each upload. Without it, each
    // is 1 GiB where the temp dir has room for 16 of them, and otherwise as
    // large as fits (the memory bound per upload does not depend on the
    // size: a 256 MiB upload streams through the same buffers).
    // Keep RESERVE_MIB free for the cases that run beside this one (the
    // crash loops make a data directory per round).
    const RESERVE_MIB: u64 = 4096;
    let free = free_mib(&std::env::temp_dir());
    let fitting = free.saturating_sub(RESERVE_MIB) / 16;
    let mib: u64 = std::env::var("WHARF_BIG_UPLOAD_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fitting.min(1024));
    assert!(
        mib >= 128 && free >= 16 * mib + RESERVE_MIB,
        "16 uploads of {} MiB (at least 128) need {} MiB free in {}, there are {free} MiB (set WHARF_BIG_UPLOAD_MIB or TMPDIR elsewhere)",
        mib.max(128),
        16 * mib.max(128) + RESERVE_MIB,
        std::env::temp_dir().display()
    );
    if mib < 1024 {
        eprintln!("16 uploads of {mib} MiB each: {free} MiB free in the temp dir");
    }
    concurrent_large_uploads(16, mib << 20);
}
