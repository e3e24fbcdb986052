//! Starts the real `wharf` binary on a free port with its own data directory.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `wharf serve`, killed on drop.
pub struct Wharf {
    pub url: String,
    pub addr: String,
    child: Child,
    pub dir: tempfile::TempDir,
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
        Self::start_with(dir, &data, extra)
    }

    fn start_with(dir: tempfile::TempDir, data: &Path, extra: &[&str]) -> Wharf {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wharf"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .env("WHARF_LOG__ACCESS_LOG", "false")
            .env("WHARF_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wharf");
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
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stops the server with SIGKILL and returns its directory for a restart.
    pub fn kill(mut self) -> tempfile::TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("tempdir"));
        dir
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
