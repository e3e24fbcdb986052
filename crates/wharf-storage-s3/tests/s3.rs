//! S3-specific behaviour on a real three-node Garage cluster, beyond the
//! shared conformance suite: staged writes large enough to be composed
//! from server-side copies and streamed parts, rewinds into the middle of
//! a segment, presigned URLs, the multipart upload sweep, and nodes that
//! see each other's stages at once.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use wharf_storage::{Backend, BackendExt, ByteStream};
use wharf_storage_s3::S3Backend;
use wharf_storage_s3::testing::GarageCluster;
use wharf_types::{Digest, UploadId};

async fn cluster() -> Arc<GarageCluster> {
    tokio::task::spawn_blocking(GarageCluster::shared)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("garage: {e}"))
}

fn backend(cluster: &GarageCluster, node: usize, prefix: &str) -> S3Backend {
    S3Backend::new(cluster.config(node, prefix)).unwrap_or_else(|e| panic!("{e}"))
}

fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// `data` as a stream of `chunk`-sized pieces.
fn stream(data: &Bytes, chunk: usize) -> ByteStream {
    let pieces: Vec<_> = (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    futures::stream::iter(pieces).boxed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn large_staged_writes_compose_from_copies_and_streamed_parts() {
    let cluster = cluster().await;
    let prefix = format!("s3-tests/compose-{}", UploadId::random());
    let a = backend(&cluster, 0, &prefix);
    let b = backend(&cluster, 1, &prefix);
    let mib = 1 << 20;
    // Chunks: 20 MiB (segments of 8, 8, 4), then small ones (1 MiB and
    // less) through the other node, a rewind into the middle of the big
    // chunk's last segment, and 9 MiB more.
    let id = UploadId::random();
    let big = pattern(20 * mib, 1);
    assert_eq!(
        a.stage_append(&id, 0, stream(&big, 64 * 1024))
            .await
            .expect("append"),
        20 * mib as u64
    );
    let mut expected = BytesMut::from(&big[..]);
    let mut at = 20 * mib as u64;
    for i in 0..6 {
        let small = pattern(mib - 1000 * i, 10 + i as u64);
        at = b
            .stage_append(&id, at, stream(&small, 100_000))
            .await
            .expect("small append");
        expected.extend_from_slice(&small);
    }
    // Rewind to 18 MiB (inside the third segment) and write 9 MiB.
    let rewind = 18 * mib;
    expected.truncate(rewind);
    let tail = pattern(9 * mib, 99);
    let end = a
        .stage_append(&id, rewind as u64, stream(&tail, mib))
        .await
        .expect("rewind");
    expected.extend_from_slice(&tail);
    assert_eq!(end, expected.len() as u64);
    let stages = b.stage_list().await.expect("stage_list");
    assert_eq!(stages.iter().find(|s| s.id == id).map(|s| s.len), Some(end));

    // Commit all but the last 3 bytes, through the other node.
    let len = end - 3;
    let content = expected.freeze().slice(..len as usize);
    let digest = Digest::sha256(&content);
    b.stage_commit(&id, len, &digest).await.expect("commit");
    let read = a.blob_bytes(&digest).await.expect("read");
    assert!(
        read == content,
        "composed blob differs ({} bytes read)",
        read.len()
    );
    assert_eq!(a.blob_stat(&digest).await.expect("stat").size, len);
    // Ranged reads across part boundaries.
    for r in [0..10, 8 * mib as u64 - 5..8 * mib as u64 + 5, len - 7..len] {
        let chunks: Vec<Bytes> = a
            .blob_read(&digest, Some(r.clone()))
            .await
            .expect("range")
            .map(|c| c.expect("chunk"))
            .collect()
            .await;
        let got: Vec<u8> = chunks.concat();
        assert_eq!(
            got,
            &content[r.start as usize..r.end as usize],
            "range {r:?}"
        );
    }
    // Nothing of the stage is left, and no multipart upload either.
    assert!(
        a.stage_list()
            .await
            .expect("list")
            .iter()
            .all(|s| s.id != id)
    );
    assert_eq!(
        a.abort_stale_multipart_uploads(Duration::ZERO)
            .await
            .expect("sweep"),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn presigned_urls_read_blobs_without_credentials() {
    let cluster = cluster().await;
    let prefix = format!("s3-tests/presign-{}", UploadId::random());
    let a = backend(&cluster, 0, &prefix);
    let data = pattern(300_000, 5);
    let digest = Digest::sha256(&data);
    a.blob_put(&digest, data.clone()).await.expect("put");
    let url = a.presigned_blob_url(&digest, Duration::from_secs(60));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let got = http.get(&url).send().await.expect("get");
    assert_eq!(got.status(), 200, "presigned GET");
    assert!(got.bytes().await.expect("body") == data);
    // A tampered signature is refused.
    let bad = format!("{}0", url.trim_end_matches(|c: char| c.is_ascii_hexdigit()));
    let got = http.get(&bad).send().await.expect("get");
    assert_eq!(got.status(), 403, "tampered presigned GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs garage (cargo install garage); run by .ci/run"]
async fn wrong_credentials_and_missing_buckets_are_errors_not_absence() {
    let cluster = cluster().await;
    let mut config = cluster.config(0, "s3-tests/errors");
    config.secret_access_key = "0".repeat(64);
    config.max_retries = 0;
    let bad = S3Backend::new(config).expect("config");
    let e = bad
        .meta_get(&wharf_storage::Key::parse("x/y").expect("key"))
        .await
        .expect_err("bad secret");
    assert!(!e.is_not_found(), "a refused request is not NotFound: {e}");
    assert!(bad.check().await.is_err());
    let mut config = cluster.config(0, "s3-tests/errors");
    config.bucket = "no-such-bucket".into();
    let missing = S3Backend::new(config).expect("config");
    // A GET names the missing bucket; so does the readiness check.
    let e = missing
        .meta_get(&wharf_storage::Key::parse("x/y").expect("key"))
        .await
        .expect_err("no bucket");
    assert!(
        !e.is_not_found(),
        "a missing bucket is not a missing record: {e}"
    );
    let e = missing.check().await.expect_err("check without a bucket");
    assert!(format!("{e}").contains("NoSuchBucket"), "{e}");
}
