//! Hashing (1 KiB .. 64 MiB) and manifest parsing.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use wharf_types::{Algorithm, Digest, Digester, Manifest, RepositoryName};

fn hashing(c: &mut Criterion) {
    let mut group = c.benchmark_group("sha256");
    for size in [1 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20] {
        let data = vec![0x5au8; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 16 << 20 {
            group.sample_size(10);
        }
        group.bench_with_input(BenchmarkId::from_parameter(size), &data, |b, data| {
            b.iter(|| {
                let mut d = Digester::new(Algorithm::Sha256);
                for chunk in data.chunks(256 << 10) {
                    d.update(chunk);
                }
                black_box(d.finish())
            })
        });
    }
    group.finish();
}

fn manifest_json(layers: usize) -> Bytes {
    let desc = |mt: &str, i: usize| {
        serde_json::json!({
            "mediaType": mt,
            "digest": Digest::sha256(&i.to_le_bytes()).to_string(),
            "size": 1000 + i,
        })
    };
    let doc = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc("application/vnd.oci.image.config.v1+json", 0),
        "layers": (1..=layers).map(|i| desc("application/vnd.oci.image.layer.v1.tar+gzip", i)).collect::<Vec<_>>(),
        "annotations": {"org.opencontainers.image.created": "2026-01-01T00:00:00Z"},
    });
    Bytes::from(serde_json::to_vec(&doc).expect("serializes"))
}

fn parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("manifest_parse");
    for layers in [1, 10, 100] {
        let raw = manifest_json(layers);
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_with_input(BenchmarkId::new("layers", layers), &raw, |b, raw| {
            b.iter(|| black_box(Manifest::parse(raw.clone(), None).expect("valid")))
        });
    }
    group.finish();

    c.bench_function("repository_name_parse", |b| {
        b.iter(|| {
            black_box(RepositoryName::parse(black_box(
                "team-a/project__x/service.web-frontend",
            )))
        })
    });
    let d = Digest::sha256(b"x").to_string();
    c.bench_function("digest_parse", |b| {
        b.iter(|| black_box(Digest::parse(black_box(&d))))
    });
}

criterion_group!(benches, hashing, parsing);
criterion_main!(benches);
