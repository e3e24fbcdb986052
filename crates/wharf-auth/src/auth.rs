//! Authentication (who is asking) and authorization (may they), and the
//! Docker token endpoint.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use serde_json::json;
use wharf_types::{ErrorBody, ErrorCode, RepositoryName};

use crate::AuthError;
use crate::htpasswd::Htpasswd;
use crate::jwt::{Audience, Claims, ResourceAccess, SigningKey, VerifyKey, secs};
use crate::policy::{Action, Policy, RuleConfig, Subject};
use crate::ratelimit::RateLimiter;
use crate::robots::{ROBOT_PREFIX, Robot, Robots};

/// How clients authenticate to the registry endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `Authorization: Basic` on every request.
    Basic,
    /// Docker token auth: clients get a JWT from the token endpoint (or an
    /// external issuer); Basic is accepted too, for simple clients.
    Token,
}

/// Everything [`Auth`] needs.
#[derive(Debug)]
pub struct AuthConfig {
    /// Basic or token.
    pub mode: Mode,
    /// Users.
    pub users: Htpasswd,
    /// The file `users` came from; when set, it is re-read when it changes
    /// (checked at most once a second), so removed users and changed
    /// passwords take effect without a restart.
    pub users_file: Option<PathBuf>,
    /// Groups of users.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Access rules.
    pub rules: Vec<RuleConfig>,
    /// Robot accounts file.
    pub robots: Option<PathBuf>,
    /// The service name (token `aud`).
    pub service: String,
    /// The token issuer name (`iss`).
    pub issuer: String,
    /// Token endpoint URL for challenges; when `None`, derived from the
    /// request's Host header and scheme.
    pub realm: Option<String>,
    /// Access token lifetime.
    pub token_ttl: Duration,
    /// Refresh token lifetime.
    pub refresh_ttl: Duration,
    /// The built-in issuer's key (token mode without an external issuer).
    pub signing_key: Option<SigningKey>,
    /// Trust tokens from an external issuer with this key instead.
    pub trusted_key: Option<VerifyKey>,
    /// Failed logins allowed per user and per address per window.
    pub max_failures: u32,
    /// The rate-limit window.
    pub failure_window: Duration,
}

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// `GET /v2/`: valid credentials (anonymous is challenged).
    Base,
    /// Listing repositories.
    Catalog,
    /// An action on a repository.
    Repository(RepositoryName, Action),
}

/// The answer for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Allowed, as this subject.
    Allow(Subject),
    /// 401 with this `WWW-Authenticate` value.
    Challenge(String),
    /// 403.
    Deny,
    /// 429: too many failed attempts.
    RateLimited,
}

/// Who a request authenticated as.
#[derive(Debug, Clone)]
enum Identity {
    Anonymous,
    User(String),
    Robot(Robot),
    Token(Claims),
}

/// A failed authentication.
enum Failure {
    Invalid,
    /// A bearer token that is expired, forged or otherwise unusable.
    BadToken,
    Limited,
}

/// How long a successful password check is remembered (bcrypt is
/// deliberately slow; registries see many requests per login).
const CREDENTIAL_CACHE_TTL: Duration = Duration::from_secs(60);
const CREDENTIAL_CACHE_MAX: usize = 10_000;
/// Scopes accepted in one token request.
const MAX_SCOPES: usize = 32;

/// Authentication and authorization for one registry.
pub struct Auth {
    mode: Mode,
    users: std::sync::RwLock<std::sync::Arc<Htpasswd>>,
    users_file: Option<PathBuf>,
    users_seen: Mutex<(Instant, Option<FileStamp>)>,
    policy: Policy,
    robots: Robots,
    service: String,
    issuer: String,
    realm: Option<String>,
    token_ttl: Duration,
    refresh_ttl: Duration,
    signing_key: Option<SigningKey>,
    verify_key: Option<VerifyKey>,
    limiter: RateLimiter,
    cache: Mutex<HashMap<[u8; 32], (Instant, String)>>,
}

/// What identifies a version of a file: modification time, size, inode.
type FileStamp = (SystemTime, u64, u64);

fn file_stamp(path: &std::path::Path) -> Option<FileStamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok()?, m.len(), ino))
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("mode", &self.mode)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Validates the configuration and builds the authenticator.
    pub fn new(config: AuthConfig) -> Result<Self, AuthError> {
        let users = config.users;
        // Make the dummy hash for unknown users now, not on the first
        // unknown user (which would then take longer than the others).
        users.warm_up();
        let policy = Policy::new(&config.rules, &config.groups, |u| users.contains(u))?;
        let verify_key = match (&config.trusted_key, &config.signing_key) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(s)) => Some(s.verify_key()),
            (None, None) => None,
        };
        if config.mode == Mode::Token && verify_key.is_none() {
            return Err(AuthError::Config(
                "token auth needs a signing key or a trusted issuer key".into(),
            ));
        }
        if config.service.is_empty() || config.issuer.is_empty() {
            return Err(AuthError::Config(
                "auth service and issuer must not be empty".into(),
            ));
        }
        let stamp = config.users_file.as_deref().and_then(file_stamp);
        Ok(Auth {
            mode: config.mode,
            users: std::sync::RwLock::new(std::sync::Arc::new(users)),
            users_file: config.users_file,
            users_seen: Mutex::new((Instant::now(), stamp)),
            policy,
            robots: Robots::open(config.robots)?,
            service: config.service,
            issuer: config.issuer,
            realm: config.realm,
            token_ttl: config.token_ttl,
            refresh_ttl: config.refresh_ttl,
            // With an external issuer the built-in endpoint is off.
            signing_key: if config.trusted_key.is_some() {
                None
            } else {
                config.signing_key
            },
            verify_key,
            limiter: RateLimiter::new(config.max_failures, config.failure_window),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The current users, re-read from their file when it changed.
    fn users(&self) -> std::sync::Arc<Htpasswd> {
        if let Some(path) = &self.users_file {
            let mut seen = self.users_seen.lock().unwrap_or_else(|p| p.into_inner());
            if seen.0.elapsed() >= Duration::from_secs(1) {
                seen.0 = Instant::now();
                let stamp = file_stamp(path);
                if stamp != seen.1 {
                    seen.1 = stamp;
                    match Htpasswd::load(path) {
                        Ok(users) => {
                            users.warm_up();
                            *self.users.write().unwrap_or_else(|p| p.into_inner()) =
                                std::sync::Arc::new(users);
                            // Remembered passwords may belong to removed users.
                            self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
                            tracing::info!(path = %path.display(), "reloaded users");
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "cannot reload users; keeping the previous ones")
                        }
                    }
                }
            }
        }
        self.users.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether the built-in token endpoint is served.
    pub fn serves_tokens(&self) -> bool {
        self.mode == Mode::Token && self.signing_key.is_some()
    }

    /// Decides on a request to the registry API.
    ///
    /// `authorization` is the request's `Authorization` header, `host` its
    /// Host header and `https` whether it came over TLS (both used to build
    /// the token realm when none is configured).
    pub fn authorize(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
        needs: &[Need],
        host: Option<&str>,
        https: bool,
    ) -> Decision {
        let identity = match self.identify(authorization, peer) {
            Ok(i) => i,
            Err(Failure::Limited) => return Decision::RateLimited,
            Err(Failure::Invalid) => {
                return Decision::Challenge(self.challenge(needs, host, https, None));
            }
            Err(Failure::BadToken) => {
                return Decision::Challenge(self.challenge(
                    needs,
                    host,
                    https,
                    Some("invalid_token"),
                ));
            }
        };
        let subject = match &identity {
            Identity::Anonymous => Subject::Anonymous,
            Identity::User(u) => Subject::User(u.clone()),
            Identity::Robot(r) => Subject::Robot(r.name.clone()),
            Identity::Token(c) => subject_of(&c.sub),
        };
        for need in needs {
            if !self.permits(&identity, need) {
                return match identity {
                    // Ask for credentials: the same answer whether or not
                    // the repository exists.
                    Identity::Anonymous => {
                        Decision::Challenge(self.challenge(needs, host, https, None))
                    }
                    // A token without the scope: ask for one that has it.
                    Identity::Token(_) => Decision::Challenge(self.challenge(
                        needs,
                        host,
                        https,
                        Some("insufficient_scope"),
                    )),
                    _ => Decision::Deny,
                };
            }
        }
        Decision::Allow(subject)
    }

    /// Whether the request may pull `repository` (no challenge; for the
    /// catalog filter and automatic mounts).
    pub fn may_pull(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
        repository: &RepositoryName,
    ) -> bool {
        let need = Need::Repository(repository.clone(), Action::Pull);
        match self.identify(authorization, peer) {
            // A token granting the catalog lists what its subject may pull
            // (the catalog filter asks here about every repository, and the
            // token cannot name them all); otherwise only its own scopes.
            Ok(Identity::Token(c)) => {
                let catalog = c
                    .access
                    .iter()
                    .any(|a| a.kind == "registry" && a.name == "catalog");
                self.permits(&Identity::Token(c.clone()), &need)
                    || (catalog
                        && self.signing_key.is_some()
                        && self.subject_identity(&c.sub).is_some_and(|i| {
                            self.allowed_actions(&i, repository.as_str())
                                .contains(&Action::Pull)
                        }))
            }
            Ok(identity) => self.permits(&identity, &need),
            Err(_) => false,
        }
    }

    /// The current identity of a token's subject (built-in issuer): `None`
    /// for a user no longer in the htpasswd file or a robot that is
    /// revoked, expired or re-created since.
    fn subject_identity(&self, sub: &str) -> Option<Identity> {
        if sub.is_empty() {
            Some(Identity::Anonymous)
        } else if let Some(name) = sub.strip_prefix(ROBOT_PREFIX) {
            self.robots
                .get(name, SystemTime::now())
                .map(Identity::Robot)
        } else if self.users().contains(sub) {
            Some(Identity::User(sub.to_owned()))
        } else {
            None
        }
    }

    /// Whether a token of the built-in issuer for a robot was issued to the
    /// robot that is active now (not a revoked one of the same name).
    fn robot_token_current(&self, claims: &Claims) -> bool {
        let Some(name) = claims.sub.strip_prefix(ROBOT_PREFIX) else {
            return true;
        };
        self.robots.get(name, SystemTime::now()).is_some_and(|r| {
            claims.jti.rsplit_once('.').map(|(_, b)| b) == Some(&robot_binding(&r))
        })
    }

    fn permits(&self, identity: &Identity, need: &Need) -> bool {
        match (identity, need) {
            (Identity::Anonymous, Need::Base) => false,
            (_, Need::Base) => true,
            (Identity::Token(c), Need::Catalog) => c
                .access
                .iter()
                .any(|a| a.kind == "registry" && a.name == "catalog"),
            (Identity::Anonymous, Need::Catalog) => self.policy.grants_anonymous(),
            (_, Need::Catalog) => true,
            (Identity::Token(c), Need::Repository(repo, action)) => c.access.iter().any(|a| {
                a.kind == "repository"
                    && a.name == repo.as_str()
                    && a.actions.iter().any(|x| x == "*" || x == action.as_str())
            }),
            (identity, Need::Repository(repo, action)) => self
                .allowed_actions(identity, repo.as_str())
                .contains(action),
        }
    }

    fn allowed_actions(&self, identity: &Identity, repo: &str) -> BTreeSet<Action> {
        match identity {
            Identity::Anonymous => self.policy.allowed(&Subject::Anonymous, repo),
            Identity::User(u) => self.policy.allowed(&Subject::User(u.clone()), repo),
            Identity::Robot(r) => {
                let mut a = r.allowed(repo);
                a.extend(self.policy.allowed(&Subject::Robot(r.name.clone()), repo));
                a
            }
            Identity::Token(_) => BTreeSet::new(),
        }
    }

    fn realm(&self, host: Option<&str>, https: bool) -> String {
        match (&self.realm, host) {
            (Some(r), _) => r.clone(),
            (None, Some(h)) if valid_host(h) => {
                format!("{}://{h}/token", if https { "https" } else { "http" })
            }
            (None, _) => "/token".into(),
        }
    }

    fn challenge(
        &self,
        needs: &[Need],
        host: Option<&str>,
        https: bool,
        error: Option<&str>,
    ) -> String {
        match self.mode {
            Mode::Basic => "Basic realm=\"wharf\", charset=\"UTF-8\"".into(),
            Mode::Token => {
                let mut scopes: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
                let mut catalog = false;
                for n in needs {
                    match n {
                        Need::Repository(r, a) => {
                            let e = scopes.entry(r.to_string()).or_default();
                            e.insert(a.as_str());
                            // Docker asks for pull with push; so do we.
                            if *a == Action::Push {
                                e.insert("pull");
                            }
                        }
                        Need::Catalog => catalog = true,
                        Need::Base => {}
                    }
                }
                let mut scope: Vec<String> = scopes
                    .into_iter()
                    .map(|(r, a)| {
                        let mut a: Vec<&str> = a.into_iter().collect();
                        a.sort_by_key(|x| match *x {
                            "pull" => 0,
                            "push" => 1,
                            _ => 2,
                        });
                        format!("repository:{r}:{}", a.join(","))
                    })
                    .collect();
                if catalog {
                    scope.push("registry:catalog:*".into());
                }
                let mut c = format!(
                    "Bearer realm=\"{}\",service=\"{}\"",
                    self.realm(host, https),
                    self.service
                );
                if !scope.is_empty() {
                    c.push_str(&format!(",scope=\"{}\"", scope.join(" ")));
                }
                if let Some(error) = error {
                    c.push_str(&format!(",error=\"{error}\""));
                }
                c
            }
        }
    }

    /// Resolves credentials. Failed attempts count per user and per address.
    fn identify(
        &self,
        authorization: Option<&str>,
        peer: Option<IpAddr>,
    ) -> Result<Identity, Failure> {
        let Some(value) = authorization.map(str::trim).filter(|v| !v.is_empty()) else {
            return Ok(Identity::Anonymous);
        };
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, password)) = decode_basic(rest.trim()) else {
                return Err(Failure::Invalid);
            };
            // Empty credentials are how some clients (containers/image:
            // skopeo, podman) ask anonymously after a Basic challenge: not
            // a failed login.
            if user.is_empty() && password.is_empty() {
                return Ok(Identity::Anonymous);
            }
            return self.login(&user, &password, peer);
        }
        if scheme.eq_ignore_ascii_case("bearer") && self.mode == Mode::Token {
            let Some(key) = &self.verify_key else {
                return Err(Failure::BadToken);
            };
            return match key.verify(rest.trim(), &self.issuer, &self.service, SystemTime::now()) {
                // A robot's tokens die with it (revocation is immediate).
                Ok(c) if c.kind.is_none() && self.signing_key.is_some() => {
                    if self.robot_token_current(&c) {
                        Ok(Identity::Token(c))
                    } else {
                        tracing::debug!(sub = %c.sub, "token of a revoked robot refused");
                        Err(Failure::BadToken)
                    }
                }
                Ok(c) if c.kind.is_none() => Ok(Identity::Token(c)),
                Ok(_) => Err(Failure::BadToken), // refresh tokens grant nothing here
                Err(e) => {
                    tracing::debug!(error = %e, "token refused");
                    Err(Failure::BadToken)
                }
            };
        }
        Err(Failure::Invalid)
    }

    /// Checks a user name and password (or robot secret).
    fn login(&self, user: &str, password: &str, peer: Option<IpAddr>) -> Result<Identity, Failure> {
        let user_key = format!("user:{user}");
        let peer_key = peer.map(|p| format!("ip:{p}"));
        if !self.limiter.allowed(&user_key)
            || peer_key
                .as_deref()
                .is_some_and(|k| !self.limiter.allowed(k))
        {
            return Err(Failure::Limited);
        }
        let now = SystemTime::now();
        let identity = if let Some(name) = user.strip_prefix(ROBOT_PREFIX) {
            self.robots
                .authenticate(name, password, now)
                .map(Identity::Robot)
        } else {
            // Looked up first: a reload clears remembered passwords.
            let users = self.users();
            if self.cached(user, password) {
                Some(Identity::User(user.to_owned()))
            } else if users.verify(user, password) {
                self.remember(user, password);
                Some(Identity::User(user.to_owned()))
            } else {
                None
            }
        };
        match identity {
            Some(i) => {
                self.limiter.reset(&user_key);
                Ok(i)
            }
            None => {
                tracing::info!(user, peer = ?peer, "failed login");
                self.limiter.fail(&user_key);
                if let Some(k) = &peer_key {
                    self.limiter.fail(k);
                }
                Err(Failure::Invalid)
            }
        }
    }

    fn cache_key(user: &str, password: &str) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(user.as_bytes());
        ctx.update(&[0]);
        ctx.update(password.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn cached(&self, user: &str, password: &str) -> bool {
        let key = Self::cache_key(user, password);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(&key)
            .is_some_and(|(at, u)| u == user && at.elapsed() < CREDENTIAL_CACHE_TTL)
    }

    fn remember(&self, user: &str, password: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CREDENTIAL_CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CREDENTIAL_CACHE_TTL);
            if cache.len() >= CREDENTIAL_CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            Self::cache_key(user, password),
            (Instant::now(), user.to_owned()),
        );
    }

    /// Answers `GET /token` and `POST /token` (Docker token protocol and
    /// OAuth2 password / refresh_token grants).
    pub fn token_endpoint(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        peer: Option<IpAddr>,
    ) -> Response<Bytes> {
        match self.token_response(method, query, headers, body, peer) {
            Ok(r) => r,
            Err((status, code, message)) => {
                let mut resp = Response::new(Bytes::from(ErrorBody::new(code, message).to_json()));
                *resp.status_mut() = status;
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if status == StatusCode::UNAUTHORIZED {
                    resp.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"wharf\", charset=\"UTF-8\""),
                    );
                }
                resp
            }
        }
    }

    fn token_response(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &HeaderMap,
        body: &[u8],
        peer: Option<IpAddr>,
    ) -> Result<Response<Bytes>, (StatusCode, ErrorCode, String)> {
        let bad = |m: &str| {
            (
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                m.to_owned(),
            )
        };
        let unauthorized = || {
            (
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthorized,
                "invalid credentials".to_owned(),
            )
        };
        let limited = || {
            (
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyRequests,
                "too many failed logins; try again later".to_owned(),
            )
        };
        let Some(signing) = &self.signing_key else {
            return Err((
                StatusCode::NOT_FOUND,
                ErrorCode::Unsupported,
                "this registry does not issue tokens".into(),
            ));
        };
        let (params, form): (Vec<(String, String)>, bool) = match *method {
            Method::GET => (parse_pairs(query.unwrap_or("").as_bytes())?, false),
            Method::POST => (parse_pairs(body)?, true),
            _ => {
                return Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    ErrorCode::Unsupported,
                    "use GET or POST".into(),
                ));
            }
        };
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(service) = get("service")
            && service != self.service
        {
            return Err(bad("unknown service"));
        }
        let mut scopes: Vec<&str> = Vec::new();
        for (k, v) in &params {
            if k == "scope" {
                scopes.extend(v.split(' ').filter(|s| !s.is_empty()));
            }
        }
        if scopes.len() > MAX_SCOPES {
            return Err(bad("too many scopes"));
        }
        let auth_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let identity = if form {
            match get("grant_type") {
                Some("password") => {
                    let user = get("username").ok_or_else(|| bad("username required"))?;
                    let password = get("password").ok_or_else(|| bad("password required"))?;
                    match self.login(user, password, peer) {
                        Ok(i) => i,
                        Err(Failure::Limited) => return Err(limited()),
                        Err(Failure::Invalid | Failure::BadToken) => return Err(unauthorized()),
                    }
                }
                Some("refresh_token") => {
                    let token =
                        get("refresh_token").ok_or_else(|| bad("refresh_token required"))?;
                    self.refreshed_identity(token, signing)
                        .ok_or_else(unauthorized)?
                }
                _ => return Err(bad("grant_type must be password or refresh_token")),
            }
        } else {
            match self.identify(auth_header, peer) {
                Ok(Identity::Token(_)) => return Err(unauthorized()),
                Ok(i) => i,
                Err(Failure::Limited) => return Err(limited()),
                Err(Failure::Invalid | Failure::BadToken) => return Err(unauthorized()),
            }
        };
        let mut access = Vec::new();
        for s in scopes {
            if let Some(granted) = self.grant(&identity, s) {
                access.push(granted);
            }
        }
        let now = SystemTime::now();
        let n = secs(now);
        let sub = match &identity {
            Identity::Anonymous | Identity::Token(_) => String::new(),
            Identity::User(u) => u.clone(),
            Identity::Robot(r) => format!("{ROBOT_PREFIX}{}", r.name),
        };
        // A robot's tokens carry a binding to that robot, so that they die
        // when it is revoked, even if a robot of the same name is made.
        let jti = || match &identity {
            Identity::Robot(r) => format!("{}.{}", random_id(), robot_binding(r)),
            _ => random_id(),
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: sub.clone(),
            aud: Audience::One(self.service.clone()),
            exp: n + self.token_ttl.as_secs(),
            nbf: Some(n.saturating_sub(1)),
            iat: Some(n),
            jti: jti(),
            access,
            kind: None,
        };
        let token = signing.sign(&claims).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Unknown,
                e.to_string(),
            )
        })?;
        let mut doc = json!({
            "token": token,
            "access_token": token,
            "expires_in": self.token_ttl.as_secs(),
            "issued_at": rfc3339(n),
        });
        let offline = get("offline_token") == Some("true") || get("access_type") == Some("offline");
        if offline && !sub.is_empty() {
            let refresh = Claims {
                exp: n + self.refresh_ttl.as_secs(),
                access: Vec::new(),
                kind: Some("refresh".into()),
                jti: jti(),
                ..claims
            };
            let r = signing.sign(&refresh).map_err(|e| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Unknown,
                    e.to_string(),
                )
            })?;
            doc["refresh_token"] = json!(r);
        }
        let mut resp = Response::new(Bytes::from(serde_json::to_vec(&doc).unwrap_or_default()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(resp)
    }

    fn refreshed_identity(&self, token: &str, signing: &SigningKey) -> Option<Identity> {
        let claims = signing
            .verify_key()
            .verify(token, &self.issuer, &self.service, SystemTime::now())
            .ok()?;
        if claims.kind.as_deref() != Some("refresh") {
            return None;
        }
        // A removed user or a revoked robot cannot refresh (nor can a
        // revoked robot's token once a new robot has its name).
        if !self.robot_token_current(&claims) {
            return None;
        }
        self.subject_identity(&claims.sub)
            .filter(|i| !matches!(i, Identity::Anonymous))
    }

    /// The granted part of one requested scope.
    fn grant(&self, identity: &Identity, scope: &str) -> Option<ResourceAccess> {
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
        match kind {
            "registry" if name == "catalog" => {
                let ok = self.permits(identity, &Need::Catalog);
                ok.then(|| ResourceAccess {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                })
            }
            "repository" => {
                let repo = RepositoryName::parse(name).ok()?;
                let allowed = self.allowed_actions(identity, repo.as_str());
                let mut granted: Vec<String> = Vec::new();
                for a in actions.split(',') {
                    let wanted: Vec<Action> = if a == "*" {
                        Action::ALL.to_vec()
                    } else {
                        Action::parse(a).into_iter().collect()
                    };
                    for w in wanted {
                        if allowed.contains(&w) && !granted.iter().any(|g| g == w.as_str()) {
                            granted.push(w.as_str().to_owned());
                        }
                    }
                }
                // An empty grant is still listed (as Distribution does), so
                // clients see the refusal in the token, not a missing entry.
                Some(ResourceAccess {
                    kind: "repository".into(),
                    name: repo.to_string(),
                    actions: granted,
                })
            }
            _ => None,
        }
    }
}

/// A short value tying a token to one robot (its creation and secret hash),
/// not to its name alone.
fn robot_binding(r: &Robot) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"wharf robot token\0");
    ctx.update(r.name.as_bytes());
    ctx.update(&[0]);
    ctx.update(&r.created.to_be_bytes());
    ctx.update(r.secret_sha256.as_bytes());
    ctx.finish().as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn subject_of(sub: &str) -> Subject {
    if sub.is_empty() {
        Subject::Anonymous
    } else if let Some(r) = sub.strip_prefix(ROBOT_PREFIX) {
        Subject::Robot(r.to_owned())
    } else {
        Subject::User(sub.to_owned())
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    if b64.len() > 4096 {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

fn parse_pairs(raw: &[u8]) -> Result<Vec<(String, String)>, (StatusCode, ErrorCode, String)> {
    if raw.len() > 16 * 1024 {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::SizeInvalid,
            "request too large".into(),
        ));
    }
    Ok(form_urlencoded::parse(raw)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

fn random_id() -> String {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// RFC 3339 UTC time for `secs` since the epoch.
fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_file_changes_take_effect_without_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        crate::htpasswd::set_password(&path, "alice", "a-pass", 4).unwrap();
        crate::htpasswd::set_password(&path, "bob", "b-pass", 4).unwrap();
        let auth = Auth::new(AuthConfig {
            mode: Mode::Basic,
            users: Htpasswd::load(&path).unwrap(),
            users_file: Some(path.clone()),
            groups: BTreeMap::new(),
            rules: vec![RuleConfig {
                repositories: vec!["**".into()],
                subjects: vec!["authenticated".into()],
                actions: vec![Action::Pull, Action::Push],
            }],
            robots: None,
            service: "wharf".into(),
            issuer: "wharf".into(),
            realm: None,
            token_ttl: Duration::from_secs(60),
            refresh_ttl: Duration::from_secs(60),
            signing_key: None,
            trusted_key: None,
            max_failures: 100,
            failure_window: Duration::from_secs(60),
        })
        .unwrap();
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        let need = [Need::Base];
        let ok = |u: &str, p: &str| {
            matches!(
                auth.authorize(Some(&basic(u, p)), None, &need, None, false),
                Decision::Allow(_)
            )
        };
        assert!(ok("alice", "a-pass"));
        assert!(ok("bob", "b-pass"));
        // Remove alice and change bob's password.
        std::fs::remove_file(&path).unwrap();
        crate::htpasswd::set_password(&path, "bob", "new-pass", 4).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert!(
            !ok("alice", "a-pass"),
            "a removed user is refused, even though her password was cached"
        );
        assert!(!ok("bob", "b-pass"));
        assert!(ok("bob", "new-pass"));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }
}
