//! Scanning images stored in a registry store, with results attached as
//! referrers.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use bytes::Bytes;
use common::*;
use wharf_scan::image::{attach, inventory, is_scannable, latest_artifact, latest_report, scan};
use wharf_scan::report::REPORT_MEDIA_TYPE;
use wharf_scan::sbom::{CYCLONEDX_MEDIA_TYPE, SPDX_MEDIA_TYPE};
use wharf_scan::{AdvisoryDb, Limits};
use wharf_storage::{MemoryBackend, Store, body_from_bytes};
use wharf_types::{Digest, Manifest, MediaType, Reference, RepositoryName};

async fn put_blob(store: &Store, repo: &RepositoryName, data: Vec<u8>) -> (Digest, u64) {
    let d = Digest::sha256(&data);
    let n = data.len() as u64;
    store
        .put_blob(repo, &d, body_from_bytes(Bytes::from(data)), Some(n))
        .await
        .unwrap();
    (d, n)
}

/// Pushes an image (config + layers) and returns its manifest digest.
async fn push_image(store: &Store, repo: &RepositoryName, layers: Vec<(Vec<u8>, &str)>) -> Digest {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let (cd, cn) = put_blob(store, repo, config).await;
    let mut descs = Vec::new();
    for (data, mt) in layers {
        let (d, n) = put_blob(store, repo, data).await;
        descs.push(serde_json::json!({"mediaType": mt, "digest": d.to_string(), "size": n}));
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cn},
        "layers": descs,
    });
    let m = Manifest::parse(Bytes::from(serde_json::to_vec(&m).unwrap()), None).unwrap();
    assert!(is_scannable(&m));
    store
        .put_manifest(repo, &Reference::Tag("v1".parse().unwrap()), &m)
        .await
        .unwrap();
    m.digest().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_attach_and_rescan_through_the_store() {
    let store = Store::new(MemoryBackend::new());
    let repo: RepositoryName = "app/web".parse().unwrap();
    let base = Layer::new()
        .file("etc/os-release", DEBIAN_OS_RELEASE)
        .file("var/lib/dpkg/status", DPKG_STATUS)
        .gzip();
    let app = Layer::new()
        .file("srv/web/package-lock.json", PACKAGE_LOCK)
        .file(
            "usr/lib/python3/dist-packages/requests-2.25.1.dist-info/METADATA",
            REQUESTS_METADATA,
        )
        .zstd();
    let digest = push_image(
        &store,
        &repo,
        vec![
            (base, "application/vnd.oci.image.layer.v1.tar+gzip"),
            (app, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ],
    )
    .await;

    let limits = Limits::default();
    let inv = inventory(&store, &repo, &digest, &limits).await.unwrap();
    assert_eq!(inv.packages.len(), 7);

    // Only the npm advisories first.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv");
    let partial = tempfile::tempdir().unwrap();
    for id in ["GHSA-35jh-r3h4-6jhm", "GHSA-p6mc-m468-83gw"] {
        std::fs::copy(
            fixtures.join(format!("{id}.json")),
            partial.path().join(format!("{id}.json")),
        )
        .unwrap();
    }
    let db = AdvisoryDb::load(partial.path()).unwrap();
    let (report, inv) = scan(&store, &repo, &digest, &db, &limits, None)
        .await
        .unwrap();
    assert_eq!(report.summary.total, 2);
    let attached = attach(&store, &repo, &report, Some(&inv)).await.unwrap();

    let all = store
        .list_referrers(&repo, &digest, None, None, 100)
        .await
        .unwrap();
    let mut types: Vec<String> = all
        .items
        .iter()
        .map(|d| d.artifact_type.as_ref().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [SPDX_MEDIA_TYPE, CYCLONEDX_MEDIA_TYPE, REPORT_MEDIA_TYPE]
    );
    let (cdx_digest, cdx) = latest_artifact(&store, &repo, &digest, CYCLONEDX_MEDIA_TYPE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(cdx_digest), attached.cyclonedx);
    let cdx: serde_json::Value = serde_json::from_slice(&cdx).unwrap();
    assert_eq!(cdx["components"].as_array().unwrap().len(), 7);
    let stored = latest_report(&store, &repo, &digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, report);
    // The attached artifacts are manifests whose subject is the image.
    let m = store
        .get_manifest(&repo, &Reference::Digest(attached.report.clone()))
        .await
        .unwrap();
    let m = Manifest::parse(m.bytes, Some(m.info.media_type.as_str())).unwrap();
    assert_eq!(m.subject().unwrap().digest, digest);
    assert_eq!(
        m.artifact_type(),
        Some(&MediaType::from_static(REPORT_MEDIA_TYPE))
    );
    assert!(!is_scannable(&m));

    // The advisory data changes: the stored inventory is matched again
    // without reading layers, and the new report replaces the old one.
    let full = AdvisoryDb::load(&fixtures).unwrap();
    let (again, _) = scan(&store, &repo, &digest, &full, &limits, Some(&stored))
        .await
        .unwrap();
    assert_eq!(again.summary.total, 4);
    let second = attach(&store, &repo, &again, None).await.unwrap();
    let reports = store
        .list_referrers(
            &repo,
            &digest,
            Some(&MediaType::from_static(REPORT_MEDIA_TYPE)),
            None,
            100,
        )
        .await
        .unwrap();
    assert_eq!(reports.items.len(), 1);
    assert_eq!(reports.items[0].digest, second.report);
    let latest = latest_report(&store, &repo, &digest)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.advisories.fingerprint, full.fingerprint().0);
    let found: Vec<&str> = latest.findings.iter().map(|f| f.id.as_str()).collect();
    assert!(
        found.contains(&"DSA-5532-1") && found.contains(&"GHSA-j8r2-6x86-q33q"),
        "{found:?}"
    );
    // The SBOMs stay.
    assert_eq!(
        store
            .list_referrers(&repo, &digest, None, None, 100)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_layer_fails_the_scan_with_its_digest() {
    let store = Store::new(MemoryBackend::new());
    let repo: RepositoryName = "bad/image".parse().unwrap();
    let digest = push_image(
        &store,
        &repo,
        vec![(
            b"\x1f\x8b\x08\x00not really gzip".to_vec(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )],
    )
    .await;
    let err = inventory(&store, &repo, &digest, &Limits::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("layer sha256:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_is_scanned_through_its_platform_images() {
    let store = Store::new(MemoryBackend::new());
    let repo: RepositoryName = "multi/arch".parse().unwrap();
    let amd64 = push_image(
        &store,
        &repo,
        vec![(
            Layer::new()
                .file("etc/os-release", DEBIAN_OS_RELEASE)
                .file("var/lib/dpkg/status", DPKG_STATUS)
                .gzip(),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        )],
    )
    .await;
    let arm64 = push_image(
        &store,
        &repo,
        vec![(
            Layer::new()
                .file("etc/os-release", ALPINE_OS_RELEASE)
                .file("lib/apk/db/installed", APK_INSTALLED)
                .tar(),
            "application/vnd.oci.image.layer.v1.tar",
        )],
    )
    .await;
    let size = |d: &Digest| {
        let store = store.clone();
        let repo = repo.clone();
        let d = d.clone();
        async move {
            store
                .stat_manifest(&repo, &Reference::Digest(d))
                .await
                .unwrap()
                .size
        }
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64.to_string(), "size": size(&amd64).await,
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": arm64.to_string(), "size": size(&arm64).await,
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    });
    let m = Manifest::parse(Bytes::from(serde_json::to_vec(&index).unwrap()), None).unwrap();
    assert!(is_scannable(&m));
    store
        .put_manifest(&repo, &Reference::Tag("latest".parse().unwrap()), &m)
        .await
        .unwrap();
    let limits = Limits::default();
    let db = AdvisoryDb::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv"))
        .unwrap();
    // The first platform image already has a report: its inventory is reused.
    let (r, inv) = scan(&store, &repo, &amd64, &db, &limits, None)
        .await
        .unwrap();
    attach(&store, &repo, &r, Some(&inv)).await.unwrap();
    let (report, inv) = scan(&store, &repo, m.digest(), &db, &limits, None)
        .await
        .unwrap();
    assert_eq!(inv.packages.len(), 4 + 3);
    let ids: Vec<&str> = report.findings.iter().map(|f| f.id.as_str()).collect();
    assert!(ids.contains(&"DSA-5532-1"), "{ids:?}");
    assert!(ids.contains(&"ALPINE-CVE-2023-5678"), "{ids:?}");
    assert!(report.distro.is_none(), "two distributions");
}
