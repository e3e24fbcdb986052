//! Peak RSS of blob puts through the store on the filesystem backend, in a
//! fresh process per run.
//!
//! One large blob, for two sizes in separate processes, to show that
//! memory does not grow with blob size:
//!
//! ```text
//! cargo run --release -p wharf-benches --bin storage-rss -- 64
//! cargo run --release -p wharf-benches --bin storage-rss -- 1024
//! ```
//!
//! Many small blobs (`many COUNT SIZE_KIB [INLINE_KIB]`, 16 concurrent
//! puts), to show what blobs stored inline in the metadata database cost
//! in memory, against a lower inline threshold:
//!
//! ```text
//! cargo run --release -p wharf-benches --bin storage-rss -- many 1500 256
//! cargo run --release -p wharf-benches --bin storage-rss -- many 1500 256 64
//! ```

use std::sync::Arc;
use std::time::Instant;

use wharf_benches::{body, body_digest, peak_rss};
use wharf_storage::{FsBackend, FsOptions, Store};

const CONCURRENCY: usize = 16;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let base = std::env::var("WHARF_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    let dir = tempfile::tempdir_in(base).expect("tempdir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let arg = |i: usize| args.get(i).and_then(|s| s.parse::<u64>().ok());
    if args.first().map(String::as_str) == Some("many") {
        let count = arg(1).unwrap_or(1500);
        let size = arg(2).unwrap_or(256) << 10;
        let mut options = FsOptions::default();
        if let Some(kib) = arg(3) {
            options = options.with_inline_threshold(kib << 10);
        }
        let threshold = options.inline_threshold;
        let before = peak_rss().unwrap_or(0);
        let store = Arc::new(Store::new(
            FsBackend::open_with(dir.path(), options).expect("open"),
        ));
        let start = Instant::now();
        rt.block_on(async {
            let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let tasks: Vec<_> = (0..CONCURRENCY)
                .map(|_| {
                    let (store, next) = (store.clone(), next.clone());
                    tokio::spawn(async move {
                        let repo = "bench/rss".parse().expect("name");
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            if i >= count {
                                break;
                            }
                            let n = size as usize;
                            let digest = body_digest(n, n, i + 1);
                            store
                                .put_blob(&repo, &digest, body(n, n, i + 1), Some(size))
                                .await
                                .expect("put");
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
        });
        let secs = start.elapsed().as_secs_f64();
        println!(
            "put {count} x {} KiB (inline threshold {} KiB) in {secs:.2} s; peak RSS {:.1} MiB (before: {:.1} MiB)",
            size >> 10,
            threshold >> 10,
            mib(peak_rss().unwrap_or(0)),
            mib(before)
        );
        return;
    }
    let size_mib = arg(0).unwrap_or(1024) as usize;
    let size = size_mib << 20;
    let chunk = 1 << 20;
    let digest = body_digest(size, chunk, 42);
    let before = peak_rss().unwrap_or(0);
    let store = Store::new(FsBackend::open(dir.path()).expect("open"));
    let repo = "bench/rss".parse().expect("name");
    let start = Instant::now();
    rt.block_on(store.put_blob(&repo, &digest, body(size, chunk, 42), Some(size as u64)))
        .expect("put");
    let secs = start.elapsed().as_secs_f64();
    println!(
        "put {size_mib} MiB in {secs:.2} s ({:.0} MB/s); peak RSS {:.1} MiB (before the put: {:.1} MiB)",
        size as f64 / secs / 1e6,
        mib(peak_rss().unwrap_or(0)),
        mib(before)
    );
}
