//! OSV advisories: loading from a directory and a zip, matching per
//! ecosystem, severities, exemptions, and the SBOM documents.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use common::*;
use wharf_scan::osv::{Advisory, fingerprint};
use wharf_scan::report::Subject;
use wharf_scan::{
    AdvisoryDb, Distro, Inventory, LayerStack, Limits, Package, PackageKind, Report, Severity,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/osv")
}

fn image() -> Inventory {
    let mut stack = LayerStack::new(Limits::default());
    let base = Layer::new()
        .file("etc/os-release", DEBIAN_OS_RELEASE)
        .file("var/lib/dpkg/status", DPKG_STATUS)
        .gzip();
    let apps = Layer::new()
        .file(
            "usr/lib/python3/dist-packages/requests-2.25.1.dist-info/METADATA",
            REQUESTS_METADATA,
        )
        .file("srv/web/package-lock.json", PACKAGE_LOCK)
        .exe("usr/local/bin/server", go_binary())
        .exe("usr/local/bin/tool", auditable_binary())
        .zstd();
    stack.apply(&base[..], "base").unwrap();
    stack.apply(&apps[..], "apps").unwrap();
    stack.finish()
}

fn ids(findings: &[wharf_scan::Finding]) -> Vec<String> {
    let mut v: Vec<String> = findings
        .iter()
        .map(|f| format!("{} {}", f.id, f.package))
        .collect();
    v.sort();
    v
}

#[test]
fn real_advisories_match_the_packages_they_name() {
    let db = AdvisoryDb::load(&fixtures()).unwrap();
    assert!(db.warnings().is_empty(), "{:?}", db.warnings());
    // The withdrawn record is not loaded.
    assert_eq!(db.len(), 9);
    assert!(db.get("TEST-WITHDRAWN-1").is_none());
    let inv = image();
    let findings = db.matches(&inv);
    assert_eq!(
        ids(&findings),
        [
            "DSA-5532-1 libssl3",            // source package openssl, Debian:12
            "GHSA-35jh-r3h4-6jhm lodash",    // npm < 4.17.21
            "GHSA-j8r2-6x86-q33q requests",  // PyPI 2.3.0 <= v < 2.31.0
            "GHSA-p6mc-m468-83gw lodash",    // npm 3.7.0 <= v < 4.17.19
            "GO-2023-2102 golang.org/x/net", // Go module < 0.17.0
            "GO-2023-2102 stdlib",           // go1.21.1 in [1.21.0-0, 1.21.3)
            "RUSTSEC-2021-0003 smallvec",    // crates.io [1.0.0, 1.6.1)
        ]
    );
    // DSA-5417-1 is for Debian 11 only; GHSA-x84v-xcm2-53pg lists versions
    // up to 2.19.1, not 2.25.1.
    let dsa = findings.iter().find(|f| f.id == "DSA-5532-1").unwrap();
    assert_eq!(dsa.severity, Severity::High);
    assert_eq!(dsa.score, Some(7.5));
    assert_eq!(dsa.fixed, ["3.0.11-1~deb12u2"]);
    assert_eq!(dsa.ecosystem, "Debian:12");
    assert_eq!(dsa.advisory_package, "openssl");
    assert!(dsa.aliases.contains(&"CVE-2023-5363".to_owned()));
    let rustsec = findings
        .iter()
        .find(|f| f.id == "RUSTSEC-2021-0003")
        .unwrap();
    assert_eq!(
        (rustsec.severity, rustsec.score),
        (Severity::Critical, Some(9.8))
    );
    assert_eq!(rustsec.location, "usr/local/bin/tool");
    // GHSA's database rating when there is no vector.
    let proto = findings
        .iter()
        .find(|f| f.id == "GHSA-p6mc-m468-83gw")
        .unwrap();
    assert_eq!((proto.severity, proto.score), (Severity::High, None));
    // No rating at all.
    let go = findings.iter().find(|f| f.id == "GO-2023-2102").unwrap();
    assert_eq!(go.severity, Severity::Unknown);
    // Most severe first.
    assert_eq!(findings[0].id, "RUSTSEC-2021-0003");

    // Fixed versions do not match.
    let fixed = Package::new(PackageKind::Npm, "lodash", "4.17.21", "x");
    assert!(db.match_package(&fixed, None).is_empty());
    let mut patched = Package::new(PackageKind::Deb, "libssl3", "3.0.11-1~deb12u2", "x");
    patched.source_name = Some("openssl".into());
    let bookworm = inv.distro.clone();
    assert!(db.match_package(&patched, bookworm.as_ref()).is_empty());
    // The Debian 11 advisory applies to a bullseye image.
    let mut old = Package::new(PackageKind::Deb, "libssl1.1", "1.1.1n-0+deb11u4", "x");
    old.source_name = Some("openssl".into());
    let bullseye = Distro {
        id: "debian".into(),
        version_id: "11".into(),
        pretty_name: String::new(),
    };
    assert_eq!(
        ids(&db.match_package(&old, Some(&bullseye))),
        ["DSA-5417-1 libssl1.1"]
    );
    // An explicitly listed version; names compared PEP 503-normalized.
    let listed = Package::new(PackageKind::PyPI, "REQUESTS", "2.19.1", "x");
    let got = ids(&db.match_package(&listed, None));
    assert!(
        got.contains(&"GHSA-x84v-xcm2-53pg REQUESTS".to_owned()),
        "{got:?}"
    );
    // smallvec 0.6.14 is between the two ranges.
    let between = Package::new(PackageKind::Cargo, "smallvec", "0.6.14", "x");
    assert!(db.match_package(&between, None).is_empty());
    let early = Package::new(PackageKind::Cargo, "smallvec", "0.6.5", "x");
    assert_eq!(db.match_package(&early, None).len(), 1);
}

#[test]
fn alpine_advisories_follow_the_release() {
    let db = AdvisoryDb::load(&fixtures()).unwrap();
    let mut stack = LayerStack::new(Limits::default());
    let layer = Layer::new()
        .file("etc/os-release", ALPINE_OS_RELEASE)
        .file("lib/apk/db/installed", APK_INSTALLED)
        .tar();
    stack.apply(&layer[..], "alpine").unwrap();
    let inv = stack.finish();
    let f = db.matches(&inv);
    assert_eq!(
        ids(&f),
        [
            "ALPINE-CVE-2023-5678 libcrypto3",
            "ALPINE-CVE-2023-5678 libssl3"
        ]
    );
    assert_eq!(f[0].severity, Severity::Medium);
    assert_eq!(f[0].score, Some(5.3));
    assert_eq!(f[0].ecosystem, "Alpine:v3.18");
    // Another Alpine release with no record for it: no match.
    let mut other = inv.clone();
    other.distro.as_mut().unwrap().version_id = "3.17.5".into();
    assert!(db.matches(&other).is_empty());
}

#[test]
fn last_affected_limit_and_unparsable_events() {
    let records = serde_json::json!([
        {"id": "TEST-LAST-AFFECTED", "affected": [{"package": {"ecosystem": "PyPI", "name": "pkg"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "1.0"}, {"last_affected": "1.4.2"}]}]}]},
        {"id": "TEST-LIMIT", "affected": [{"package": {"ecosystem": "crates.io", "name": "c"},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"limit": "2.0.0"}]}]}]},
        {"id": "TEST-GIT-ONLY", "affected": [{"package": {"ecosystem": "PyPI", "name": "pkg"},
            "ranges": [{"type": "GIT", "repo": "https://example.invalid/x", "events": [{"introduced": "0"}, {"fixed": "abc123"}]}]}]},
        {"id": "TEST-UNSORTED", "affected": [{"package": {"ecosystem": "npm", "name": "u"},
            "ranges": [{"type": "SEMVER", "events": [{"fixed": "2.0.0"}, {"introduced": "1.0.0"}, {"fixed": "not a version"}]}]}]}
    ]);
    let advisories: Vec<Advisory> = serde_json::from_value(records).unwrap();
    let db = AdvisoryDb::from_advisories(advisories);
    let check = |kind, name: &str, v: &str| -> Vec<String> {
        db.match_package(&Package::new(kind, name, v, "x"), None)
            .into_iter()
            .map(|f| f.id)
            .collect()
    };
    assert_eq!(
        check(PackageKind::PyPI, "pkg", "1.4.2"),
        ["TEST-LAST-AFFECTED"]
    );
    assert_eq!(
        check(PackageKind::PyPI, "pkg", "1.0"),
        ["TEST-LAST-AFFECTED"]
    );
    assert!(check(PackageKind::PyPI, "pkg", "1.4.3").is_empty());
    assert!(check(PackageKind::PyPI, "pkg", "0.9").is_empty());
    assert_eq!(check(PackageKind::Cargo, "c", "1.9.9"), ["TEST-LIMIT"]);
    assert!(check(PackageKind::Cargo, "c", "2.0.0").is_empty());
    assert_eq!(check(PackageKind::Npm, "u", "1.5.0"), ["TEST-UNSORTED"]);
    assert!(check(PackageKind::Npm, "u", "2.0.1").is_empty());
    assert!(check(PackageKind::Npm, "u", "0.9.0").is_empty());
}

#[test]
fn zip_archives_and_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("all.zip");
    {
        let file = std::fs::File::create(&zip_path).unwrap();
        let mut w = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for entry in std::fs::read_dir(fixtures()).unwrap() {
            let p = entry.unwrap().path();
            w.start_file(p.file_name().unwrap().to_string_lossy(), opts)
                .unwrap();
            std::io::Write::write_all(&mut w, &std::fs::read(&p).unwrap()).unwrap();
        }
        w.start_file("README.txt", opts).unwrap();
        w.start_file("broken.json", opts).unwrap();
        std::io::Write::write_all(&mut w, b"{not json").unwrap();
        w.finish().unwrap();
    }
    let from_zip = AdvisoryDb::load(&zip_path).unwrap();
    assert_eq!(from_zip.len(), 9);
    assert_eq!(from_zip.warnings().len(), 1, "{:?}", from_zip.warnings());
    assert_eq!(ids(&from_zip.matches(&image())).len(), 7);

    // A directory holding the zip and a loose record: both are read.
    let f1 = fingerprint(dir.path()).unwrap();
    std::fs::write(dir.path().join("extra.json"), r#"{"id":"GHSA-29mw-wpgm-hmr9","modified":"2022-01-01T00:00:00Z","aliases":["CVE-2020-28500"],"summary":"Regular Expression Denial of Service (ReDoS) in lodash","affected":[{"package":{"ecosystem":"npm","name":"lodash"},"ranges":[{"type":"SEMVER","events":[{"introduced":"4.0.0"},{"fixed":"4.17.21"}]}]}],"database_specific":{"severity":"MODERATE"}}"#).unwrap();
    let f2 = fingerprint(dir.path()).unwrap();
    assert_ne!(f1, f2);
    let db = AdvisoryDb::load(dir.path()).unwrap();
    assert_eq!(db.len(), 10);
    assert_eq!(db.fingerprint(), &f2);
    assert_eq!(
        fingerprint(dir.path()).unwrap(),
        f2,
        "stable while unchanged"
    );
    assert!(AdvisoryDb::load(&dir.path().join("missing")).is_err());
}

#[test]
fn reports_policy_and_exemptions() {
    let db = AdvisoryDb::load(&fixtures()).unwrap();
    let subject = Subject {
        repository: "app/web".into(),
        digest: "sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
    };
    let report = Report::new(
        subject,
        &image(),
        &db,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
    );
    assert_eq!(report.scanned_at, "2023-11-14T22:13:20.000000000Z");
    assert_eq!(report.summary.total, 7);
    assert_eq!(report.summary.critical, 1);
    assert_eq!(report.summary.high, 3);
    assert_eq!(report.summary.medium, 1);
    assert_eq!(report.summary.unknown, 2);
    let none = HashSet::new();
    assert_eq!(report.blocking(Severity::Critical, &none).len(), 1);
    assert_eq!(report.blocking(Severity::High, &none).len(), 4);
    // Exempt by id, or by an alias (a CVE).
    let exempt: HashSet<String> =
        ["RUSTSEC-2021-0003".to_owned(), "CVE-2023-5363".to_owned()].into();
    let left: Vec<&str> = report
        .blocking(Severity::High, &exempt)
        .iter()
        .map(|f| f.id.as_str())
        .collect();
    assert_eq!(left, ["GHSA-35jh-r3h4-6jhm", "GHSA-p6mc-m468-83gw"]);
    // The report round-trips and keeps its inventory for re-matching.
    let json = serde_json::to_vec(&report).unwrap();
    let back: Report = serde_json::from_slice(&json).unwrap();
    assert_eq!(back, report);
    assert_eq!(db.matches(&back.inventory()), report.findings);
    assert!(report.to_table().contains("RUSTSEC-2021-0003"));
}

#[test]
fn sbom_documents() {
    use wharf_scan::sbom::{Described, cyclonedx, spdx};
    let inv = image();
    let image_ref = Described {
        repository: "app/web".into(),
        digest: "sha256:1111111111111111111111111111111111111111111111111111111111111111".into(),
        created: "2024-01-01T00:00:00Z".into(),
    };
    let cdx = cyclonedx::render(&image_ref, &inv);
    assert_eq!(cdx["bomFormat"], "CycloneDX");
    assert_eq!(cdx["specVersion"], "1.5");
    assert!(
        cdx["serialNumber"]
            .as_str()
            .unwrap()
            .starts_with("urn:uuid:")
    );
    let comps = cdx["components"].as_array().unwrap();
    assert_eq!(comps.len(), inv.packages.len());
    let purls: Vec<&str> = comps.iter().map(|c| c["purl"].as_str().unwrap()).collect();
    for want in [
        "pkg:deb/debian/libssl3@3.0.11-1~deb12u1?arch=amd64&distro=debian-12&upstream=openssl",
        "pkg:pypi/requests@2.25.1",
        "pkg:npm/lodash@4.17.15",
        "pkg:cargo/smallvec@1.6.0",
        "pkg:golang/golang.org/x/net@v0.10.0",
        "pkg:golang/stdlib@v1.21.1",
    ] {
        assert!(purls.contains(&want), "{want} not in {purls:?}");
    }
    assert_eq!(cdx["metadata"]["component"]["type"], "container");

    let doc = spdx::render(&image_ref, &inv);
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["dataLicense"], "CC0-1.0");
    let pkgs = doc["packages"].as_array().unwrap();
    assert_eq!(pkgs.len(), inv.packages.len() + 1);
    let rels = doc["relationships"].as_array().unwrap();
    assert_eq!(
        rels.iter()
            .filter(|r| r["relationshipType"] == "CONTAINS")
            .count(),
        inv.packages.len()
    );
    // Every SPDXID is unique and every relationship points at one.
    let idset: HashSet<&str> = pkgs.iter().map(|p| p["SPDXID"].as_str().unwrap()).collect();
    assert_eq!(idset.len(), pkgs.len());
    for r in rels {
        let target = r["relatedSpdxElement"].as_str().unwrap();
        assert!(idset.contains(target), "{target}");
    }
    assert_eq!(pkgs[1]["externalRefs"][0]["referenceType"], "purl");
}
