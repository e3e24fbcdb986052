//! Real clients against a `wharf serve` with authentication: skopeo with
//! `--creds` (basic and token mode), podman's login/push/pull/logout and
//! the Docker engine's login/push/pull (token mode: the clients do the
//! Docker token dance), and the oras Python SDK with credentials.
//!
//! The tests need the tools that `.ci/install.sh` installs and are
//! ignored by default, each naming its tool:
//! `cargo test -p wharf-server --test interop_auth -- --include-ignored`.
//! Every external command runs under coreutils' `timeout`; every daemon is
//! stopped by a guard's `Drop`; on a panic the server's log tail is shown.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{
    AuthServer, AuthSetup, Built, Containers, Docker, OCI_MANIFEST, Who, basic_auth,
    busybox_rootfs_tar, cmd, fails, json_of, need, oci_image, ok, ok_with_input, oras_python,
    password_of, raw_request, sha256, write_file,
};
use serde_json::json;

/// A one-image OCI layout (busybox, amd64) tagged `v1`.
fn layout(work: &Path) -> (PathBuf, Built) {
    let layout = work.join("layout");
    let img = oci_image(&layout, work, "amd64");
    write_file(
        &layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    write_file(
        &layout.join("index.json"),
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": OCI_MANIFEST,
                "digest": img.digest,
                "size": img.manifest.len(),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }],
        }))
        .expect("json"),
    );
    (layout, img)
}

/// Whether a client's error message says access was refused (not some
/// other failure).
fn refused(err: &str) -> bool {
    let e = err.to_lowercase();
    ["unauthorized", "denied", "authentication required"]
        .iter()
        .any(|w| e.contains(w))
}

/// `user:password` for `--creds`.
fn creds(s: &AuthServer, who: Who) -> String {
    let (u, p) = s.creds(who).expect("credentials");
    format!("{u}:{p}")
}

/// The digest of `repo:reference` as the admin sees it (None if absent).
fn served_digest(s: &AuthServer, repo: &str, reference: &str) -> Option<String> {
    let r = raw_request(
        s.addr(),
        "HEAD",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[
            ("Authorization", &basic_auth("admin", &password_of("admin"))),
            (
                "Accept",
                "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
            ),
        ],
        b"",
    );
    (r.status == 200).then(|| r.header("docker-content-digest").unwrap_or("").to_owned())
}

/// The server's access log lines for the token endpoint.
fn token_requests(s: &AuthServer) -> Vec<String> {
    let log = std::fs::read_to_string(s.wharf.dir.path().join("wharf.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("route=\"token\""))
        .map(str::to_owned)
        .collect()
}

// ---- skopeo ----

fn skopeo(work: &Path, sub: &str) -> Command {
    let policy = work.join("policy.json");
    write_file(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    );
    let auth = work.join("auth.json");
    if !auth.exists() {
        write_file(&auth, r#"{"auths":{}}"#);
    }
    let mut c = cmd(120, "skopeo");
    c.arg("--policy")
        .arg(&policy)
        .arg(sub)
        .env("REGISTRY_AUTH_FILE", &auth);
    match sub {
        "copy" => c.args(["--src-tls-verify=false", "--dest-tls-verify=false"]),
        _ => c.arg("--tls-verify=false"),
    };
    c
}

fn skopeo_scenario(mode: &'static str) {
    need(&["skopeo", "tar", "gzip", "timeout"]);
    let s = AuthSetup::new(mode).start();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let (layout, img) = layout(w);
    let local = format!("oci:{}:v1", layout.display());
    let remote = |repo: &str| format!("docker://{}/{repo}:v1", s.addr());
    let digestfile = w.join("digest");

    // Push with the writer's credentials.
    ok(skopeo(w, "copy")
        .args(["--dest-creds", &creds(&s, Who::Writer), "--digestfile"])
        .arg(&digestfile)
        .args([&local, &remote("private/skopeo")]));
    assert_eq!(
        std::fs::read_to_string(&digestfile).expect("digest").trim(),
        img.digest
    );
    assert_eq!(
        served_digest(&s, "private/skopeo", "v1").as_deref(),
        Some(img.digest.as_str())
    );

    // Without credentials, with wrong ones, or without push rights: refused.
    let err = fails(skopeo(w, "copy").args([&local, &remote("private/anon")]));
    assert!(refused(&err), "[{mode}] anonymous push: {err}");
    let err = fails(skopeo(w, "copy").args([
        "--dest-creds",
        "writer:wrong-password",
        &local,
        &remote("private/wrong"),
    ]));
    assert!(refused(&err), "[{mode}] wrong password: {err}");
    let err = fails(skopeo(w, "copy").args([
        "--dest-creds",
        &creds(&s, Who::Reader),
        &local,
        &remote("private/by-reader"),
    ]));
    assert!(refused(&err), "[{mode}] reader push: {err}");
    for repo in ["private/anon", "private/wrong", "private/by-reader"] {
        assert_eq!(served_digest(&s, repo, "v1"), None, "{repo}");
    }

    // inspect: the reader and the robot can, anonymous cannot.
    for who in [Who::Reader, Who::Robot] {
        let v = json_of(
            &ok(skopeo(w, "inspect")
                .args(["--creds", &creds(&s, who)])
                .arg(remote("private/skopeo"))),
            "skopeo inspect",
        );
        assert_eq!(v["Digest"], img.digest.as_str(), "[{mode}] {who:?}: {v}");
        assert_eq!(v["Architecture"], "amd64");
    }
    let err = fails(skopeo(w, "inspect").arg(remote("private/skopeo")));
    assert!(refused(&err), "[{mode}] anonymous inspect: {err}");

    // Copy back with the robot's credentials: the same image.
    let back = w.join("back");
    ok(skopeo(w, "copy")
        .args(["--src-creds", &creds(&s, Who::Robot)])
        .arg(remote("private/skopeo"))
        .arg(format!("oci:{}:v1", back.display())));
    let index = json_of(
        &std::fs::read_to_string(back.join("index.json")).expect("index.json"),
        "index.json",
    );
    assert_eq!(index["manifests"][0]["digest"], img.digest.as_str());
    let layer = back
        .join("blobs/sha256")
        .join(img.layer_digest.trim_start_matches("sha256:"));
    assert_eq!(
        sha256(&std::fs::read(&layer).expect("layer")),
        img.layer_digest
    );

    // A public image, pushed by the admin, is read anonymously.
    ok(skopeo(w, "copy")
        .args(["--dest-creds", &creds(&s, Who::Admin)])
        .args([&local, &remote("public/skopeo")]));
    let v = json_of(
        &ok(skopeo(w, "inspect").arg(remote("public/skopeo"))),
        "skopeo inspect",
    );
    assert_eq!(v["Digest"], img.digest.as_str());

    // Delete needs the delete right: the writer may not, the admin may.
    let err = fails(
        skopeo(w, "delete")
            .args(["--creds", &creds(&s, Who::Writer)])
            .arg(remote("private/skopeo")),
    );
    assert!(refused(&err), "[{mode}] writer delete: {err}");
    assert!(served_digest(&s, "private/skopeo", "v1").is_some());
    ok(skopeo(w, "delete")
        .args(["--creds", &creds(&s, Who::Admin)])
        .arg(remote("private/skopeo")));
    assert_eq!(served_digest(&s, "private/skopeo", "v1"), None);

    if mode == "token" {
        let tokens = token_requests(&s);
        assert!(
            tokens.iter().any(|l| l.contains("status=200")),
            "skopeo never got a token:\n{}",
            tokens.join("\n")
        );
    }
}

#[test]
#[ignore = "needs skopeo and busybox-static (.ci/install.sh)"]
fn skopeo_with_creds_basic_mode() {
    skopeo_scenario("basic");
}

#[test]
#[ignore = "needs skopeo and busybox-static (.ci/install.sh)"]
fn skopeo_with_creds_token_mode() {
    skopeo_scenario("token");
}

// ---- podman ----

#[test]
#[ignore = "needs podman, runc and busybox-static (.ci/install.sh)"]
fn podman_login_push_pull_logout_token_mode() {
    need(&["podman", "runc", "tar", "gzip"]);
    let s = AuthSetup::new("token").start();
    let work = tempfile::tempdir().expect("tempdir");
    let w = work.path();
    let cfg = Containers::new(&w.join("containers"), s.addr());
    let podman = |secs| cfg.tool("podman", "podman", secs);
    let policy = cfg.policy.clone();
    let private = format!("{}/private/podman:v1", s.addr());
    let public = format!("{}/public/podman:v1", s.addr());
    let login = |who: Who| {
        let (u, p) = s.creds(who).expect("creds");
        let out = ok_with_input(
            podman(60)
                .args([
                    "login",
                    "--tls-verify=false",
                    "--username",
                    &u,
                    "--password-stdin",
                ])
                .arg(s.addr()),
            &format!("{p}\n"),
        );
        assert!(out.contains("Login Succeeded"), "{out}");
    };
    let logout = || {
        ok(podman(60).arg("logout").arg(s.addr()));
    };
    let push = |image: &str| {
        let mut c = podman(120);
        c.args([
            "push",
            "--tls-verify=false",
            "--format",
            "oci",
            "--signature-policy",
        ])
        .arg(&policy)
        .arg(image);
        c
    };
    let pull = |image: &str| {
        let mut c = podman(120);
        c.args(["pull", "--tls-verify=false", "--signature-policy"])
            .arg(&policy)
            .arg(image);
        c
    };

    // The image into podman's storage (imported from a busybox root file
    // system), under both names.
    let tar = busybox_rootfs_tar(w, &[]);
    write_file(&w.join("rootfs.tar"), &tar);
    let id = ok(podman(120)
        .args(["import", "--change", "CMD [\"/bin/busybox\",\"sh\"]"])
        .arg(w.join("rootfs.tar"))
        .arg("localhost/interop-auth:v1"))
    .lines()
    .last()
    .expect("image id")
    .trim()
    .to_owned();
    for name in [&private, &public] {
        ok(podman(30).args(["tag", &id, name]));
    }

    // A login that fails does not log in.
    let err = {
        let mut c = podman(60);
        c.args([
            "login",
            "--tls-verify=false",
            "--username",
            "writer",
            "--password-stdin",
        ])
        .arg(s.addr());
        c.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = c.spawn().expect("podman login");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), b"wrong\n")
            .expect("stdin");
        let out = child.wait_with_output().expect("wait");
        assert!(
            !out.status.success(),
            "login with a wrong password succeeded"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(
        refused(&err) || err.contains("invalid username/password"),
        "{err}"
    );

    // The writer pushes to private/, not to public/.
    login(Who::Writer);
    ok(&mut push(&private));
    let served = served_digest(&s, "private/podman", "v1").expect("pushed");
    let err = fails(&mut push(&public));
    assert!(refused(&err), "writer push to public/: {err}");
    assert_eq!(served_digest(&s, "public/podman", "v1"), None);
    logout();
    login(Who::Admin);
    ok(&mut push(&public));
    logout();

    // Pull back as the reader, into an empty storage.
    ok(podman(60).args(["rmi", "--all", "--force"]));
    login(Who::Reader);
    ok(&mut pull(&private));
    let inspect = json_of(
        &ok(podman(30).args(["image", "inspect", &private])),
        "podman image inspect",
    );
    assert!(
        inspect[0]["RepoDigests"].as_array().is_some_and(|d| d
            .iter()
            .any(|d| d.as_str().is_some_and(|d| d.ends_with(&served)))),
        "{inspect}"
    );
    let out = ok(podman(120)
        .args(["run", "--rm", "--network", "none", &private])
        .args(["/bin/busybox", "echo", "pulled with a token"]));
    assert_eq!(out.trim(), "pulled with a token");

    // Logged out: the private image is refused, the public one is not.
    logout();
    ok(podman(60).args(["rmi", "--all", "--force"]));
    let err = fails(&mut pull(&private));
    assert!(refused(&err), "anonymous pull of a private image: {err}");
    ok(&mut pull(&public));
    assert_eq!(
        served_digest(&s, "public/podman", "v1").as_deref(),
        Some(served.as_str())
    );

    // podman used the token endpoint, with credentials and anonymously.
    let tokens = token_requests(&s);
    assert!(
        tokens.iter().filter(|l| l.contains("status=200")).count() >= 3,
        "{}",
        tokens.join("\n")
    );
}

// ---- docker ----

#[test]
#[ignore = "needs docker.io (dockerd, containerd, runc) and busybox-static (.ci/install.sh)"]
fn docker_login_push_pull_token_mode() {
    need(&["dockerd", "containerd", "ctr", "runc", "tar"]);
    let s = AuthSetup::new("token").start();
    let d = Docker::start();
    let work = d.dir.path().join("work");
    std::fs::create_dir_all(&work).expect("mkdir");
    let private = format!("{}/private/docker:v1", s.addr());
    let public = format!("{}/public/docker:v1", s.addr());
    let login = |who: Who| {
        let (u, p) = s.creds(who).expect("creds");
        let out = ok_with_input(
            d.docker(60)
                .args(["login", "--username", &u, "--password-stdin"])
                .arg(s.addr()),
            &format!("{p}\n"),
        );
        assert!(out.contains("Login Succeeded"), "{out}");
    };
    let logout = || {
        ok(d.docker(60).arg("logout").arg(s.addr()));
    };

    let tar = busybox_rootfs_tar(&work, &[]);
    write_file(&work.join("rootfs.tar"), &tar);
    ok(d.docker(120)
        .args(["import", "--change", "CMD [\"/bin/busybox\",\"sh\"]"])
        .arg(work.join("rootfs.tar"))
        .arg(&private));
    ok(d.docker(30).args(["tag", &private, &public]));

    // Anonymous push: refused.
    let err = fails(d.docker(180).args(["push", &private]));
    assert!(refused(&err), "anonymous push: {err}");

    login(Who::Writer);
    let out = ok(d.docker(180).args(["push", &private]));
    let served = served_digest(&s, "private/docker", "v1").expect("pushed");
    assert!(out.contains(&served), "{out}");
    let err = fails(d.docker(180).args(["push", &public]));
    assert!(refused(&err), "writer push to public/: {err}");
    logout();
    login(Who::Admin);
    ok(d.docker(180).args(["push", &public]));
    logout();

    ok(d.docker(60).args(["rmi", "--force", &private, &public]));
    login(Who::Reader);
    let out = ok(d.docker(180).args(["pull", &private]));
    assert!(out.contains(&format!("Digest: {served}")), "{out}");
    let out = ok(d
        .docker(120)
        .args(["run", "--rm", "--network", "none", &private])
        .args(["/bin/busybox", "echo", "hello from a private repository"]));
    assert_eq!(out.trim(), "hello from a private repository");
    logout();

    ok(d.docker(60).args(["rmi", "--force", &private]));
    let err = fails(d.docker(180).args(["pull", &private]));
    assert!(refused(&err), "anonymous pull of a private image: {err}");
    let out = ok(d.docker(180).args(["pull", &public]));
    assert!(out.contains(&format!("Digest: {served}")), "{out}");

    let tokens = token_requests(&s);
    assert!(
        tokens.iter().any(|l| l.contains("status=200")),
        "{}",
        tokens.join("\n")
    );
    eprintln!(
        "docker used the token endpoint {} times ({} POST)",
        tokens.len(),
        tokens.iter().filter(|l| l.contains("method=POST")).count()
    );
}

// ---- oras ----

/// Logs in (or not), pushes an artifact, pulls it back; prints JSON.
const ORAS_SCRIPT: &str = r#"
import json, os, sys
import oras.client

host, backend, user, password, repo, work = sys.argv[1:7]
os.chdir(work)
out = {}

def client(login):
    c = oras.client.OrasClient(hostname=host, insecure=True, auth_backend=backend)
    if login:
        c.login(username=user, password=password, hostname=host,
                config_path=os.path.join(work, "docker-config.json"))
    return c

with open("hello.txt", "wb") as f:
    f.write(b"hello from oras with credentials\n")

def attempt(name, fn):
    try:
        r = fn()
        out[name] = {"ok": True, "status": getattr(r, "status_code", None),
                     "value": r if isinstance(r, (list, dict, str)) else None}
    except Exception as e:
        out[name] = {"ok": False, "error": f"{type(e).__name__}: {e}"[:400]}

# oras-py's basic backend without credentials fails client-side (it has no
# _basic_auth and retries with back-off): anonymous checks only in token mode.
if backend == "token":
    anon = client(False)
    attempt("anonymous_push", lambda: anon.push(target=f"{host}/{repo}:anon", files=["hello.txt:text/plain"]))
c = client(True)
if backend == "token":
    # oras-py 0.2.x keeps its first token (pull, from the blob HEAD that
    # starts a push) and retries a 401 with it; it asks again only after a
    # 403. Registries answer a token without the scope with 401 (as
    # Distribution does), so make it fetch a pull,push token first.
    attempt("warm_up", lambda: c.do_request(f"http://{host}/v2/{repo}/blobs/uploads/", "POST"))
attempt("push", lambda: c.push(target=f"{host}/{repo}:v1", files=["hello.txt:text/plain"]))
def pull():
    files = c.pull(target=f"{host}/{repo}:v1", outdir=os.path.join(work, "pulled"))
    return [open(p, "rb").read().decode() for p in files]
attempt("pull", pull)
attempt("tags", lambda: c.get_tags(f"{host}/{repo}"))
if backend == "token":
    anon2 = client(False)
    attempt("anonymous_pull", lambda: anon2.pull(target=f"{host}/{repo}:v1", outdir=os.path.join(work, "anon")))
print(json.dumps(out))
"#;

fn oras_scenario(mode: &'static str) {
    let python = oras_python();
    assert!(
        python.is_file(),
        "{} missing: run .ci/install.sh, or set WHARF_ORAS_PYTHON",
        python.display()
    );
    let s = AuthSetup::new(mode).start();
    let work = tempfile::tempdir().expect("tempdir");
    let script = work.path().join("oras_auth.py");
    write_file(&script, ORAS_SCRIPT);
    let (user, password) = s.creds(Who::Writer).expect("creds");
    let backend = if mode == "basic" { "basic" } else { "token" };
    let repo = "private/oras";
    let out = ok(cmd(120, &python.to_string_lossy())
        .arg(&script)
        .args([s.addr(), backend, &user, &password, repo])
        .arg(work.path()));
    let r = json_of(out.lines().last().unwrap_or(""), "oras script output");

    assert_eq!(r["push"]["ok"], true, "[{mode}] {r}");
    assert_eq!(r["push"]["status"], 201, "[{mode}] {r}");
    assert_eq!(
        r["pull"]["value"],
        json!(["hello from oras with credentials\n"]),
        "[{mode}] {r}"
    );
    assert_eq!(r["tags"]["value"], json!(["v1"]), "[{mode}] {r}");
    let digest = served_digest(&s, repo, "v1").expect("pushed");
    assert!(digest.starts_with("sha256:"));
    if mode == "token" {
        assert_eq!(r["warm_up"]["status"], 202, "{r}");
    } else {
        return;
    }
    // Without credentials: nothing pushed, nothing pulled.
    let anon_push = &r["anonymous_push"];
    assert!(
        anon_push["ok"] == false || anon_push["status"].as_u64().is_some_and(|s| s >= 400),
        "[{mode}] anonymous push: {r}"
    );
    assert_eq!(served_digest(&s, repo, "anon"), None, "[{mode}] {r}");
    assert!(
        r["anonymous_pull"]["ok"] == false,
        "[{mode}] anonymous pull of a private artifact: {r}"
    );
}

#[test]
#[ignore = "needs the oras Python SDK (pip install oras in the venv that .ci/install.sh makes)"]
fn oras_with_credentials_basic_mode() {
    oras_scenario("basic");
}

#[test]
#[ignore = "needs the oras Python SDK (pip install oras in the venv that .ci/install.sh makes)"]
fn oras_with_credentials_token_mode() {
    oras_scenario("token");
}
