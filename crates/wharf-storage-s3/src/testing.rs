//! A real Garage cluster on 127.0.0.1 for tests (feature `testing`).
//!
//! [`GarageCluster::start`] writes one configuration per node into a
//! temporary directory, starts `garage server` for each on free ports,
//! connects the nodes, applies a layout (zone `dc1`, replication factor 3
//! when there are three nodes or more, consistent mode), imports a key and
//! creates a bucket the key owns, and waits until every node answers signed
//! S3 writes. Dropping the cluster kills the nodes and removes the
//! directory; a watchdog process does the same if the test process dies
//! without dropping it.
//!
//! The `garage` binary is looked up in `GARAGE_BIN`, then
//! `$CARGO_HOME/bin` (or `~/.cargo/bin`, where `cargo install garage`
//! puts it), then `PATH`.

use std::fs;
use std::io::{self, Read};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use crate::{S3Backend, S3Config};
use wharf_storage::Backend;

/// The S3 region the nodes are configured with.
pub const REGION: &str = "garage";
/// The bucket [`GarageCluster::start`] creates.
pub const BUCKET: &str = "wharf";

/// A running Garage cluster; stopped and removed on drop.
#[derive(Debug)]
pub struct GarageCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    nodes: Mutex<Vec<Node>>,
    key_id: String,
    secret: String,
    watchdog: Mutex<Option<Child>>,
}

#[derive(Debug)]
struct Node {
    config: PathBuf,
    log: PathBuf,
    s3: u16,
    child: Option<Child>,
}

fn other(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    hex::encode(b)
}

/// `k` distinct free TCP ports on 127.0.0.1 (held together while picked).
fn free_ports(k: usize) -> io::Result<Vec<u16>> {
    let held: Vec<TcpListener> = (0..k)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<_>>()?;
    held.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

impl GarageCluster {
    /// Where the `garage` binary is, if anywhere.
    pub fn binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("GARAGE_BIN") {
            return Some(PathBuf::from(p));
        }
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
        if let Some(p) = cargo_home.map(|c| c.join("bin").join("garage"))
            && p.is_file()
        {
            return Some(p);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("garage"))
                .find(|p| p.is_file())
        })
    }

    /// One cluster shared by everything in this process that holds it;
    /// started on first use, stopped when the last holder drops it.
    pub fn shared() -> io::Result<Arc<GarageCluster>> {
        static SHARED: Mutex<Weak<GarageCluster>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.upgrade() {
            return Ok(c);
        }
        let c = Arc::new(GarageCluster::start(3)?);
        *slot = Arc::downgrade(&c);
        Ok(c)
    }

    /// Starts a cluster of `nodes` nodes and waits until it serves S3.
    /// Blocks for a few seconds; from async code call it through
    /// `tokio::task::spawn_blocking`.
    pub fn start(nodes: usize) -> io::Result<GarageCluster> {
        assert!(nodes >= 1, "a cluster needs a node");
        let bin = Self::binary().ok_or_else(|| {
            other("no garage binary (cargo install --locked garage, or set GARAGE_BIN)")
        })?;
        let dir = tempfile::Builder::new().prefix("wharf-garage-").tempdir()?;
        let key_id = format!("GK{}", random_hex(12));
        let secret = random_hex(32);
        let cluster = GarageCluster {
            dir,
            bin,
            nodes: Mutex::new(Vec::new()),
            key_id,
            secret,
            watchdog: Mutex::new(None),
        };
        cluster.spawn_watchdog()?;
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut attempt = 0;
        loop {
            match cluster.boot(nodes, deadline) {
                Ok(()) => break,
                // A port picked as free was taken meanwhile: new ports.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 5 => {
                    cluster.kill_all();
                    attempt += 1;
                }
                Err(e) => {
                    let logs = cluster.log_tails();
                    return Err(other(format!("garage cluster did not start: {e}\n{logs}")));
                }
            }
        }
        cluster.wait_s3(deadline)?;
        Ok(cluster)
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Node>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn boot(&self, n: usize, deadline: Instant) -> io::Result<()> {
        let rpc_secret = random_hex(32);
        let ports = free_ports(3 * n)?;
        let replication = n.min(3);
        let mut nodes = Vec::new();
        for i in 0..n {
            let (rpc, s3, admin) = (ports[3 * i], ports[3 * i + 1], ports[3 * i + 2]);
            let home = self.dir.path().join(format!("node{}", i + 1));
            fs::create_dir_all(home.join("meta"))?;
            fs::create_dir_all(home.join("data"))?;
            let config = self.dir.path().join(format!("node{}.toml", i + 1));
            let text = format!(
                "metadata_dir = \"{meta}\"\ndata_dir = \"{data}\"\ndb_engine = \"lmdb\"\n\
                 replication_factor = {replication}\nconsistency_mode = \"consistent\"\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc}\"\nrpc_public_addr = \"127.0.0.1:{rpc}\"\n\
                 rpc_secret = \"{rpc_secret}\"\n\n[s3_api]\napi_bind_addr = \"127.0.0.1:{s3}\"\n\
                 s3_region = \"{REGION}\"\nroot_domain = \".s3.garage.localhost\"\n\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin}\"\nadmin_token = \"{token}\"\n",
                meta = home.join("meta").display(),
                data = home.join("data").display(),
                token = random_hex(32),
            );
            fs::write(&config, text)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&config, fs::Permissions::from_mode(0o600))?;
            }
            nodes.push(Node {
                log: self.dir.path().join(format!("node{}.log", i + 1)),
                config,
                s3,
                child: None,
            });
        }
        *self.lock() = nodes;
        for i in 0..n {
            self.launch(i)?;
        }
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(self.wait_node(i, deadline)?);
        }
        for id in &ids[1..] {
            self.garage(0, &["node", "connect", id])?;
        }
        let mut assign = vec!["layout", "assign", "-z", "dc1", "-c", "1G"];
        let short: Vec<String> = ids
            .iter()
            .map(|id| id.split('@').next().unwrap_or(id).to_owned())
            .collect();
        assign.extend(short.iter().map(String::as_str));
        self.garage(0, &assign)?;
        self.garage(0, &["layout", "apply", "--version", "1"])?;
        for i in 0..n {
            self.wait_healthy(i, n, deadline)?;
        }
        self.garage(
            0,
            &[
                "key",
                "import",
                "--yes",
                "-n",
                "wharf-key",
                &self.key_id,
                &self.secret,
            ],
        )?;
        self.garage(0, &["bucket", "create", BUCKET])?;
        self.garage(
            0,
            &[
                "bucket",
                "allow",
                "--read",
                "--write",
                "--owner",
                BUCKET,
                "--key",
                "wharf-key",
            ],
        )?;
        Ok(())
    }

    /// Starts node `i` (0-based) with its configuration.
    fn launch(&self, i: usize) -> io::Result<()> {
        let mut nodes = self.lock();
        let node = &mut nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c")
            .arg(&node.config)
            .arg("server")
            .env("RUST_LOG", "garage=info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for var in [
            "GARAGE_CONFIG_FILE",
            "GARAGE_RPC_HOST",
            "GARAGE_RPC_SECRET",
            "GARAGE_RPC_SECRET_FILE",
            "GARAGE_ADMIN_TOKEN",
            "GARAGE_ADMIN_TOKEN_FILE",
            "GARAGE_METRICS_TOKEN",
        ] {
            cmd.env_remove(var);
        }
        node.child = Some(cmd.spawn()?);
        drop(nodes);
        self.write_pids()
    }

    fn write_pids(&self) -> io::Result<()> {
        let pids: Vec<String> = self
            .lock()
            .iter()
            .filter_map(|n| n.child.as_ref().map(|c| c.id().to_string()))
            .collect();
        let tmp = self.dir.path().join("pids.tmp");
        fs::write(&tmp, pids.join("\n") + "\n")?;
        fs::rename(tmp, self.dir.path().join("pids"))
    }

    /// Kills the nodes and removes the directory if this process dies
    /// without dropping the cluster (a test binary killed on timeout).
    fn spawn_watchdog(&self) -> io::Result<()> {
        let dir = self.dir.path().display().to_string();
        let script = format!(
            "while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             for p in $(cat '{dir}/pids' 2>/dev/null); do kill -9 $p 2>/dev/null; done; \
             rm -rf '{dir}'",
            parent = std::process::id()
        );
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        *self.watchdog.lock().unwrap_or_else(|p| p.into_inner()) = Some(child);
        Ok(())
    }

    /// Runs the garage CLI against node `i`; returns its stdout.
    fn garage(&self, i: usize, args: &[&str]) -> io::Result<String> {
        let config = self.lock()[i].config.clone();
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&config)
            .args(args)
            .env_remove("GARAGE_RPC_HOST")
            .env_remove("GARAGE_RPC_SECRET")
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(other(format!(
                "garage {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn log_of(&self, i: usize) -> String {
        let path = self.lock()[i].log.clone();
        let mut s = String::new();
        let _ = fs::File::open(path).and_then(|mut f| f.read_to_string(&mut s));
        s
    }

    fn log_tails(&self) -> String {
        let n = self.lock().len();
        (0..n)
            .map(|i| {
                let log = self.log_of(i);
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                format!(
                    "--- node {}:\n{}",
                    i + 1,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until node `i` runs and answers RPC; returns `id@addr`.
    fn wait_node(&self, i: usize, deadline: Instant) -> io::Result<String> {
        loop {
            let log = self.log_of(i);
            // Garage keeps running when it cannot bind its S3 or admin port.
            if log.contains("Address already in use") || log.contains("os error 98") {
                return Err(io::Error::new(io::ErrorKind::AddrInUse, "a port was taken"));
            }
            let exited = {
                let mut nodes = self.lock();
                match nodes[i].child.as_mut().map(Child::try_wait) {
                    Some(Ok(Some(status))) => Some(status.to_string()),
                    _ => None,
                }
            };
            if let Some(status) = exited {
                return Err(other(format!("node {} exited: {status}", i + 1)));
            }
            let s3 = self.lock()[i].s3;
            if port_open(s3)
                && let Ok(out) = self.garage(i, &["node", "id", "-q"])
                && let Some(id) = out.lines().next().filter(|l| l.contains('@'))
            {
                return Ok(id.trim().to_owned());
            }
            if Instant::now() > deadline {
                return Err(other(format!("node {} did not come up", i + 1)));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until node `i` sees `up` healthy storage nodes.
    fn wait_healthy(&self, i: usize, up: usize, deadline: Instant) -> io::Result<()> {
        loop {
            if let Ok(out) = self.garage(i, &["json-api", "GetClusterHealth"])
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&out)
                && v["storageNodesUp"].as_u64() == Some(up as u64)
                && v["connectedNodes"].as_u64() == Some(up as u64)
                && matches!(v["status"].as_str(), Some("healthy") | Some("degraded"))
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(other(format!("node {} not healthy", i + 1)));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every live node takes signed writes on the bucket. On
    /// a thread of its own, so that it works from inside a runtime too.
    fn wait_s3(&self, deadline: Instant) -> io::Result<()> {
        std::thread::scope(|s| {
            s.spawn(|| self.wait_s3_here(deadline))
                .join()
                .unwrap_or_else(|_| Err(other("the readiness check panicked")))
        })
    }

    fn wait_s3_here(&self, deadline: Instant) -> io::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let live: Vec<usize> = self
            .lock()
            .iter()
            .enumerate()
            .filter(|(_, n)| n.child.is_some())
            .map(|(i, _)| i)
            .collect();
        for i in live {
            let backend =
                S3Backend::new(self.config(i, "readiness")).map_err(|e| other(e.to_string()))?;
            loop {
                match rt.block_on(backend.check()) {
                    Ok(()) => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(other(format!("node {} does not serve S3: {e}", i + 1)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(200)),
                }
            }
        }
        Ok(())
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cluster has no nodes (never, once started).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// S3 endpoint of node `i` (0-based), e.g. `http://127.0.0.1:39001`.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.lock()[i].s3)
    }

    /// The access key id that owns the bucket.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Its secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// Backend settings for node `i`'s endpoint, under key prefix `prefix`.
    pub fn config(&self, i: usize, prefix: &str) -> S3Config {
        let mut c = S3Config::new(self.endpoint(i), REGION, BUCKET);
        c.prefix = prefix.to_owned();
        c.access_key_id = self.key_id.clone();
        c.secret_access_key = self.secret.clone();
        c.path_style = true;
        c.timeout = Duration::from_secs(30);
        c
    }

    /// Backend settings naming every node's endpoint, node `first` first
    /// (the client moves on to the next when one is down).
    pub fn config_all(&self, first: usize, prefix: &str) -> S3Config {
        let n = self.len();
        let mut c = self.config(first, prefix);
        c.endpoint = (0..n)
            .map(|k| self.endpoint((first + k) % n))
            .collect::<Vec<_>>()
            .join(",");
        c
    }

    /// Kills node `i` (SIGKILL) and waits until it is gone.
    pub fn kill_node(&self, i: usize) -> io::Result<()> {
        let mut nodes = self.lock();
        if let Some(mut child) = nodes[i].child.take() {
            let _ = child.kill();
            child.wait()?;
        }
        drop(nodes);
        self.write_pids()
    }

    /// Starts node `i` again (same ports and data) and waits until it
    /// rejoined the others.
    pub fn restart_node(&self, i: usize) -> io::Result<()> {
        if self.lock()[i].child.is_some() {
            return Ok(());
        }
        self.launch(i)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        self.wait_node(i, deadline)?;
        let peers: Vec<usize> = {
            let nodes = self.lock();
            (0..nodes.len())
                .filter(|&j| j != i && nodes[j].child.is_some())
                .collect()
        };
        // The others reconnect on their own too; this only speeds it up.
        for j in &peers {
            if let Ok(id) = self.garage(*j, &["node", "id", "-q"]) {
                let id = id.lines().next().unwrap_or_default().trim().to_owned();
                let _ = self.garage(i, &["node", "connect", &id]);
            }
        }
        self.wait_healthy(i, peers.len() + 1, deadline)?;
        self.wait_s3(deadline)
    }

    /// The directory holding the nodes' data, configurations and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn kill_all(&self) {
        for node in self.lock().iter_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

impl Drop for GarageCluster {
    fn drop(&mut self) {
        self.kill_all();
        if let Some(mut w) = self
            .watchdog
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            let _ = w.kill();
            let _ = w.wait();
        }
        // The TempDir removes the directory.
    }
}
