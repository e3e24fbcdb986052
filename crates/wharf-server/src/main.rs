//! `wharf`: the Wharf container registry server and its admin commands.

mod app;
mod auth;
mod config;
mod metrics;
mod progress;
mod scan;
mod serve;
mod tls;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::sync::watch;
use wharf_registry::{Limits, Registry};
use wharf_storage::{FsBackend, FsOptions, GcOptions, MemoryBackend, Store, StoreConfig};

use crate::config::{Config, LogFormat, StorageKind};

/// glibc's allocator gives each thread that allocates concurrently an arena
/// of its own (up to eight per core) and keeps freed memory in it: under a
/// mixed push/pull load, the short-lived buffers of the I/O threads left
/// `serve` with about 70 MiB resident instead of about 45 MiB at the same
/// throughput with two arenas. The arena count can only be set before the
/// allocator starts, from the environment, so `serve` re-executes itself
/// once with `MALLOC_ARENA_MAX=2` unless the variable is already set (set
/// it to choose another value; other allocators ignore it). The process
/// keeps its id; if the re-execution fails, the server runs as it is.
fn limit_malloc_arenas() {
    use std::os::unix::process::CommandExt;
    const VAR: &str = "MALLOC_ARENA_MAX";
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || std::env::var_os(VAR).is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(VAR, "2")
        .exec();
    // Only reached when the exec failed.
    eprintln!("wharf: could not restart with {VAR}=2 ({err}); continuing");
}

/// Raises the soft limit on open files to the hard limit, as servers that
/// hold a descriptor per connection and per upload should (the usual soft
/// default, 1024, caps a registry at about a thousand concurrent clients;
/// the hard limit is what the administrator allows). Returns the soft limit
/// before and after.
#[cfg(unix)]
fn raise_open_file_limit() -> Option<(u64, u64)> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current?;
    // No hard limit: the kernel still caps descriptors (`nr_open`, at least
    // 2^20 on Linux).
    let target = limit.maximum.unwrap_or(1 << 20);
    if target <= before {
        return Some((before, before));
    }
    let raised = Rlimit {
        current: Some(target),
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => Some((before, target)),
        Err(_) => Some((before, before)),
    }
}

#[cfg(not(unix))]
fn raise_open_file_limit() -> Option<(u64, u64)> {
    None
}

/// A fast, safe, embeddable OCI container registry.
#[derive(Debug, Parser)]
#[command(name = "wharf", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (default 127.0.0.1:5000).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Delete content nothing references (run while the server is stopped,
    /// or set `gc.interval_secs` to collect online).
    Gc {
        #[command(flatten)]
        common: Common,
        /// Report what would be deleted without deleting.
        #[arg(long)]
        dry_run: bool,
        /// Also delete manifests no tag reaches.
        #[arg(long)]
        delete_untagged: bool,
        /// Only delete content older than this many seconds.
        #[arg(long)]
        grace_secs: Option<u64>,
    },
    /// Re-hash every stored blob and report corrupt ones (exit status 1 if any).
    Fsck {
        #[command(flatten)]
        common: Common,
    },
    /// Manage htpasswd users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Manage robot (service) accounts for CI pipelines.
    Robot {
        #[command(subcommand)]
        command: RobotCommand,
    },
    /// Scan an image in the data directory for known vulnerabilities
    /// (offline, against OSV advisories) and print the report or an SBOM.
    Scan {
        #[command(flatten)]
        args: scan::ScanArgs,
        #[command(flatten)]
        common: Common,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user or change a password. The password is read from standard
    /// input (prompted for, without echo, on a terminal).
    Add {
        /// The user name.
        name: String,
        /// The htpasswd file (default: `auth.htpasswd` from the configuration).
        #[arg(long)]
        htpasswd: Option<PathBuf>,
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// bcrypt cost.
        #[arg(long, default_value_t = wharf_auth::htpasswd::DEFAULT_COST)]
        cost: u32,
    },
}

#[derive(Debug, Subcommand)]
enum RobotCommand {
    /// Create a robot; prints its credentials once.
    Add {
        /// The robot's name; it logs in as `robot$NAME`.
        name: String,
        /// What it may do: `GLOB:ACTIONS`, e.g. `ci/**:pull,push`. Repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_days: Option<u64>,
        #[command(flatten)]
        common: Common,
    },
    /// List robots.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a robot; takes effect on a running server at once.
    Revoke {
        /// The robot's name.
        name: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate a configuration file and print the effective configuration
    /// (file plus environment overrides).
    Check {
        /// The TOML file.
        file: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct Common {
    /// TOML configuration file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory for filesystem storage (default ./wharf-data).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Storage backend.
    #[arg(long, value_enum)]
    storage: Option<StorageKind>,
}

impl Common {
    fn load(&self) -> Result<Config, String> {
        let mut config =
            Config::load(self.config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
        if let Some(d) = &self.data_dir {
            config.storage.path = d.clone();
        }
        if let Some(s) = self.storage {
            config.storage.kind = s;
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Serve { .. }) {
        limit_malloc_arenas();
    }
    let result = match cli.command {
        Command::Version => {
            println!("wharf {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => Config::load(Some(&file), std::env::vars())
            .map_err(|e| e.to_string())
            .and_then(|c| auth::validate(&c).map(|()| c))
            .map(|c| {
                eprintln!(
                    "{}: configuration is valid; effective configuration:",
                    file.display()
                );
                print!("{}", c.to_toml());
            }),
        Command::Serve { common, listen } => common.load().and_then(|mut config| {
            if let Some(l) = listen {
                config.server.listen = l;
                config.validate().map_err(|e| e.to_string())?;
            }
            run(config, serve)
        }),
        Command::Gc {
            common,
            dry_run,
            delete_untagged,
            grace_secs,
        } => common
            .load()
            .and_then(|config| run(config, move |c| gc(c, dry_run, delete_untagged, grace_secs))),
        Command::Fsck { common } => common.load().and_then(|config| run(config, fsck)),
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    htpasswd,
                    config,
                    cost,
                },
        } => user_add(&name, htpasswd, config, cost),
        Command::Robot { command } => robot(command),
        Command::Scan { args, common } => common
            .load()
            .and_then(|config| run(config, move |c| scan::cli(c, args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wharf: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sets up logging and a runtime, then runs `f`.
fn run<F, Fut>(config: Config, f: F) -> Result<(), String>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    init_logging(&config);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wharf")
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(f(config))
}

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WHARF_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.compact().try_init(),
    };
}

fn open_store(config: &Config) -> Result<Store, String> {
    open_store_noting_read_only(config).map(|(store, _)| store)
}

/// Opens the configured storage; also says whether it is open for reading
/// only (read-only storage: pulls work, pushes fail until it is writable).
fn open_store_noting_read_only(config: &Config) -> Result<(Store, bool), String> {
    let mut store_config = StoreConfig::default();
    store_config.manifest_cache_bytes = config.storage.manifest_cache_bytes;
    store_config.max_manifest_size = config.registry.max_manifest_size;
    // A blob checked by a push is marked as used well within the GC grace
    // period, however short it is configured.
    store_config.link_touch_interval = Duration::from_secs(config.gc.grace_secs / 4)
        .clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut read_only = false;
    let backend: Arc<dyn wharf_storage::Backend> = match config.storage.kind {
        StorageKind::Memory => Arc::new(MemoryBackend::new()),
        StorageKind::S3 => Arc::new(
            wharf_storage_s3::S3Backend::new(config.storage.s3())
                .map_err(|e| format!("cannot use S3 storage: {e}"))?,
        ),
        StorageKind::Fs => {
            let options = FsOptions::default()
                .with_fsync(config.storage.fsync)
                .with_inline_threshold(config.storage.inline_threshold);
            let fs = FsBackend::open_with(&config.storage.path, options).map_err(|e| {
                format!(
                    "cannot open storage at {}: {e}",
                    config.storage.path.display()
                )
            })?;
            read_only = fs.is_read_only();
            Arc::new(fs)
        }
    };
    Ok((Store::with_config(backend, store_config), read_only))
}

async fn serve(config: Config) -> Result<(), String> {
    let started = Instant::now();
    if let Some((before, after)) = raise_open_file_limit() {
        if after > before {
            tracing::info!(from = before, to = after, "raised the open-file limit");
        }
        // A connection, and an upload or download in progress, each hold
        // a descriptor; storage and the listeners need some more.
        let wanted = u64::try_from(config.server.max_connections)
            .unwrap_or(u64::MAX)
            .saturating_mul(2)
            .saturating_add(64);
        if after < wanted {
            tracing::warn!(
                limit = after,
                max_connections = config.server.max_connections,
                "the open-file limit is low for server.max_connections; raise it (ulimit -n, LimitNOFILE=)"
            );
        }
    }
    let (store, read_only) = open_store_noting_read_only(&config)?;
    let mut limits = Limits::default();
    limits.max_manifest_size = config.registry.max_manifest_size;
    limits.max_blob_size = config.registry.max_blob_size;
    limits.max_page = config.registry.max_page;
    let auth = auth::build(&config)?;
    let mut builder = Registry::builder(store.clone())
        .limits(limits)
        .delete_enabled(config.registry.delete_enabled)
        .automatic_mount(config.registry.automatic_mount)
        .redirect_blob_reads(
            (config.storage.kind == StorageKind::S3 && config.storage.s3_redirect_secs > 0)
                .then(|| Duration::from_secs(config.storage.s3_redirect_secs)),
        );
    if let Some(auth) = &auth {
        builder = builder.authorizer(auth::AuthAdapter {
            auth: auth.clone(),
            https: !config.server.tls_cert.is_empty(),
        });
    }
    let metrics = metrics::Metrics::new();
    let scan_auth: Option<Arc<dyn wharf_registry::Authorizer>> = auth.clone().map(|auth| {
        Arc::new(auth::AuthAdapter {
            auth,
            https: !config.server.tls_cert.is_empty(),
        }) as Arc<dyn wharf_registry::Authorizer>
    });
    let scanner = scan::Scanner::start(&config, store, metrics.clone(), scan_auth)?;
    if let Some(s) = &scanner {
        builder = builder.event_hook(s.hook());
    }
    let registry = builder.build();
    let app = Arc::new(app::App {
        registry,
        metrics,
        access_log: config.log.access_log,
        auth,
        scan: scanner,
    });

    let addr = config.listen_addr().map_err(|e| e.to_string())?;
    let listener = serve::bind(addr).await?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let admin_listener = if config.metrics.listen.is_empty() {
        None
    } else {
        let addr = config
            .metrics
            .listen
            .parse()
            .map_err(|e| format!("metrics.listen: {e}"))?;
        Some(serve::bind(addr).await?)
    };
    let tls = if config.server.tls_cert.is_empty() {
        None
    } else {
        let cert = tls::ReloadableCert::load(
            config.server.tls_cert.as_ref(),
            config.server.tls_key.as_ref(),
        )?;
        let server_config = tls::server_config(cert.clone(), config.server.http2)?;
        Some((
            tokio_rustls::TlsAcceptor::from(Arc::new(server_config)),
            cert,
        ))
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let data = match config.storage.kind {
        StorageKind::Fs if read_only => format!(
            "data in {} (READ-ONLY: pulls only, pushes fail until it is writable)",
            config.storage.path.display()
        ),
        StorageKind::Fs => format!("data in {}", config.storage.path.display()),
        StorageKind::Memory => "data in memory (lost on exit)".to_owned(),
        StorageKind::S3 => format!(
            "data in bucket {} at {}",
            config.storage.s3_bucket,
            if config.storage.s3_endpoint.is_empty() {
                "AWS S3"
            } else {
                &config.storage.s3_endpoint
            }
        ),
    };
    let metrics_note = admin_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok())
        .map(|a| format!(", metrics on http://{a}/metrics"))
        .unwrap_or_default();
    // The one line users look for; on stdout so scripts can read the port.
    println!("wharf listening on {scheme}://{local}, {data}{metrics_note}");
    tracing::info!(
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "ready"
    );

    let (tx, rx) = watch::channel(false);
    let server = serve::Server {
        app,
        config,
        listener,
        admin_listener,
        tls,
    };
    let handle = tokio::spawn(server.run(rx));
    serve::termination().await;
    tracing::info!("termination signal received");
    let _ = tx.send(true);
    handle
        .await
        .map_err(|e| format!("server task failed: {e}"))?;
    Ok(())
}

async fn gc(
    config: Config,
    dry_run: bool,
    delete_untagged: bool,
    grace_secs: Option<u64>,
) -> Result<(), String> {
    let store = open_store(&config)?;
    let mut options = GcOptions::with_grace(Duration::from_secs(
        grace_secs.unwrap_or(config.gc.grace_secs),
    ));
    options.dry_run = dry_run;
    options.delete_untagged = delete_untagged || config.gc.delete_untagged;
    options.upload_expiry = Some(Duration::from_secs(config.registry.upload_expiry_secs));
    let mut progress = progress::Reporter::new("gc");
    let report = store
        .gc_with_progress(&options, |p| progress.update(p))
        .await
        .map_err(|e| format!("garbage collection failed: {e}"))?;
    progress.finish();
    let verb = if dry_run { "would delete" } else { "deleted" };
    println!(
        "{verb} {} blobs ({} bytes) and {} manifests; kept {} blobs; expired {} uploads; {} repositories scanned",
        report.blobs_deleted,
        report.bytes_freed,
        report.manifests_deleted,
        report.blobs_kept,
        report.uploads_expired,
        report.repositories
    );
    Ok(())
}

async fn fsck(config: Config) -> Result<(), String> {
    let store = open_store(&config)?;
    let mut progress = progress::Reporter::new("fsck");
    let report = store
        .scrub(|p| progress.update(p))
        .await
        .map_err(|e| format!("fsck failed: {e}"))?;
    progress.finish();
    for (expected, actual) in &report.corrupt {
        println!("CORRUPT {expected} (content hashes to {actual})");
    }
    for (digest, error) in &report.unreadable {
        println!("UNREADABLE {digest}: {error}");
    }
    println!(
        "checked {} blobs ({} bytes): {} corrupt, {} unreadable",
        report.blobs_checked,
        report.bytes_checked,
        report.corrupt.len(),
        report.unreadable.len()
    );
    if report.corrupt.is_empty() && report.unreadable.is_empty() {
        Ok(())
    } else {
        Err("corrupt content found".into())
    }
}

fn user_add(
    name: &str,
    htpasswd: Option<PathBuf>,
    config: Option<PathBuf>,
    cost: u32,
) -> Result<(), String> {
    let path = match htpasswd {
        Some(p) => p,
        None => {
            let c = Config::load(config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
            if c.auth.htpasswd.as_os_str().is_empty() {
                return Err("no htpasswd file: pass --htpasswd or set auth.htpasswd".into());
            }
            c.auth.htpasswd
        }
    };
    let password = read_password()?;
    wharf_auth::htpasswd::set_password(&path, name, &password, cost).map_err(|e| e.to_string())?;
    eprintln!("user {name:?} saved in {}", path.display());
    Ok(())
}

fn read_password() -> Result<String, String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Repeat password: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("passwords differ".into());
        }
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

fn robot(command: RobotCommand) -> Result<(), String> {
    let common = match &command {
        RobotCommand::Add { common, .. }
        | RobotCommand::List { common }
        | RobotCommand::Revoke { common, .. } => common,
    };
    let config = common.load()?;
    let path = auth::robots_path(&config)
        .ok_or("robots need a file: set auth.robots (memory storage has no data directory)")?;
    match command {
        RobotCommand::Add {
            name,
            scopes,
            expires_days,
            ..
        } => {
            let mut parsed = Vec::new();
            for s in &scopes {
                let (glob, actions) = s
                    .rsplit_once(':')
                    .ok_or_else(|| format!("scope {s:?}: expected GLOB:ACTIONS"))?;
                let actions = actions
                    .split(',')
                    .map(|a| {
                        wharf_auth::Action::parse(a)
                            .ok_or_else(|| format!("scope {s:?}: unknown action {a:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                parsed.push(wharf_auth::robots::RobotScope {
                    repositories: vec![glob.to_owned()],
                    actions,
                });
            }
            let expires = expires_days.map(|d| {
                std::time::SystemTime::now() + Duration::from_secs(d.saturating_mul(86_400))
            });
            let secret = wharf_auth::robots::add(&path, &name, parsed, expires)
                .map_err(|e| e.to_string())?;
            println!("username: {}{name}", wharf_auth::robots::ROBOT_PREFIX);
            println!("password: {secret}");
            eprintln!("(shown once; store it in your CI secrets)");
        }
        RobotCommand::List { .. } => {
            let now = std::time::SystemTime::now();
            for r in wharf_auth::robots::list(&path).map_err(|e| e.to_string())? {
                let state = if r.revoked {
                    "revoked"
                } else if r.active(now) {
                    "active"
                } else {
                    "expired"
                };
                let scopes: Vec<String> = r
                    .scopes
                    .iter()
                    .map(|s| {
                        let a: Vec<&str> = s.actions.iter().map(|a| a.as_str()).collect();
                        format!("{}:{}", s.repositories.join("|"), a.join(","))
                    })
                    .collect();
                let expires = if r.expires == 0 {
                    "never".to_owned()
                } else {
                    format!("{}", r.expires)
                };
                println!(
                    "{}{}\t{state}\texpires={expires}\t{}",
                    wharf_auth::robots::ROBOT_PREFIX,
                    r.name,
                    scopes.join(" ")
                );
            }
        }
        RobotCommand::Revoke { name, .. } => {
            wharf_auth::robots::revoke(&path, &name).map_err(|e| e.to_string())?;
            eprintln!("robot {name:?} revoked");
        }
    }
    Ok(())
}
