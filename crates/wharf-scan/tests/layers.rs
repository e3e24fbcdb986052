//! Layer reading: compression, whiteouts across layers, limits, and every
//! package source read from realistic files.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use wharf_scan::{LayerStack, Limits, PackageKind, ScanError};

fn names(inv: &wharf_scan::Inventory) -> Vec<String> {
    let mut v: Vec<String> = inv
        .packages
        .iter()
        .map(|p| format!("{}:{}@{}", p.kind.purl_type(), p.name, p.version))
        .collect();
    v.sort();
    v
}

fn scan(layers: &[Vec<u8>], limits: Limits) -> Result<wharf_scan::Inventory, ScanError> {
    let mut stack = LayerStack::new(limits);
    for (i, l) in layers.iter().enumerate() {
        stack.apply(&l[..], &format!("layer {i}"))?;
    }
    Ok(stack.finish())
}

fn debian_base() -> Layer {
    Layer::new()
        .dir("etc")
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file("usr/lib/os-release", DEBIAN_OS_RELEASE)
        .file("var/lib/dpkg/status", DPKG_STATUS)
}

#[test]
fn every_package_source_is_read_from_gzip_zstd_and_plain_layers() {
    let base = debian_base().gzip();
    let apps = Layer::new()
        .file(
            "usr/lib/python3/dist-packages/requests-2.25.1.dist-info/METADATA",
            REQUESTS_METADATA,
        )
        .file(
            "usr/lib/python3/dist-packages/urllib3-1.26.18.egg-info/PKG-INFO",
            URLLIB3_PKG_INFO,
        )
        .file("srv/web/package-lock.json", PACKAGE_LOCK)
        .file(
            "srv/web/node_modules/lodash/package.json",
            r#"{"name":"lodash","version":"4.17.15","license":"MIT"}"#,
        )
        .file(
            "srv/web/node_modules/lodash/fp/package.json",
            r#"{"name":"not-a-package","version":"0"}"#,
        )
        .file("src/tool/Cargo.lock", CARGO_LOCK)
        .zstd();
    let bins = Layer::new()
        .exe("usr/local/bin/server", go_binary())
        .exe("usr/local/bin/tool", auditable_binary())
        .file("usr/share/doc/readme", "plain text")
        .tar();
    let inv = scan(&[base, apps, bins], Limits::default()).unwrap();
    assert_eq!(inv.distro.as_ref().unwrap().id, "debian");
    assert_eq!(inv.distro.as_ref().unwrap().version_id, "12");
    assert_eq!(
        names(&inv),
        [
            "cargo:smallvec@1.6.0",
            "deb:base-files@12.4+deb12u2",
            "deb:libc6@2.36-9+deb12u3",
            "deb:libssl3@3.0.11-1~deb12u1",
            "deb:zlib1g@1:1.2.13.dfsg-1",
            "golang:golang.org/x/net@v0.10.0",
            "golang:golang.org/x/text@v0.9.0",
            "golang:stdlib@v1.21.1",
            "npm:express@4.18.2",
            "npm:lodash@4.17.15",
            "pypi:requests@2.25.1",
            "pypi:urllib3@1.26.18",
        ],
        "{:#?}",
        inv.warnings
    );
    let ssl = inv.packages.iter().find(|p| p.name == "libssl3").unwrap();
    assert_eq!(ssl.advisory_name(), "openssl");
    assert_eq!(
        ssl.purl(inv.distro.as_ref()),
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl"
    );
    let go = inv
        .packages
        .iter()
        .find(|p| p.name == "golang.org/x/net")
        .unwrap();
    assert_eq!(go.location, "usr/local/bin/server");
}

#[test]
fn alpine_apk_database() {
    let layer = Layer::new()
        .file("etc/os-release", ALPINE_OS_RELEASE)
        .file("lib/apk/db/installed", APK_INSTALLED)
        .gzip();
    let inv = scan(&[layer], Limits::default()).unwrap();
    assert_eq!(
        names(&inv),
        [
            "apk:libcrypto3@3.1.4-r0",
            "apk:libssl3@3.1.4-r0",
            "apk:musl@1.2.4-r2"
        ]
    );
    let c = inv
        .packages
        .iter()
        .find(|p| p.name == "libcrypto3")
        .unwrap();
    assert_eq!(c.advisory_name(), "openssl");
    assert_eq!(c.license.as_deref(), Some("Apache-2.0"));
    assert_eq!(
        c.purl(inv.distro.as_ref()),
        "pkg:apk/alpine/libcrypto3@3.1.4-r0?arch=x86_64&distro=alpine-3.18.4"
    );
}

/// Package databases naming a package without a name or version (found
/// by fuzzing: an apk paragraph `P:` with nothing after it) list nothing
/// for it; the well-formed packages beside it stay.
#[test]
fn packages_without_a_name_or_version_are_dropped() {
    let installed = "P:\nV:1.2.4-r0\n\nP:musl\nV:\n\nP:busybox\nV:1.36.1-r5\n\n";
    let status = "Package:\nStatus: install ok installed\nVersion: 1.0\n\n\
                  Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2\n\n";
    let layer = Layer::new()
        .file("lib/apk/db/installed", installed)
        .file("var/lib/dpkg/status", status)
        .gzip();
    let inv = scan(&[layer], Limits::default()).unwrap();
    assert_eq!(names(&inv), ["apk:busybox@1.36.1-r5", "deb:bash@5.2.15-2"]);
    assert!(
        wharf_scan::extract::apk::parse_installed("P:\nV:1\n", "x").is_empty(),
        "the parser itself drops it"
    );
}

#[test]
fn distroless_status_d() {
    let layer = Layer::new()
        .file(
            "var/lib/dpkg/status.d/libssl3",
            "Package: libssl3\nVersion: 3.0.11-1~deb12u1\nArchitecture: amd64\nSource: openssl\n",
        )
        .file(
            "var/lib/dpkg/status.d/libssl3.md5sums",
            "abc  usr/lib/x86_64-linux-gnu/libssl.so.3\n",
        )
        .file(
            "var/lib/dpkg/status.d/tzdata",
            "Package: tzdata\nVersion: 2024a-0+deb12u1\nArchitecture: all\n",
        )
        .tar();
    let inv = scan(&[layer], Limits::default()).unwrap();
    assert_eq!(
        names(&inv),
        ["deb:libssl3@3.0.11-1~deb12u1", "deb:tzdata@2024a-0+deb12u1"]
    );
}

#[test]
fn whiteouts_and_opaque_directories_apply_to_lower_layers_only() {
    let site = "usr/lib/python3/dist-packages";
    let l1 = debian_base()
        .file(
            &format!("{site}/requests-2.25.1.dist-info/METADATA"),
            REQUESTS_METADATA,
        )
        .file(
            &format!("{site}/urllib3-1.26.18.egg-info/PKG-INFO"),
            URLLIB3_PKG_INFO,
        )
        .file("srv/web/package-lock.json", PACKAGE_LOCK)
        .gzip();
    // Layer 2: pip uninstalled requests (the whole dist-info directory is
    // whited out), upgraded urllib3 (new directory; old one removed), and
    // the web app directory was replaced wholesale (opaque) by one whose
    // lock file comes *before* the opaque marker in the archive.
    let l2 = Layer::new()
        .whiteout(&format!("{site}/requests-2.25.1.dist-info"))
        .whiteout(&format!("{site}/urllib3-1.26.18.egg-info"))
        .file(
            &format!("{site}/urllib3-2.0.7.dist-info/METADATA"),
            "Name: urllib3\nVersion: 2.0.7\n",
        )
        .file(
            "srv/web/package-lock.json",
            r#"{"lockfileVersion":3,"packages":{"node_modules/lodash":{"version":"4.17.21"}}}"#,
        )
        .opaque("srv/web")
        .zstd();
    // Layer 3: the dpkg database is replaced by a newer one and the old
    // zlib is gone.
    let status = DPKG_STATUS.replace("3.0.11-1~deb12u1", "3.0.11-1~deb12u2");
    let l3 = Layer::new().file("var/lib/dpkg/status", status).tar();
    let inv = scan(&[l1.clone(), l2.clone(), l3], Limits::default()).unwrap();
    let n = names(&inv);
    assert!(!n.iter().any(|p| p.contains("requests")), "{n:?}");
    assert!(n.contains(&"pypi:urllib3@2.0.7".to_owned()), "{n:?}");
    assert!(!n.contains(&"pypi:urllib3@1.26.18".to_owned()), "{n:?}");
    assert!(n.contains(&"npm:lodash@4.17.21".to_owned()), "{n:?}");
    assert!(!n.contains(&"npm:lodash@4.17.15".to_owned()), "{n:?}");
    assert!(!n.contains(&"npm:express@4.18.2".to_owned()), "{n:?}");
    assert!(
        n.contains(&"deb:libssl3@3.0.11-1~deb12u2".to_owned()),
        "{n:?}"
    );
    assert!(
        !n.contains(&"deb:libssl3@3.0.11-1~deb12u1".to_owned()),
        "{n:?}"
    );

    // A whiteout of a parent directory removes everything below it; a
    // symlink replacing a database file removes the file.
    let l4 = Layer::new()
        .whiteout("usr")
        .symlink("var/lib/dpkg/status", "/dev/null")
        .tar();
    let inv = scan(&[l1, l2, l4], Limits::default()).unwrap();
    assert!(inv.distro.is_none());
    assert_eq!(names(&inv), ["npm:lodash@4.17.21"]);
}

#[test]
fn multi_frame_zstd_and_concatenated_gzip() {
    let tar = debian_base().tar();
    let (a, b) = tar.split_at(tar.len() / 3);
    let mut two_frames = zstd(a);
    // A skippable frame between the data frames.
    two_frames.extend_from_slice(&[0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]);
    two_frames.extend(zstd(b));
    let inv = scan(&[two_frames], Limits::default()).unwrap();
    assert_eq!(inv.packages.len(), 4);
    let mut two_members = gzip(a);
    two_members.extend(gzip(b));
    let inv = scan(&[two_members], Limits::default()).unwrap();
    assert_eq!(inv.packages.len(), 4);
}

#[test]
fn a_decompression_bomb_stops_at_the_layer_limit() {
    // 64 MiB of zeros in a file compresses to ~64 KiB.
    let big = vec![0u8; 64 << 20];
    let bomb = Layer::new().file("zeros", &big).gzip();
    assert!(bomb.len() < 1 << 20);
    let mut limits = Limits::default();
    limits.max_layer_bytes = 8 << 20;
    match scan(std::slice::from_ref(&bomb), limits.clone()) {
        Err(ScanError::LimitExceeded { what, limit }) => {
            assert_eq!((what, limit), ("decompressed layer", 8 << 20));
        }
        other => panic!("{other:?}"),
    }
    let bomb = zstd(&Layer::new().file("zeros", &big).tar());
    assert!(matches!(
        scan(&[bomb], limits),
        Err(ScanError::LimitExceeded { .. })
    ));
}

#[test]
fn entry_counts_file_sizes_and_layer_counts_are_bounded() {
    let mut many = Layer::new();
    for i in 0..1000 {
        many = many.file(&format!("f/{i}"), b"x");
    }
    let mut limits = Limits::default();
    limits.max_entries = 500;
    assert!(matches!(
        scan(&[many.tar()], limits),
        Err(ScanError::LimitExceeded {
            what: "tar entries in a layer",
            ..
        })
    ));

    // An oversized "database" is skipped with a warning, not read.
    let mut limits = Limits::default();
    limits.max_file_bytes = 1024;
    let huge_status = DPKG_STATUS.repeat(10);
    let inv = scan(
        &[Layer::new().file("var/lib/dpkg/status", huge_status).tar()],
        limits,
    )
    .unwrap();
    assert!(inv.packages.is_empty());
    assert!(
        inv.warnings[0].contains("var/lib/dpkg/status"),
        "{:?}",
        inv.warnings
    );

    let mut limits = Limits::default();
    limits.max_layers = 2;
    let l = debian_base().tar();
    assert!(matches!(
        scan(&[l.clone(), l.clone(), l], limits),
        Err(ScanError::LimitExceeded {
            what: "layer count",
            ..
        })
    ));

    let mut limits = Limits::default();
    limits.max_packages = 3;
    assert!(matches!(
        scan(&[debian_base().tar()], limits),
        Err(ScanError::LimitExceeded {
            what: "package count",
            ..
        })
    ));
}

#[test]
fn a_huge_gnu_long_name_is_refused_not_buffered() {
    // A GNU 'L' header claiming a 64 MiB name.
    let mut h = tar::Header::new_gnu();
    h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    let mut layer = h.as_bytes().to_vec();
    layer.extend(vec![b'a'; 4096]);
    assert!(matches!(
        scan(&[layer], Limits::default()),
        Err(ScanError::LimitExceeded {
            what: "tar extension header",
            ..
        })
    ));
}

#[test]
fn garbage_and_truncated_layers_fail_cleanly() {
    let tar = debian_base().gzip();
    // (A cut in the gzip trailer only, after the whole archive, is not
    // noticed: the registry verified the blob's digest on upload.)
    for cut in [10, tar.len() / 2] {
        let r = scan(&[tar[..cut].to_vec()], Limits::default());
        assert!(r.is_err(), "cut at {cut}");
    }
    assert!(scan(&[b"\x28\xb5\x2f\xfd garbage".to_vec()], Limits::default()).is_err());
    // Long names via PAX and GNU headers are honoured.
    let long = format!(
        "usr/lib/python3/site-packages/{}/requests-2.25.1.dist-info/METADATA",
        "d".repeat(200)
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(REQUESTS_METADATA.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, &long, REQUESTS_METADATA.as_bytes())
        .unwrap();
    let inv = scan(&[b.into_inner().unwrap()], Limits::default()).unwrap();
    assert_eq!(inv.packages[0].kind, PackageKind::PyPI);
    assert_eq!(inv.packages[0].location, long);
}
