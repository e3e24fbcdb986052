//! `wharf` nodes on a shared Garage bucket, and a small OCI client for them.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Client, StatusCode};
use serde_json::json;
use wharf_storage_s3::testing::{BUCKET, GarageCluster, REGION};
use wharf_types::Digest;

/// One `wharf serve` process with S3 storage; killed on drop.
pub struct Node {
    pub url: String,
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The server binary: `WHARF_BIN` (e.g. a release build, for throughput
/// numbers), else the one cargo built for these tests.
fn wharf_bin() -> PathBuf {
    std::env::var_os("WHARF_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wharf")))
}

impl Node {
    /// Starts a node whose S3 endpoint is Garage node `garage_node`, on the
    /// registry under `prefix` in the cluster's bucket.
    pub fn start(
        cluster: &GarageCluster,
        garage_node: usize,
        prefix: &str,
        env: &[(&str, &str)],
    ) -> Node {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("wharf.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(wharf_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--storage", "s3"])
            .env("WHARF_STORAGE__S3_ENDPOINT", cluster.endpoint(garage_node))
            .env("WHARF_STORAGE__S3_REGION", REGION)
            .env("WHARF_STORAGE__S3_BUCKET", BUCKET)
            .env("WHARF_STORAGE__S3_PREFIX", prefix)
            .env("WHARF_STORAGE__S3_ACCESS_KEY_ID", cluster.key_id())
            .env("WHARF_STORAGE__S3_SECRET_ACCESS_KEY", cluster.secret())
            .env("WHARF_STORAGE__S3_TIMEOUT_SECS", "20")
            .env("WHARF_LOG__LEVEL", "warn")
            .env("WHARF_LOG__ACCESS_LOG", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start wharf");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "wharf did not start: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        };
        // "wharf listening on http://127.0.0.1:PORT, data in ..."
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .map(|w| w.trim_end_matches(',').to_owned())
            .unwrap_or_else(|| panic!("no address in {line:?}"));
        Node {
            url,
            child,
            log,
            _dir: dir,
        }
    }

    /// The node's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A unique key prefix for one test's registry in the shared bucket.
pub fn prefix(test: &str) -> String {
    format!("scale-out/{test}-{}", wharf_types::UploadId::random())
}

pub fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client")
}

/// Deterministic bytes, different per seed.
pub fn pattern(len: usize, seed: u64) -> Bytes {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

pub fn sha256(data: &[u8]) -> Digest {
    Digest::sha256(data)
}

/// The path part of an upload `Location` (absolute or relative).
fn location_path(location: &str) -> String {
    match location.find("/v2/") {
        Some(i) => location[i..].to_owned(),
        None => location.to_owned(),
    }
}

/// Monolithic blob push (POST with the digest and the body).
pub async fn push_blob(c: &Client, base: &str, repo: &str, data: &Bytes) -> Digest {
    let d = sha256(data);
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/?digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("push blob");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "push blob {d}: {:?}",
        r.text().await
    );
    d
}

/// Opens an upload session; returns its path.
pub async fn start_upload(c: &Client, base: &str, repo: &str) -> String {
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    assert_eq!(r.status(), StatusCode::ACCEPTED, "start upload");
    location_path(r.headers()["location"].to_str().expect("location"))
}

/// Sends a chunk at `offset`; returns the session path and the new length.
pub async fn patch_chunk(
    c: &Client,
    base: &str,
    session: &str,
    offset: u64,
    data: &Bytes,
) -> (String, u64) {
    let end = offset + data.len() as u64 - 1;
    let r = c
        .patch(format!("{base}{session}"))
        .header("content-type", "application/octet-stream")
        .header("content-range", format!("{offset}-{end}"))
        .body(data.clone())
        .send()
        .await
        .expect("patch");
    let status = r.status();
    let headers = r.headers().clone();
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "chunk at {offset}: {:?}",
        r.text().await
    );
    let range = headers["range"].to_str().expect("range").to_owned();
    let len = range
        .rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .expect("range end")
        + 1;
    (
        location_path(headers["location"].to_str().expect("location")),
        len,
    )
}

/// The acknowledged length of a session, as a node reports it.
pub async fn upload_offset(c: &Client, base: &str, session: &str) -> u64 {
    let r = c
        .get(format!("{base}{session}"))
        .send()
        .await
        .expect("status");
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "upload status");
    let range = r.headers()["range"].to_str().expect("range").to_owned();
    range
        .rsplit('-')
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .expect("range")
        + 1
}

/// Completes a session with an optional last chunk.
pub async fn finish_upload(c: &Client, base: &str, session: &str, d: &Digest, last: Bytes) {
    let sep = if session.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{base}{session}{sep}digest={d}"))
        .header("content-type", "application/octet-stream")
        .body(last)
        .send()
        .await
        .unwrap_or_else(|e| panic!("finish upload at {base}: {e:?}"));
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "finish upload: {:?}",
        r.text().await
    );
}

/// A chunked push: one session, chunks of `chunk` bytes, completed with
/// the last one.
pub async fn push_chunked(
    c: &Client,
    base: &str,
    repo: &str,
    data: &Bytes,
    chunk: usize,
) -> Digest {
    let d = sha256(data);
    let mut session = start_upload(c, base, repo).await;
    let mut at = 0;
    while data.len() - at > chunk {
        let (s, len) = patch_chunk(c, base, &session, at as u64, &data.slice(at..at + chunk)).await;
        session = s;
        at = len as usize;
    }
    finish_upload(c, base, &session, &d, data.slice(at..)).await;
    d
}

pub async fn get_blob(c: &Client, base: &str, repo: &str, d: &Digest) -> (StatusCode, Bytes) {
    let r = c
        .get(format!("{base}/v2/{repo}/blobs/{d}"))
        .send()
        .await
        .expect("get blob");
    let status = r.status();
    (status, r.bytes().await.expect("blob body"))
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image: a config, layers and the manifest naming them.
#[derive(Clone)]
pub struct Image {
    pub config: Bytes,
    pub layers: Vec<Bytes>,
    pub manifest: Bytes,
}

impl Image {
    pub fn new(seed: u64, layer_sizes: &[usize]) -> Image {
        let config = Bytes::from(format!(
            "{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}"
        ));
        let layers: Vec<Bytes> = layer_sizes
            .iter()
            .enumerate()
            .map(|(i, n)| pattern(*n, seed * 1000 + i as u64))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": sha256(&config).to_string(),
                "size": config.len(),
            },
            "layers": layers.iter().map(|l| json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(l).to_string(),
                "size": l.len(),
            })).collect::<Vec<_>>(),
        });
        Image {
            config,
            layers,
            manifest: Bytes::from(serde_json::to_vec(&manifest).expect("json")),
        }
    }

    pub fn digest(&self) -> Digest {
        sha256(&self.manifest)
    }

    /// Pushes blobs (layers over 1 MiB chunked in 2 MiB pieces) and the
    /// manifest under `reference`.
    pub async fn push(&self, c: &Client, base: &str, repo: &str, reference: &str) {
        push_blob(c, base, repo, &self.config).await;
        for l in &self.layers {
            if l.len() > 1 << 20 {
                push_chunked(c, base, repo, l, 2 << 20).await;
            } else {
                push_blob(c, base, repo, l).await;
            }
        }
        put_manifest(c, base, repo, reference, &self.manifest).await;
    }

    /// Pulls by `reference` and checks every byte.
    pub async fn verify(&self, c: &Client, base: &str, repo: &str, reference: &str) {
        let (status, body) = get_manifest(c, base, repo, reference).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "manifest {repo}:{reference} from {base}"
        );
        assert!(
            body == self.manifest,
            "manifest bytes {repo}:{reference} from {base}"
        );
        for blob in std::iter::once(&self.config).chain(&self.layers) {
            let d = sha256(blob);
            let (status, got) = get_blob(c, base, repo, &d).await;
            assert_eq!(
                status,
                StatusCode::OK,
                "blob {d} of {repo}:{reference} from {base}"
            );
            assert!(got == *blob, "blob {d} bytes from {base}");
        }
    }
}

pub async fn put_manifest(c: &Client, base: &str, repo: &str, reference: &str, body: &Bytes) {
    let r = c
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", OCI_MANIFEST)
        .body(body.clone())
        .send()
        .await
        .expect("put manifest");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "put manifest {repo}:{reference}: {:?}",
        r.text().await
    );
}

pub async fn get_manifest(
    c: &Client,
    base: &str,
    repo: &str,
    reference: &str,
) -> (StatusCode, Bytes) {
    let r = c
        .get(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("accept", OCI_MANIFEST)
        .send()
        .await
        .expect("get manifest");
    let status = r.status();
    (status, r.bytes().await.expect("manifest body"))
}

pub async fn tags(c: &Client, base: &str, repo: &str) -> Vec<String> {
    let r = c
        .get(format!("{base}/v2/{repo}/tags/list"))
        .send()
        .await
        .expect("tags");
    assert_eq!(r.status(), StatusCode::OK, "tags list");
    let v: serde_json::Value = r.json().await.expect("tags json");
    v["tags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts (or joins) the shared three-node cluster, from async code.
pub async fn shared_cluster() -> std::sync::Arc<GarageCluster> {
    tokio::task::spawn_blocking(GarageCluster::shared)
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("garage: {e}"))
}
