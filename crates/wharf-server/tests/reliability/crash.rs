//! Crashes: `kill -9` of the server at random points of chunked uploads,
//! monolithic pushes and manifest PUTs; after every restart what was
//! acknowledged is there, nothing else is readable under a digest, and
//! interrupted uploads resume from their acknowledged offset.

use std::io::Write;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::{
    Rng, acknowledged, assert_image, get, image_manifest, put_manifest, referenced_blobs,
    try_request,
};
use crate::common::{Wharf, sha256, wharf_cmd};

/// A blob as the test remembers it: where, which digest, how long.
#[derive(Debug, Clone)]
struct BlobRef {
    repo: String,
    digest: String,
    len: usize,
}

/// An upload session the crash interrupted.
#[derive(Debug)]
struct Interrupted {
    repo: String,
    location: String,
    data: Vec<u8>,
    /// Bytes the server acknowledged.
    acked: u64,
    /// A chunk sent without an answer (it may or may not have landed).
    in_flight: Option<u64>,
    /// Whether the completing `PUT` was sent (without an answer).
    completing: bool,
}

/// A tag one worker keeps moving.
#[derive(Debug, Default)]
struct TagState {
    repo: String,
    tag: String,
    /// The manifest of the last acknowledged move.
    acked: Option<Vec<u8>>,
    /// A manifest PUT sent without an answer.
    in_flight: Option<Vec<u8>>,
}

/// What the workers saw before the crash.
#[derive(Debug, Default)]
struct Log {
    acked_blobs: Vec<BlobRef>,
    /// Blobs whose upload was never asked to complete: nothing may be
    /// readable under their digest.
    never_completed: Vec<BlobRef>,
    /// A monolithic push sent without an answer: all or nothing.
    unanswered_pushes: Vec<BlobRef>,
    interrupted: Vec<Interrupted>,
    acked_manifests: Vec<(String, Vec<u8>)>,
    /// Answers that were wrong while the server was up.
    errors: Vec<String>,
    /// Sessions without an acknowledged chunk that a crash took away.
    interrupted_new: usize,
    /// Manifests sent without an answer: stored or not.
    maybe_manifests: Vec<Vec<u8>>,
}

const WORKERS: usize = 3;

/// One worker: images with a small config (monolithic, inline) and one
/// layer (chunked, 16 KiB to 2.5 MiB, either side of the 64 KiB inline
/// threshold), the manifest moving the worker's tag; until a request fails
/// because the server died.
fn worker(addr: String, seed: u64, id: usize, log: Arc<Mutex<Log>>, tag: Arc<Mutex<TagState>>) {
    let mut rng = Rng::new(seed);
    let repo = format!("crash/w{id}");
    let record = |f: &mut dyn FnMut(&mut Log)| f(&mut log.lock().expect("log"));
    loop {
        // Config: one request.
        let config = format!("{{\"seed\":{},\"n\":{}}}", seed, rng.next_u64()).into_bytes();
        let cd = sha256(&config);
        let c_ref = BlobRef {
            repo: repo.clone(),
            digest: cd.clone(),
            len: config.len(),
        };
        match try_request(
            &addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={cd}"),
            &[],
            &config,
        ) {
            Some(r) if r.status == 201 => record(&mut |l| l.acked_blobs.push(c_ref.clone())),
            Some(r) => {
                record(&mut |l| {
                    l.errors
                        .push(format!("config push: {} {}", r.status, r.text()))
                });
                return;
            }
            None => {
                record(&mut |l| l.unanswered_pushes.push(c_ref.clone()));
                return;
            }
        }

        // Layer: a chunked upload.
        let len = rng.range(16 << 10, 5 << 19) as usize;
        let layer = rng.bytes(len);
        let ld = sha256(&layer);
        let l_ref = BlobRef {
            repo: repo.clone(),
            digest: ld.clone(),
            len,
        };
        let location = match try_request(
            &addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            b"",
        ) {
            Some(r) if r.status == 202 => r.header("location").unwrap_or_default().to_owned(),
            Some(r) => {
                record(&mut |l| {
                    l.errors
                        .push(format!("upload start: {} {}", r.status, r.text()))
                });
                return;
            }
            None => return,
        };
        let mut offset = 0usize;
        while offset < len {
            let n = (rng.range(16 << 10, 1 << 20) as usize).min(len - offset);
            let range = format!("{}-{}", offset, offset + n - 1);
            match try_request(
                &addr,
                "PATCH",
                &location,
                &[("Content-Range", &range)],
                &layer[offset..offset + n],
            ) {
                Some(r) if r.status == 202 => {
                    let got = acknowledged(r.header("range"));
                    if got != Some((offset + n) as u64) {
                        record(&mut |l| {
                            l.errors.push(format!(
                                "PATCH {range} acknowledged {:?}",
                                r.header("range")
                            ))
                        });
                        return;
                    }
                    offset += n;
                }
                Some(r) => {
                    record(&mut |l| l.errors.push(format!("PATCH: {} {}", r.status, r.text())));
                    return;
                }
                None => {
                    record(&mut |l| {
                        l.never_completed.push(l_ref.clone());
                        l.interrupted.push(Interrupted {
                            repo: repo.clone(),
                            location: location.clone(),
                            data: layer.clone(),
                            acked: offset as u64,
                            in_flight: Some(n as u64),
                            completing: false,
                        });
                    });
                    return;
                }
            }
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        match try_request(
            &addr,
            "PUT",
            &format!("{location}{sep}digest={ld}"),
            &[],
            b"",
        ) {
            Some(r) if r.status == 201 => record(&mut |l| l.acked_blobs.push(l_ref.clone())),
            Some(r) => {
                record(&mut |l| {
                    l.errors
                        .push(format!("complete: {} {}", r.status, r.text()))
                });
                return;
            }
            None => {
                record(&mut |l| {
                    l.interrupted.push(Interrupted {
                        repo: repo.clone(),
                        location: location.clone(),
                        data: layer.clone(),
                        acked: len as u64,
                        in_flight: None,
                        completing: true,
                    })
                });
                return;
            }
        }

        // The manifest moves the worker's tag.
        let manifest = image_manifest((&cd, config.len()), &[(ld.clone(), len)]);
        let tag_name = tag.lock().expect("tag").tag.clone();
        tag.lock().expect("tag").in_flight = Some(manifest.clone());
        match try_request(
            &addr,
            "PUT",
            &format!("/v2/{repo}/manifests/{tag_name}"),
            &[("Content-Type", crate::client::OCI_MANIFEST)],
            &manifest,
        ) {
            Some(r) if r.status == 201 => {
                let mut t = tag.lock().expect("tag");
                t.acked = t.in_flight.take();
                record(&mut |l| l.acked_manifests.push((repo.clone(), manifest.clone())));
            }
            Some(r) => {
                record(&mut |l| {
                    l.errors
                        .push(format!("manifest: {} {}", r.status, r.text()))
                });
                return;
            }
            None => return,
        }
    }
}

/// Checks the state after a restart against what was acknowledged, then
/// resumes and completes every interrupted upload.
fn verify_after_restart(
    w: &Wharf,
    log: &mut Log,
    tags: &[Arc<Mutex<TagState>>],
    rng: &mut Rng,
    seed: u64,
    fresh_from: usize,
    gc: bool,
) {
    let addr = &w.addr;
    // Acknowledged blobs: the newest all, older ones sampled (all of them
    // are checked once more at the end). With online GC, a blob no manifest
    // references is collected once older than the grace period: only the
    // images are checked then (each round by their tags, all at the end).
    let n = log.acked_blobs.len();
    for (i, b) in log.acked_blobs.iter().enumerate() {
        if gc || (i < fresh_from && rng.range(0, 10) != 0) {
            continue;
        }
        let r = get(addr, &format!("/v2/{}/blobs/{}", b.repo, b.digest));
        assert_eq!(
            r.status, 200,
            "seed {seed}: acknowledged blob {b:?} ({i}/{n})"
        );
        assert_eq!(r.body.len(), b.len, "seed {seed}: size of {b:?}");
        assert_eq!(sha256(&r.body), b.digest, "seed {seed}: content of {b:?}");
    }
    // Never completed: not readable under the digest.
    for b in log.never_completed.drain(..) {
        let r = get(addr, &format!("/v2/{}/blobs/{}", b.repo, b.digest));
        assert_eq!(
            r.status, 404,
            "seed {seed}: a blob never completed is readable: {b:?}"
        );
    }
    // A push without an answer: all or nothing.
    for b in log.unanswered_pushes.drain(..) {
        let r = get(addr, &format!("/v2/{}/blobs/{}", b.repo, b.digest));
        match r.status {
            404 => {}
            200 => {
                assert_eq!(sha256(&r.body), b.digest, "seed {seed}: torn blob {b:?}");
                log.acked_blobs.push(b);
            }
            s => panic!("seed {seed}: unanswered push {b:?} now answers {s}"),
        }
    }
    // Tags: the last acknowledged target, or the unanswered move, whole.
    for t in tags {
        let mut t = t.lock().expect("tag");
        let r = get(addr, &format!("/v2/{}/manifests/{}", t.repo, t.tag));
        let now = match r.status {
            404 => {
                assert!(
                    t.acked.is_none(),
                    "seed {seed}: tag {} lost its acknowledged target",
                    t.tag
                );
                None
            }
            200 => {
                let ok = Some(&r.body) == t.acked.as_ref() || Some(&r.body) == t.in_flight.as_ref();
                assert!(
                    ok,
                    "seed {seed}: tag {} points to a manifest that was neither acknowledged last nor in flight",
                    t.tag
                );
                assert_image(addr, &t.repo, &t.tag, &r.body);
                Some(r.body)
            }
            s => panic!("seed {seed}: tag {}: {s} {}", t.tag, r.text()),
        };
        t.acked = now;
        t.in_flight = None;
    }
    // Interrupted uploads resume from their acknowledged offset (or a chunk
    // that landed without its answer), then complete.
    let interrupted: Vec<Interrupted> = log.interrupted.drain(..).collect();
    for s in interrupted {
        let status = get(addr, &s.location);
        let digest = sha256(&s.data);
        if status.status == 404 {
            assert_eq!(
                status.error_code().as_deref(),
                Some("BLOB_UPLOAD_UNKNOWN"),
                "seed {seed}: {}",
                status.text()
            );
            // A session is durable from its first acknowledged chunk (a new
            // one is written without waiting for the disk: lost in a crash,
            // the client starts again). Otherwise only completion closes it,
            // in the same step that makes the blob readable.
            if s.acked == 0 && !s.completing {
                log.interrupted_new += 1;
                continue;
            }
            assert!(
                s.completing,
                "seed {seed}: an acknowledged upload session vanished: {s:?}"
            );
            let r = get(addr, &format!("/v2/{}/blobs/{digest}", s.repo));
            assert_eq!(r.status, 200, "seed {seed}: session closed, blob missing");
            assert_eq!(sha256(&r.body), digest);
        } else {
            assert_eq!(status.status, 204, "seed {seed}: {}", status.text());
            let offset = acknowledged(status.header("range")).expect("Range");
            let allowed = [Some(s.acked), s.in_flight.map(|n| s.acked + n)];
            assert!(
                allowed.contains(&Some(offset)),
                "seed {seed}: upload resumed at {offset}, acknowledged {} (+{:?} in flight)",
                s.acked,
                s.in_flight
            );
            let rest = &s.data[offset as usize..];
            if !rest.is_empty() {
                let range = format!("{}-{}", offset, s.data.len() - 1);
                let r = crate::common::raw_request(
                    addr,
                    "PATCH",
                    &s.location,
                    &[("Content-Range", &range)],
                    rest,
                );
                assert_eq!(r.status, 202, "seed {seed}: resume: {}", r.text());
            }
            let r = crate::common::raw_request(
                addr,
                "PUT",
                &format!("{}?digest={digest}", s.location),
                &[],
                b"",
            );
            assert_eq!(r.status, 201, "seed {seed}: complete: {}", r.text());
        }
        log.acked_blobs.push(BlobRef {
            repo: s.repo.clone(),
            digest,
            len: s.data.len(),
        });
    }
}

/// `iterations` crash-and-restart rounds from `seed`; with `gc`, online
/// garbage collection runs every second (4 s grace period) and rounds are
/// longer, so kills also land in collections.
pub(crate) fn crash_loop(seed: u64, iterations: u64, gc: bool) {
    let started = Instant::now();
    eprintln!("crash loop: seed {seed}, {iterations} iterations, online GC {gc}");
    let envs: &[(&str, &str)] = if gc {
        &[
            ("WHARF_GC__INTERVAL_SECS", "1"),
            ("WHARF_GC__GRACE_SECS", "4"),
        ]
    } else {
        &[]
    };
    let start = |dir: tempfile::TempDir| {
        let data = dir.path().join("data");
        Wharf::start_env(dir, &data, &[], envs, false)
    };
    let mut rng = Rng::new(seed);
    let mut log = Log::default();
    let tags: Vec<Arc<Mutex<TagState>>> = (0..WORKERS)
        .map(|i| {
            Arc::new(Mutex::new(TagState {
                repo: format!("crash/w{i}"),
                tag: format!("moving{i}"),
                ..TagState::default()
            }))
        })
        .collect();
    let mut w = start(tempfile::tempdir().expect("tempdir"));
    let mut kills_mid_request = 0;
    for i in 0..iterations {
        let round = seed.wrapping_add(i.wrapping_mul(1_000_003));
        let shared = Arc::new(Mutex::new(std::mem::take(&mut log)));
        let fresh_from = shared.lock().expect("log").acked_blobs.len();
        let handles: Vec<_> = (0..WORKERS)
            .map(|k| {
                let addr = w.addr.clone();
                let shared = shared.clone();
                let tag = tags[k].clone();
                let s = round ^ (k as u64 + 1).wrapping_mul(0xA24B_AED4_963E_E407);
                std::thread::spawn(move || worker(addr, s, k, shared, tag))
            })
            .collect();
        let (lo, hi) = if gc { (600, 1600) } else { (20, 700) };
        std::thread::sleep(Duration::from_millis(rng.range(lo, hi)));
        let dir = w.kill();
        for h in handles {
            h.join().expect("worker");
        }
        log = Arc::try_unwrap(shared)
            .expect("workers done")
            .into_inner()
            .expect("log");
        assert!(
            log.errors.is_empty(),
            "seed {seed} round {i}: wrong answers while the server was up: {:?}",
            log.errors
        );
        kills_mid_request += log.interrupted.len()
            + log.unanswered_pushes.len()
            + tags
                .iter()
                .filter(|t| t.lock().expect("tag").in_flight.is_some())
                .count();
        // A manifest in flight may have been stored (and keeps its blobs).
        for t in &tags {
            if let Some(m) = &t.lock().expect("tag").in_flight {
                log.maybe_manifests.push(m.clone());
            }
        }
        w = start(dir);
        verify_after_restart(&w, &mut log, &tags, &mut rng, seed, fresh_from, gc);
    }
    // Everything acknowledged in every round, once more.
    for b in log.acked_blobs.iter().filter(|_| !gc) {
        let r = get(&w.addr, &format!("/v2/{}/blobs/{}", b.repo, b.digest));
        assert_eq!(r.status, 200, "seed {seed}: {b:?}");
        assert_eq!(sha256(&r.body), b.digest, "seed {seed}: {b:?}");
    }
    for (repo, manifest) in log.acked_manifests.iter().filter(|_| !gc) {
        assert_image(&w.addr, repo, &sha256(manifest), manifest);
    }
    // With online GC: blobs no manifest references (pushes cut off before
    // their manifest) are collected once past the grace period, across
    // all the crashes, while every image above stayed whole.
    let mut collected = 0;
    if gc {
        std::thread::sleep(Duration::from_secs(7));
        let referenced: std::collections::HashSet<String> = log
            .acked_manifests
            .iter()
            .map(|(_, m)| m)
            .chain(&log.maybe_manifests)
            .flat_map(|m| referenced_blobs(m))
            .collect();
        for b in log
            .acked_blobs
            .iter()
            .filter(|b| !referenced.contains(&b.digest))
        {
            let r = get(&w.addr, &format!("/v2/{}/blobs/{}", b.repo, b.digest));
            assert_eq!(r.status, 404, "seed {seed}: orphan {b:?} not collected");
            collected += 1;
        }
        for (repo, manifest) in &log.acked_manifests {
            assert_image(&w.addr, repo, &sha256(manifest), manifest);
        }
    }
    let (status, dir) = w.terminate();
    assert!(status.success());
    // And the store is consistent on disk.
    let out = wharf_cmd(120)
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("WHARF_LOG__LEVEL", "warn")
        .output()
        .expect("fsck");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "seed {seed}: fsck: {text}");
    eprintln!(
        "crash loop: {iterations} kills ({kills_mid_request} mid-request, {} new sessions lost), {} blobs and {} manifests acknowledged and verified, {collected} orphan blobs collected, {:.1} s; fsck: {}",
        log.interrupted_new,
        log.acked_blobs.len(),
        log.acked_manifests.len(),
        started.elapsed().as_secs_f64(),
        text.trim()
    );
    assert!(
        log.acked_manifests.len() as u64 >= iterations / 2,
        "too little was pushed for the test to mean anything"
    );
}

fn seed_from_env(default: u64) -> u64 {
    std::env::var("WHARF_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_9_during_pushes_short() {
    crash_loop(seed_from_env(0x5EED_0001), 6, false);
}

#[test]
#[ignore = "long-running (60 kill -9 rounds, about 2 minutes): run by .ci/run"]
fn kill_9_during_pushes_60_rounds() {
    let rounds = std::env::var("WHARF_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    crash_loop(seed_from_env(0x5EED_C0DE), rounds, false);
}

#[test]
fn kill_9_during_pushes_with_online_gc_short() {
    crash_loop(seed_from_env(0x5EED_0002), 5, true);
}

#[test]
#[ignore = "long-running (30 kill -9 rounds with online GC, about 80 s): run by .ci/run"]
fn kill_9_during_pushes_with_online_gc_30_rounds() {
    crash_loop(seed_from_env(0x5EED_6C6C), 30, true);
}

/// A crash after the new image's blobs were written but before (or while)
/// its manifest moves the tag leaves the old target intact; a crash right
/// after the whole manifest was sent leaves the tag on the old or the new
/// image, both complete.
#[test]
fn crash_between_blob_write_and_tag_move_keeps_the_old_target() {
    let mut w = Wharf::start(&[]);
    let repo = "crash/tagmove";
    let mut rng = Rng::new(7);
    let (_, v1) = crate::client::push_image(&w.addr, repo, "release", &rng.bytes(300_000));
    for delay_ms in [None, Some(0u64), Some(1), Some(3), Some(10), Some(30)] {
        // The new image's blobs, acknowledged.
        let layer = rng.bytes(1_200_000);
        let config = b"{\"v\":2}".to_vec();
        let c = crate::client::push_blob(&w.addr, repo, &config);
        let l = crate::client::push_blob(&w.addr, repo, &layer);
        let v2 = image_manifest((&c, config.len()), &[(l, layer.len())]);
        let mut s = TcpStream::connect(&w.addr).expect("connect");
        s.write_all(
            format!(
                "PUT /v2/{repo}/manifests/release HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
                crate::client::OCI_MANIFEST,
                v2.len()
            )
            .as_bytes(),
        )
        .expect("write");
        match delay_ms {
            // Half the manifest: the server is waiting for the rest.
            None => {
                s.write_all(&v2[..v2.len() / 2]).expect("write");
                std::thread::sleep(Duration::from_millis(200));
            }
            // All of it: the kill races the commit.
            Some(ms) => {
                s.write_all(&v2).expect("write");
                std::thread::sleep(Duration::from_millis(ms));
            }
        }
        let dir = w.kill();
        w = Wharf::start_in(dir, &[]);
        let r = get(&w.addr, &format!("/v2/{repo}/manifests/release"));
        assert_eq!(r.status, 200, "{}", r.text());
        if delay_ms.is_none() {
            assert!(r.body == v1, "a half-sent manifest moved the tag");
            let by_digest = get(&w.addr, &format!("/v2/{repo}/manifests/{}", sha256(&v2)));
            assert_eq!(by_digest.status, 404, "a half-sent manifest is stored");
        } else {
            assert!(r.body == v1 || r.body == v2, "tag on an unknown manifest");
        }
        assert_image(&w.addr, repo, "release", &r.body);
        for d in referenced_blobs(&v2) {
            assert_eq!(get(&w.addr, &format!("/v2/{repo}/blobs/{d}")).status, 200);
        }
        // The next round moves the tag from wherever it is now.
        if r.body == v2 {
            let again = put_manifest(&w.addr, repo, "release", &v1);
            assert_eq!(again.status, 201);
        }
    }
}
