//! Interoperability with real clients that nobody here wrote: the `wharf`
//! binary on a free 127.0.0.1 port, driven by skopeo (with umoci-built
//! images), buildah and podman, the Docker engine and CLI, containerd's
//! `ctr`, the oras Python SDK, and the Rust `oci-client` crate. The skopeo
//! and docker scenarios also run against Debian's CNCF Distribution 2.8
//! (`docker-registry`) as a reference, and what the clients see is compared.
//!
//! Only the `oci-client` test runs by default. The others need the tools
//! that `.ci/install.sh` installs, and are ignored by default, each naming its tool:
//! `cargo test -p wharf-server --test interop -- --include-ignored`.
//! Every external command runs under coreutils' `timeout`, every daemon a
//! test starts is stopped by a guard's `Drop` (also on failure), and a
//! failing command's message carries its stdout and stderr; on a panic the
//! tail of each server's and daemon's log is printed too.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{
    Built, Containerd, Containers, Distribution, Docker, Wharf, busybox_rootfs_tar, cmd, fails,
    json_of, need, oci_image, ok, oras_python, run, sha256, text, write_file,
};
use serde_json::{Value, json};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// What a modern client sends when it can take any manifest.
const ACCEPT_ANY: &str = "application/vnd.oci.image.manifest.v1+json, \
    application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, \
    application/vnd.docker.distribution.manifest.list.v2+json";
/// The static busybox from Debian's busybox-static.
const BUSYBOX: &str = "/bin/busybox";

// ---- external commands ----

/// Reads a file that a tool wrote (a digest file, say), trimmed.
fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

// ---- long-running daemons ----

// ---- plain HTTP checks (blocking) ----

struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// One request to a registry, from a small runtime of its own so that the
/// synchronous tests can use it between commands.
fn http(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    common::install_crypto();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = client.request(method.clone(), url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.expect("body").to_vec();
        Resp {
            status,
            headers,
            body,
        }
    })
}

/// Checks, over plain HTTP, that `reference` in `repo` resolves to
/// `digest` with `media_type`, that the bytes served hash to that digest,
/// and (for an image manifest) that every blob it names is served with the
/// right size and digest. Returns the manifest bytes.
#[track_caller]
fn check_manifest(
    base: &str,
    repo: &str,
    reference: &str,
    digest: &str,
    media_type: &str,
) -> Vec<u8> {
    let url = format!("{base}/v2/{repo}/manifests/{reference}");
    let head = http("HEAD", &url, &[("accept", ACCEPT_ANY)]);
    assert_eq!(head.status, 200, "HEAD {url}");
    assert_eq!(head.header("docker-content-digest"), digest, "HEAD {url}");
    assert_eq!(head.header("content-type"), media_type, "HEAD {url}");
    let get = http("GET", &url, &[("accept", ACCEPT_ANY)]);
    assert_eq!(get.status, 200, "GET {url}");
    assert_eq!(get.header("docker-content-digest"), digest, "GET {url}");
    assert_eq!(
        sha256(&get.body),
        digest,
        "GET {url}: bytes do not hash to the digest"
    );
    assert_eq!(
        head.header("content-length"),
        get.body.len().to_string(),
        "HEAD {url}: Content-Length"
    );
    let doc = get.json();
    let mut blobs: Vec<&Value> = doc["layers"].as_array().into_iter().flatten().collect();
    if doc["config"].is_object() {
        blobs.push(&doc["config"]);
    }
    for d in blobs {
        let bd = d["digest"].as_str().expect("descriptor digest");
        let burl = format!("{base}/v2/{repo}/blobs/{bd}");
        let b = http("GET", &burl, &[]);
        assert_eq!(b.status, 200, "GET {burl}");
        assert_eq!(sha256(&b.body), bd, "GET {burl}: wrong bytes");
        assert_eq!(
            Some(b.body.len() as u64),
            d["size"].as_u64(),
            "GET {burl}: size"
        );
    }
    get.body
}

// ---- images built here ----

/// An image index over `(arch, manifest)` pairs, written into `layout`.
fn oci_index(layout: &Path, images: &[(&str, &Built)]) -> (Vec<u8>, String) {
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": images.iter().map(|(arch, b)| json!({
            "mediaType": OCI_MANIFEST,
            "digest": b.digest,
            "size": b.manifest.len(),
            "platform": {"architecture": arch, "os": "linux"},
        })).collect::<Vec<_>>(),
    }))
    .expect("json");
    let d = sha256(&index);
    write_file(
        &layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:")),
        &index,
    );
    (index, d)
}

fn layout_descriptor(media_type: &str, bytes: &[u8], annotations: Value) -> Value {
    json!({
        "mediaType": media_type,
        "digest": sha256(bytes),
        "size": bytes.len(),
        "annotations": annotations,
    })
}

/// The descriptor tagged `name` in an OCI layout's index.json.
fn layout_ref(layout: &Path, name: &str) -> Value {
    let index = json_of(
        &fs::read_to_string(layout.join("index.json")).expect("index.json"),
        "index.json",
    );
    index["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {}/index.json: {index}", layout.display()))
}

fn layout_blob(layout: &Path, digest: &str) -> Vec<u8> {
    let path = layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"));
    fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---- skopeo + umoci, against Wharf and Distribution ----

/// Images built with umoci in an OCI layout: two single-platform images
/// (amd64 and arm64 configs; the same busybox layer, and a small second
/// layer on arm64) and an index over both, tagged `amd64`, `arm64` and
/// `multi`.
struct UmociLayout {
    path: PathBuf,
    amd64: String,
    arm64: String,
    index: Vec<u8>,
    index_digest: String,
}

fn umoci_layout(work: &Path) -> UmociLayout {
    let path = work.join("layout");
    let image = |tag: &str| format!("{}:{tag}", path.display());
    ok(cmd(60, "umoci").args(["init", "--layout"]).arg(&path));
    for arch in ["amd64", "arm64"] {
        ok(cmd(60, "umoci").args(["new", "--image", &image(arch)]));
        ok(cmd(60, "umoci").args([
            "config",
            "--image",
            &image(arch),
            "--architecture",
            arch,
            "--os",
            "linux",
            "--config.cmd",
            "/bin/busybox",
            "--config.cmd",
            "sh",
        ]));
        ok(cmd(60, "umoci").args(["insert", "--image", &image(arch), BUSYBOX, "/bin/busybox"]));
    }
    let marker = work.join("arch");
    write_file(&marker, "arm64\n");
    ok(cmd(60, "umoci")
        .args(["insert", "--image", &image("arm64")])
        .arg(&marker)
        .arg("/etc/arch"));

    let amd64 = layout_ref(&path, "amd64");
    let arm64 = layout_ref(&path, "arm64");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd64["digest"], "size": amd64["size"],
             "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm64["digest"], "size": arm64["size"],
             "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .expect("json");
    let index_digest = sha256(&index);
    write_file(
        &path
            .join("blobs/sha256")
            .join(index_digest.trim_start_matches("sha256:")),
        &index,
    );
    let index_path = path.join("index.json");
    let mut top = json_of(
        &fs::read_to_string(&index_path).expect("index.json"),
        "index.json",
    );
    top["manifests"]
        .as_array_mut()
        .expect("manifests")
        .push(layout_descriptor(
            OCI_INDEX,
            &index,
            json!({"org.opencontainers.image.ref.name": "multi"}),
        ));
    write_file(&index_path, serde_json::to_vec(&top).expect("json"));
    UmociLayout {
        amd64: amd64["digest"].as_str().expect("digest").to_owned(),
        arm64: arm64["digest"].as_str().expect("digest").to_owned(),
        path,
        index,
        index_digest,
    }
}

/// skopeo with its own signature policy and an empty auth file.
struct Skopeo {
    policy: PathBuf,
    auth: PathBuf,
}

impl Skopeo {
    fn new(work: &Path) -> Skopeo {
        let policy = work.join("policy.json");
        write_file(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        );
        let auth = work.join("auth.json");
        write_file(&auth, r#"{"auths":{}}"#);
        Skopeo { policy, auth }
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = cmd(120, "skopeo");
        c.arg("--policy")
            .arg(&self.policy)
            .arg(sub)
            .env("REGISTRY_AUTH_FILE", &self.auth);
        match sub {
            "copy" => c.args(["--src-tls-verify=false", "--dest-tls-verify=false"]),
            _ => c.arg("--tls-verify=false"),
        };
        c
    }
}

/// What skopeo saw of one registry, for comparing Wharf with Distribution.
#[derive(Debug, PartialEq)]
struct SkopeoView {
    pushed: String,
    copied_back: String,
    inspect: Value,
    tags_sorted: Vec<String>,
    multi_pushed: String,
    multi_back: String,
    multi_inspect_arm64: Value,
    by_digest_back: String,
    tags_after_delete: Vec<String>,
    multi_still_there: String,
}

fn tags_of(listing: &str) -> Vec<String> {
    let v = json_of(listing, "skopeo list-tags");
    v["Tags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().expect("tag").to_owned())
        .collect()
}

/// The fields of `skopeo inspect` that depend on the registry, not the
/// registry's address.
fn inspect_fields(v: &Value) -> Value {
    let mut tags: Vec<String> = v["RepoTags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| t.as_str().unwrap_or("").to_owned())
        .collect();
    tags.sort();
    json!({
        "Digest": v["Digest"],
        "RepoTags": tags,
        "Created": v["Created"],
        "Architecture": v["Architecture"],
        "Os": v["Os"],
        "Layers": v["Layers"],
        "Env": v["Env"],
        "Labels": v["Labels"],
    })
}

/// The skopeo scenario against one registry at `addr` ("host:port").
fn skopeo_scenario(
    s: &Skopeo,
    addr: &str,
    base: &str,
    img: &UmociLayout,
    work: &Path,
) -> SkopeoView {
    let repo = "interop/busybox";
    let remote = |tag: &str| format!("docker://{addr}/{repo}:{tag}");
    let local = |tag: &str| format!("oci:{}:{tag}", img.path.display());

    // Single-platform image: push under two tags; the manifest bytes are
    // kept as they are (no conversion), so the digest is the layout's.
    let digestfile = work.join("pushed.digest");
    ok(s.cmd("copy")
        .arg("--digestfile")
        .arg(&digestfile)
        .args([local("amd64"), remote("1.0")]));
    let pushed = read_trimmed(&digestfile);
    assert_eq!(
        pushed, img.amd64,
        "{addr}: skopeo copy reported another digest"
    );
    ok(s.cmd("copy").args([local("amd64"), remote("latest")]));
    let manifest = check_manifest(base, repo, "1.0", &img.amd64, OCI_MANIFEST);
    assert_eq!(
        manifest,
        layout_blob(&img.path, &img.amd64),
        "{addr}: manifest bytes changed"
    );

    // Back into a new layout: same manifest, same blobs.
    let back = work.join("back");
    ok(s.cmd("copy")
        .arg(remote("1.0"))
        .arg(format!("oci:{}:1.0", back.display())));
    let copied_back = layout_ref(&back, "1.0")["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_eq!(
        copied_back, img.amd64,
        "{addr}: round trip changed the digest"
    );
    let m = json_of(&String::from_utf8_lossy(&manifest), "manifest");
    for d in m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .chain([&m["config"]])
    {
        let d = d["digest"].as_str().expect("digest");
        assert_eq!(
            layout_blob(&back, d),
            layout_blob(&img.path, d),
            "{addr}: blob {d} differs after the round trip"
        );
    }

    // inspect, --raw and --config.
    let inspect = json_of(&ok(s.cmd("inspect").arg(remote("1.0"))), "skopeo inspect");
    assert_eq!(inspect["Digest"], img.amd64.as_str(), "{addr}: {inspect}");
    assert_eq!(inspect["Architecture"], "amd64", "{addr}: {inspect}");
    let raw = ok(s.cmd("inspect").arg("--raw").arg(remote("1.0")));
    assert_eq!(
        sha256(raw.as_bytes()),
        img.amd64,
        "{addr}: inspect --raw bytes"
    );
    let config = ok(s
        .cmd("inspect")
        .arg("--config")
        .arg("--raw")
        .arg(remote("1.0")));
    assert_eq!(
        sha256(config.as_bytes()),
        m["config"]["digest"].as_str().expect("config digest"),
        "{addr}: inspect --config --raw bytes"
    );

    let listing = ok(s.cmd("list-tags").arg(format!("docker://{addr}/{repo}")));
    let mut tags_sorted = tags_of(&listing);
    tags_sorted.sort();
    assert_eq!(tags_sorted, ["1.0", "latest"], "{addr}: {listing}");

    // Two-platform index with --all: the index and both images keep their
    // digests; --override-arch picks the arm64 image.
    let multi = format!("docker://{addr}/interop/multi:1.0");
    ok(s.cmd("copy")
        .args(["--all", "--digestfile"])
        .arg(&digestfile)
        .args([local("multi"), multi.clone()]));
    let multi_pushed = read_trimmed(&digestfile);
    assert_eq!(
        multi_pushed, img.index_digest,
        "{addr}: index digest changed"
    );
    let served = check_manifest(base, "interop/multi", "1.0", &img.index_digest, OCI_INDEX);
    assert_eq!(served, img.index, "{addr}: index bytes changed");
    for child in [&img.amd64, &img.arm64] {
        check_manifest(base, "interop/multi", child, child, OCI_MANIFEST);
    }
    let back_multi = work.join("back-multi");
    ok(s.cmd("copy")
        .arg("--all")
        .arg(&multi)
        .arg(format!("oci:{}:multi", back_multi.display())));
    let multi_back = layout_ref(&back_multi, "multi")["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_eq!(multi_back, img.index_digest, "{addr}: index round trip");
    assert_eq!(
        layout_blob(&back_multi, &img.arm64),
        layout_blob(&img.path, &img.arm64)
    );
    let arm = json_of(
        &ok(s
            .cmd("inspect")
            .args(["--override-arch", "arm64", "--override-os", "linux"])
            .arg(&multi)),
        "skopeo inspect arm64",
    );
    assert_eq!(arm["Architecture"], "arm64", "{addr}: {arm}");
    let arm_raw = ok(s
        .cmd("inspect")
        .args(["--override-arch", "arm64", "--raw"])
        .arg(&multi));
    assert_eq!(
        sha256(arm_raw.as_bytes()),
        img.index_digest,
        "{addr}: --raw gives the index"
    );

    // By digest.
    let by_digest = work.join("by-digest");
    ok(s.cmd("copy")
        .arg(format!("docker://{addr}/interop/multi@{}", img.arm64))
        .arg(format!("oci:{}:arm64", by_digest.display())));
    let by_digest_back = layout_ref(&by_digest, "arm64")["digest"]
        .as_str()
        .expect("digest")
        .to_owned();
    assert_eq!(by_digest_back, img.arm64);

    // Delete: skopeo resolves the tag and deletes the manifest by digest,
    // which takes both tags with it; the other repository is untouched.
    ok(s.cmd("delete").arg(remote("latest")));
    let inspect_after_delete = fails(s.cmd("inspect").arg(remote("1.0")));
    assert!(
        inspect_after_delete.contains("manifest unknown"),
        "{addr}: {inspect_after_delete}"
    );
    let listing = ok(s.cmd("list-tags").arg(format!("docker://{addr}/{repo}")));
    let tags_after_delete = tags_of(&listing);
    let head = http(
        "HEAD",
        &format!("{base}/v2/{repo}/manifests/{}", img.amd64),
        &[("accept", ACCEPT_ANY)],
    );
    assert_eq!(head.status, 404, "{addr}: deleted manifest still served");
    let still = json_of(&ok(s.cmd("inspect").arg(&multi)), "skopeo inspect");
    SkopeoView {
        pushed,
        copied_back,
        inspect: inspect_fields(&inspect),
        tags_sorted,
        multi_pushed,
        multi_back,
        multi_inspect_arm64: inspect_fields(&arm),
        by_digest_back,
        tags_after_delete,
        multi_still_there: still["Digest"].as_str().unwrap_or("").to_owned(),
    }
}

#[test]
#[ignore = "needs skopeo, umoci, busybox-static and docker-registry (.ci/install.sh)"]
fn skopeo_round_trips_match_distribution() {
    need(&["skopeo", "umoci", "tar", "timeout", Distribution::BINARY]);
    let work = tempfile::tempdir().expect("tempdir");
    let img = umoci_layout(work.path());
    let s = Skopeo::new(work.path());
    let wharf = Wharf::start_logged(&[]);
    let dist = Distribution::start();

    let on_wharf = {
        let dir = work.path().join("wharf");
        fs::create_dir_all(&dir).expect("mkdir");
        skopeo_scenario(&s, &wharf.addr, &wharf.url, &img, &dir)
    };
    let on_dist = {
        let dir = work.path().join("distribution");
        fs::create_dir_all(&dir).expect("mkdir");
        skopeo_scenario(&s, &dist.addr, &dist.url, &img, &dir)
    };
    assert_eq!(
        on_wharf, on_dist,
        "skopeo saw Wharf (left) and Distribution 2.8 (right) differently"
    );
    assert_eq!(on_wharf.tags_after_delete, Vec::<String>::new());
    assert_eq!(on_wharf.multi_still_there, img.index_digest);

    // Where the raw answers differ, and why that is Distribution's doing.
    // Three tags pushed in non-lexical order:
    for (addr, _) in [(&wharf.addr, &wharf.url), (&dist.addr, &dist.url)] {
        for tag in ["zeta", "alpha", "mid"] {
            ok(s.cmd("copy")
                .arg(format!("oci:{}:amd64", img.path.display()))
                .arg(format!("docker://{addr}/interop/order:{tag}")));
        }
        let listing = ok(s
            .cmd("list-tags")
            .arg(format!("docker://{addr}/interop/order")));
        let mut tags = tags_of(&listing);
        tags.sort();
        assert_eq!(tags, ["alpha", "mid", "zeta"], "{addr}: {listing}");
    }
    // - Wharf lists tags in lexical order and pages with n/last and a Link
    //   header, as distribution-spec v1.1 requires.
    let tags_url = |base: &str, q: &str| format!("{base}/v2/interop/order/tags/list{q}");
    let w = http("GET", &tags_url(&wharf.url, ""), &[]);
    assert_eq!(w.json()["tags"], json!(["alpha", "mid", "zeta"]));
    let w = http("GET", &tags_url(&wharf.url, "?n=2"), &[]);
    assert_eq!(w.json()["tags"], json!(["alpha", "mid"]));
    assert_eq!(
        w.header("link"),
        "</v2/interop/order/tags/list?n=2&last=mid>; rel=\"next\""
    );
    let w = http("GET", &tags_url(&wharf.url, "?n=2&last=mid"), &[]);
    assert_eq!(w.json()["tags"], json!(["zeta"]));
    assert_eq!(w.header("link"), "");
    // - Distribution 2.8.2 returns them unsorted (seen here: alpha, zeta,
    //   mid) and ignores n and last on tags/list, with no Link header: a
    //   known Distribution bug (distribution/distribution#1936, fixed for
    //   3.0 by #3143), so its order and paging are not checked.
    let d = http("GET", &tags_url(&dist.url, "?n=2"), &[]);
    assert_eq!(d.status, 200);
    let mut dtags: Vec<String> =
        serde_json::from_value(d.json()["tags"].clone()).unwrap_or_default();
    dtags.sort();
    assert_eq!(
        dtags,
        ["alpha", "mid", "zeta"],
        "Distribution's answer changed"
    );
    // - With every tag gone (after the delete above) Distribution answers
    //   `"tags": null`, Wharf `"tags": []`; skopeo, like most clients,
    //   reads both as empty.
    let w = http(
        "GET",
        &format!("{}/v2/interop/busybox/tags/list", wharf.url),
        &[],
    );
    let d = http(
        "GET",
        &format!("{}/v2/interop/busybox/tags/list", dist.url),
        &[],
    );
    assert_eq!((w.status, d.status), (200, 200));
    assert_eq!(w.json()["tags"], json!([]));
    assert!(d.json()["tags"].is_null() || d.json()["tags"] == json!([]));

    // - Content negotiation for the OCI index at interop/multi:1.0. Both
    //   refuse it by tag to a client that lists only Docker types (404
    //   MANIFEST_UNKNOWN: such a client could not parse it).
    let docker_only = [("accept", DOCKER_MANIFEST), ("accept", DOCKER_LIST)];
    for base in [&wharf.url, &dist.url] {
        let r = http(
            "GET",
            &format!("{base}/v2/interop/multi/manifests/1.0"),
            &docker_only,
        );
        assert_eq!(r.status, 404, "{base}");
        assert_eq!(r.json()["errors"][0]["code"], "MANIFEST_UNKNOWN", "{base}");
    }
    //   Distribution 2.8 also refuses it with no Accept header, with
    //   `Accept: */*`, and even by digest ("OCI index found, but accept
    //   header does not support OCI indexes"): a client that names no type
    //   (curl, scripts) cannot fetch OCI content from it at all. Wharf
    //   serves it in those cases, as distribution-spec v1.1 expects.
    let by_digest = format!("/v2/interop/multi/manifests/{}", img.index_digest);
    for (path, accept) in [
        ("/v2/interop/multi/manifests/1.0", None),
        ("/v2/interop/multi/manifests/1.0", Some("*/*")),
        (by_digest.as_str(), None),
        (by_digest.as_str(), Some(DOCKER_MANIFEST)),
    ] {
        let headers: Vec<(&str, &str)> = accept.iter().map(|a| ("accept", *a)).collect();
        let r = http("GET", &format!("{}{path}", wharf.url), &headers);
        assert_eq!(r.status, 200, "{path} with Accept {accept:?}");
        assert_eq!(r.header("content-type"), OCI_INDEX);
        assert_eq!(r.body, img.index);
    }

    // Registry to registry, both ways: nothing is rewritten in transit.
    for (from, to) in [(&wharf.addr, &dist.addr), (&dist.addr, &wharf.addr)] {
        let df = work.path().join("r2r.digest");
        ok(s.cmd("copy")
            .args(["--all", "--digestfile"])
            .arg(&df)
            .arg(format!("docker://{from}/interop/multi:1.0"))
            .arg(format!("docker://{to}/interop/copied:1.0")));
        assert_eq!(read_trimmed(&df), img.index_digest, "{from} -> {to}");
    }
    check_manifest(
        &wharf.url,
        "interop/copied",
        "1.0",
        &img.index_digest,
        OCI_INDEX,
    );
    for child in [&img.amd64, &img.arm64] {
        check_manifest(&wharf.url, "interop/copied", child, child, OCI_MANIFEST);
    }
}

// ---- buildah and podman ----

#[test]
#[ignore = "needs buildah, podman, runc and busybox-static (.ci/install.sh)"]
fn buildah_push_podman_pull() {
    need(&["buildah", "podman", "runc"]);
    let wharf = Wharf::start_logged(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let cfg = Containers::new(work.path(), &wharf.addr);
    let policy = cfg.policy.clone();
    let buildah = || cfg.tool("buildah", "buildah", 120);
    let podman = || cfg.tool("podman", "podman", 120);
    let image = format!("{}/interop/buildah", wharf.addr);

    // Build from scratch: busybox (run once, chroot isolation), a command,
    // a label.
    let ctr = ok(buildah().args(["from", "scratch"])).trim().to_owned();
    assert!(!ctr.is_empty(), "buildah from printed no container name");
    ok(buildah()
        .arg("copy")
        .arg(&ctr)
        .args([BUSYBOX, "/bin/busybox"]));
    let out = ok(buildah()
        .args(["run", "--isolation", "chroot"])
        .arg(&ctr)
        .args(["--", "/bin/busybox", "echo", "built"]));
    assert_eq!(out.trim(), "built");
    ok(buildah().arg("config").args([
        "--cmd",
        "/bin/busybox sh",
        "--label",
        "org.example.test=wharf-interop",
        "--os",
        "linux",
        "--arch",
        "amd64",
        &ctr,
    ]));
    let image_id = ok(buildah()
        .arg("commit")
        .arg(&ctr)
        .arg("localhost/interop-busybox"))
    .trim()
    .to_owned();

    // Push as OCI and as Docker schema 2.
    let mut pushed = Vec::new();
    for (tag, format, media_type) in [
        ("oci", "oci", OCI_MANIFEST),
        ("docker", "docker", DOCKER_MANIFEST),
    ] {
        let digestfile = work.path().join(format!("{tag}.digest"));
        ok(buildah()
            .args([
                "push",
                "--tls-verify=false",
                "--format",
                format,
                "--signature-policy",
            ])
            .arg(&policy)
            .arg("--digestfile")
            .arg(&digestfile)
            .arg("localhost/interop-busybox")
            .arg(format!("docker://{image}:{tag}")));
        let digest = read_trimmed(&digestfile);
        let manifest = check_manifest(&wharf.url, "interop/buildah", tag, &digest, media_type);
        let m = json_of(&String::from_utf8_lossy(&manifest), "manifest");
        assert_eq!(m["mediaType"], media_type, "{m}");
        pushed.push((tag, digest, m));
    }
    // Both carry the same config (buildah's image ID is the config digest).
    for (_, _, m) in &pushed {
        let config = m["config"]["digest"].as_str().expect("config digest");
        assert_eq!(
            config.trim_start_matches("sha256:"),
            image_id.trim_start_matches("sha256:"),
            "buildah commit printed {image_id}"
        );
    }

    // podman, with a storage of its own, pulls each by tag and by digest.
    for (tag, digest, _) in &pushed {
        ok(podman()
            .args(["pull", "--tls-verify=false", "--signature-policy"])
            .arg(&policy)
            .arg(format!("{image}:{tag}")));
        let inspect = json_of(
            &ok(podman()
                .args(["image", "inspect"])
                .arg(format!("{image}:{tag}"))),
            "podman image inspect",
        );
        // One local image for both tags: each pull adds its manifest digest.
        let repo_digest = format!("{image}@{digest}");
        assert!(
            inspect[0]["RepoDigests"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d == repo_digest.as_str())),
            "{tag}: {repo_digest} not in {inspect}"
        );
        assert_eq!(
            inspect[0]["Id"].as_str().unwrap_or(""),
            image_id.trim_start_matches("sha256:"),
            "{tag}: {inspect}"
        );
        assert_eq!(
            inspect[0]["Labels"]["org.example.test"], "wharf-interop",
            "{tag}: {inspect}"
        );
        ok(podman()
            .args(["pull", "--tls-verify=false", "--signature-policy"])
            .arg(&policy)
            .arg(format!("{image}@{digest}")));
    }

    // What came down runs.
    let out = ok(podman()
        .args(["run", "--rm", "--network", "none"])
        .arg(format!("{image}:oci"))
        .args(["/bin/busybox", "echo", "hello from wharf"]));
    assert_eq!(out.trim(), "hello from wharf");

    // podman pushes the pulled image to another repository (its blobs are
    // in the registry already: cross-repository mount or re-upload).
    let digestfile = work.path().join("podman.digest");
    ok(podman()
        .args([
            "push",
            "--tls-verify=false",
            "--format",
            "oci",
            "--signature-policy",
        ])
        .arg(&policy)
        .arg("--digestfile")
        .arg(&digestfile)
        .arg(format!("{image}:oci"))
        .arg(format!("docker://{}/interop/podman:copy", wharf.addr)));
    let digest = read_trimmed(&digestfile);
    check_manifest(&wharf.url, "interop/podman", "copy", &digest, OCI_MANIFEST);

    // Tag listing and search (the catalog) through podman.
    // (podman 4.3 ignores --format with --list-tags: read the table.)
    let listing = ok(podman()
        .args(["search", "--list-tags", "--tls-verify=false"])
        .arg(&image));
    let mut tags: Vec<&str> = listing
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    tags.sort_unstable();
    assert_eq!(tags, ["docker", "oci"], "{listing}");
    let found = ok(podman()
        .args(["search", "--format", "{{.Name}}", "--tls-verify=false"])
        .arg(format!("{}/interop", wharf.addr)));
    for repo in ["interop/buildah", "interop/podman"] {
        assert!(
            found
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&format!("{}/{repo}", wharf.addr))),
            "podman search did not find {repo}:\n{found}"
        );
    }

    // A tag that is not there.
    let err = fails(
        podman()
            .args(["pull", "--tls-verify=false", "--signature-policy"])
            .arg(&policy)
            .arg(format!("{image}:missing")),
    );
    assert!(err.contains("manifest unknown"), "{err}");
}

// ---- Docker ----

/// The digest that `docker push` prints: "TAG: digest: sha256:... size: N".
fn pushed_digest(out: &str) -> (String, u64) {
    let line = out
        .lines()
        .find(|l| l.contains(": digest: "))
        .unwrap_or_else(|| panic!("no digest in docker push output:\n{out}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "digest:").expect("digest:");
    let size = words
        .iter()
        .position(|w| *w == "size:")
        .and_then(|i| words.get(i + 1))
        .and_then(|s| s.parse().ok())
        .expect("size");
    (words[at + 1].to_owned(), size)
}

/// A `docker save`-format archive of a busybox image whose config says
/// arm64, tagged `tag`.
fn docker_archive(work: &Path, tag: &str) -> PathBuf {
    let dir = work.join("archive");
    let tar = busybox_rootfs_tar(work, &[("etc/arch", "arm64")]);
    let diff_id = sha256(&tar);
    let layer_dir = diff_id.trim_start_matches("sha256:");
    write_file(&dir.join(layer_dir).join("layer.tar"), &tar);
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": "arm64",
        "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"], "Labels": {"org.example.arch": "arm64"}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "wharf interop test"}],
    }))
    .expect("json");
    let config_name = format!("{}.json", sha256(&config).trim_start_matches("sha256:"));
    write_file(&dir.join(&config_name), &config);
    write_file(
        &dir.join("manifest.json"),
        serde_json::to_vec(&json!([{
            "Config": config_name,
            "RepoTags": [tag],
            "Layers": [format!("{layer_dir}/layer.tar")],
        }]))
        .expect("json"),
    );
    let out = work.join("arm64.tar");
    ok(cmd(60, "tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(&out)
        .arg("."));
    out
}

#[test]
#[ignore = "needs docker.io (dockerd, containerd, runc), busybox-static and docker-registry (.ci/install.sh)"]
fn docker_push_pull_and_manifest_list() {
    need(&[
        "dockerd",
        "containerd",
        "ctr",
        "runc",
        "tar",
        Distribution::BINARY,
    ]);
    let wharf = Wharf::start_logged(&[]);
    let dist = Distribution::start();
    let d = Docker::start();
    let work = d.dir.path().join("work");
    fs::create_dir_all(&work).expect("mkdir");
    let repo = "interop/docker";
    let name = |addr: &str, tag: &str| format!("{addr}/{repo}:{tag}");

    // amd64 with `docker import` of a rootfs tar; arm64 with `docker load`
    // of a docker-save archive made here.
    let tar = busybox_rootfs_tar(&work, &[]);
    write_file(&work.join("amd64.tar"), &tar);
    ok(d.docker(120)
        .args(["import", "--change", "CMD [\"/bin/busybox\",\"sh\"]"])
        .arg(work.join("amd64.tar"))
        .arg(name(&wharf.addr, "amd64")));
    let loaded = ok(d
        .docker(120)
        .arg("load")
        .arg("--input")
        .arg(docker_archive(&work, &name(&wharf.addr, "arm64"))));
    assert!(loaded.contains(&name(&wharf.addr, "arm64")), "{loaded}");
    let arch = ok(d
        .docker(30)
        .args(["image", "inspect", "--format", "{{.Architecture}}"])
        .arg(name(&wharf.addr, "arm64")));
    assert_eq!(arch.trim(), "arm64");

    // Push both, to Wharf and to Distribution: the same digests.
    let mut digests = Vec::new();
    for tag in ["amd64", "arm64"] {
        let mut seen = Vec::new();
        for (addr, base) in [(&wharf.addr, &wharf.url), (&dist.addr, &dist.url)] {
            if addr != &wharf.addr {
                ok(d.docker(30)
                    .arg("tag")
                    .arg(name(&wharf.addr, tag))
                    .arg(name(addr, tag)));
            }
            let out = ok(d.docker(180).arg("push").arg(name(addr, tag)));
            let (digest, size) = pushed_digest(&out);
            let manifest = check_manifest(base, repo, tag, &digest, DOCKER_MANIFEST);
            assert_eq!(manifest.len() as u64, size, "{addr}: {out}");
            seen.push(digest);
        }
        assert_eq!(
            seen[0], seen[1],
            "{tag}: Wharf and Distribution got different digests"
        );
        digests.push(seen[0].clone());
    }

    // Remove locally, pull back from Wharf, and run it.
    for tag in ["amd64", "arm64"] {
        ok(d.docker(60)
            .args(["rmi", "--force"])
            .arg(name(&wharf.addr, tag))
            .arg(name(&dist.addr, tag)));
    }
    let images = ok(d.docker(30).args(["images", "--quiet"]));
    assert!(images.trim().is_empty(), "images left after rmi:\n{images}");
    for (tag, digest) in ["amd64", "arm64"].iter().zip(&digests) {
        let mut pull = d.docker(180);
        pull.arg("pull");
        if *tag == "arm64" {
            pull.args(["--platform", "linux/arm64"]);
        }
        let out = ok(pull.arg(name(&wharf.addr, tag)));
        assert!(out.contains(&format!("Digest: {digest}")), "{tag}:\n{out}");
        let repo_digests = ok(d
            .docker(30)
            .args(["image", "inspect", "--format", "{{json .RepoDigests}}"])
            .arg(name(&wharf.addr, tag)));
        assert!(
            repo_digests.contains(&format!("{}/{repo}@{digest}", wharf.addr)),
            "{repo_digests}"
        );
    }
    let out = ok(d
        .docker(120)
        .args(["run", "--rm", "--network", "none"])
        .arg(name(&wharf.addr, "amd64"))
        .args(["/bin/busybox", "echo", "hello from wharf"]));
    assert_eq!(out.trim(), "hello from wharf");

    // By digest, after removing the image again.
    ok(d.docker(60)
        .args(["rmi", "--force"])
        .arg(name(&wharf.addr, "amd64")));
    let by_digest = format!("{}/{repo}@{}", wharf.addr, digests[0]);
    let out = ok(d.docker(180).arg("pull").arg(&by_digest));
    assert!(out.contains(&format!("Digest: {}", digests[0])), "{out}");

    // Pushed to another repository, the layer docker pulled from the first
    // one is mounted across repositories rather than uploaded again.
    let mounted = format!("{}/interop/docker-mounted:amd64", wharf.addr);
    ok(d.docker(30).arg("tag").arg(&by_digest).arg(&mounted));
    let out = ok(d.docker(180).arg("push").arg(&mounted));
    assert!(out.contains(&format!("Mounted from {repo}")), "{out}");
    let (digest, _) = pushed_digest(&out);
    assert_eq!(digest, digests[0], "{out}");
    check_manifest(
        &wharf.url,
        "interop/docker-mounted",
        "amd64",
        &digest,
        DOCKER_MANIFEST,
    );

    // A two-platform manifest list with `docker manifest`, on both registries.
    let mut lists = Vec::new();
    for (addr, base) in [(&wharf.addr, &wharf.url), (&dist.addr, &dist.url)] {
        let list = name(addr, "multi");
        ok(d.docker(60)
            .args(["manifest", "create", "--insecure"])
            .arg(&list)
            .arg(name(addr, "amd64"))
            .arg(name(addr, "arm64")));
        let out = ok(d
            .docker(60)
            .args(["manifest", "push", "--insecure", "--purge"])
            .arg(&list));
        let digest = out
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("sha256:"))
            .unwrap_or_else(|| panic!("no digest from docker manifest push:\n{out}"))
            .to_owned();
        let bytes = check_manifest(base, repo, "multi", &digest, DOCKER_LIST);
        let doc = json_of(&String::from_utf8_lossy(&bytes), "manifest list");
        let mut platforms: Vec<(String, String)> = doc["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .map(|m| {
                (
                    m["platform"]["architecture"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    m["digest"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        platforms.sort();
        assert_eq!(
            platforms,
            [
                ("amd64".to_owned(), digests[0].clone()),
                ("arm64".to_owned(), digests[1].clone())
            ],
            "{addr}: {doc}"
        );
        let inspect = json_of(
            &ok(d
                .docker(60)
                .args(["manifest", "inspect", "--insecure"])
                .arg(&list)),
            "docker manifest inspect",
        );
        assert_eq!(inspect["mediaType"], DOCKER_LIST, "{inspect}");
        lists.push(digest);
    }
    assert_eq!(
        lists[0], lists[1],
        "manifest list digests differ between Wharf and Distribution"
    );

    // Pulling the list picks the platform asked for.
    ok(d.docker(60)
        .args(["rmi", "--force"])
        .arg(name(&wharf.addr, "arm64")));
    let out = ok(d
        .docker(180)
        .args(["pull", "--platform", "linux/arm64"])
        .arg(name(&wharf.addr, "multi")));
    assert!(out.contains(&format!("Digest: {}", lists[0])), "{out}");
    let arch = ok(d
        .docker(30)
        .args(["image", "inspect", "--format", "{{.Architecture}}"])
        .arg(name(&wharf.addr, "multi")));
    assert_eq!(arch.trim(), "arm64");

    // A tag that is not there.
    let err = fails(d.docker(60).arg("pull").arg(name(&wharf.addr, "missing")));
    assert!(
        err.contains("not found") || err.contains("manifest unknown"),
        "{err}"
    );
}

// ---- containerd's ctr ----

#[test]
#[ignore = "needs containerd (ctr) and busybox-static (.ci/install.sh)"]
fn ctr_push_and_pull() {
    need(&["containerd", "ctr", "tar", "gzip"]);
    let wharf = Wharf::start_logged(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let name = |tag: &str| format!("{}/interop/ctr:{tag}", wharf.addr);

    // An OCI archive made here: one amd64 image and a two-platform index.
    let layout = w.join("layout");
    let amd64 = oci_image(&layout, w, "amd64");
    let arm64 = oci_image(&layout, w, "arm64");
    let (index, index_digest) = oci_index(&layout, &[("amd64", &amd64), ("arm64", &arm64)]);
    write_file(
        &layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    write_file(
        &layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [
                layout_descriptor(OCI_MANIFEST, &amd64.manifest, json!({
                    "org.opencontainers.image.ref.name": "v1",
                    "io.containerd.image.name": name("v1"),
                })),
                layout_descriptor(OCI_INDEX, &index, json!({
                    "org.opencontainers.image.ref.name": "multi",
                    "io.containerd.image.name": name("multi"),
                })),
            ],
        }))
        .expect("json"),
    );
    let archive = w.join("image.tar");
    ok(cmd(60, "tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .arg("."));

    // containerd A imports and pushes.
    let a = Containerd::start(&w.join("a"));
    ok(a.ctr(120, "interop")
        .args(["images", "import", "--all-platforms", "--no-unpack"])
        .arg(&archive));
    for (tag, digest, media_type) in [
        ("v1", &amd64.digest, OCI_MANIFEST),
        ("multi", &index_digest, OCI_INDEX),
    ] {
        ok(a.ctr(120, "interop")
            .args(["images", "push", "--plain-http"])
            .arg(name(tag)));
        check_manifest(&wharf.url, "interop/ctr", tag, digest, media_type);
    }
    for b in [&amd64, &arm64] {
        check_manifest(
            &wharf.url,
            "interop/ctr",
            &b.digest,
            &b.digest,
            OCI_MANIFEST,
        );
    }

    // containerd B, which never saw the image, pulls it.
    let b = Containerd::start(&w.join("b"));
    ok(b.ctr(120, "interop")
        .args(["images", "pull", "--plain-http", "--snapshotter", "native"])
        .arg(name("v1")));
    let listed = ok(b.ctr(30, "interop").args(["images", "ls"]));
    let row = listed
        .lines()
        .find(|l| l.starts_with(&name("v1")))
        .unwrap_or_else(|| panic!("{} not listed:\n{listed}", name("v1")));
    assert!(
        row.contains(&amd64.digest),
        "ctr lists another digest:\n{listed}"
    );
    assert!(row.contains(OCI_MANIFEST), "{listed}");
    let check = ok(b.ctr(30, "interop").args(["images", "check"]));
    assert!(
        check
            .lines()
            .any(|l| l.starts_with(&name("v1")) && l.contains("complete")),
        "{check}"
    );
    for (digest, want) in [
        (&amd64.digest, amd64.manifest.clone()),
        (
            &amd64.layer_digest,
            layout_blob(&layout, &amd64.layer_digest),
        ),
        (
            &amd64.config_digest,
            layout_blob(&layout, &amd64.config_digest),
        ),
    ] {
        let got = run(b.ctr(30, "interop").args(["content", "get", digest]));
        assert!(
            got.status.success(),
            "ctr content get {digest}: {}",
            text(&got.stderr)
        );
        assert!(
            got.stdout == want,
            "content {digest} differs from what was pushed"
        );
    }

    // The index with every platform, and an image by digest.
    ok(b.ctr(120, "interop")
        .args([
            "images",
            "pull",
            "--plain-http",
            "--all-platforms",
            "--snapshotter",
            "native",
        ])
        .arg(name("multi")));
    let got = run(b
        .ctr(30, "interop")
        .args(["content", "get", &arm64.layer_digest]));
    assert!(
        got.status.success() && got.stdout == layout_blob(&layout, &arm64.layer_digest),
        "arm64 layer not pulled with --all-platforms"
    );
    let by_digest = format!("{}/interop/ctr@{}", wharf.addr, arm64.digest);
    ok(b.ctr(120, "other")
        .args([
            "images",
            "pull",
            "--plain-http",
            "--platform",
            "linux/arm64",
            "--snapshotter",
            "native",
        ])
        .arg(&by_digest));
    let listed = ok(b.ctr(30, "other").args(["images", "ls", "--quiet"]));
    assert!(listed.contains(&by_digest), "{listed}");

    let err = fails(
        b.ctr(60, "interop")
            .args(["images", "pull", "--plain-http"])
            .arg(name("missing")),
    );
    assert!(err.contains("not found"), "{err}");
}

// ---- oras (Python SDK) ----

/// Pushes an image, a standalone artifact with a custom artifactType, and
/// two referrers to the image (an SBOM with `artifactType`, and a signature
/// whose type is only its config's mediaType) with the oras SDK; pulls the
/// artifact back; lists referrers. The SDK has no referrers call, so that
/// step is a plain GET through the SDK's own session (`do_request`), and is
/// checked again from Rust. Prints one JSON object.
const ORAS_SCRIPT: &str = r#"
import hashlib, io, json, os, sys, tarfile
from dataclasses import asdict
import oras.client, oras.oci

host, repo, work = sys.argv[1], sys.argv[2], sys.argv[3]
os.chdir(work)
c = oras.client.OrasClient(hostname=host, insecure=True)
base = f"{host}/{repo}"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
out = {}

def sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

def write_file(name, data):
    with open(name, "wb") as f:
        f.write(data)

def check(r, what):
    assert r.status_code in (200, 201, 202), (what, r.status_code, r.text)

def head(ref):
    r = c.do_request(f"http://{host}/v2/{repo}/manifests/{ref}", "HEAD",
                     headers={"Accept": OCI_MANIFEST})
    check(r, f"HEAD {ref}")
    return r.headers["Docker-Content-Digest"], int(r.headers["Content-Length"])

# An image: one tar layer and an image config.
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as t:
    data = b"hello from oras\n"
    info = tarfile.TarInfo("hello.txt")
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))
write_file("layer.tar", buf.getvalue())
write_file("config.json", json.dumps({"architecture": "amd64", "os": "linux",
    "rootfs": {"type": "layers", "diff_ids": [sha(buf.getvalue())]}}).encode())
r = c.push(target=f"{base}:image", files=["layer.tar:application/vnd.oci.image.layer.v1.tar"],
           manifest_config="config.json:application/vnd.oci.image.config.v1+json", quiet=True)
check(r, "push image")
out["image_status"] = r.status_code
out["image_digest"], size = head("image")
subject = oras.oci.Subject(mediaType=OCI_MANIFEST, digest=out["image_digest"], size=size)

def push_manual(tag, files, artifact_type, subject=None, annotations=None):
    # The SDK's push() cannot set artifactType: build the manifest here and
    # upload it with the SDK's blob and manifest calls; no tag: by digest.
    container = c.get_container(f"{base}:{tag or 'untagged'}")
    write_file("empty.json", b"{}")
    config = {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha(b"{}"), "size": 2}
    check(c.upload_blob("empty.json", container, config), "config blob")
    layers = []
    for name, media_type in files:
        layer = oras.oci.NewLayer(name, media_type=media_type)
        layer["annotations"] = {"org.opencontainers.image.title": name}
        check(c.upload_blob(name, container, layer), f"blob {name}")
        layers.append(layer)
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
                "config": config, "layers": layers}
    if subject:
        manifest["subject"] = asdict(subject)
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest).encode()
    if not tag:
        container = c.get_container(f"{base}@{sha(body)}")
    r = c.upload_manifest(manifest, container)
    check(r, f"manifest {tag or sha(body)}")
    return {"status": r.status_code, "digest": r.headers.get("Docker-Content-Digest"),
            "subject": r.headers.get("OCI-Subject"), "sha": sha(body), "size": len(body)}

# A standalone artifact with a custom artifactType, pulled back with the SDK.
write_file("readme.txt", b"wharf interop artifact\n")
out["artifact"] = push_manual("readme", [("readme.txt", "text/plain")],
                              "application/vnd.wharf.readme.v1")
pulled = c.pull(target=f"{base}:readme", outdir=os.path.join(work, "pulled"))
out["pulled"] = [open(p, "rb").read().decode() for p in pulled]
out["artifact_manifest"] = c.get_manifest(f"{base}:readme")

# An SBOM referrer, pushed by digest, with artifactType and annotations.
write_file("sbom.spdx.json", json.dumps({"spdxVersion": "SPDX-2.3", "name": "interop"}).encode())
out["sbom"] = push_manual(None, [("sbom.spdx.json", "application/spdx+json")],
                          "application/vnd.wharf.sbom.v1+json", subject,
                          {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"})

# A signature-style referrer with push(): no artifactType, only a config
# mediaType, tagged.
write_file("sig.txt", b"not really a signature\n")
write_file("sigconfig.json", b"{}")
r = c.push(target=f"{base}:sig", files=["sig.txt:application/vnd.wharf.signature.v1"],
           manifest_config="sigconfig.json:application/vnd.wharf.signature.config.v1+json",
           subject=subject, quiet=True)
check(r, "push sig")
out["sig"] = {"status": r.status_code, "digest": r.headers.get("Docker-Content-Digest"),
              "subject": r.headers.get("OCI-Subject")}

def referrers(query=""):
    r = c.do_request(f"http://{host}/v2/{repo}/referrers/{out['image_digest']}{query}", "GET",
                     headers={"Accept": OCI_INDEX})
    return {"status": r.status_code, "content_type": r.headers.get("Content-Type"),
            "filters": r.headers.get("OCI-Filters-Applied"), "body": r.json()}

out["referrers"] = referrers()
out["referrers_sbom"] = referrers("?artifactType=application/vnd.wharf.sbom.v1%2Bjson")
out["tags"] = sorted(c.get_tags(base))
# Tag deletion through the SDK.
out["deleted"] = c.delete_tag(base, "readme")
out["tags_after"] = sorted(c.get_tags(base))
print(json.dumps(out))
"#;

/// oras' push() writes `"annotations": {}`: an empty map may be listed in
/// a referrers descriptor or left out.
fn without_empty_annotations(mut v: Value) -> Value {
    if v["annotations"] == json!({})
        && let Some(o) = v.as_object_mut()
    {
        o.remove("annotations");
    }
    v
}

#[test]
#[ignore = "needs the oras Python SDK (pip install oras in the venv that .ci/install.sh makes)"]
fn oras_artifacts_and_referrers() {
    let python = oras_python();
    assert!(
        python.is_file(),
        "{} missing: run .ci/install.sh, or set WHARF_ORAS_PYTHON",
        python.display()
    );
    let wharf = Wharf::start_logged(&[]);
    let work = tempfile::tempdir().expect("tempdir");
    let script = work.path().join("oras_interop.py");
    write_file(&script, ORAS_SCRIPT);
    let repo = "interop/oras";
    let out = ok(cmd(120, &python.to_string_lossy())
        .arg(&script)
        .args([&wharf.addr, repo])
        .arg(work.path()));
    let r = json_of(out.lines().last().unwrap_or(""), "oras script output");

    let image = r["image_digest"].as_str().expect("image digest").to_owned();
    check_manifest(&wharf.url, repo, "image", &image, OCI_MANIFEST);
    assert_eq!(r["image_status"], 201, "{r}");

    // The standalone artifact.
    let artifact = &r["artifact"];
    assert_eq!(artifact["status"], 201, "{r}");
    assert_eq!(artifact["digest"], artifact["sha"], "{r}");
    assert!(
        artifact["subject"].is_null(),
        "OCI-Subject on a manifest without subject: {r}"
    );
    assert_eq!(r["pulled"], json!(["wharf interop artifact\n"]), "{r}");
    assert_eq!(
        r["artifact_manifest"]["artifactType"],
        "application/vnd.wharf.readme.v1"
    );

    // Both referrers were accepted and the subject acknowledged.
    let sbom = &r["sbom"];
    assert_eq!(sbom["status"], 201, "{r}");
    assert_eq!(sbom["digest"], sbom["sha"], "{r}");
    assert_eq!(sbom["subject"], image.as_str(), "OCI-Subject header: {r}");
    let sig = &r["sig"];
    assert_eq!(sig["status"], 201, "{r}");
    assert_eq!(sig["subject"], image.as_str(), "OCI-Subject header: {r}");
    let sig_digest = sig["digest"].as_str().expect("sig digest");
    let sig_bytes = check_manifest(&wharf.url, repo, "sig", sig_digest, OCI_MANIFEST);

    // The referrers list, as the SDK's session got it.
    let list = &r["referrers"];
    assert_eq!(list["status"], 200, "{r}");
    assert_eq!(list["content_type"], OCI_INDEX, "{r}");
    let mut entries: Vec<Value> = list["body"]["manifests"]
        .as_array()
        .expect("manifests")
        .clone();
    entries.sort_by_key(|e| e["artifactType"].as_str().unwrap_or("").to_owned());
    let got: Vec<Value> = entries.into_iter().map(without_empty_annotations).collect();
    let want: Vec<Value> = [
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": sbom["digest"],
            "size": sbom["size"],
            "artifactType": "application/vnd.wharf.sbom.v1+json",
            "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
        }),
        json!({
            "mediaType": OCI_MANIFEST,
            "digest": sig_digest,
            "size": sig_bytes.len(),
            // No artifactType in the manifest: the config's mediaType.
            "artifactType": "application/vnd.wharf.signature.config.v1+json",
        }),
    ]
    .into_iter()
    .map(without_empty_annotations)
    .collect();
    assert_eq!(got, want, "referrers: {list}");
    let filtered = &r["referrers_sbom"];
    assert_eq!(filtered["status"], 200, "{r}");
    assert_eq!(filtered["filters"], "artifactType", "{r}");
    let f = filtered["body"]["manifests"].as_array().expect("manifests");
    assert_eq!(f.len(), 1, "{filtered}");
    assert_eq!(f[0]["digest"], sbom["digest"], "{filtered}");

    // The same list from Rust, and an unknown subject's empty list.
    let resp = http(
        "GET",
        &format!("{}/v2/{repo}/referrers/{image}", wharf.url),
        &[("accept", OCI_INDEX)],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json(), list["body"]);
    let unknown = sha256(b"no such manifest");
    let resp = http(
        "GET",
        &format!("{}/v2/{repo}/referrers/{unknown}", wharf.url),
        &[],
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["manifests"], json!([]));

    // Tags, before and after the SDK's delete_tag, which resolves the tag
    // with HEAD and deletes the manifest by digest.
    assert_eq!(r["tags"], json!(["image", "readme", "sig"]), "{r}");
    assert_eq!(r["deleted"], true, "{r}");
    assert_eq!(r["tags_after"], json!(["image", "sig"]), "{r}");
    let resp = http(
        "GET",
        &format!(
            "{}/v2/{repo}/manifests/{}",
            wharf.url,
            artifact["digest"].as_str().unwrap_or("")
        ),
        &[("accept", OCI_MANIFEST)],
    );
    assert_eq!(resp.status, 404, "the artifact's manifest is still served");
}

// ---- the Rust oci-client crate (runs by default) ----

#[tokio::test(flavor = "multi_thread")]
async fn oci_client_push_pull() {
    use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
    use oci_client::manifest::{self, OciDescriptor, OciImageManifest};
    use oci_client::secrets::RegistryAuth;
    use oci_client::{Client, Reference};

    common::install_crypto();
    let wharf = Wharf::start_logged(&[]);
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        read_timeout: Some(Duration::from_secs(30)),
        connect_timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    });
    let auth = RegistryAuth::Anonymous;
    let bounded = Duration::from_secs(60);
    macro_rules! call {
        ($what:expr, $fut:expr) => {
            tokio::time::timeout(bounded, $fut)
                .await
                .unwrap_or_else(|_| panic!("{} timed out", $what))
                .unwrap_or_else(|e| panic!("{}: {e:?}", $what))
        };
    }
    let reference: Reference = format!("{}/interop/oci-client:v1", wharf.addr)
        .parse()
        .expect("reference");

    let layer_a: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let layer_b = b"second layer".to_vec();
    let layers = vec![
        ImageLayer::new(
            layer_a.clone(),
            manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE.into(),
            None,
        ),
        ImageLayer::new(
            layer_b.clone(),
            manifest::IMAGE_LAYER_MEDIA_TYPE.into(),
            None,
        ),
    ];
    let config_bytes =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec();
    let config = Config::new(
        config_bytes.clone(),
        manifest::IMAGE_CONFIG_MEDIA_TYPE.into(),
        None,
    );
    let image_manifest = OciImageManifest::build(&layers, &config, None);
    let pushed = call!(
        "push",
        client.push(
            &reference,
            &layers,
            config,
            &auth,
            Some(image_manifest.clone())
        )
    );

    let digest = call!(
        "fetch_manifest_digest",
        client.fetch_manifest_digest(&reference, &auth)
    );
    let (raw, raw_digest) = call!(
        "pull_manifest_raw",
        client.pull_manifest_raw(&reference, &auth, &[manifest::OCI_IMAGE_MEDIA_TYPE])
    );
    assert_eq!(raw_digest, digest);
    // Where the registry said the manifest is: by tag or by digest.
    let url = &pushed.manifest_url;
    assert!(
        url.ends_with("/v2/interop/oci-client/manifests/v1")
            || url.ends_with(&format!("/v2/interop/oci-client/manifests/{digest}")),
        "{url}"
    );
    assert_eq!(sha256(&raw), digest);

    // Pull by tag and by digest: every byte comes back.
    for r in [
        reference.clone(),
        reference.clone_with_digest(digest.clone()),
    ] {
        let image = call!(
            "pull",
            client.pull(
                &r,
                &auth,
                vec![
                    manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
                    manifest::IMAGE_LAYER_MEDIA_TYPE
                ]
            )
        );
        assert_eq!(image.digest.as_deref(), Some(digest.as_str()), "{r}");
        assert_eq!(
            sha256(&image.config.data),
            sha256(&config_bytes),
            "{r}: config"
        );
        // oci-client fetches layers concurrently: compare as a set.
        let mut got: Vec<String> = image.layers.iter().map(|l| sha256(&l.data)).collect();
        got.sort();
        let mut want = vec![sha256(&layer_a), sha256(&layer_b)];
        want.sort();
        assert_eq!(got, want, "{r}: layers");
    }

    // A blob in chunks, then read back.
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<oci_client::errors::Result<bytes::Bytes>> = big
        .chunks(512 * 1024)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    let chunked = call!(
        "push_blob_stream_chunked",
        client.push_blob_stream_chunked(&reference, futures::stream::iter(chunks))
    );
    assert_eq!(chunked.blob_digest, sha256(&big));
    assert_eq!(chunked.size, big.len() as u64);
    let mut back = Vec::new();
    let desc = OciDescriptor {
        media_type: "application/octet-stream".into(),
        digest: chunked.blob_digest.clone(),
        size: big.len() as i64,
        ..Default::default()
    };
    call!("pull_blob", client.pull_blob(&reference, &desc, &mut back));
    assert!(back == big, "chunked blob came back different");

    // Mount into another repository.
    let other: Reference = format!("{}/interop/oci-client-mounted:v1", wharf.addr)
        .parse()
        .expect("reference");
    call!(
        "mount_blob",
        client.mount_blob(&other, &reference, &chunked.blob_digest)
    );
    assert!(call!(
        "blob_exists",
        client.blob_exists(&other, &chunked.blob_digest)
    ));

    // A referrer (with subject and artifactType), found through the API.
    let empty = b"{}".to_vec();
    call!(
        "push_blob",
        client.push_blob(&reference, empty.clone(), &sha256(&empty))
    );
    let referrer = OciImageManifest {
        media_type: Some(manifest::OCI_IMAGE_MEDIA_TYPE.into()),
        artifact_type: Some("application/vnd.wharf.test.v1".into()),
        config: OciDescriptor {
            media_type: "application/vnd.oci.empty.v1+json".into(),
            digest: sha256(&empty),
            size: 2,
            ..Default::default()
        },
        layers: vec![image_manifest.layers[1].clone()],
        subject: Some(OciDescriptor {
            media_type: manifest::OCI_IMAGE_MEDIA_TYPE.into(),
            digest: digest.clone(),
            size: raw.len() as i64,
            ..Default::default()
        }),
        ..Default::default()
    };
    let tag_ref: Reference = format!("{}/interop/oci-client:referrer", wharf.addr)
        .parse()
        .expect("reference");
    call!(
        "push_manifest",
        client.push_manifest(&tag_ref, &referrer.clone().into())
    );
    let referrer_digest = call!(
        "fetch referrer digest",
        client.fetch_manifest_digest(&tag_ref, &auth)
    );
    let index = call!(
        "pull_referrers",
        client.pull_referrers(&reference.clone_with_digest(digest.clone()), None)
    );
    assert_eq!(index.manifests.len(), 1, "{index:?}");
    assert_eq!(index.manifests[0].digest, referrer_digest);
    assert_eq!(
        index.manifests[0].artifact_type.as_deref(),
        Some("application/vnd.wharf.test.v1")
    );

    let tags = call!("list_tags", client.list_tags(&reference, &auth, None, None));
    assert_eq!(tags.tags, ["referrer", "v1"]);
}
