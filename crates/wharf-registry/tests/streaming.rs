//! Bodies stream both ways: pushing and pulling a 1 GiB blob through the
//! service (filesystem backend) keeps the process's peak memory growth to a
//! few buffers, far below the blob size. Alone in its file so it runs in its
//! own process and the peak-RSS reading is its own.

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use tower::ServiceExt;
use wharf_registry::Registry;
use wharf_storage::{FsBackend, Store};
use wharf_types::{Algorithm, Digester};

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    line.split_whitespace()
        .nth(1)
        .and_then(|kb| kb.parse::<u64>().ok())
        .expect("number")
        * 1024
}

/// 1 GiB in 256 KiB chunks: one pseudo-random block, each chunk stamped
/// with its index so no two chunks are equal.
fn chunks() -> impl Iterator<Item = Bytes> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 256 * 1024];
    for w in block.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        w.copy_from_slice(&state.to_le_bytes());
    }
    (0..4096u64).map(move |i| {
        let mut chunk = block.clone();
        chunk[..8].copy_from_slice(&i.to_le_bytes());
        Bytes::from(chunk)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_push_and_pull_with_bounded_memory() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let registry =
        Registry::builder(Store::new(FsBackend::open(dir.path()).expect("open"))).build();
    let mut d = Digester::new(Algorithm::Sha256);
    for c in chunks() {
        d.update(&c);
    }
    let digest = d.finish();
    let baseline = peak_rss();

    let body = StreamBody::new(futures::stream::iter(
        chunks().map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(c))),
    ));
    let req = http::Request::post(format!("/v2/big/blobs/uploads/?digest={digest}"))
        .header("content-length", (1u64 << 30).to_string())
        .body(body)
        .expect("request");
    let resp = registry.clone().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 201);

    let req = http::Request::get(format!("/v2/big/blobs/{digest}"))
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let resp = registry.oneshot(req).await.expect("infallible");
    assert_eq!(resp.status(), 200);
    let mut stream = resp.into_body().into_data_stream();
    let mut pulled = Digester::new(Algorithm::Sha256);
    while let Some(chunk) = stream.next().await {
        pulled.update(&chunk.expect("chunk"));
    }
    assert_eq!(pulled.len(), 1 << 30);
    assert_eq!(pulled.finish(), digest);

    let growth = peak_rss().saturating_sub(baseline);
    assert!(
        growth < 64 << 20,
        "peak RSS grew by {} MiB while streaming 1 GiB",
        growth >> 20
    );
}
