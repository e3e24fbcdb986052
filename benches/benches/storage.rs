//! Storage benches on the filesystem backend, each next to the machine
//! reference measured in the same run:
//!
//! - blob put (1 MiB, 256 MiB) vs SHA-256 of the same bytes and vs a durable
//!   sequential write (write + fdatasync) of the same bytes;
//! - blob get (256 MiB);
//! - one page of 100 tags in a 100k-tag repository;
//! - 10k small (4 KiB) blob puts from 16 tasks, and 2k tagged manifest
//!   pushes from 16 tasks.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use wharf_benches::{body, body_digest, chunks, replay};
use wharf_storage::{FsBackend, Store, body_from_bytes};
use wharf_types::{Algorithm, Digester, Manifest, Reference, RepositoryName, Tag};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn bench_dir() -> tempfile::TempDir {
    // Under the target directory: same filesystem as the build, not tmpfs.
    let base = std::env::var("WHARF_BENCH_DIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).expect("bench dir");
    tempfile::tempdir_in(base).expect("tempdir")
}

fn put_blobs(c: &mut Criterion) {
    let rt = runtime();
    let repo: RepositoryName = "bench/put".parse().expect("name");
    for (label, size) in [("1MiB", 1usize << 20), ("256MiB", 256 << 20)] {
        let mut group = c.benchmark_group(format!("blob_put_{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        group.sample_size(10);
        if size > 1 << 20 {
            group.measurement_time(Duration::from_secs(20));
        }
        let chunk = 1 << 20;
        group.bench_function("store_fs_durable", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let dir = bench_dir();
                    let store = Store::new(FsBackend::open(dir.path()).expect("open"));
                    let seed = 1000 + i;
                    let digest = body_digest(size, chunk, seed);
                    let data = chunks(size, chunk, seed);
                    let start = Instant::now();
                    rt.block_on(store.put_blob(&repo, &digest, replay(&data), Some(size as u64)))
                        .expect("put");
                    total += start.elapsed();
                }
                total
            })
        });
        group.bench_function("reference_sha256", |b| {
            let data = vec![0x5au8; size];
            b.iter(|| {
                let mut d = Digester::new(Algorithm::Sha256);
                for piece in data.chunks(chunk) {
                    d.update(piece);
                }
                d.finish()
            })
        });
        group.bench_function("reference_write_fdatasync", |b| {
            let data = vec![0x5au8; chunk];
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = bench_dir();
                    let start = Instant::now();
                    let mut f = std::fs::File::create(dir.path().join("f")).expect("create");
                    for _ in 0..size / chunk {
                        f.write_all(&data).expect("write");
                    }
                    f.sync_data().expect("sync");
                    total += start.elapsed();
                }
                total
            })
        });
        group.finish();
    }
}

fn get_blob(c: &mut Criterion) {
    let rt = runtime();
    let dir = bench_dir();
    let store = Store::new(FsBackend::open(dir.path()).expect("open"));
    let repo: RepositoryName = "bench/get".parse().expect("name");
    let size = 256usize << 20;
    let digest = body_digest(size, 1 << 20, 7);
    rt.block_on(store.put_blob(&repo, &digest, body(size, 1 << 20, 7), None))
        .expect("put");
    let mut group = c.benchmark_group("blob_get_256MiB");
    group.throughput(Throughput::Bytes(size as u64));
    group.sample_size(10);
    group.bench_function("store_fs", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut reader = store.read_blob(&repo, &digest, None).await.expect("read");
                let mut n = 0usize;
                while let Some(chunk) = reader.stream.next().await {
                    n += chunk.expect("chunk").len();
                }
                assert_eq!(n, size);
            })
        })
    });
    group.finish();
}

fn tag_list(c: &mut Criterion) {
    let rt = runtime();
    let dir = bench_dir();
    let store = Store::new(FsBackend::open(dir.path()).expect("open"));
    let repo: RepositoryName = "bench/tags".parse().expect("name");
    let raw = bytes::Bytes::from_static(
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    );
    let manifest = Arc::new(Manifest::parse(raw, None).expect("manifest"));
    let tags = 100_000usize;
    rt.block_on(async {
        // Concurrent pushes share fsyncs through the backend's group commit.
        futures::stream::iter(0..tags)
            .map(|i| {
                let store = store.clone();
                let repo = repo.clone();
                let manifest = manifest.clone();
                async move {
                    let tag: Tag = format!("v{i:06}").parse().expect("tag");
                    store
                        .put_manifest(&repo, &Reference::Tag(tag), &manifest)
                        .await
                        .expect("put tag");
                }
            })
            .buffer_unordered(256)
            .collect::<Vec<_>>()
            .await;
    });
    let last: Tag = "v050000".parse().expect("tag");
    c.bench_function("tag_list_100k_page_100", |b| {
        b.iter(|| {
            let page = rt
                .block_on(store.list_tags(&repo, Some(&last), 100))
                .expect("list");
            assert_eq!(page.items.len(), 100);
        })
    });
}

fn small_blobs(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("small_blobs");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.bench_function("put_10k_4KiB_16_tasks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for it in 0..iters {
                let dir = bench_dir();
                let store = Store::new(FsBackend::open(dir.path()).expect("open"));
                let repo: RepositoryName = "bench/small".parse().expect("name");
                let blobs: Vec<_> = (0..10_000u32)
                    .map(|i| {
                        let mut data = vec![0u8; 4096];
                        data[..4].copy_from_slice(&i.to_le_bytes());
                        data[4..12].copy_from_slice(&it.to_le_bytes());
                        let data = bytes::Bytes::from(data);
                        (wharf_types::Digest::sha256(&data), data)
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    futures::stream::iter(blobs)
                        .map(|(d, data)| {
                            let store = store.clone();
                            let repo = repo.clone();
                            async move {
                                store
                                    .put_blob(&repo, &d, body_from_bytes(data), Some(4096))
                                    .await
                                    .expect("put");
                            }
                        })
                        .buffer_unordered(16)
                        .collect::<Vec<_>>()
                        .await
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.throughput(Throughput::Elements(2_000));
    group.bench_function("push_2k_tags_16_tasks", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for it in 0..iters {
                let dir = bench_dir();
                let store = Store::new(FsBackend::open(dir.path()).expect("open"));
                let repo: RepositoryName = "bench/tags".parse().expect("name");
                // Distinct small manifests (empty indexes, so nothing to
                // upload first), each under its own tag.
                let manifests: Vec<_> = (0..2_000u32)
                    .map(|i| {
                        let raw = format!(
                            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[],"annotations":{{"n":"{it}-{i}"}}}}"#
                        );
                        let tag: Tag = format!("v{i}").parse().expect("tag");
                        let m = Manifest::parse(bytes::Bytes::from(raw), None).expect("manifest");
                        (tag, m)
                    })
                    .collect();
                let start = Instant::now();
                rt.block_on(async {
                    futures::stream::iter(manifests)
                        .map(|(tag, m)| {
                            let store = store.clone();
                            let repo = repo.clone();
                            async move {
                                store
                                    .put_manifest(&repo, &Reference::Tag(tag), &m)
                                    .await
                                    .expect("push");
                            }
                        })
                        .buffer_unordered(16)
                        .collect::<Vec<_>>()
                        .await
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, put_blobs, get_blob, tag_list, small_blobs);
criterion_main!(benches);
