//! Starts the real `wharf` binary on a free port with its own data directory.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wharf serve`, killed on drop.
pub struct Wharf {
    pub url: String,
    pub addr: String,
    child: Child,
    pub dir: tempfile::TempDir,
    /// Where stderr (with the access log) goes, for servers started by
    /// [`Wharf::start_logged`].
    log: Option<PathBuf>,
}

impl Wharf {
    /// Starts a server with filesystem storage in a fresh directory.
    pub fn start(extra: &[&str]) -> Wharf {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, extra)
    }

    /// Starts a server on an existing data directory.
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str]) -> Wharf {
        let data = dir.path().join("data");
        Self::start_with(dir, &data, extra, None)
    }

    /// Starts a server with its access log on, written with the rest of its
    /// stderr to `wharf.log` in its directory; the log's tail is printed if
    /// the test panics, to show what the server saw.
    pub fn start_logged(extra: &[&str]) -> Wharf {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let log = dir.path().join("wharf.log");
        Self::start_with(dir, &data, extra, Some(log))
    }

    fn start_with(
        dir: tempfile::TempDir,
        data: &Path,
        extra: &[&str],
        log: Option<PathBuf>,
    ) -> Wharf {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wharf"));
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdout(Stdio::piped());
        match &log {
            None => {
                cmd.env("WHARF_LOG__ACCESS_LOG", "false")
                    .env("WHARF_LOG__LEVEL", "warn")
                    .stderr(Stdio::inherit());
            }
            Some(path) => {
                let file = std::fs::File::create(path).expect("create wharf.log");
                cmd.env("WHARF_LOG__ACCESS_LOG", "true")
                    .env("WHARF_LOG__LEVEL", "info")
                    .stderr(file);
            }
        }
        let mut child = cmd.spawn().expect("start wharf");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut reader = BufReader::new(stdout);
        while !line.contains("listening on") {
            line.clear();
            if reader.read_line(&mut line).expect("read stdout") == 0 || Instant::now() > deadline {
                let _ = child.kill();
                panic!("wharf did not start");
            }
        }
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .expect("url in startup line")
            .trim_end_matches(',')
            .to_owned();
        let addr = url.split("://").nth(1).unwrap_or_default().to_owned();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in reader.lines() {});
        Wharf {
            url,
            addr,
            child,
            dir,
            log,
        }
    }

    /// The last `lines` lines of the log of a [`Wharf::start_logged`] server.
    pub fn log_tail(&self, lines: usize) -> String {
        self.log
            .as_deref()
            .map(|p| tail_file(p, lines))
            .unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server with SIGKILL and returns its directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"))
    }

    /// Stops the server with SIGTERM and waits for it to exit.
    pub fn terminate(mut self) -> (std::process::ExitStatus, tempfile::TempDir) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait");
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        (status, dir)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Wharf {
    fn drop(&mut self) {
        if std::thread::panicking() && self.log.is_some() {
            eprintln!(
                "--- wharf at {} (last log lines) ---\n{}",
                self.addr,
                self.log_tail(80)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether an external tool is installed.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// HTTP clients in tests use rustls with the ring provider.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The last `lines` lines of a text file (empty if unreadable).
pub fn tail_file(path: &Path, lines: usize) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A port on 127.0.0.1 that was free a moment ago (for servers that cannot
/// report the port they bound, like Distribution).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Whether `GET /v2/` at `addr` answers 200 (or 401, for a registry with auth).
pub fn v2_answers(addr: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && (head.ends_with(b" 200") || head.ends_with(b" 401"))
}

/// The CNCF Distribution registry from Debian's `docker-registry` package
/// (`/usr/bin/docker-registry`), on a free port with filesystem storage and
/// deletes on, as a reference implementation; killed on drop.
pub struct Distribution {
    pub url: String,
    pub addr: String,
    child: Child,
    pub dir: tempfile::TempDir,
    log: PathBuf,
}

impl Distribution {
    pub const BINARY: &str = "docker-registry";

    pub fn start() -> Distribution {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("registry.log");
        // The port is picked before the registry binds it: retry if another
        // process took it in between.
        for _ in 0..5 {
            let addr = format!("127.0.0.1:{}", free_port());
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\n\
                     log:\n  level: info\n  accesslog:\n    disabled: false\n\
                     storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                     http:\n  addr: {addr}\n  secret: wharf-interop-tests\n",
                    dir.path().join("data").display()
                ),
            )
            .expect("write registry config");
            let file = std::fs::File::create(&log).expect("create registry.log");
            let mut child = Command::new(Self::BINARY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(file.try_clone().expect("dup log"))
                .stderr(file)
                .spawn()
                .expect("start docker-registry (Debian package docker-registry)");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // exited: most likely the port was taken
                }
                if v2_answers(&addr) {
                    // Still running a moment after the port answered: it is
                    // ours, not another server that had taken the port.
                    std::thread::sleep(Duration::from_millis(200));
                    if !matches!(child.try_wait(), Ok(None)) {
                        break;
                    }
                    return Distribution {
                        url: format!("http://{addr}"),
                        addr,
                        child,
                        dir,
                        log,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("docker-registry did not start:\n{}", tail_file(&log, 40));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!("docker-registry did not start:\n{}", tail_file(&log, 40));
    }

    pub fn log_tail(&self, lines: usize) -> String {
        tail_file(&self.log, lines)
    }
}

impl Drop for Distribution {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- docker-registry at {} (last log lines) ---\n{}",
                self.addr,
                self.log_tail(60)
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
