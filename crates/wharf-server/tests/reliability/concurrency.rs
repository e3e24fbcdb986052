//! Concurrency: the same blob pushed by many clients at once, a tag moved
//! under readers, online GC under load, deletes under in-flight pulls.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use wharf_types::{Algorithm, Digester};

use crate::client::{
    Rng, assert_image, files_under, get, image_manifest, push_blob, push_image, put_manifest,
    request,
};
use crate::common::{Wharf, free_port, raw_request, sha256, wharf_cmd};

/// A tag move: when it started and was acknowledged, and the manifest.
type TagMove = (Duration, Duration, Vec<u8>);

/// An acknowledged image: repository, tag, manifest.
type Pushed = (String, String, Vec<u8>);

/// Pushes `data` as `digest` in one request, or in two chunks when
/// `chunked`; returns the final status.
fn push_either(addr: &str, repo: &str, data: &[u8], chunked: bool) -> u16 {
    let d = sha256(data);
    if !chunked {
        return request(
            addr,
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[],
            data,
        )
        .status;
    }
    let r = raw_request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location").expect("location").to_owned();
    let half = data.len() / 2;
    let r = raw_request(
        addr,
        "PATCH",
        &location,
        &[("Content-Range", &format!("0-{}", half - 1))],
        &data[..half],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    raw_request(
        addr,
        "PUT",
        &format!("{location}?digest={d}"),
        &[("Content-Range", &format!("{half}-{}", data.len() - 1))],
        &data[half..],
    )
    .status
}

/// 50 clients push the same blobs (a large one, stored as a file, and a
/// small one, stored inline) at the same moment, to one repository and to
/// 50 repositories: every push succeeds, every repository serves the
/// content, and one copy of each is stored.
#[test]
fn fifty_clients_pushing_the_same_blob_store_one_copy() {
    let w = Wharf::start(&[]);
    let mut rng = Rng::new(31);
    let large = Arc::new(rng.bytes(3 << 20));
    let small = Arc::new(rng.bytes(40_000));
    for (phase, same_repo) in [("one repository", true), ("50 repositories", false)] {
        let barrier = Arc::new(Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|i| {
                let (addr, barrier) = (w.addr.clone(), barrier.clone());
                let (large, small) = (large.clone(), small.clone());
                std::thread::spawn(move || {
                    let repo = if same_repo {
                        "same/one".to_owned()
                    } else {
                        format!("same/r{i}")
                    };
                    barrier.wait();
                    let a = push_either(&addr, &repo, &large, i % 3 == 0);
                    let b = push_either(&addr, &repo, &small, i % 4 == 0);
                    (repo, a, b)
                })
            })
            .collect();
        for h in handles {
            let (repo, a, b) = h.join().expect("client");
            assert_eq!((a, b), (201, 201), "{phase}: pushes to {repo}");
            for data in [&large, &small] {
                let r = get(&w.addr, &format!("/v2/{repo}/blobs/{}", sha256(data)));
                assert!(r.status == 200 && r.body == **data, "{phase}: {repo}");
            }
        }
    }
    let data = w.data_dir();
    let hex = sha256(&large)["sha256:".len()..].to_owned();
    let files = files_under(&data.join("blobs"));
    assert_eq!(
        files.len(),
        1,
        "one file for the large blob (the small one is inline): {files:?}"
    );
    assert!(files[0].ends_with(&hex));
    assert!(
        files_under(&data.join("stage")).is_empty(),
        "stage files left"
    );
    assert!(files_under(&data.join("tmp")).is_empty(), "temp files left");
    let (status, dir) = w.terminate();
    assert!(status.success());
    let out = wharf_cmd(60)
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("WHARF_LOG__LEVEL", "warn")
        .output()
        .expect("fsck");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("checked 2 blobs"),
        "one copy of each: {report}"
    );
}

/// Writers move one tag while readers poll it: readers only ever see
/// manifests that were pushed (never a 404 or a 5xx), and the final
/// target is a write that no later-started write followed.
#[test]
fn a_tag_moved_under_polling_readers_is_always_a_pushed_manifest() {
    let w = Wharf::start(&[]);
    let addr = w.addr.clone();
    let repo = "tagrace/app";
    let mut rng = Rng::new(32);
    let (_, first) = push_image(&addr, repo, "live", &rng.bytes(10_000));
    let config = push_blob(&addr, repo, b"{}");
    // 4 writers x 12 manifests, each naming its own small layer.
    let mut plans: Vec<Vec<Vec<u8>>> = Vec::new();
    for _ in 0..4 {
        let mut list = Vec::new();
        for _ in 0..12 {
            let layer = rng.bytes(2000);
            let l = push_blob(&addr, repo, &layer);
            list.push(image_manifest((&config, 2), &[(l, layer.len())]));
        }
        plans.push(list);
    }
    let mut known: Vec<Vec<u8>> = plans.iter().flatten().cloned().collect();
    known.push(first);
    let known = Arc::new(known);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..6)
        .map(|_| {
            let (addr, known, stop, reads) =
                (addr.clone(), known.clone(), stop.clone(), reads.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let r = get(&addr, &format!("/v2/{repo}/manifests/live"));
                    assert_eq!(r.status, 200, "reader: {}", r.text());
                    assert!(
                        known.contains(&r.body),
                        "reader saw a manifest nobody pushed"
                    );
                    assert_eq!(
                        r.header("docker-content-digest"),
                        Some(sha256(&r.body).as_str())
                    );
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let t0 = Instant::now();
    let writes: Arc<Mutex<Vec<TagMove>>> = Arc::default();
    let writers: Vec<_> = plans
        .into_iter()
        .map(|list| {
            let (addr, writes) = (addr.clone(), writes.clone());
            std::thread::spawn(move || {
                for m in list {
                    let start = t0.elapsed();
                    let r = put_manifest(&addr, repo, "live", &m);
                    assert_eq!(r.status, 201, "writer: {}", r.text());
                    writes
                        .lock()
                        .expect("writes")
                        .push((start, t0.elapsed(), m));
                }
            })
        })
        .collect();
    for h in writers {
        h.join().expect("writer");
    }
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for h in readers {
        h.join().expect("reader");
    }
    let r = get(&addr, &format!("/v2/{repo}/manifests/live"));
    let writes = writes.lock().expect("writes");
    let (_, acked, _) = writes
        .iter()
        .find(|(_, _, m)| *m == r.body)
        .expect("the final target is one of the writes");
    let later: Vec<_> = writes.iter().filter(|(s, _, _)| s > acked).collect();
    assert!(
        later.is_empty(),
        "the tag ended on a write that {} later-started writes should have replaced",
        later.len()
    );
    assert_image(&addr, repo, "live", &r.body);
    eprintln!(
        "tag race: {} moves, {} reads",
        writes.len(),
        reads.load(Ordering::Relaxed)
    );
}

/// Online GC every second with a 4 s grace period (the shortest allowed)
/// under a push/pull load:
/// every acknowledged image stays pullable, including pushes that check
/// their blobs (HEAD) after the blobs got old and only then send the
/// manifest; blobs nothing references are collected.
#[test]
fn online_gc_every_second_keeps_every_acknowledged_image() {
    let metrics = format!("127.0.0.1:{}", free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let w = Wharf::start_env(
        dir,
        &data,
        &[],
        &[
            ("WHARF_GC__INTERVAL_SECS", "1"),
            ("WHARF_GC__GRACE_SECS", "4"),
            ("WHARF_METRICS__LISTEN", metrics.as_str()),
        ],
        true,
    );
    let addr = w.addr.clone();
    let acked: Arc<Mutex<Vec<Pushed>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let repushed = Arc::new(AtomicU64::new(0));
    let pushers: Vec<_> = (0..4)
        .map(|k| {
            let (addr, acked, stop, repushed) =
                (addr.clone(), acked.clone(), stop.clone(), repushed.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(330 + k);
                let repo = format!("gc/p{k}");
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    // Blobs first; then a pause of up to 6 s (past the grace
                    // period), as a slow client between layers and manifest.
                    let len = rng.range(1000, 1_500_000) as usize;
                    let layer = rng.bytes(len);
                    let config = format!("{{\"k\":{k},\"n\":{n}}}").into_bytes();
                    let c = push_blob(&addr, &repo, &config);
                    let l = push_blob(&addr, &repo, &layer);
                    std::thread::sleep(Duration::from_millis(rng.range(0, 6000)));
                    // Like a client: HEAD each blob, push it again if gone,
                    // then the manifest at once.
                    for (d, bytes) in [(&c, &config), (&l, &layer)] {
                        let h =
                            raw_request(&addr, "HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], b"");
                        match h.status {
                            200 => {}
                            404 => {
                                push_blob(&addr, &repo, bytes);
                                repushed.fetch_add(1, Ordering::Relaxed);
                            }
                            s => panic!("HEAD {d}: {s}"),
                        }
                    }
                    let m = image_manifest((&c, config.len()), &[(l, layer.len())]);
                    let tag = format!("t{n}");
                    let r = put_manifest(&addr, &repo, &tag, &m);
                    assert_eq!(
                        r.status,
                        201,
                        "manifest after a HEAD said its blobs are there: {}",
                        r.text()
                    );
                    acked.lock().expect("acked").push((repo.clone(), tag, m));
                    n += 1;
                }
            })
        })
        .collect();
    // Readers pull acknowledged images all along.
    let readers: Vec<_> = (0..2)
        .map(|k| {
            let (addr, acked, stop) = (addr.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(340 + k);
                let mut pulls = 0;
                while !stop.load(Ordering::Relaxed) {
                    let pick = {
                        let a = acked.lock().expect("acked");
                        if a.is_empty() {
                            None
                        } else {
                            Some(a[rng.range(0, a.len() as u64) as usize].clone())
                        }
                    };
                    match pick {
                        Some((repo, tag, m)) => {
                            assert_image(&addr, &repo, &tag, &m);
                            pulls += 1;
                        }
                        None => std::thread::sleep(Duration::from_millis(50)),
                    }
                }
                pulls
            })
        })
        .collect();
    // Orphans: blobs nothing will reference, to see the collector work.
    let mut rng = Rng::new(35);
    let orphans: Vec<String> = (0..5)
        .map(|_| push_blob(&addr, "gc/orphans", &rng.bytes(20_000)))
        .collect();
    std::thread::sleep(Duration::from_secs(16));
    stop.store(true, Ordering::Relaxed);
    for h in pushers {
        h.join().expect("pusher");
    }
    let mut pulls = 0;
    for h in readers {
        pulls += h.join().expect("reader");
    }
    // After the grace period and more collections, everything
    // acknowledged is there.
    std::thread::sleep(Duration::from_secs(5));
    let acked = acked.lock().expect("acked");
    for (repo, tag, m) in acked.iter() {
        assert_image(&addr, repo, tag, m);
    }
    for d in &orphans {
        assert_eq!(
            get(&addr, &format!("/v2/gc/orphans/blobs/{d}")).status,
            404,
            "an orphan older than the grace period was collected"
        );
    }
    let text = get(&metrics, "/metrics").text();
    let runs = text
        .lines()
        .find_map(|l| l.strip_prefix("wharf_gc_runs_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    eprintln!(
        "gc under load: {} images acknowledged and pullable, {pulls} pulls, {} blobs pushed again after a HEAD said 404, {runs} collections",
        acked.len(),
        repushed.load(Ordering::Relaxed)
    );
    assert!(runs >= 10.0, "collections ran: {runs}\n{text}");
    assert!(acked.len() >= 8, "too little was pushed");
}

/// A blob stream read slowly: (status, Content-Length, bytes received,
/// digest of what was received).
fn slow_pull(addr: &str, path: &str) -> (u16, u64, u64, String) {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return (0, 0, 0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    let mut head = Vec::new();
    let mut buf = vec![0u8; 32 << 10];
    let mut d = Digester::new(Algorithm::Sha256);
    let mut got = 0u64;
    let mut parsed: Option<(u16, u64)> = None;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if parsed.is_none() {
            head.extend_from_slice(&buf[..n]);
            let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let r = crate::client::parse_head(&head).expect("head");
            let len = r
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            parsed = Some((r.status, len));
            let body = &head[end + 4..];
            d.update(body);
            got += body.len() as u64;
        } else {
            d.update(&buf[..n]);
            got += n as u64;
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (status, len) = parsed.unwrap_or((0, 0));
    (status, len, got, d.finish().to_string())
}

/// A delete (of the image and the blob's link, then online GC removing
/// the content) during 100
/// concurrent slow pulls of the blob: every stream either completes with
/// the right bytes or stops short with a correct prefix, never mixed or
/// wrong bytes; later pulls get 404.
#[test]
fn delete_during_100_concurrent_pulls_never_serves_wrong_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let w = Wharf::start_env(
        dir,
        &data,
        &[],
        &[
            ("WHARF_GC__INTERVAL_SECS", "1"),
            ("WHARF_GC__GRACE_SECS", "4"),
        ],
        false,
    );
    let addr = w.addr.clone();
    let mut rng = Rng::new(36);
    let blob = Arc::new(rng.bytes(4 << 20));
    // In an image, so that it is kept until the delete; older than the
    // grace period by then.
    let (manifest, _) = push_image(&addr, "del/app", "v1", &blob);
    let d = sha256(&blob);
    std::thread::sleep(Duration::from_millis(4200));
    let path = format!("/v2/del/app/blobs/{d}");
    let barrier = Arc::new(Barrier::new(101));
    let pulls: Vec<_> = (0..100)
        .map(|_| {
            let (addr, path, barrier) = (addr.clone(), path.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                slow_pull(&addr, &path)
            })
        })
        .collect();
    barrier.wait();
    std::thread::sleep(Duration::from_millis(300));
    let r = raw_request(
        &addr,
        "DELETE",
        &format!("/v2/del/app/manifests/{manifest}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = raw_request(&addr, "DELETE", &path, &[], b"");
    assert_eq!(r.status, 202, "{}", r.text());
    // The collector removes the content within a few seconds.
    let hex = &d["sha256:".len()..];
    assert!(
        crate::client::eventually(15, || !files_under(&data.join("blobs"))
            .iter()
            .any(|p| p.ends_with(hex))),
        "the content was collected"
    );
    let (mut whole, mut short, mut refused) = (0, 0, 0);
    for h in pulls {
        let (status, len, got, digest) = h.join().expect("pull");
        match status {
            200 => {
                assert_eq!(len, blob.len() as u64);
                if got == len {
                    assert_eq!(digest, d, "a complete stream with wrong bytes");
                    whole += 1;
                } else {
                    assert!(got < len, "more bytes than announced");
                    assert_eq!(
                        digest,
                        sha256(&blob[..got as usize]),
                        "a cut stream with wrong bytes"
                    );
                    short += 1;
                }
            }
            404 => refused += 1,
            s => panic!("pull answered {s}"),
        }
    }
    eprintln!("delete during pulls: {whole} complete, {short} cut short, {refused} refused (404)");
    assert!(whole > 0, "some pulls were in flight across the delete");
    assert_eq!(get(&addr, &path).status, 404);
}
