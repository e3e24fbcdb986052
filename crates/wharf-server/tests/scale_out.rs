//! Scale-out: two `wharf` nodes on one bucket of a real three-node Garage
//! cluster (replication factor 3). Any node serves any request: upload
//! sessions, manifests and tags written through one node are seen by the
//! other at once; online garbage collection on one node loses nothing the
//! other is pushing; losing a Garage node does not stop pushes or pulls.
//!
//! Needs the `garage` binary (`cargo install --locked garage`); `.ci/run`
//! installs it and runs these with `--ignored`.

mod scale_out_support;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use scale_out_support::*;
use wharf_storage_s3::testing::GarageCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn chunked_upload_moves_between_nodes() {
    let cluster = shared_cluster().await;
    let p = prefix("chunked");
    let a = Node::start(&cluster, 0, &p, &[]);
    let b = Node::start(&cluster, 1, &p, &[]);
    let c = client();
    let repo = "team/app";

    // Chunks below and above the 5 MiB S3 part minimum, on both nodes.
    let parts = [
        pattern(3 << 20, 1),
        pattern(6 << 20, 2),
        pattern(100_000, 3),
        pattern(1 << 20, 4),
    ];
    let mut whole = BytesMut::new();
    for p in &parts {
        whole.extend_from_slice(p);
    }
    let whole = whole.freeze();
    let d = sha256(&whole);

    let session = start_upload(&c, &a.url, repo).await;
    let (session, len) = patch_chunk(&c, &a.url, &session, 0, &parts[0]).await;
    assert_eq!(len, parts[0].len() as u64);
    // B sees the session A started, at the length A acknowledged.
    assert_eq!(upload_offset(&c, &b.url, &session).await, len);
    let (session, len) = patch_chunk(&c, &b.url, &session, len, &parts[1]).await;
    let (session, len) = patch_chunk(&c, &b.url, &session, len, &parts[2]).await;
    assert_eq!(upload_offset(&c, &a.url, &session).await, len);
    // A chunk at a stale offset is refused wherever it lands. (Its own
    // client: the server answers without reading the body and closes the
    // connection, which must not be reused.)
    let r = client()
        .patch(format!("{}{session}", a.url))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("0-{}", parts[3].len() - 1))
        .body(parts[3].clone())
        .send()
        .await
        .expect("stale patch");
    assert_eq!(
        r.status(),
        StatusCode::RANGE_NOT_SATISFIABLE,
        "stale offset"
    );
    finish_upload(&c, &a.url, &session, &d, parts[3].clone()).await;

    for node in [&a, &b] {
        let (status, got) = get_blob(&c, &node.url, repo, &d).await;
        assert_eq!(status, StatusCode::OK, "blob from {}", node.url);
        assert!(got == whole, "the blob reads back whole from {}", node.url);
    }
    // The session is gone on both nodes.
    for node in [&a, &b] {
        let r = c
            .get(format!("{}{session}", node.url))
            .send()
            .await
            .expect("status");
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "finished session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn manifest_pushed_to_one_node_pulls_from_the_other_at_once() {
    let cluster = shared_cluster().await;
    let p = prefix("pull");
    let a = Node::start(&cluster, 0, &p, &[]);
    let b = Node::start(&cluster, 1, &p, &[]);
    let c = client();
    for i in 0..5u64 {
        let image = Image::new(100 + i, &[200_000, 3 << 20]);
        let repo = format!("pull/app{i}");
        image.push(&c, &a.url, &repo, "v1").await;
        // Immediately, with no retry: read-after-write across nodes.
        image.verify(&c, &b.url, &repo, "v1").await;
        image
            .verify(&c, &b.url, &repo, image.digest().as_ref())
            .await;
    }
    // The catalog on B lists what A pushed.
    let r = c
        .get(format!("{}/v2/_catalog", b.url))
        .send()
        .await
        .expect("catalog");
    let v: serde_json::Value = r.json().await.expect("catalog json");
    let repos: Vec<&str> = v["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(
        repos,
        [
            "pull/app0",
            "pull/app1",
            "pull/app2",
            "pull/app3",
            "pull/app4"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn tag_moved_on_one_node_is_seen_on_the_other() {
    let cluster = shared_cluster().await;
    let p = prefix("tags");
    let a = Node::start(&cluster, 0, &p, &[]);
    let b = Node::start(&cluster, 2, &p, &[]);
    let c = client();
    let repo = "tags/app";
    let first = Image::new(200, &[50_000]);
    let second = Image::new(201, &[60_000]);
    first.push(&c, &a.url, repo, "latest").await;
    first.verify(&c, &b.url, repo, "latest").await;
    second.push(&c, &b.url, repo, "latest").await;
    second.verify(&c, &a.url, repo, "latest").await;
    // And back again, several times, alternating nodes.
    for round in 0..4 {
        let (img, writer, reader) = if round % 2 == 0 {
            (&first, &a, &b)
        } else {
            (&second, &b, &a)
        };
        put_manifest(&c, &writer.url, repo, "latest", &img.manifest).await;
        let (status, body) = get_manifest(&c, &reader.url, repo, "latest").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == img.manifest, "round {round}: the moved tag");
    }
    put_manifest(&c, &b.url, repo, "v2", &second.manifest).await;
    assert_eq!(tags(&c, &a.url, repo).await, ["latest", "v2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn gc_on_one_node_while_the_other_takes_pushes_loses_nothing() {
    let cluster = shared_cluster().await;
    let p = prefix("gc");
    // A collects online every second with a 4 s grace period; B takes pushes.
    let a = Node::start(
        &cluster,
        0,
        &p,
        &[
            ("WHARF_GC__INTERVAL_SECS", "1"),
            ("WHARF_GC__GRACE_SECS", "4"),
        ],
    );
    let b = Node::start(&cluster, 1, &p, &[]);
    let c = client();
    let base = Image::new(300, &[500_000]);
    base.push(&c, &b.url, "gc/base", "latest").await;
    // Garbage: blobs linked to a repository but referenced by no manifest.
    let mut garbage = Vec::new();
    for i in 0..5 {
        garbage.push(push_blob(&c, &b.url, "gc/app0", &pattern(10_000 + i, 900 + i as u64)).await);
    }

    let deadline = Instant::now() + Duration::from_secs(12);
    let mut pushed = Vec::new();
    let mut i = 0u64;
    while Instant::now() < deadline {
        let repo = format!("gc/app{}", i % 3);
        // Each image has a layer of its own, pushed in chunks, and shares
        // the base image's layer, pushed again (the node finds it stored).
        let mut image = Image::new(400 + i, &[1_500_000]);
        image.layers.push(base.layers[0].clone());
        image = rebuild(image);
        let tag = format!("t{i}");
        image.push(&c, &b.url, &repo, &tag).await;
        pushed.push((repo, tag, image));
        i += 1;
    }
    assert!(pushed.len() >= 5, "only {} pushes", pushed.len());
    // Everything pushed pulls completely, from both nodes, now and after
    // the collector ran past the grace period.
    for (repo, tag, image) in &pushed {
        image.verify(&c, &a.url, repo, tag).await;
    }
    tokio::time::sleep(Duration::from_secs(7)).await;
    for (repo, tag, image) in &pushed {
        image.verify(&c, &a.url, repo, tag).await;
        image.verify(&c, &b.url, repo, tag).await;
    }
    base.verify(&c, &b.url, "gc/base", "latest").await;
    // The collector did run: the garbage is gone.
    for d in &garbage {
        let (status, _) = get_blob(&c, &b.url, "gc/app0", d).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "garbage {d} was collected");
    }
    assert!(
        !a.log().contains("ERROR"),
        "node A logged errors:\n{}",
        a.log()
    );
}

/// The manifest of `image` after its layers changed.
fn rebuild(mut image: Image) -> Image {
    let mut v: serde_json::Value = serde_json::from_slice(&image.manifest).expect("json");
    v["layers"] = image
        .layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(l).to_string(),
                "size": l.len(),
            })
        })
        .collect();
    image.manifest = Bytes::from(serde_json::to_vec(&v).expect("json"));
    image
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn pushes_and_pulls_continue_when_a_garage_node_dies() {
    // A cluster of its own: this test kills one of its nodes.
    let cluster = tokio::task::spawn_blocking(|| GarageCluster::start(3))
        .await
        .expect("join")
        .map(std::sync::Arc::new)
        .unwrap_or_else(|e| panic!("garage: {e}"));
    let p = prefix("failover");
    // A talks to Garage node 3 first and knows the others; B only node 2.
    let endpoints = cluster.config_all(2, &p).endpoint;
    let a = Node::start(
        &cluster,
        2,
        &p,
        &[("WHARF_STORAGE__S3_ENDPOINT", endpoints.as_str())],
    );
    let b = Node::start(&cluster, 1, &p, &[]);
    let c = client();
    let before: Vec<Image> = (0..3)
        .map(|i| Image::new(500 + i, &[300_000, 2 << 20]))
        .collect();
    for (i, image) in before.iter().enumerate() {
        image
            .push(&c, &a.url, "failover/app", &format!("before{i}"))
            .await;
    }

    cluster.kill_node(2).expect("kill garage node 3");
    let killed = Instant::now();

    // Pushes and pulls through both nodes go on at once (2 of 3 replicas
    // are a quorum; A moves on to the next endpoint), including a chunked
    // upload that changes node.
    for (i, image) in before.iter().enumerate() {
        image
            .verify(&c, &b.url, "failover/app", &format!("before{i}"))
            .await;
    }
    let after: Vec<Image> = (0..4)
        .map(|i| Image::new(600 + i, &[100_000, 3 << 20]))
        .collect();
    for (i, image) in after.iter().enumerate() {
        let (writer, reader) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        image
            .push(&c, &writer.url, "failover/app", &format!("after{i}"))
            .await;
        image
            .verify(&c, &reader.url, "failover/app", &format!("after{i}"))
            .await;
    }
    let data = pattern(7 << 20, 650);
    let session = start_upload(&c, &a.url, "failover/app").await;
    let (session, len) = patch_chunk(&c, &a.url, &session, 0, &data.slice(..(2 << 20))).await;
    finish_upload(
        &c,
        &b.url,
        &session,
        &sha256(&data),
        data.slice(len as usize..),
    )
    .await;
    let (status, got) = get_blob(&c, &a.url, "failover/app", &sha256(&data)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        got == data,
        "chunked upload across nodes with a garage node down"
    );
    eprintln!(
        "with garage node 3 down: {} pushes and pulls in {:?}",
        after.len() + 1,
        killed.elapsed()
    );

    // The node comes back; everything is still there, also through a
    // wharf node that talks to it.
    let restarted = cluster.clone();
    tokio::task::spawn_blocking(move || restarted.restart_node(2))
        .await
        .expect("join")
        .expect("restart garage node 3");
    let c3 = Node::start(&cluster, 2, &p, &[]);
    for (i, image) in after.iter().enumerate() {
        image
            .verify(&c, &c3.url, "failover/app", &format!("after{i}"))
            .await;
    }
}

/// Push and pull throughput through one node and through two nodes at
/// once (numbers printed; no assertion on speed). `WHARF_BIN` may name a
/// release build of the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn throughput_one_and_two_nodes() {
    let cluster = shared_cluster().await;
    let p = prefix("throughput");
    let a = Node::start(&cluster, 0, &p, &[]);
    let b = Node::start(&cluster, 1, &p, &[]);
    let c = client();
    let blob_size = 16 << 20;
    let blobs = 12;
    let concurrency = 4;

    for (label, nodes) in [("one node", vec![&a]), ("two nodes", vec![&a, &b])] {
        let seed = if nodes.len() == 1 { 10_000 } else { 20_000 };
        let data: Vec<Bytes> = (0..blobs).map(|i| pattern(blob_size, seed + i)).collect();
        let started = Instant::now();
        let results = futures::future::join_all((0..concurrency).map(|w| {
            let (c, data, nodes) = (c.clone(), data.clone(), nodes.clone());
            async move {
                let mut i = w;
                while i < data.len() {
                    let node = nodes[i % nodes.len()];
                    push_blob(&c, &node.url, "bench/app", &data[i]).await;
                    i += concurrency;
                }
            }
        }))
        .await;
        drop(results);
        let push = started.elapsed();
        let started = Instant::now();
        futures::future::join_all((0..concurrency).map(|w| {
            let (c, data, nodes) = (c.clone(), data.clone(), nodes.clone());
            async move {
                let mut i = w;
                while i < data.len() {
                    // Pull through the node that did not push it, if any.
                    let node = nodes[(i + 1) % nodes.len()];
                    let (status, got) =
                        get_blob(&c, &node.url, "bench/app", &sha256(&data[i])).await;
                    assert_eq!(status, StatusCode::OK);
                    assert_eq!(got.len(), data[i].len());
                    i += concurrency;
                }
            }
        }))
        .await;
        let pull = started.elapsed();
        let mib = (blobs * blob_size as u64) as f64 / (1 << 20) as f64;
        eprintln!(
            "throughput {label}: push {:.1} MiB/s, pull {:.1} MiB/s ({blobs} blobs of {} MiB, {concurrency} at a time)",
            mib / push.as_secs_f64(),
            mib / pull.as_secs_f64(),
            blob_size >> 20
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn blob_reads_redirect_to_presigned_urls_when_configured() {
    let cluster = shared_cluster().await;
    let p = prefix("redirect");
    let a = Node::start(
        &cluster,
        0,
        &p,
        &[("WHARF_STORAGE__S3_REDIRECT_SECS", "300")],
    );
    let c = client();
    let data = pattern(2 << 20, 700);
    let d = push_blob(&c, &a.url, "redirect/app", &data).await;
    let no_follow = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let r = no_follow
        .get(format!("{}/v2/redirect/app/blobs/{d}", a.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        location.starts_with(&cluster.endpoint(0)) && location.contains("X-Amz-Signature="),
        "{location}"
    );
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    // The object store serves the bytes without credentials.
    let got = no_follow.get(&location).send().await.expect("presigned");
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().await.expect("body") == data);
    // A client that follows redirects just gets the blob.
    let (status, got) = get_blob(&c, &a.url, "redirect/app", &d).await;
    assert_eq!(status, StatusCode::OK);
    assert!(got == data);
    // Not linked to another repository: no redirect, no URL.
    let r = no_follow
        .get(format!("{}/v2/redirect/other/blobs/{d}", a.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Ranged reads and HEAD are served by the node.
    let r = no_follow
        .get(format!("{}/v2/redirect/app/blobs/{d}", a.url))
        .header("range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert!(r.bytes().await.expect("body") == data.slice(10..20));
    let r = no_follow
        .head(format!("{}/v2/redirect/app/blobs/{d}", a.url))
        .send()
        .await
        .expect("head");
    assert_eq!(r.status(), StatusCode::OK);
}
