//! Wiring `wharf-auth` into the server: building it from the configuration
//! and adapting it to the registry's authorization hook.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use wharf_auth::{Auth, AuthConfig, Htpasswd, Mode, Need, SigningKey, VerifyKey};
use wharf_registry::{Access, Action, Authorizer, Decision, RequestContext};
use wharf_types::RepositoryName;

use crate::config::{AuthMode, Config, StorageKind};

/// Default locations of auth files under the data directory.
fn data_file(config: &Config, name: &str) -> Option<PathBuf> {
    (config.storage.kind == StorageKind::Fs).then(|| config.storage.path.join("auth").join(name))
}

/// The robot accounts file in effect.
pub(crate) fn robots_path(config: &Config) -> Option<PathBuf> {
    if config.auth.robots.as_os_str().is_empty() {
        data_file(config, "robots.json")
    } else {
        Some(config.auth.robots.clone())
    }
}

/// Builds the authenticator, or `None` when auth is off. Generates the
/// token signing key file when it is missing.
pub(crate) fn build(config: &Config) -> Result<Option<Arc<Auth>>, String> {
    build_with(config, true)
}

/// Validates the auth configuration as `serve` would, without writing
/// anything (a missing signing key is not created).
pub(crate) fn validate(config: &Config) -> Result<(), String> {
    build_with(config, false).map(|_| ())
}

fn build_with(config: &Config, create_key: bool) -> Result<Option<Arc<Auth>>, String> {
    let a = &config.auth;
    let mode = match a.mode {
        AuthMode::None => return Ok(None),
        AuthMode::Basic => Mode::Basic,
        AuthMode::Token => Mode::Token,
    };
    let users = Htpasswd::load(&a.htpasswd).map_err(|e| e.to_string())?;
    let trusted_key = if a.trusted_issuer_key.as_os_str().is_empty() {
        None
    } else {
        let pem = std::fs::read_to_string(&a.trusted_issuer_key).map_err(|e| {
            format!(
                "auth.trusted_issuer_key {}: {e}",
                a.trusted_issuer_key.display()
            )
        })?;
        Some(VerifyKey::from_pem(&pem).map_err(|e| format!("auth.trusted_issuer_key: {e}"))?)
    };
    let signing_key = if mode == Mode::Token && trusted_key.is_none() {
        Some(load_or_create_signing_key(config, create_key)?)
    } else {
        None
    };
    let auth = Auth::new(AuthConfig {
        mode,
        users,
        users_file: Some(a.htpasswd.clone()),
        groups: a.groups.clone(),
        rules: a.rules.clone(),
        robots: robots_path(config),
        service: a.service.clone(),
        issuer: a.issuer.clone(),
        realm: (!a.realm.is_empty()).then(|| a.realm.clone()),
        token_ttl: Duration::from_secs(a.token_ttl_secs),
        refresh_ttl: Duration::from_secs(a.refresh_ttl_secs),
        signing_key,
        trusted_key,
        max_failures: a.max_failures,
        failure_window: Duration::from_secs(a.failure_window_secs),
    })
    .map_err(|e| e.to_string())?;
    Ok(Some(Arc::new(auth)))
}

fn load_or_create_signing_key(config: &Config, create: bool) -> Result<SigningKey, String> {
    let path = if config.auth.signing_key.as_os_str().is_empty() {
        match data_file(config, "token-signing-key.pem") {
            Some(p) => p,
            // Memory storage: a key for this process only.
            None => {
                return SigningKey::generate()
                    .map(|(k, _)| k)
                    .map_err(|e| e.to_string());
            }
        }
    } else {
        config.auth.signing_key.clone()
    };
    match std::fs::read_to_string(&path) {
        Ok(pem) => SigningKey::from_pem(&pem).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => SigningKey::generate()
            .map(|(k, _)| k)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let (key, pem) = SigningKey::generate().map_err(|e| e.to_string())?;
            write_private(&path, pem.as_bytes())?;
            tracing::info!(path = %path.display(), "generated a token signing key");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The registry's authorization hook, answered by [`Auth`].
pub(crate) struct AuthAdapter {
    pub(crate) auth: Arc<Auth>,
    pub(crate) https: bool,
}

struct Facts {
    authorization: Option<String>,
    host: Option<String>,
    peer: Option<IpAddr>,
    basic: bool,
}

fn facts(request: &RequestContext<'_>) -> Facts {
    let authorization = request
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let basic = authorization
        .as_deref()
        .is_some_and(|a| a.len() > 6 && a[..6].eq_ignore_ascii_case("basic "));
    Facts {
        authorization,
        host: request
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        peer: request.peer.map(|p| p.ip()),
        basic,
    }
}

fn need(access: &Access) -> Option<Need> {
    let action = match access.action {
        Action::Base => return Some(Need::Base),
        Action::Catalog => return Some(Need::Catalog),
        Action::Pull => wharf_auth::Action::Pull,
        Action::Push => wharf_auth::Action::Push,
        Action::Delete => wharf_auth::Action::Delete,
        #[allow(unreachable_patterns)]
        _ => return None,
    };
    Some(Need::Repository(access.repository.clone()?, action))
}

impl AuthAdapter {
    /// Runs `f` off the async workers when it may check a bcrypt hash.
    async fn run<T: Send + 'static>(
        &self,
        basic: bool,
        f: impl FnOnce(&Auth) -> T + Send + 'static,
    ) -> T {
        let auth = self.auth.clone();
        if basic {
            match tokio::task::spawn_blocking(move || f(&auth)).await {
                Ok(t) => t,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        } else {
            f(&auth)
        }
    }
}

#[async_trait]
impl Authorizer for AuthAdapter {
    async fn authorize(&self, request: &RequestContext<'_>, accesses: &[Access]) -> Decision {
        let Some(needs) = accesses.iter().map(need).collect::<Option<Vec<Need>>>() else {
            return Decision::Deny;
        };
        let f = facts(request);
        let https = self.https;
        let decision = self
            .run(f.basic, move |auth| {
                auth.authorize(
                    f.authorization.as_deref(),
                    f.peer,
                    &needs,
                    f.host.as_deref(),
                    https,
                )
            })
            .await;
        match decision {
            wharf_auth::Decision::Allow(_) => Decision::Allow,
            wharf_auth::Decision::Challenge(c) => Decision::Challenge(c),
            wharf_auth::Decision::Deny => Decision::Deny,
            wharf_auth::Decision::RateLimited => Decision::RateLimited,
        }
    }

    async fn may_pull(&self, request: &RequestContext<'_>, repository: &RepositoryName) -> bool {
        let f = facts(request);
        let repo = repository.clone();
        self.run(f.basic, move |auth| {
            auth.may_pull(f.authorization.as_deref(), f.peer, &repo)
        })
        .await
    }
}
