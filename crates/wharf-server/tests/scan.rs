//! Vulnerability scanning end to end: images built from real package
//! databases are pushed to a running server, scanned in the background,
//! their reports and SBOMs fetched through the referrers API and the scan
//! API; the pull policy refuses vulnerable images and honours exemptions;
//! a change to the advisories triggers a re-match; `wharf scan` reads an
//! image offline.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "../../wharf-scan/tests/common/mod.rs"]
mod images;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use images::*;
use serde_json::{Value, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wharf-scan/tests/fixtures/osv")
}

fn with_auth<'a>(auth: Option<&'a str>, headers: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut h = headers.to_vec();
    if let Some(a) = auth {
        h.push(("Authorization", a));
    }
    h
}

fn push_blob(addr: &str, auth: Option<&str>, repo: &str, data: &[u8]) -> (String, usize) {
    let digest = sha256(data);
    let len = data.len().to_string();
    let r = raw_request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
        &with_auth(
            auth,
            &[
                ("Content-Length", &len),
                ("Content-Type", "application/octet-stream"),
            ],
        ),
        data,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    (digest, data.len())
}

/// Pushes an image and returns its manifest digest.
fn push_image(addr: &str, repo: &str, tag: &str, layers: &[(Vec<u8>, &str)]) -> String {
    push_image_as(addr, None, repo, tag, layers)
}

fn push_image_as(
    addr: &str,
    auth: Option<&str>,
    repo: &str,
    tag: &str,
    layers: &[(Vec<u8>, &str)],
) -> String {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (cd, cn) = push_blob(addr, auth, repo, config);
    let descs: Vec<Value> = layers
        .iter()
        .map(|(data, mt)| {
            let (d, n) = push_blob(addr, auth, repo, data);
            json!({"mediaType": mt, "digest": d, "size": n})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": descs,
    }))
    .unwrap();
    let len = manifest.len().to_string();
    let r = raw_request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &with_auth(
            auth,
            &[
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
                ("Content-Length", &len),
            ],
        ),
        &manifest,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    sha256(&manifest)
}

/// Polls the scan API until the report satisfies `ready`.
fn wait_report(w: &Wharf, repo: &str, digest: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let r = raw_request(
            &w.addr,
            "GET",
            &format!("/wharf/v1/scan/{repo}/{digest}"),
            &[],
            b"",
        );
        if r.status == 200 {
            let v = r.json();
            if ready(&v) {
                return v;
            }
        } else {
            assert!(
                r.status == 202 || r.status == 404,
                "{} {}",
                r.status,
                r.text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no report for {repo}@{digest}: last answer {} {}\n{}",
            r.status,
            r.text(),
            w.log_tail(40)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn finding_ids(report: &Value) -> Vec<String> {
    let mut ids: Vec<String> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn web_layers() -> Vec<(Vec<u8>, &'static str)> {
    let base = Layer::new()
        .symlink("etc/os-release", "../usr/lib/os-release")
        .file("usr/lib/os-release", DEBIAN_OS_RELEASE)
        .file("var/lib/dpkg/status", DPKG_STATUS)
        .gzip();
    let app = Layer::new()
        .file(
            "usr/lib/python3/dist-packages/requests-2.25.1.dist-info/METADATA",
            REQUESTS_METADATA,
        )
        .file("srv/web/package-lock.json", PACKAGE_LOCK)
        .zstd();
    vec![
        (base, "application/vnd.oci.image.layer.v1.tar+gzip"),
        (app, "application/vnd.oci.image.layer.v1.tar+zstd"),
    ]
}

#[test]
fn push_scan_referrers_policy_exemptions_and_rescan() {
    let dir = tempfile::tempdir().unwrap();
    let osv = dir.path().join("osv");
    std::fs::create_dir(&osv).unwrap();
    // Everything but one lodash advisory, which is published later.
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let p = entry.unwrap().path();
        if !p.ends_with("GHSA-35jh-r3h4-6jhm.json") {
            std::fs::copy(&p, osv.join(p.file_name().unwrap())).unwrap();
        }
    }
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let config = dir.path().join("wharf.toml");
    write_file(
        &config,
        format!(
            "[metrics]\nlisten = \"{metrics_addr}\"\n\n[scan]\nenabled = true\nadvisories = \"{}\"\nconcurrency = 2\nreload_interval_secs = 1\npolicy = \"block\"\nblock_severity = \"high\"\nexemptions = [\"CVE-2023-5363\"]\n",
            osv.display()
        ),
    );
    let cfg = config.to_str().unwrap().to_owned();
    let w = Wharf::start_logged_in(dir, &["--config", &cfg]);

    let pushed = Instant::now();
    let web = push_image(&w.addr, "app/web", "v1", &web_layers());
    // The push returned without waiting for the scan.
    assert!(pushed.elapsed() < Duration::from_secs(10));
    let base_layer = Layer::new()
        .file("etc/os-release", DEBIAN_OS_RELEASE)
        .file("var/lib/dpkg/status", DPKG_STATUS)
        .gzip();
    let base = push_image(
        &w.addr,
        "app/base",
        "bookworm",
        &[(base_layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
    );

    let report = wait_report(&w, "app/web", &web, |_| true);
    assert_eq!(
        finding_ids(&report),
        ["DSA-5532-1", "GHSA-j8r2-6x86-q33q", "GHSA-p6mc-m468-83gw"],
        "{report:#}"
    );
    assert_eq!(report["subject"]["digest"], web.as_str());
    assert_eq!(report["distro"]["id"], "debian");
    assert_eq!(report["summary"]["high"], 2);
    assert_eq!(report["summary"]["medium"], 1);
    let base_report = wait_report(&w, "app/base", &base, |_| true);
    assert_eq!(finding_ids(&base_report), ["DSA-5532-1"]);

    // The results are referrers of the image.
    let r = raw_request(
        &w.addr,
        "GET",
        &format!("/v2/app/web/referrers/{web}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut types: Vec<String> = r.json()["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["artifactType"].as_str().unwrap().to_owned())
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            "application/spdx+json",
            "application/vnd.cyclonedx+json",
            "application/vnd.wharf.scan.report.v1+json"
        ]
    );
    let r = raw_request(
        &w.addr,
        "GET",
        "/wharf/v1/scan/app/web/v1?format=cyclonedx",
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    let bom = r.json();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert!(
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["purl"] == "pkg:npm/lodash@4.17.15")
    );
    let r = raw_request(
        &w.addr,
        "GET",
        "/wharf/v1/scan/app/web/v1?format=spdx",
        &[],
        b"",
    );
    assert_eq!(r.json()["spdxVersion"], "SPDX-2.3");

    // Policy: high findings block pulls of the manifest, by tag or digest,
    // GET or HEAD, with the advisory ids in the message.
    for reference in ["v1", web.as_str()] {
        let r = raw_request(
            &w.addr,
            "GET",
            &format!("/v2/app/web/manifests/{reference}"),
            &[],
            b"",
        );
        assert_eq!(r.status, 403, "{}", r.text());
        assert_eq!(r.error_code().as_deref(), Some("DENIED"));
        let msg = r.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            msg.contains("GHSA-p6mc-m468-83gw") && msg.contains("high"),
            "{msg}"
        );
        assert!(
            !msg.contains("DSA-5532-1"),
            "exempted by its CVE alias: {msg}"
        );
    }
    let r = raw_request(&w.addr, "HEAD", "/v2/app/web/manifests/v1", &[], b"");
    assert_eq!(r.status, 403);
    // Exempted: the base image's only high finding is CVE-2023-5363.
    let r = raw_request(&w.addr, "GET", "/v2/app/base/manifests/bookworm", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    // Artifacts themselves are not blocked.
    let r = raw_request(
        &w.addr,
        "GET",
        &format!("/v2/app/web/referrers/{web}"),
        &[],
        b"",
    );
    let sbom = r.json()["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = raw_request(
        &w.addr,
        "GET",
        &format!("/v2/app/web/manifests/{sbom}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);

    // A new advisory is published: the stored inventory is matched again
    // and the new report replaces the old one.
    std::fs::copy(
        fixtures().join("GHSA-35jh-r3h4-6jhm.json"),
        w.dir.path().join("osv/GHSA-35jh-r3h4-6jhm.json"),
    )
    .unwrap();
    let report = wait_report(&w, "app/web", &web, |r| {
        finding_ids(r).contains(&"GHSA-35jh-r3h4-6jhm".to_owned())
    });
    assert_eq!(report["summary"]["total"], 4);
    let r = raw_request(
        &w.addr,
        "GET",
        &format!("/v2/app/web/referrers/{web}"),
        &[],
        b"",
    );
    assert_eq!(r.json()["manifests"].as_array().unwrap().len(), 3);

    // Metrics.
    let r = raw_request(&metrics_addr, "GET", "/metrics", &[], b"");
    let text = r.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert!(value("wharf_scan_completed_total") >= 3.0);
    assert!(value("wharf_scan_pulls_blocked_total") >= 3.0);
    assert_eq!(value("wharf_scan_advisories"), 9.0);
    assert!(value("wharf_scan_findings_total{severity=\"high\"}") >= 3.0);

    // A rescan on request.
    let r = raw_request(
        &w.addr,
        "POST",
        "/wharf/v1/scan/app/web/v1",
        &[("Content-Length", "0")],
        b"",
    );
    assert_eq!(r.status, 202, "{}", r.text());
    let r = raw_request(&w.addr, "GET", "/wharf/v1/scan/app/web/nope", &[], b"");
    assert_eq!(r.status, 404);

    // Offline: `wharf scan` on the stopped server's data directory.
    let dir = w.kill();
    let data = dir.path().join("data");
    let osv = dir.path().join("osv");
    let out = ok(wharf_cmd(60)
        .args(["scan", "app/web:v1", "--format", "json", "--data-dir"])
        .arg(&data)
        .arg("--advisories")
        .arg(&osv));
    let report = json_of(&out, "wharf scan --format json");
    assert_eq!(
        finding_ids(&report),
        [
            "DSA-5532-1",
            "GHSA-35jh-r3h4-6jhm",
            "GHSA-j8r2-6x86-q33q",
            "GHSA-p6mc-m468-83gw"
        ]
    );
    let table = ok(wharf_cmd(60)
        .args(["scan", "app/base:bookworm", "--data-dir"])
        .arg(&data)
        .arg("--advisories")
        .arg(&osv));
    assert!(
        table.contains("DSA-5532-1") && table.contains("3.0.11-1~deb12u2"),
        "{table}"
    );
    let err = fails(
        wharf_cmd(60)
            .args([
                "scan",
                &format!("app/web@{web}"),
                "--fail-on",
                "high",
                "--data-dir",
            ])
            .arg(&data)
            .arg("--advisories")
            .arg(&osv),
    );
    assert!(err.contains("findings at or above high"), "{err}");
}

#[test]
fn scanning_config_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wharf.toml");
    write_file(&config, "[scan]\nenabled = true\n");
    let err = fails(wharf_cmd(30).args(["config", "check"]).arg(&config));
    assert!(err.contains("scan.advisories"), "{err}");
    write_file(
        &config,
        "[scan]\nenabled = true\nadvisories = \"/x\"\nblock_severity = \"severe\"\n",
    );
    let err = fails(wharf_cmd(30).args(["config", "check"]).arg(&config));
    assert!(err.contains("severe"), "{err}");
    // A missing advisories path stops the server at startup with a clear error.
    write_file(
        &config,
        "[scan]\nenabled = true\nadvisories = \"/nonexistent/osv\"\n",
    );
    let err = fails(
        wharf_cmd(30)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path().join("data")),
    );
    assert!(
        err.contains("scan.advisories") && err.contains("/nonexistent/osv"),
        "{err}"
    );
}

#[test]
fn an_image_that_cannot_be_scanned_is_blocked_not_waved_through() {
    let dir = tempfile::tempdir().unwrap();
    let osv = dir.path().join("osv");
    std::fs::create_dir(&osv).unwrap();
    std::fs::copy(
        fixtures().join("DSA-5532-1.json"),
        osv.join("DSA-5532-1.json"),
    )
    .unwrap();
    let config = dir.path().join("wharf.toml");
    write_file(
        &config,
        format!(
            "[scan]\nenabled = true\nadvisories = \"{}\"\npolicy = \"block\"\nmax_layer_bytes = 1048576\n",
            osv.display()
        ),
    );
    let cfg = config.to_str().unwrap().to_owned();
    let w = Wharf::start_logged_in(dir, &["--config", &cfg]);
    // 16 MiB of zeros: about 16 KiB compressed, far past the 1 MiB limit.
    let bomb = Layer::new().file("zeros", vec![0u8; 16 << 20]).gzip();
    let digest = push_image(
        &w.addr,
        "evil/bomb",
        "v1",
        &[(bomb, "application/vnd.oci.image.layer.v1.tar+gzip")],
    );
    let report = wait_report(&w, "evil/bomb", &digest, |_| true);
    let error = report["error"].as_str().unwrap();
    assert!(error.contains("limit exceeded"), "{report:#}");
    assert_eq!(report["packages"].as_array().unwrap().len(), 0);
    let r = raw_request(&w.addr, "GET", "/v2/evil/bomb/manifests/v1", &[], b"");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code().as_deref(), Some("DENIED"));
    assert!(r.text().contains("could not be scanned"), "{}", r.text());
}

#[test]
fn wharf_scan_reads_an_oci_layout() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("layout");
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let d = sha256(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        (d, data.len())
    };
    let (cd, cn) =
        put(br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#);
    let layers: Vec<Value> = web_layers()
        .iter()
        .map(|(data, mt)| {
            let (d, n) = put(data);
            json!({"mediaType": mt, "digest": d, "size": n})
        })
        .collect();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": layers,
    }))
    .unwrap();
    let (md, mn) = put(&manifest);
    std::fs::write(
        root.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
                "annotations": {"org.opencontainers.image.ref.name": "web:v1"}}],
        }))
        .unwrap(),
    )
    .unwrap();
    let out = ok(wharf_cmd(60)
        .args(["scan", "--format", "json", "--layout"])
        .arg(&root)
        .arg("--advisories")
        .arg(fixtures()));
    let report = json_of(&out, "wharf scan --layout");
    assert_eq!(report["subject"]["repository"], "web:v1");
    assert_eq!(report["subject"]["digest"], md.as_str());
    assert_eq!(
        finding_ids(&report),
        [
            "DSA-5532-1",
            "GHSA-35jh-r3h4-6jhm",
            "GHSA-j8r2-6x86-q33q",
            "GHSA-p6mc-m468-83gw"
        ]
    );
    let spdx = ok(wharf_cmd(60)
        .args(["scan", "web:v1", "--format", "spdx", "--layout"])
        .arg(&root)
        .arg("--advisories")
        .arg(fixtures()));
    assert_eq!(json_of(&spdx, "spdx")["spdxVersion"], "SPDX-2.3");
    let err = fails(
        wharf_cmd(60)
            .args(["scan", "other", "--layout"])
            .arg(&root)
            .arg("--advisories")
            .arg(fixtures()),
    );
    assert!(err.contains("no image named \"other\""), "{err}");
}

#[test]
fn with_auth_the_scan_api_and_the_policy_come_after_authorization() {
    let dir = tempfile::tempdir().unwrap();
    let osv = dir.path().join("osv");
    std::fs::create_dir(&osv).unwrap();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, osv.join(p.file_name().unwrap())).unwrap();
    }
    let srv = AuthSetup::new("basic")
        .auth(&format!(
            "[scan]\nenabled = true\nadvisories = \"{}\"\npolicy = \"block\"\nblock_severity = \"high\"",
            osv.display()
        ))
        .start();
    let addr = srv.addr().to_owned();
    let writer = srv.basic(Who::Writer).unwrap();
    let reader = srv.basic(Who::Reader).unwrap();
    let digest = push_image_as(&addr, Some(&writer), "private/web", "v1", &web_layers());

    let path = "/wharf/v1/scan/private/web/v1";
    let deadline = Instant::now() + Duration::from_secs(90);
    let report = loop {
        let r = raw_request(&addr, "GET", path, &[("Authorization", &reader)], b"");
        if r.status == 200 {
            break r.json();
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.text());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(report["subject"]["digest"], digest.as_str());

    // Anonymous clients are challenged before anything is said about the
    // image, on the API and on pulls.
    let r = raw_request(&addr, "GET", path, &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = raw_request(&addr, "GET", "/v2/private/web/manifests/v1", &[], b"");
    assert_eq!(r.status, 401, "{}", r.text());
    // A reader may read the report, but not pull the vulnerable image.
    let r = raw_request(
        &addr,
        "GET",
        "/v2/private/web/manifests/v1",
        &[("Authorization", &reader)],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("GHSA-35jh-r3h4-6jhm"), "{}", r.text());
    // Rescans need push access.
    let post = |auth: &str| {
        raw_request(
            &addr,
            "POST",
            path,
            &[("Authorization", auth), ("Content-Length", "0")],
            b"",
        )
        .status
    };
    assert_eq!(post(&reader), 403);
    assert_eq!(post(&writer), 202);
}

#[test]
fn images_pushed_before_scanning_was_on_are_scanned_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let osv = dir.path().join("osv");
    std::fs::create_dir(&osv).unwrap();
    std::fs::copy(
        fixtures().join("GHSA-35jh-r3h4-6jhm.json"),
        osv.join("a.json"),
    )
    .unwrap();
    let w = Wharf::start_logged_in(dir, &[]);
    let web = push_image(&w.addr, "app/web", "v1", &web_layers());
    let r = raw_request(
        &w.addr,
        "GET",
        &format!("/wharf/v1/scan/app/web/{web}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "scanning is off: {}", r.text());

    let dir = w.kill();
    let config = dir.path().join("wharf.toml");
    write_file(
        &config,
        format!(
            "[scan]\nenabled = true\nadvisories = \"{}\"\n",
            dir.path().join("osv").display()
        ),
    );
    let cfg = config.to_str().unwrap().to_owned();
    let w = Wharf::start_logged_in(dir, &["--config", &cfg]);
    let report = wait_report(&w, "app/web", &web, |_| true);
    assert_eq!(finding_ids(&report), ["GHSA-35jh-r3h4-6jhm"]);
}
