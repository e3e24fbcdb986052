//! Starts the real `wharf` binary on a free port with its own data directory.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;
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
        Self::start_with(dir, &data, extra, &[], None)
    }

    /// Starts a server on `data` (which may lie outside `dir`, e.g. on a
    /// size-limited mount) with extra environment variables; its log goes
    /// to `wharf.log` in `dir` when `logged`.
    pub fn start_env(
        dir: tempfile::TempDir,
        data: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
        logged: bool,
    ) -> Wharf {
        let log = logged.then(|| dir.path().join("wharf.log"));
        Self::start_with(dir, data, extra, envs, log)
    }

    /// Starts a server with its access log on, written with the rest of its
    /// stderr to `wharf.log` in its directory; the log's tail is printed if
    /// the test panics, to show what the server saw.
    pub fn start_logged(extra: &[&str]) -> Wharf {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let log = dir.path().join("wharf.log");
        Self::start_with(dir, &data, extra, &[], Some(log))
    }

    fn start_with(
        dir: tempfile::TempDir,
        data: &Path,
        extra: &[&str],
        envs: &[(&str, &str)],
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
        // After the defaults above, so a test can override them.
        cmd.envs(envs.iter().copied());
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

impl Wharf {
    /// Like [`Wharf::start_logged`], on an existing directory (whose
    /// `data` subdirectory is the data directory), e.g. one holding a
    /// configuration file and users written before the start, or the
    /// directory of a server stopped with [`Wharf::kill`].
    pub fn start_logged_in(dir: tempfile::TempDir, extra: &[&str]) -> Wharf {
        let data = dir.path().join("data");
        let log = dir.path().join("wharf.log");
        Self::start_with(dir, &data, extra, &[], Some(log))
    }
}

// ---- external commands ----

/// `prog` run under coreutils' `timeout` (which signals the command's whole
/// process group), killed after `secs` seconds, with no standard input.
pub fn cmd(secs: u64, prog: &str) -> Command {
    let mut c = Command::new("timeout");
    c.arg("--kill-after=5")
        .arg(format!("{secs}s"))
        .arg(prog)
        .stdin(Stdio::null());
    c
}

/// The `wharf` binary under test, bounded by `secs` seconds.
pub fn wharf_cmd(secs: u64) -> Command {
    cmd(secs, env!("CARGO_BIN_EXE_wharf"))
}

/// The command line, without the `timeout` wrapper.
pub fn describe(c: &Command) -> String {
    let mut words: Vec<String> = c
        .get_args()
        .skip(2)
        .map(|a| {
            let a = a.to_string_lossy();
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.into_owned()
            }
        })
        .collect();
    if c.get_program() != "timeout" {
        words.insert(0, c.get_program().to_string_lossy().into_owned());
    }
    words.join(" ")
}

pub fn run(c: &mut Command) -> std::process::Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(c)))
}

pub fn text(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    if s.len() > 6000 {
        format!("...{}", &s[s.len() - 6000..])
    } else {
        s.into_owned()
    }
}

pub fn report(c: &Command, out: &std::process::Output) -> String {
    let why = match out.status.code() {
        Some(124) | Some(137) => "timed out".to_owned(),
        _ => format!("exited with {}", out.status),
    };
    format!(
        "`{}` {why}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        describe(c),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Runs a command that must succeed and returns its stdout.
#[track_caller]
pub fn ok(c: &mut Command) -> String {
    let out = run(c);
    assert!(out.status.success(), "{}", report(c, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command that must fail (not by timing out) and returns its
/// stdout and stderr together.
#[track_caller]
pub fn fails(c: &mut Command) -> String {
    let out = run(c);
    assert!(
        !out.status.success() && !matches!(out.status.code(), Some(124) | Some(137)),
        "expected a failure: {}",
        report(c, &out)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a command with `input` on its standard input; it must succeed.
#[track_caller]
pub fn ok_with_input(c: &mut Command, input: &str) -> String {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{}`: {e}", describe(c)));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", report(c, &out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn write_file(path: &Path, data: impl AsRef<[u8]>) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

pub fn json_of(stdout: &str, what: &str) -> serde_json::Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("{what}: not JSON ({e}):\n{stdout}"))
}

// ---- raw HTTP/1.1 ----

/// A response read off the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResp {
    pub status: u16,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The first OCI error code of the body, if it is an error body.
    pub fn error_code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_owned)
    }
}

/// A connection to `addr` from `local` (any address of 127.0.0.0/8 works
/// on Linux, so tests can play several clients).
pub fn connect_from(local: Option<std::net::IpAddr>, addr: &str) -> TcpStream {
    let Some(local) = local else {
        return TcpStream::connect(addr).expect("connect");
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let target: std::net::SocketAddr = addr.parse().expect("socket address");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(std::net::SocketAddr::new(local, 0))
            .expect("bind local address");
        socket.connect(target).await.expect("connect")
    });
    let std = stream.into_std().expect("into_std");
    std.set_nonblocking(false).expect("blocking");
    std
}

/// One HTTP/1.1 request (`Connection: close`) to `addr`.
pub fn raw_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResp {
    raw_request_from(None, addr, method, path, headers, body)
}

/// One HTTP/1.1 request from the local address `local`.
pub fn raw_request_from(
    local: Option<std::net::IpAddr>,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> HttpResp {
    let mut s = connect_from(local, addr);
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write request");
    s.write_all(body).expect("write body");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("{method} {path}: reading the response: {e}"));
    parse_response(&raw, method == "HEAD")
        .unwrap_or_else(|| panic!("{method} {path}: bad response {:?}", text(&raw)))
}

fn parse_response(raw: &[u8], head: bool) -> Option<HttpResp> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head_text = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head_text.split("\r\n");
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked && !head {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..nl]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[nl + 2..];
            if size == 0 {
                break;
            }
            out.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body = out;
    }
    Some(HttpResp {
        status,
        headers,
        body,
    })
}

/// An `Authorization: Basic` value.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The parameters of a `WWW-Authenticate` challenge: the scheme, then
/// `key="value"` pairs (values may hold commas).
pub fn parse_challenge(value: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (val, after) = if let Some(q) = after.strip_prefix('"') {
            let close = q.find('"').unwrap_or(q.len());
            (q[..close].to_owned(), q.get(close + 1..).unwrap_or(""))
        } else {
            let comma = after.find(',').unwrap_or(after.len());
            (after[..comma].to_owned(), &after[comma..])
        };
        params.push((key, val));
        rest = after.trim_start_matches([',', ' ']);
    }
    (scheme.to_owned(), params)
}

// ---- a registry with authentication ----

/// Who a request comes from, in the auth tests' standard setup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Who {
    Anonymous,
    /// Pull on `private/**` (group `readers`).
    Reader,
    /// Pull and push on `private/**` (group `writers`).
    Writer,
    /// Everything everywhere (`user:admin`).
    Admin,
    /// The robot `ci`: `private/**:pull,push`.
    Robot,
}

impl Who {
    pub const ALL: [Who; 5] = [
        Who::Anonymous,
        Who::Reader,
        Who::Writer,
        Who::Admin,
        Who::Robot,
    ];
}

/// The password of a standard user.
pub fn password_of(user: &str) -> String {
    format!("pw-{user}-Secret")
}

/// Builds a `wharf serve` with auth: users `reader`, `writer`, `admin`
/// (and any extra) in an htpasswd made by `wharf user add`, groups and
/// rules (anonymous pull on `public/**`, readers pull and writers pull+push
/// on `private/**`, admin everything), and the robot `ci` made by `wharf
/// robot add` with `private/**:pull,push`.
pub struct AuthSetup {
    mode: &'static str,
    auth_lines: Vec<String>,
    users: Vec<String>,
    cost: u32,
    rules: Option<String>,
}

impl AuthSetup {
    /// `mode` is `basic` or `token`.
    pub fn new(mode: &'static str) -> AuthSetup {
        AuthSetup {
            mode,
            auth_lines: Vec::new(),
            users: ["reader", "writer", "admin"].map(str::to_owned).to_vec(),
            cost: 4,
            rules: None,
        }
    }

    /// A `key = value` line for the `[auth]` section.
    pub fn auth(mut self, line: &str) -> AuthSetup {
        self.auth_lines.push(line.to_owned());
        self
    }

    /// Another user (password [`password_of`]), in no group or rule.
    pub fn user(mut self, name: &str) -> AuthSetup {
        self.users.push(name.to_owned());
        self
    }

    /// Replaces the groups and rules (TOML after the `[auth]` keys).
    pub fn rules(mut self, toml: &str) -> AuthSetup {
        self.rules = Some(toml.to_owned());
        self
    }

    /// The bcrypt cost of the users' hashes.
    pub fn cost(mut self, cost: u32) -> AuthSetup {
        self.cost = cost;
        self
    }

    pub fn start(self) -> AuthServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = dir.path().join("htpasswd");
        for u in &self.users {
            ok_with_input(
                wharf_cmd(60)
                    .args(["user", "add", u, "--cost", &self.cost.to_string()])
                    .arg("--htpasswd")
                    .arg(&htpasswd),
                &format!("{}\n", password_of(u)),
            );
        }
        let config = dir.path().join("wharf.toml");
        let mut toml = format!(
            "[auth]\nmode = \"{}\"\nhtpasswd = \"{}\"\n",
            self.mode,
            htpasswd.display()
        );
        for l in &self.auth_lines {
            toml.push_str(l);
            toml.push('\n');
        }
        toml.push_str(self.rules.as_deref().unwrap_or(STANDARD_RULES));
        write_file(&config, toml);
        let data = dir.path().join("data");
        let out = ok(wharf_cmd(60)
            .args([
                "robot",
                "add",
                "ci",
                "--scope",
                "private/**:pull,push",
                "-c",
            ])
            .arg(&config)
            .arg("--data-dir")
            .arg(&data));
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("no {name} in `wharf robot add` output:\n{out}"))
                .trim()
                .to_owned()
        };
        let robot = (field("username:"), field("password:"));
        assert_eq!(robot.0, "robot$ci");
        let config_arg = config.to_string_lossy().into_owned();
        let wharf = Wharf::start_logged_in(dir, &["-c", &config_arg]);
        AuthServer {
            wharf,
            mode: self.mode,
            config,
            htpasswd,
            robot,
        }
    }
}

/// The rules of the standard setup.
pub const STANDARD_RULES: &str = r#"
[auth.groups]
readers = ["reader"]
writers = ["writer"]

[[auth.rules]]
repositories = ["public/**"]
subjects = ["anonymous"]
actions = ["pull"]

[[auth.rules]]
repositories = ["private/**"]
subjects = ["group:readers"]
actions = ["pull"]

[[auth.rules]]
repositories = ["private/**"]
subjects = ["group:writers"]
actions = ["pull", "push"]

[[auth.rules]]
repositories = ["**"]
subjects = ["user:admin"]
actions = ["pull", "push", "delete"]
"#;

/// A running server of [`AuthSetup`].
pub struct AuthServer {
    pub wharf: Wharf,
    /// `basic` or `token`.
    pub mode: &'static str,
    pub config: PathBuf,
    pub htpasswd: PathBuf,
    /// The robot's user name and secret.
    pub robot: (String, String),
}

impl AuthServer {
    pub fn addr(&self) -> &str {
        &self.wharf.addr
    }

    /// The user name and password of `who`.
    pub fn creds(&self, who: Who) -> Option<(String, String)> {
        let user = |u: &str| Some((u.to_owned(), password_of(u)));
        match who {
            Who::Anonymous => None,
            Who::Reader => user("reader"),
            Who::Writer => user("writer"),
            Who::Admin => user("admin"),
            Who::Robot => Some(self.robot.clone()),
        }
    }

    /// The `Authorization: Basic` value of `who`.
    pub fn basic(&self, who: Who) -> Option<String> {
        self.creds(who).map(|(u, p)| basic_auth(&u, &p))
    }

    /// `wharf robot ...` on this server's configuration and data.
    pub fn robot_cmd(&self, args: &[&str]) -> Command {
        let mut c = wharf_cmd(60);
        c.arg("robot")
            .args(args)
            .arg("-c")
            .arg(&self.config)
            .arg("--data-dir")
            .arg(self.wharf.data_dir());
        c
    }

    /// The built-in issuer's signing key, as the server stored it.
    pub fn signing_key_pem(&self) -> String {
        let path = self.wharf.data_dir().join("auth/token-signing-key.pem");
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// Kills the server and starts it again on the same directory.
    pub fn restart(self) -> AuthServer {
        let AuthServer {
            wharf,
            mode,
            config,
            htpasswd,
            robot,
        } = self;
        let dir = wharf.kill();
        let config_arg = config.to_string_lossy().into_owned();
        let wharf = Wharf::start_logged_in(dir, &["-c", &config_arg]);
        AuthServer {
            wharf,
            mode,
            config,
            htpasswd,
            robot,
        }
    }

    /// A token from `GET /token` for `scopes`, as `who`.
    pub fn token(&self, who: Who, scopes: &[&str]) -> String {
        let r = self.token_response(self.basic(who).as_deref(), scopes);
        assert_eq!(
            r.status,
            200,
            "GET /token as {who:?} for {scopes:?}: {}",
            r.text()
        );
        r.json()["token"]
            .as_str()
            .expect("token in the response")
            .to_owned()
    }

    /// `GET /token?service=wharf&scope=...` with an optional Authorization.
    pub fn token_response(&self, authorization: Option<&str>, scopes: &[&str]) -> HttpResp {
        let mut path = "/token?service=wharf".to_owned();
        for s in scopes {
            path.push_str(&format!("&scope={}", query_escape(s)));
        }
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| vec![("Authorization", a)])
            .unwrap_or_default();
        raw_request(self.addr(), "GET", &path, &headers, b"")
    }
}

// ---- real clients (copied from tests/interop.rs, which keeps its own) ----

/// The static busybox from Debian's busybox-static.
pub const BUSYBOX: &str = "/bin/busybox";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn sha256(data: &[u8]) -> String {
    wharf_types::Digest::sha256(data).to_string()
}

/// Fails the test at once, naming what to install, if a tool is missing.
pub fn need(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !have(t)).collect();
    assert!(
        missing.is_empty(),
        "missing tools {missing:?}: run .ci/install.sh (as root) first"
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: apt-get install busybox-static"
    );
}

/// A daemon in its own process group with its output in a log file; on drop
/// the group gets SIGTERM, then SIGKILL if it has not exited within 15 s.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Daemon {
    pub fn spawn(name: &str, mut c: Command, log: &Path) -> Daemon {
        let file = std::fs::File::create(log).expect("create log");
        c.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file)
            .process_group(0);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Daemon {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        }
    }

    /// Polls `ready` until it holds; fails with the log if the daemon exits
    /// or `secs` pass first.
    pub fn wait_ready(&mut self, secs: u64, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited during startup ({status}):\n{}",
                    self.name,
                    tail_file(&self.log, 40)
                );
            }
            if ready() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready after {secs} s:\n{}",
                self.name,
                tail_file(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args(["-s", signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- {} (last log lines) ---\n{}",
                self.name,
                tail_file(&self.log, 40)
            );
        }
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        self.signal_group("TERM");
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A containerd with its own root, state and socket under `dir`, and only
/// the plugins that need no host setup (CRI is off).
pub struct Containerd {
    pub socket: PathBuf,
    _daemon: Daemon,
}

impl Containerd {
    pub fn start(dir: &Path) -> Containerd {
        std::fs::create_dir_all(dir).expect("mkdir");
        let socket = dir.join("containerd.sock");
        let config = dir.join("config.toml");
        write_file(
            &config,
            format!(
                "version = 2\n\
                 root = \"{root}\"\n\
                 state = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{sock}\"\n\
                 [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
                 [debug]\n  address = \"\"\n\
                 [metrics]\n  address = \"\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = socket.display(),
            ),
        );
        let mut c = Command::new("containerd");
        c.arg("--config").arg(&config);
        let mut daemon = Daemon::spawn("containerd", c, &dir.join("containerd.log"));
        let sock = socket.clone();
        daemon.wait_ready(30, || {
            sock.exists()
                && cmd(10, "ctr")
                    .arg("--address")
                    .arg(&sock)
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
        });
        Containerd {
            socket,
            _daemon: daemon,
        }
    }

    /// `ctr` on this containerd, in namespace `ns`.
    pub fn ctr(&self, secs: u64, ns: &str) -> Command {
        let mut c = cmd(secs, "ctr");
        c.arg("--address")
            .arg(&self.socket)
            .args(["--namespace", ns]);
        c
    }
}

/// A deterministic uncompressed tar of a root filesystem holding only the
/// static busybox at /bin/busybox (and `extra` files), built with GNU tar.
pub fn busybox_rootfs_tar(work: &Path, extra: &[(&str, &str)]) -> Vec<u8> {
    let root = work.join("rootfs");
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).expect("copy busybox");
    for (path, content) in extra {
        write_file(&root.join(path), content);
    }
    let out = work.join("rootfs.tar");
    ok(cmd(60, "tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "--mtime=@0",
            "--format=gnu",
            "-C",
        ])
        .arg(&root)
        .arg("-cf")
        .arg(&out)
        .arg("."));
    std::fs::read(&out).expect("read rootfs.tar")
}

pub fn gzip(data: &[u8], work: &Path) -> Vec<u8> {
    let tmp = work.join("gzip-input");
    write_file(&tmp, data);
    let out = run(cmd(60, "gzip").args(["-n", "-c"]).arg(&tmp));
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

/// One image in an OCI layout written here.
#[derive(Clone, Debug)]
pub struct Built {
    pub manifest: Vec<u8>,
    pub digest: String,
    pub config_digest: String,
    pub layer_digest: String,
}

/// Writes a single-layer busybox image for `arch` into the OCI layout at
/// `layout`, returning its manifest.
pub fn oci_image(layout: &Path, work: &Path, arch: &str) -> Built {
    let tar = busybox_rootfs_tar(work, &[("etc/arch", arch)]);
    let layer = gzip(&tar, work);
    let config = serde_json::to_vec(&json!({
        "created": "2024-01-01T00:00:00Z",
        "architecture": arch,
        "os": "linux",
        "config": {"Cmd": ["/bin/busybox", "sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(&tar)]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "wharf interop test"}],
    }))
    .expect("json");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(&layer), "size": layer.len()}],
    }))
    .expect("json");
    for blob in [&layer, &config, &manifest] {
        let d = sha256(blob);
        write_file(
            &layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
            blob,
        );
    }
    Built {
        digest: sha256(&manifest),
        config_digest: sha256(&config),
        layer_digest: sha256(&layer),
        manifest,
    }
}

/// Storage, registries, policy and engine configuration for buildah and
/// podman, all under `dir`, so nothing of the host's is read or changed.
pub struct Containers {
    pub dir: PathBuf,
    pub policy: PathBuf,
}

impl Containers {
    pub fn new(dir: &Path, registry: &str) -> Containers {
        let policy = dir.join("policy.json");
        write_file(
            &policy,
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        );
        write_file(
            &dir.join("registries.conf"),
            format!(
                "unqualified-search-registries = []\n\
                 [[registry]]\nlocation = \"{registry}\"\ninsecure = true\n"
            ),
        );
        write_file(
            &dir.join("storage.conf"),
            format!(
                "[storage]\ndriver = \"vfs\"\nrunroot = \"{}\"\ngraphroot = \"{}\"\n",
                dir.join("runroot").display(),
                dir.join("root").display()
            ),
        );
        // runc rather than crun: crun refuses cgroup v1/v2 hybrid hosts; no
        // default ulimits: raising RLIMIT_NOFILE is refused in some sandboxes.
        write_file(
            &dir.join("containers.conf"),
            format!(
                "[containers]\nnetns = \"none\"\ndefault_ulimits = []\n\
                 [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{}\"\nruntime = \"runc\"\ntmp_dir = \"{}\"\n",
                dir.join("events.log").display(),
                dir.join("tmp").display()
            ),
        );
        write_file(&dir.join("auth.json"), r#"{"auths":{}}"#);
        std::fs::create_dir_all(dir.join("tmp")).expect("mkdir");
        Containers {
            dir: dir.to_owned(),
            policy,
        }
    }

    /// `buildah` or `podman` with this configuration and a storage root of
    /// its own (`store`), vfs driver.
    pub fn tool(&self, prog: &str, store: &str, secs: u64) -> Command {
        let mut c = cmd(secs, prog);
        c.arg("--root")
            .arg(self.dir.join(store).join("root"))
            .arg("--runroot")
            .arg(self.dir.join(store).join("runroot"))
            .args(["--storage-driver", "vfs"])
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .env("REGISTRY_AUTH_FILE", self.dir.join("auth.json"))
            .env("BUILDAH_ISOLATION", "chroot")
            .env("TMPDIR", self.dir.join("tmp"));
        c
    }
}

/// A Docker engine (Debian's docker.io) with its own data root, exec root,
/// socket and pid file under a temp dir, on a containerd of its own; no
/// iptables, no bridge. Stopped (dockerd first) on drop.
pub struct Docker {
    pub host: String,
    pub config: PathBuf,
    _dockerd: Daemon,
    _containerd: Containerd,
    pub dir: tempfile::TempDir,
}

impl Docker {
    /// Debian's CLI: another docker CLI may come first in PATH.
    pub fn cli() -> &'static str {
        if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        }
    }

    pub fn start() -> Docker {
        let dir = tempfile::tempdir().expect("tempdir");
        let containerd = Containerd::start(&dir.path().join("containerd"));
        let daemon_json = dir.path().join("daemon.json");
        write_file(&daemon_json, "{}");
        let sock = dir.path().join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let mut c = Command::new("dockerd");
        c.arg("--config-file")
            .arg(&daemon_json)
            .arg("--containerd")
            .arg(&containerd.socket)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("docker.pid"))
            .args(["-H", &host])
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=vfs",
            ]);
        let mut dockerd = Daemon::spawn("dockerd", c, &dir.path().join("dockerd.log"));
        let config = dir.path().join("cli-config");
        std::fs::create_dir_all(&config).expect("mkdir");
        let probe = |host: &str, config: &Path| {
            cmd(10, Self::cli())
                .arg("version")
                .env("DOCKER_HOST", host)
                .env("DOCKER_CONFIG", config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        dockerd.wait_ready(60, || probe(&host, &config));
        Docker {
            host,
            config,
            _dockerd: dockerd,
            _containerd: containerd,
            dir,
        }
    }

    pub fn docker(&self, secs: u64) -> Command {
        let mut c = cmd(secs, Self::cli());
        c.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", &self.config)
            .env("DOCKER_CLI_EXPERIMENTAL", "enabled");
        c
    }
}

/// The Python of the venv that `.ci/install.sh` makes, with the oras SDK.
pub fn oras_python() -> PathBuf {
    if let Some(p) = std::env::var_os("WHARF_ORAS_PYTHON") {
        return p.into();
    }
    let cache = std::env::var_os("WHARF_CI_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/wharf-ci")))
        .expect("HOME or WHARF_CI_CACHE");
    cache.join("venv/bin/python")
}
