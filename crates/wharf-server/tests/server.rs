//! The `wharf` binary as users run it: zero-config start, configuration
//! checks, probes and metrics, timeouts, graceful shutdown, TLS, and the
//! admin commands.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Wharf, free_port, have};
use wharf_types::Digest;

fn wharf() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wharf"))
}

/// Sends a raw HTTP/1.1 request and returns the status code and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

fn push_blob(addr: &str, repo: &str, data: &[u8]) -> Digest {
    let d = Digest::sha256(data);
    let (status, body) = http(
        addr,
        "POST",
        &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
        &[],
        data,
    );
    assert_eq!(status, 201, "{body}");
    d
}

#[test]
fn zero_config_serve_uses_wharf_data_in_the_working_directory() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = wharf()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(cwd.path())
        .env("WHARF_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    assert_eq!(
        line.trim(),
        format!("wharf listening on http://127.0.0.1:{port}, data in ./wharf-data")
    );
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(http(&addr, "GET", "/v2/", &[], b"").0, 200);
    push_blob(&addr, "zero/config", b"zero config");
    assert!(cwd.path().join("wharf-data/meta.redb").exists());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn version_and_config_check() {
    let out = wharf().arg("version").output().expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("wharf "));

    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[server]\nlisten = \"0.0.0.0:5001\"\n[registry]\nmax_page = 50\n",
    )
    .expect("write");
    let out = wharf()
        .args(["config", "check"])
        .arg(&good)
        .env("WHARF_GC__GRACE_SECS", "7200")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("listen = \"0.0.0.0:5001\""),
        "{effective}"
    );
    assert!(effective.contains("max_page = 50"), "{effective}");
    assert!(effective.contains("grace_secs = 7200"), "{effective}");

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[server]\nlisten = \"0.0.0.0:5001\"\n\n[registry]\ndelete_enabeld = true\n",
    )
    .expect("write");
    let out = wharf()
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delete_enabeld") && err.contains("line 5"),
        "{err}"
    );

    let out = wharf()
        .args(["serve", "--config"])
        .arg(&good)
        .env("WHARF_SERVER__LISTEN", "not an address")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("server.listen"));
}

#[test]
fn probes_and_metrics() {
    let metrics_port = free_port();
    let w = {
        // Separate metrics listener via the environment.
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut child = wharf()
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .env("WHARF_METRICS__LISTEN", format!("127.0.0.1:{metrics_port}"))
            .env("WHARF_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("startup line");
        assert!(
            line.contains(&format!(
                "metrics on http://127.0.0.1:{metrics_port}/metrics"
            )),
            "{line}"
        );
        (child, dir, format!("127.0.0.1:{port}"))
    };
    let (mut child, _dir, addr) = w;
    let maddr = format!("127.0.0.1:{metrics_port}");
    assert_eq!(http(&addr, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(http(&addr, "GET", "/readyz", &[], b"").0, 200);
    assert_eq!(http(&maddr, "GET", "/healthz", &[], b"").0, 200);
    assert_eq!(http(&maddr, "GET", "/readyz", &[], b"").0, 200);
    push_blob(&addr, "metrics/test", b"some bytes");
    assert_eq!(
        http(&addr, "GET", "/v2/metrics/test/tags/list", &[], b"").0,
        200
    );
    assert_eq!(http(&addr, "GET", "/v2/nope/tags/list", &[], b"").0, 404);
    let (status, text) = http(&maddr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    for needle in [
        "wharf_http_requests_total{route=\"upload_start\",method=\"POST\",status=\"201\"} 1",
        "wharf_http_requests_total{route=\"tags\",method=\"GET\",status=\"404\"} 1",
        "wharf_http_request_duration_seconds_bucket",
        "wharf_http_request_bytes_total 10",
        "wharf_uploads_in_progress 0",
        "wharf_gc_runs_total 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert_eq!(
        http(&addr, "GET", "/metrics", &[], b"").0,
        404,
        "metrics only on their own listener"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn header_timeout_closes_slow_headers_but_not_a_steady_slow_upload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = wharf()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("WHARF_SERVER__HEADER_TIMEOUT_SECS", "1")
        .env("WHARF_SERVER__IDLE_TIMEOUT_SECS", "2")
        .env("WHARF_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    let addr = format!("127.0.0.1:{port}");

    // Slowloris: headers one byte at a time.
    let mut slow = TcpStream::connect(&addr).expect("connect");
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let start = Instant::now();
    let request =
        b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut closed_after = None;
    for b in request {
        if slow.write_all(&[*b]).is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        // A normal client is served meanwhile.
        if start.elapsed() < Duration::from_millis(300) {
            assert_eq!(http(&addr, "GET", "/v2/", &[], b"").0, 200);
        }
        let mut buf = [0u8; 64];
        if let Ok(0) = slow.read(&mut buf) {
            closed_after = Some(start.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    let closed_after = closed_after.expect("the slow-header connection was closed");
    assert!(closed_after < Duration::from_secs(5), "{closed_after:?}");

    // A slow upload that keeps sending (a byte every 500 ms, past both the
    // header and the idle timeout) completes.
    let loc_resp = {
        let mut c = TcpStream::connect(&addr).expect("connect");
        c.write_all(b"POST /v2/slow/upload/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .expect("write");
        let mut r = String::new();
        let _ = c.read_to_string(&mut r);
        r
    };
    let location = loc_resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("location: ")
                .or_else(|| l.strip_prefix("Location: "))
        })
        .expect("location")
        .trim()
        .to_owned();
    let data = b"0123456789";
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(format!("PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len()).as_bytes())
        .expect("write");
    for b in data {
        std::thread::sleep(Duration::from_millis(500));
        s.write_all(&[*b])
            .expect("the server kept the slow upload open");
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("range: 0-9"), "{resp}");

    // An idle connection is closed after the idle timeout.
    let mut idle = TcpStream::connect(&addr).expect("connect");
    idle.set_read_timeout(Some(Duration::from_secs(8)))
        .expect("timeout");
    let start = Instant::now();
    let mut buf = [0u8; 16];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn graceful_shutdown_finishes_in_flight_uploads() {
    let w = Wharf::start(&[]);
    let addr = w.addr.clone();
    // Open a session, then start a chunk that is still arriving at SIGTERM.
    let mut c = TcpStream::connect(&addr).expect("connect");
    c.write_all(b"POST /v2/shutdown/test/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    let location = r
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .expect("location")
        .trim()
        .to_owned();
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let chunk = vec![b'x'; 1 << 20];
    s.write_all(
        format!(
            "PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            chunk.len()
        )
        .as_bytes(),
    )
    .expect("write");
    s.write_all(&chunk[..1000]).expect("write");
    std::thread::sleep(Duration::from_millis(300));
    let pid = w.pid();
    assert!(
        Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    // New connections are refused...
    assert!(TcpStream::connect(&addr).is_err() || http(&addr, "GET", "/v2/", &[], b"").0 == 0);
    // ...while the in-flight chunk completes.
    s.write_all(&chunk[1000..]).expect("finish the chunk");
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&resp).contains("\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    let (status, dir) = w.terminate();
    assert!(status.success(), "{status:?}");

    // After a restart the acknowledged chunk is there.
    let w = Wharf::start_in(dir, &[]);
    let (status, _) = http(&w.addr, "GET", &location, &[], b"");
    assert_eq!(status, 204);
    let mut c = TcpStream::connect(&w.addr).expect("connect");
    c.write_all(
        format!("GET {location} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    assert!(r.contains(&format!("range: 0-{}", chunk.len() - 1)), "{r}");
}

#[test]
fn kill_9_keeps_acknowledged_pushes() {
    let w = Wharf::start(&[]);
    let d = push_blob(&w.addr, "durable/repo", b"acknowledged before the crash");
    let dir = w.kill();
    let w = Wharf::start_in(dir, &[]);
    let (status, body) = http(
        &w.addr,
        "GET",
        &format!("/v2/durable/repo/blobs/{d}"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert_eq!(body, "acknowledged before the crash");
}

#[test]
fn admin_gc_and_fsck() {
    let w = Wharf::start(&[]);
    // Larger than the filesystem backend's inline threshold (64 KiB), so
    // that it is a file the test can corrupt (smaller blobs live in the
    // metadata database).
    let layer: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let kept = push_blob(&w.addr, "admin/repo", &layer);
    let config = push_blob(&w.addr, "admin/repo", b"{}");
    let orphan = push_blob(&w.addr, "admin/repo", b"nothing references this blob");
    let manifest = format!(
        "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":{{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"{config}\",\"size\":2}},\"layers\":[{{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"{kept}\",\"size\":{}}}]}}",
        layer.len()
    );
    let (status, body) = http(
        &w.addr,
        "PUT",
        "/v2/admin/repo/manifests/v1",
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        manifest.as_bytes(),
    );
    assert_eq!(status, 201, "{body}");

    // The data directory is locked while the server runs.
    let out = wharf()
        .args(["gc", "--data-dir"])
        .arg(w.data_dir())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (_, dir) = w.terminate();
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        let out = wharf()
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .env("WHARF_LOG__LEVEL", "warn")
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (ok, out) = run(&["fsck"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("checked 4 blobs") && out.contains("0 corrupt"),
        "{out}"
    );

    let (ok, out) = run(&["gc", "--dry-run", "--grace-secs", "0"]);
    assert!(ok);
    assert!(out.starts_with("would delete 1 blobs"), "{out}");
    let (ok, out) = run(&["gc", "--grace-secs", "0"]);
    assert!(ok);
    assert!(out.starts_with("deleted 1 blobs (28 bytes)"), "{out}");

    // Flip a byte of a stored blob: fsck reports it and fails.
    let path = data
        .join("blobs/sha256")
        .join(&kept.hex()[..2])
        .join(kept.hex());
    let mut bytes = std::fs::read(&path).expect("read blob file");
    bytes[0] ^= 0x01;
    std::fs::write(&path, bytes).expect("corrupt");
    let (ok, out) = run(&["fsck"]);
    assert!(!ok);
    assert!(out.contains(&format!("CORRUPT {kept}")), "{out}");

    let w = Wharf::start_in(dir, &[]);
    let (status, _) = http(
        &w.addr,
        "GET",
        &format!("/v2/admin/repo/blobs/{orphan}"),
        &[],
        b"",
    );
    assert_eq!(status, 404, "collected");
    let (status, _) = http(&w.addr, "GET", "/v2/admin/repo/manifests/v1", &[], b"");
    assert_eq!(status, 200);
}

#[test]
#[ignore = "needs openssl and curl"]
fn tls_http2_and_certificate_reload() {
    assert!(
        have("openssl") && have("curl"),
        "openssl and curl are required"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let make_cert = |name: &str| {
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
            ])
            .arg(format!("/CN={name}"))
            .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
            .arg(dir.path().join(format!("{name}.key")))
            .arg("-out")
            .arg(dir.path().join(format!("{name}.pem")))
            .stderr(Stdio::null())
            .status()
            .expect("openssl");
        assert!(status.success());
    };
    make_cert("first");
    make_cert("second");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::copy(dir.path().join("first.pem"), &cert).expect("copy");
    std::fs::copy(dir.path().join("first.key"), &key).expect("copy");
    let port = free_port();
    let data = tempfile::tempdir().expect("tempdir");
    let mut child = wharf()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path())
        .env("WHARF_SERVER__TLS_CERT", &cert)
        .env("WHARF_SERVER__TLS_KEY", &key)
        .env("WHARF_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("startup line");
    assert!(
        line.contains(&format!("https://127.0.0.1:{port}")),
        "{line}"
    );
    let curl = |args: &[&str]| {
        let out = Command::new("curl")
            .args(["-sk", "--max-time", "10"])
            .args(args)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let url = format!("https://127.0.0.1:{port}/v2/");
    assert_eq!(
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--http2",
            &url
        ]),
        "200 2"
    );
    assert_eq!(
        curl(&[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{http_version}",
            "--http1.1",
            &url
        ]),
        "200 1.1"
    );
    let issuer = |expected: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo | openssl s_client -connect 127.0.0.1:{port} 2>/dev/null | openssl x509 -noout -subject"
            ))
            .output()
            .expect("openssl s_client");
        let subject = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            subject.contains(expected),
            "expected {expected}, got {subject}"
        );
    };
    issuer("first");
    // An established connection survives the reload; new ones get the new cert.
    std::fs::copy(dir.path().join("second.pem"), &cert).expect("copy");
    std::fs::copy(dir.path().join("second.key"), &key).expect("copy");
    assert!(
        Command::new("kill")
            .arg("-HUP")
            .arg(child.id().to_string())
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    issuer("second");
    assert_eq!(
        curl(&["-o", "/dev/null", "-w", "%{http_code}", &url]),
        "200"
    );
    // A broken file on reload keeps the old pair.
    std::fs::write(&cert, "not a certificate").expect("write");
    assert!(
        Command::new("kill")
            .arg("-HUP")
            .arg(child.id().to_string())
            .status()
            .expect("kill")
            .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    issuer("second");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn malformed_framing_and_oversized_headers_are_refused() {
    let w = Wharf::start(&[]);
    let send = |raw: &[u8]| {
        let mut s = TcpStream::connect(&w.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(raw).expect("write");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    };
    let mut big = b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 300_000));
    big.extend_from_slice(b"\r\n\r\n");
    assert!(send(&big).starts_with("HTTP/1.1 431"));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert!(
        send(format!("GET /v2/ HTTP/1.1\r\nHost: x\r\n{many}\r\n").as_bytes())
            .starts_with("HTTP/1.1 431")
    );
    assert!(
        send(b"POST /v2/a/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello")
            .starts_with("HTTP/1.1 400")
    );
    // Content-Length with Transfer-Encoding: refused, and the connection
    // closed, so nothing can be smuggled behind it.
    let mut s = TcpStream::connect(&w.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /v2/_catalog HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert!(all.starts_with("HTTP/1.1 400"), "{all}");
    assert_eq!(
        all.matches("HTTP/1.1").count(),
        1,
        "the smuggled second request was not served: {all}"
    );
    // Nothing above created an upload or a repository.
    let (status, body) = http(&w.addr, "GET", "/v2/_catalog", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(body.trim(), r#"{"repositories":[]}"#);
}

/// `serve` raises its soft open-file limit to the hard limit, so a server
/// started from a shell with the common default of 1024 can still hold
/// thousands of connections.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_its_open_file_limit_to_the_hard_limit() {
    let hard = std::process::Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .expect("sh");
    let hard = String::from_utf8_lossy(&hard.stdout).trim().to_owned();
    if hard
        .parse::<u64>()
        .map_or(hard != "unlimited", |h| h <= 512)
    {
        eprintln!("SKIPPED: the hard open-file limit ({hard}) leaves nothing to raise");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 512 && exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\"")
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .arg(dir.path().join("data"))
        .env("WHARF_LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start wharf");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    while !line.contains("listening on") {
        line.clear();
        if reader.read_line(&mut line).expect("read") == 0 {
            let _ = child.kill();
            panic!("wharf did not start");
        }
    }
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).expect("limits");
    let _ = child.kill();
    let _ = child.wait();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("open files row");
    let values: Vec<&str> = row["Max open files".len()..].split_whitespace().collect();
    assert_eq!(
        values.first(),
        values.get(1),
        "soft limit raised to the hard one: {row}"
    );
    assert_ne!(values.first(), Some(&"512"), "{row}");
}
