//! Scanning OCI image layout directories.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;

use common::*;
use serde_json::json;
use wharf_scan::layout::Layout;
use wharf_scan::{AdvisoryDb, Limits};

fn blob(root: &Path, data: &[u8]) -> (String, usize) {
    let d = wharf_types::Digest::sha256(data);
    let dir = root.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(d.hex()), data).unwrap();
    (d.to_string(), data.len())
}

fn image(root: &Path, layers: &[(Vec<u8>, &str)]) -> (String, usize) {
    let (cd, cn) = blob(
        root,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let layers: Vec<_> = layers
        .iter()
        .map(|(data, mt)| {
            let (d, n) = blob(root, data);
            json!({"mediaType": mt, "digest": d, "size": n})
        })
        .collect();
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": layers,
    }))
    .unwrap();
    blob(root, &m)
}

#[test]
fn images_in_a_layout_are_found_by_name_and_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let (web, web_size) = image(
        root,
        &[
            (
                Layer::new()
                    .file("etc/os-release", DEBIAN_OS_RELEASE)
                    .file("var/lib/dpkg/status", DPKG_STATUS)
                    .gzip(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            ),
            (
                Layer::new()
                    .file("srv/package-lock.json", PACKAGE_LOCK)
                    .zstd(),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
        ],
    );
    let (alpine, alpine_size) = image(
        root,
        &[(
            Layer::new()
                .file("etc/os-release", ALPINE_OS_RELEASE)
                .file("lib/apk/db/installed", APK_INSTALLED)
                .tar(),
            "application/vnd.oci.image.layer.v1.tar",
        )],
    );
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": web, "size": web_size,
             "annotations": {"org.opencontainers.image.ref.name": "web:v1"}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": alpine, "size": alpine_size,
             "annotations": {"org.opencontainers.image.ref.name": "alpine"}},
        ],
    });
    std::fs::write(root.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let layout = Layout::open(root, Limits::default()).unwrap();
    let err = layout.find(None).unwrap_err().to_string();
    assert!(err.contains("web:v1") && err.contains("alpine"), "{err}");
    let img = layout.find(Some("web:v1")).unwrap();
    assert_eq!(img.digest.to_string(), web);
    let inv = layout.inventory(&img).unwrap();
    assert_eq!(inv.packages.len(), 6);
    let db = AdvisoryDb::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv"))
        .unwrap();
    let ids: Vec<String> = db.matches(&inv).into_iter().map(|f| f.id).collect();
    assert!(
        ids.contains(&"DSA-5532-1".to_owned()) && ids.contains(&"GHSA-35jh-r3h4-6jhm".to_owned()),
        "{ids:?}"
    );
    let alpine_img = layout.find(Some(&alpine)).unwrap();
    assert_eq!(
        layout.inventory(&alpine_img).unwrap().distro.unwrap().id,
        "alpine"
    );
    assert!(layout.find(Some("nope")).is_err());

    // A layer or manifest whose content does not match its digest is refused.
    let tampered = layout.inventory(&alpine_img).unwrap();
    assert_eq!(tampered.packages.len(), 3);
    let alpine_manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            root.join("blobs/sha256")
                .join(alpine.trim_start_matches("sha256:")),
        )
        .unwrap(),
    )
    .unwrap();
    let layer_hex = alpine_manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    let path = root.join("blobs/sha256").join(layer_hex);
    let mut data = std::fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 1; // in the tar padding: parsing alone would not notice
    std::fs::write(&path, data).unwrap();
    let err = layout.inventory(&alpine_img).unwrap_err().to_string();
    assert!(err.contains("content has digest"), "{err}");
    let hex = web.trim_start_matches("sha256:");
    std::fs::write(root.join("blobs/sha256").join(hex), b"{}").unwrap();
    assert!(layout.inventory(&img).is_err());
    assert!(Layout::open(root.join("blobs"), Limits::default()).is_err());
}
