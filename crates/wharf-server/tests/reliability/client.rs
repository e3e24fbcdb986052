//! What the reliability cases share: a seeded random generator, registry
//! operations over raw HTTP/1.1, process statistics, and mounts.

#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{HttpResp, raw_request, sha256};

/// SplitMix64: small, seeded, reproducible (the seed is printed on failure).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo).max(1)
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// An image manifest over a config and layers given as (digest, size).
pub fn image_manifest(config: (&str, usize), layers: &[(String, usize)]) -> Vec<u8> {
    let layers: Vec<serde_json::Value> = layers
        .iter()
        .map(|(d, n)| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": d,
                "size": n,
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.0,
            "size": config.1,
        },
        "layers": layers,
    }))
    .expect("json")
}

/// Pushes a blob in one request; it must be acknowledged.
#[track_caller]
pub fn push_blob(addr: &str, repo: &str, data: &[u8]) -> String {
    let d = sha256(data);
    let r = raw_request(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[],
        data,
    );
    assert_eq!(r.status, 201, "push of {d} to {repo}: {}", r.text());
    d
}

#[track_caller]
pub fn put_manifest(addr: &str, repo: &str, reference: &str, manifest: &[u8]) -> HttpResp {
    raw_request(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Content-Type", OCI_MANIFEST)],
        manifest,
    )
}

#[track_caller]
pub fn get(addr: &str, path: &str) -> HttpResp {
    raw_request(addr, "GET", path, &[], b"")
}

/// An image: a config and one layer pushed, then its manifest under `tag`.
/// Returns the manifest's digest and bytes.
#[track_caller]
pub fn push_image(addr: &str, repo: &str, tag: &str, layer: &[u8]) -> (String, Vec<u8>) {
    let config = format!("{{\"layer\":\"{}\"}}", sha256(layer));
    let c = push_blob(addr, repo, config.as_bytes());
    let l = push_blob(addr, repo, layer);
    let manifest = image_manifest((&c, config.len()), &[(l, layer.len())]);
    let r = put_manifest(addr, repo, tag, &manifest);
    assert_eq!(r.status, 201, "manifest push to {repo}:{tag}: {}", r.text());
    (sha256(&manifest), manifest)
}

/// Asserts that a blob is served whole, with exactly `data`.
#[track_caller]
pub fn assert_blob(addr: &str, repo: &str, data: &[u8]) {
    let d = sha256(data);
    let r = get(addr, &format!("/v2/{repo}/blobs/{d}"));
    assert_eq!(r.status, 200, "GET blob {d} in {repo}: {}", r.text());
    assert_eq!(r.body.len(), data.len(), "size of {d}");
    assert!(r.body == data, "content of {d} differs");
}

/// Asserts that an image pushed by [`push_image`] is pullable by `reference`:
/// its manifest has the exact bytes and every blob it names is served with
/// the right content.
#[track_caller]
pub fn assert_image(addr: &str, repo: &str, reference: &str, manifest: &[u8]) {
    let r = raw_request(
        addr,
        "GET",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", OCI_MANIFEST)],
        b"",
    );
    assert_eq!(r.status, 200, "GET {repo}:{reference}: {}", r.text());
    assert!(r.body == manifest, "manifest {repo}:{reference} differs");
    for d in referenced_blobs(manifest) {
        let b = get(addr, &format!("/v2/{repo}/blobs/{d}"));
        assert_eq!(
            b.status,
            200,
            "blob {d} of {repo}:{reference}: {}",
            b.text()
        );
        assert_eq!(sha256(&b.body), d, "blob {d} of {repo}:{reference}");
    }
}

/// The config and layer digests of an image manifest.
pub fn referenced_blobs(manifest: &[u8]) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).expect("manifest JSON");
    let mut out = vec![v["config"]["digest"].as_str().expect("config").to_owned()];
    for l in v["layers"].as_array().expect("layers") {
        out.push(l["digest"].as_str().expect("digest").to_owned());
    }
    out
}

/// The offset a `Range: 0-N` header acknowledges (chunks in these tests
/// are never 1 byte, so `0-0` means nothing yet).
pub fn acknowledged(range: Option<&str>) -> Option<u64> {
    let end: u64 = range?.strip_prefix("0-")?.parse().ok()?;
    Some(if end == 0 { 0 } else { end + 1 })
}

/// One request (`Connection: close`) whose body is written by a second
/// thread while the response is read: a server that answers an error
/// before reading the whole body (and closes) is seen answering, not as a
/// broken pipe.
#[track_caller]
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    let mut writer = s.try_clone().expect("clone socket");
    let body = body.to_vec();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the answer arrived.
            Err(_) if !raw.is_empty() => break,
            Err(e) => panic!("{method} {path}: no answer: {e}"),
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    let _ = sender.join();
    parse_head(&raw).unwrap_or_else(|| panic!("{method} {path}: bad answer {raw:?}"))
}

/// A request whose response may never come (the server may be killed):
/// `None` on any connection failure.
pub fn try_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<HttpResp> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    // In pieces, so a kill lands mid-body as often as between requests.
    for piece in body.chunks(64 * 1024) {
        s.write_all(piece).ok()?;
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    parse_head(&raw)
}

/// Status, headers and (unchunked) body of a raw response.
pub fn parse_head(raw: &[u8]) -> Option<HttpResp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(HttpResp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    })
}

// ---- process statistics (Linux /proc) ----

/// Open file descriptors of a process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A field of `/proc/<pid>/status` in its unit (kB for memory).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn rss_kib(pid: u32) -> u64 {
    proc_status(pid, "VmRSS")
}

pub fn threads(pid: u32) -> u64 {
    proc_status(pid, "Threads")
}

/// Whether the process still runs (not exited, not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// Polls `f` until it holds or `secs` pass; returns whether it held.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Files under `dir` (recursively).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

// ---- mounts ----

/// A filesystem mounted for one test, unmounted (lazily if busy) on drop.
/// `None` when mounting is not permitted here.
pub struct Mount {
    pub path: PathBuf,
    loop_image: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

impl Mount {
    /// A tmpfs of `mib` MiB.
    pub fn tmpfs(mib: u64) -> Option<Mount> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mkdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs (run as root): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Mount {
            path,
            loop_image: None,
            _dir: dir,
        })
    }

    /// An ext4 filesystem of `mib` MiB in an image file on a loop device.
    pub fn ext4(mib: u64) -> Option<Mount> {
        Self::ext4_with(mib, "loop")
    }

    /// [`Mount::ext4`] with mount options (`loop` among them).
    pub fn ext4_with(mib: u64, options: &str) -> Option<Mount> {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = dir.path().join("fs.img");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).expect("mkdir");
        let file = std::fs::File::create(&image).expect("create image");
        file.set_len(mib << 20).expect("size image");
        drop(file);
        let mkfs = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .output();
        if !mkfs.as_ref().is_ok_and(|o| o.status.success()) {
            eprintln!("SKIPPED: mkfs.ext4 is not available (apt-get install e2fsprogs)");
            return None;
        }
        let out = Command::new("mount")
            .args(["-o", options])
            .arg(&image)
            .arg(&path)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "SKIPPED: cannot loop-mount an ext4 image (needs root and /dev/loop*): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Mount {
            path,
            loop_image: Some(image),
            _dir: dir,
        })
    }

    /// Makes ext4 report an error, as it does when it finds corruption:
    /// mounted with `errors=remount-ro`, the filesystem turns read-only
    /// under whatever has files open on it. False if the kernel does not
    /// offer the trigger.
    pub fn trigger_ext4_error(&self) -> bool {
        let Ok(out) = Command::new("findmnt")
            .args(["-n", "-o", "SOURCE"])
            .arg(&self.path)
            .output()
        else {
            return false;
        };
        let source = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let Some(device) = source.rsplit('/').next().filter(|d| !d.is_empty()) else {
            return false;
        };
        std::fs::write(
            format!("/sys/fs/ext4/{device}/trigger_fs_error"),
            "wharf reliability test",
        )
        .is_ok()
    }

    /// Remounts read-only or read-write (only possible while nothing has a
    /// file open for writing on it).
    pub fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            // Something still holds it (a process that outlived its test):
            // detach it now, it goes away when released.
            let _ = Command::new("umount").arg("-l").arg(&self.path).output();
        }
        if let Some(image) = &self.loop_image {
            // `mount -o loop` sets autoclear; removing the image is enough.
            let _ = std::fs::remove_file(image);
        }
    }
}
