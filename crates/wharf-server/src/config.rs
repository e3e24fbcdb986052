//! Configuration: one TOML file, every key overridable from the environment.
//!
//! Precedence, lowest to highest: built-in defaults, the file, environment
//! variables (`WHARF_<SECTION>__<KEY>`, e.g. `WHARF_SERVER__LISTEN`), then
//! command-line flags. Unknown keys are errors, wherever they come from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) server: ServerConfig,
    pub(crate) storage: StorageConfig,
    pub(crate) registry: RegistryConfig,
    pub(crate) gc: GcConfig,
    pub(crate) log: LogConfig,
    pub(crate) metrics: MetricsConfig,
    pub(crate) auth: AuthSection,
    pub(crate) scan: crate::scan::ScanConfig,
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ServerConfig {
    /// Address to listen on.
    pub(crate) listen: String,
    /// PEM certificate chain; TLS is on when this and `tls_key` are set.
    pub(crate) tls_cert: String,
    /// PEM private key.
    pub(crate) tls_key: String,
    /// Serve HTTP/2 (over TLS via ALPN, and cleartext with prior knowledge).
    pub(crate) http2: bool,
    /// Seconds a client may take to send a request's headers.
    pub(crate) header_timeout_secs: u64,
    /// Seconds a connection may stay without any byte moving either way.
    pub(crate) idle_timeout_secs: u64,
    /// Seconds to let in-flight requests finish on shutdown.
    pub(crate) shutdown_timeout_secs: u64,
    /// Most connections served at once; further ones wait in the backlog.
    pub(crate) max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:5000".into(),
            tls_cert: String::new(),
            tls_key: String::new(),
            http2: true,
            header_timeout_secs: 10,
            idle_timeout_secs: 120,
            shutdown_timeout_secs: 30,
            max_connections: 4096,
        }
    }
}

/// Which storage backend.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StorageKind {
    /// Files under `path`.
    Fs,
    /// Process memory (lost on exit).
    Memory,
    /// An S3-compatible bucket (`s3_*` keys); several nodes may share it.
    S3,
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StorageConfig {
    /// `fs` or `memory`.
    pub(crate) kind: StorageKind,
    /// Data directory for `fs`.
    pub(crate) path: PathBuf,
    /// Bytes of manifests cached in memory.
    pub(crate) manifest_cache_bytes: usize,
    /// `fs`: flush blob files to disk before acknowledging a push.
    pub(crate) fsync: bool,
    /// `fs`: blobs of at most this many bytes are stored in the metadata
    /// database instead of as files.
    pub(crate) inline_threshold: u64,
    /// S3 API base URL for `s3`; empty: AWS S3 in `s3_region`.
    pub(crate) s3_endpoint: String,
    /// Signing region (Garage: its `s3_region`); empty: `AWS_REGION`.
    pub(crate) s3_region: String,
    /// Bucket for `s3`; it must exist.
    pub(crate) s3_bucket: String,
    /// Key prefix inside the bucket.
    pub(crate) s3_prefix: String,
    /// Access key id; empty: `AWS_ACCESS_KEY_ID`.
    pub(crate) s3_access_key_id: String,
    /// Secret key; empty: `AWS_SECRET_ACCESS_KEY`. Never printed.
    #[serde(serialize_with = "redacted")]
    pub(crate) s3_secret_access_key: String,
    /// Path-style addressing (most S3-compatible servers need it).
    pub(crate) s3_path_style: bool,
    /// Seconds a request may take (and a streamed body may stall).
    pub(crate) s3_timeout_secs: u64,
    /// Seconds a connection may take to open.
    pub(crate) s3_connect_timeout_secs: u64,
    /// Retries of idempotent requests after failures, with backoff.
    pub(crate) s3_max_retries: u32,
    /// Seconds a presigned URL is valid for when blob reads are redirected
    /// to the object store (`307`); 0: blobs stream through the node.
    pub(crate) s3_redirect_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            kind: StorageKind::Fs,
            path: PathBuf::from("./wharf-data"),
            manifest_cache_bytes: 8 << 20,
            fsync: true,
            inline_threshold: wharf_storage::FsOptions::DEFAULT_INLINE_THRESHOLD,
            s3_endpoint: String::new(),
            s3_region: String::new(),
            s3_bucket: String::new(),
            s3_prefix: String::new(),
            s3_access_key_id: String::new(),
            s3_secret_access_key: String::new(),
            s3_path_style: true,
            s3_timeout_secs: 60,
            s3_connect_timeout_secs: 5,
            s3_max_retries: 3,
            s3_redirect_secs: 0,
        }
    }
}

impl StorageConfig {
    /// The S3 backend's settings.
    pub(crate) fn s3(&self) -> wharf_storage_s3::S3Config {
        let mut c = wharf_storage_s3::S3Config::new(
            self.s3_endpoint.clone(),
            self.s3_region.clone(),
            self.s3_bucket.clone(),
        );
        c.prefix = self.s3_prefix.clone();
        c.access_key_id = self.s3_access_key_id.clone();
        c.secret_access_key = self.s3_secret_access_key.clone();
        c.path_style = self.s3_path_style;
        c.timeout = std::time::Duration::from_secs(self.s3_timeout_secs);
        c.connect_timeout = std::time::Duration::from_secs(self.s3_connect_timeout_secs);
        c.max_retries = self.s3_max_retries;
        c
    }
}

/// Prints a secret as `<redacted>` (empty stays empty, so the defaults
/// still name the key for environment overrides).
fn redacted<S: serde::Serializer>(secret: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if secret.is_empty() { "" } else { "<redacted>" })
}

/// `[registry]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RegistryConfig {
    /// Allow `DELETE` of blobs, manifests and tags.
    pub(crate) delete_enabled: bool,
    /// Mount blobs automatically when a push names one without `from`.
    pub(crate) automatic_mount: bool,
    /// Largest manifest in bytes.
    pub(crate) max_manifest_size: u64,
    /// Largest blob in bytes.
    pub(crate) max_blob_size: u64,
    /// Largest page for tags, catalog and referrers.
    pub(crate) max_page: usize,
    /// Seconds after which an idle upload session expires.
    pub(crate) upload_expiry_secs: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            delete_enabled: true,
            automatic_mount: true,
            max_manifest_size: 4 << 20,
            max_blob_size: 1 << 40,
            max_page: 1000,
            upload_expiry_secs: 24 * 3600,
        }
    }
}

/// `[gc]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct GcConfig {
    /// Seconds between online collections; 0 disables them.
    pub(crate) interval_secs: u64,
    /// Content younger than this many seconds is never collected.
    pub(crate) grace_secs: u64,
    /// Also collect manifests no tag reaches.
    pub(crate) delete_untagged: bool,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval_secs: 0,
            grace_secs: 3600,
            delete_untagged: false,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct LogConfig {
    /// A tracing filter: `info`, `debug`, `wharf=debug,info`, ...
    pub(crate) level: String,
    /// `text` or `json`.
    pub(crate) format: LogFormat,
    /// One line per request.
    pub(crate) access_log: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
            access_log: true,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct MetricsConfig {
    /// Address for `/metrics`, `/healthz` and `/readyz`; empty disables the
    /// separate listener (the probes are also served on the main one).
    pub(crate) listen: String,
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum AuthMode {
    /// No authentication: everyone may do everything.
    None,
    /// HTTP Basic on every request.
    Basic,
    /// Docker token auth (Basic also accepted).
    Token,
}

/// `[auth]`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct AuthSection {
    /// `none`, `basic` or `token`.
    pub(crate) mode: AuthMode,
    /// htpasswd file (bcrypt entries).
    pub(crate) htpasswd: PathBuf,
    /// Robot accounts file; empty: `<storage.path>/auth/robots.json`.
    pub(crate) robots: PathBuf,
    /// Service name (token audience).
    pub(crate) service: String,
    /// Token issuer name.
    pub(crate) issuer: String,
    /// Token endpoint URL announced in challenges; empty: derived from
    /// each request's Host header.
    pub(crate) realm: String,
    /// Access token lifetime in seconds.
    pub(crate) token_ttl_secs: u64,
    /// Refresh token lifetime in seconds.
    pub(crate) refresh_ttl_secs: u64,
    /// PEM PKCS#8 EC P-256 key the built-in issuer signs with; empty:
    /// `<storage.path>/auth/token-signing-key.pem`, generated if missing.
    pub(crate) signing_key: PathBuf,
    /// Trust tokens signed by this external issuer's public key (PEM)
    /// instead of issuing tokens here.
    pub(crate) trusted_issuer_key: PathBuf,
    /// Failed logins per user and per client address before refusing.
    pub(crate) max_failures: u32,
    /// Window for `max_failures`, in seconds.
    pub(crate) failure_window_secs: u64,
    /// Groups: name = [users].
    pub(crate) groups: std::collections::BTreeMap<String, Vec<String>>,
    /// Access rules.
    pub(crate) rules: Vec<wharf_auth::RuleConfig>,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            mode: AuthMode::None,
            htpasswd: PathBuf::new(),
            robots: PathBuf::new(),
            service: "wharf".into(),
            issuer: "wharf".into(),
            realm: String::new(),
            token_ttl_secs: 300,
            refresh_ttl_secs: 7 * 24 * 3600,
            signing_key: PathBuf::new(),
            trusted_issuer_key: PathBuf::new(),
            max_failures: 10,
            failure_window_secs: 300,
            groups: Default::default(),
            rules: Vec::new(),
        }
    }
}

/// A configuration problem, with where it came from.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Environment variable prefix.
pub(crate) const ENV_PREFIX: &str = "WHARF_";

impl Config {
    /// Loads defaults, then `file` (if any), then environment overrides.
    pub(crate) fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                // Parse into the typed config first, so unknown keys and type
                // errors are reported with the file's line and column.
                let _: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
                toml::from_str::<toml::Table>(&text).map_err(|e| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut table, env)?;
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but make no sense.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.listen_addr().is_err() {
            return invalid(format!(
                "server.listen: {:?} is not an address like 127.0.0.1:5000",
                self.server.listen
            ));
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<SocketAddr>().is_err() {
            return invalid(format!(
                "metrics.listen: {:?} is not an address like 127.0.0.1:9090",
                self.metrics.listen
            ));
        }
        if self.server.tls_cert.is_empty() != self.server.tls_key.is_empty() {
            return invalid("server.tls_cert and server.tls_key must be set together".into());
        }
        if self.server.header_timeout_secs == 0 || self.server.idle_timeout_secs == 0 {
            return invalid("server timeouts must be at least 1 second".into());
        }
        if self.registry.max_page == 0 {
            return invalid("registry.max_page must be at least 1".into());
        }
        if self.registry.max_manifest_size < 1024 {
            return invalid("registry.max_manifest_size must be at least 1024 bytes".into());
        }
        if self.storage.kind == StorageKind::Fs && self.storage.path.as_os_str().is_empty() {
            return invalid("storage.path must be set for fs storage".into());
        }
        if self.storage.kind == StorageKind::S3
            && let Err(e) = self.storage.s3().resolve()
        {
            return invalid(format!("storage (s3): {e}"));
        }
        if self.gc.interval_secs > 0 && self.gc.grace_secs < 4 {
            return invalid(
                "gc.grace_secs must be at least 4 when online GC is on (pushes in flight need time; hours are typical)"
                    .into(),
            );
        }
        if self.auth.mode != AuthMode::None {
            if self.auth.htpasswd.as_os_str().is_empty() {
                return invalid("auth.htpasswd must name the users file when auth is on".into());
            }
            if self.auth.token_ttl_secs == 0 || self.auth.token_ttl_secs > 24 * 3600 {
                return invalid("auth.token_ttl_secs must be between 1 and 86400".into());
            }
            if self.auth.max_failures == 0 {
                return invalid("auth.max_failures must be at least 1".into());
            }
        }
        self.scan.validate().map_err(ConfigError::Invalid)?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return invalid(format!("log.level: {e}"));
        }
        Ok(())
    }

    pub(crate) fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.server.listen.parse()
    }

    /// The effective configuration as TOML.
    pub(crate) fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Applies `WHARF_<SECTION>__<KEY>=value` overrides. Each value is read as
/// the type the key has in the defaults (so `WHARF_SERVER__LISTEN=80` stays
/// a string and `WHARF_REGISTRY__MAX_PAGE=50` becomes a number).
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    let defaults = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::Invalid(format!("defaults: {e}")))?;
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k.contains("__"))
        .collect();
    vars.sort();
    for (var, raw) in vars {
        let err = |message: String| ConfigError::Env {
            var: var.clone(),
            message,
        };
        let path = &var[ENV_PREFIX.len()..];
        let Some((section, key)) = path.split_once("__") else {
            continue;
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let Some(toml::Value::Table(default_section)) = defaults.get(&section) else {
            return Err(err(format!("unknown section {section:?}")));
        };
        let Some(default_value) = default_section.get(&key) else {
            return Err(err(format!("unknown key {key:?} in section [{section}]")));
        };
        let value = match default_value {
            toml::Value::String(_) => toml::Value::String(raw.clone()),
            toml::Value::Integer(_) => toml::Value::Integer(
                raw.trim()
                    .parse()
                    .map_err(|_| err(format!("{raw:?} is not an integer")))?,
            ),
            toml::Value::Boolean(_) => toml::Value::Boolean(match raw.trim() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => return Err(err(format!("{raw:?} is not a boolean"))),
            }),
            other => return Err(err(format!("cannot override a {} key", other.type_str()))),
        };
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(key, value);
            }
            _ => return Err(err(format!("[{section}] is not a table in the file"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn s3_storage_from_env_and_secret_never_printed() {
        let c = Config::load(
            None,
            env(&[
                ("WHARF_STORAGE__KIND", "s3"),
                ("WHARF_STORAGE__S3_ENDPOINT", "http://127.0.0.1:3900"),
                ("WHARF_STORAGE__S3_REGION", "garage"),
                ("WHARF_STORAGE__S3_BUCKET", "registry"),
                ("WHARF_STORAGE__S3_PREFIX", "wharf/"),
                ("WHARF_STORAGE__S3_ACCESS_KEY_ID", "GK0123"),
                ("WHARF_STORAGE__S3_SECRET_ACCESS_KEY", "very-secret"),
                ("WHARF_STORAGE__S3_MAX_RETRIES", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(c.storage.kind, StorageKind::S3);
        let s3 = c.storage.s3();
        assert_eq!(s3.bucket, "registry");
        assert_eq!(s3.object_prefix(), "wharf/");
        assert_eq!(s3.max_retries, 5);
        assert_eq!(s3.secret_access_key, "very-secret");
        let printed = c.to_toml();
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("s3_secret_access_key = \"<redacted>\""));
        // No bucket: rejected before anything starts.
        let e = Config::load(
            None,
            env(&[
                ("WHARF_STORAGE__KIND", "s3"),
                ("WHARF_STORAGE__S3_REGION", "garage"),
                ("WHARF_STORAGE__S3_ACCESS_KEY_ID", "a"),
                ("WHARF_STORAGE__S3_SECRET_ACCESS_KEY", "b"),
            ]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bucket"), "{e}");
    }

    #[test]
    fn defaults_are_valid_and_zero_config() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.listen, "127.0.0.1:5000");
        assert_eq!(c.storage.path, PathBuf::from("./wharf-data"));
    }

    #[test]
    fn file_then_env_then_types() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("wharf.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"0.0.0.0:6000\"\n[registry]\nmax_page = 10\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[
                ("WHARF_REGISTRY__MAX_PAGE", "50"),
                ("WHARF_REGISTRY__DELETE_ENABLED", "false"),
                ("WHARF_LOG__FORMAT", "json"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "0.0.0.0:6000");
        assert_eq!(c.registry.max_page, 50);
        assert!(!c.registry.delete_enabled);
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("wharf.toml");
        std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n").unwrap();
        let e = Config::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(e.contains("lisen") && e.contains("line 3"), "{e}");
        let e = Config::load(None, env(&[("WHARF_SERVER__PORT", "1")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("WHARF_SERVER__PORT") && e.contains("port"),
            "{e}"
        );
        let e = Config::load(None, env(&[("WHARF_NOPE__X", "1")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope"), "{e}");
        let e = Config::load(None, env(&[("WHARF_REGISTRY__MAX_PAGE", "many")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an integer"), "{e}");
    }

    #[test]
    fn invalid_values_are_rejected() {
        for vars in [
            vec![("WHARF_SERVER__LISTEN", "nowhere")],
            vec![("WHARF_SERVER__TLS_CERT", "/x.pem")],
            vec![("WHARF_REGISTRY__MAX_PAGE", "0")],
            vec![
                ("WHARF_GC__INTERVAL_SECS", "60"),
                ("WHARF_GC__GRACE_SECS", "1"),
            ],
            vec![("WHARF_LOG__LEVEL", "[[[")],
        ] {
            assert!(Config::load(None, env(&vars)).is_err(), "{vars:?}");
        }
    }

    #[test]
    fn effective_config_round_trips() {
        let c = Config::default();
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    /// docs/configuration.md documents exactly the keys the server reads,
    /// section by section.
    #[test]
    fn every_key_is_documented_and_every_documented_key_exists() {
        use std::collections::{BTreeMap, BTreeSet};
        let toml::Value::Table(sections) = toml::Value::try_from(Config::default()).unwrap() else {
            panic!("the configuration is a table");
        };
        let mut code: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (section, keys) in sections {
            let toml::Value::Table(keys) = keys else {
                panic!("[{section}] is a table");
            };
            code.insert(section, keys.keys().cloned().collect());
        }
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md"),
        )
        .unwrap();
        let mut documented: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut section = None;
        for line in doc.lines() {
            if let Some(rest) = line.strip_prefix("## ") {
                section = rest
                    .strip_prefix("`[")
                    .and_then(|r| r.strip_suffix("]`"))
                    .map(str::to_owned);
            } else if let (Some(section), Some(row)) = (&section, line.strip_prefix("| `"))
                && let Some((key, _)) = row.split_once("` |")
            {
                documented
                    .entry(section.clone())
                    .or_default()
                    .insert(key.to_owned());
            }
        }
        assert_eq!(code, documented);
    }
}
