//! Robot (service) accounts: named credentials with a fixed scope and an
//! expiry, for CI pipelines. Stored in a JSON file with only a hash of each
//! secret; revocable.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};

use crate::AuthError;
use crate::policy::{Action, Glob};

/// Robot user names start with this (`robot$ci-builder`).
pub const ROBOT_PREFIX: &str = "robot$";

/// One grant of a robot: repository globs and actions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotScope {
    /// Repository globs (see [`Glob`]).
    pub repositories: Vec<String>,
    /// Actions granted on them.
    pub actions: Vec<Action>,
}

/// A robot account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Robot {
    /// Name (without the `robot$` prefix).
    pub name: String,
    /// SHA-256 of the secret, hex. Secrets are 256 random bits, so a fast
    /// hash is enough; the secret itself is shown once at creation.
    pub secret_sha256: String,
    /// What it may do.
    pub scopes: Vec<RobotScope>,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Expiry, seconds since the epoch; 0 for never.
    pub expires: u64,
    /// Revoked robots never authenticate.
    #[serde(default)]
    pub revoked: bool,
}

impl Robot {
    /// Whether it may authenticate at `now`.
    pub fn active(&self, now: SystemTime) -> bool {
        !self.revoked && (self.expires == 0 || crate::jwt::secs(now) < self.expires)
    }

    /// The actions its own scopes grant on `repository`.
    pub fn allowed(&self, repository: &str) -> BTreeSet<Action> {
        let mut out = BTreeSet::new();
        for s in &self.scopes {
            if s.repositories
                .iter()
                .filter_map(|g| Glob::parse(g).ok())
                .any(|g| g.matches(repository))
            {
                out.extend(s.actions.iter().copied());
            }
        }
        out
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    robots: Vec<Robot>,
}

fn read(path: &Path) -> Result<File, AuthError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| AuthError::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(AuthError::Config(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn write(path: &Path, file: &File) -> Result<(), AuthError> {
    let data = serde_json::to_vec_pretty(file).map_err(|e| AuthError::Config(e.to_string()))?;
    crate::htpasswd::write_atomic(path, &data)
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Creates a robot and returns its secret (shown once).
pub fn add(
    path: &Path,
    name: &str,
    scopes: Vec<RobotScope>,
    expires: Option<SystemTime>,
) -> Result<String, AuthError> {
    if !valid_name(name) {
        return Err(AuthError::Config(format!(
            "robot name {name:?}: use 1-64 lowercase letters, digits, '-' or '_'"
        )));
    }
    if scopes.is_empty()
        || scopes
            .iter()
            .any(|s| s.repositories.is_empty() || s.actions.is_empty())
    {
        return Err(AuthError::Config(
            "a robot needs at least one repository glob and one action".into(),
        ));
    }
    for s in &scopes {
        for g in &s.repositories {
            Glob::parse(g).map_err(AuthError::Config)?;
        }
    }
    let mut file = read(path)?;
    if file.robots.iter().any(|r| r.name == name && !r.revoked) {
        return Err(AuthError::Config(format!(
            "robot {name:?} exists; revoke it first"
        )));
    }
    // Revoked entries stay, as a record of what existed.
    let mut secret = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut secret)
        .map_err(|_| AuthError::Config("no randomness".into()))?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let now = SystemTime::now();
    file.robots.push(Robot {
        name: name.to_owned(),
        secret_sha256: sha256_hex(secret.as_bytes()),
        scopes,
        created: crate::jwt::secs(now),
        expires: expires.map_or(0, crate::jwt::secs),
        revoked: false,
    });
    write(path, &file)?;
    Ok(secret)
}

/// Revokes a robot (kept in the file, marked revoked).
pub fn revoke(path: &Path, name: &str) -> Result<(), AuthError> {
    let mut file = read(path)?;
    let Some(r) = file
        .robots
        .iter_mut()
        .find(|r| r.name == name && !r.revoked)
    else {
        return Err(AuthError::Config(format!("no active robot {name:?}")));
    };
    r.revoked = true;
    write(path, &file)
}

/// Lists robots.
pub fn list(path: &Path) -> Result<Vec<Robot>, AuthError> {
    Ok(read(path)?.robots)
}

/// Robot accounts as the server sees them: reread when the file changes,
/// so `wharf robot revoke` takes effect without a restart.
#[derive(Debug)]
pub struct Robots {
    path: Option<PathBuf>,
    cache: Mutex<(Option<Stamp>, Vec<Robot>)>,
}

/// What tells that the robots file changed: its modification time alone
/// can stay the same across a rewrite within one clock tick (`robot add`
/// then `robot revoke` in a script), so the size and the inode (a new one
/// for every atomic rewrite) count too.
type Stamp = (SystemTime, u64, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(&m);
    #[cfg(not(unix))]
    let ino = 0;
    Some((m.modified().ok()?, m.len(), ino))
}

impl Robots {
    /// Robots from `path` (a missing file means none).
    pub fn open(path: Option<PathBuf>) -> Result<Self, AuthError> {
        let robots = Robots {
            path,
            cache: Mutex::new((None, Vec::new())),
        };
        robots.current()?;
        Ok(robots)
    }

    fn current(&self) -> Result<Vec<Robot>, AuthError> {
        let Some(path) = &self.path else {
            return Ok(Vec::new());
        };
        let now = stamp(path);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.0 != now || now.is_none() {
            *cache = (now, read(path)?.robots);
        }
        Ok(cache.1.clone())
    }

    /// The active robot with this name and secret, if any.
    pub fn authenticate(&self, name: &str, secret: &str, now: SystemTime) -> Option<Robot> {
        let given = sha256_hex(secret.as_bytes());
        let robots = match self.current() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot read robot accounts");
                return None;
            }
        };
        robots.into_iter().find(|r| {
            r.name == name
                && r.active(now)
                && subtle::ConstantTimeEq::ct_eq(r.secret_sha256.as_bytes(), given.as_bytes())
                    .into()
        })
    }

    /// The active robot with this name (for refresh tokens).
    pub fn get(&self, name: &str, now: SystemTime) -> Option<Robot> {
        self.current()
            .ok()?
            .into_iter()
            .find(|r| r.name == name && r.active(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("robots.json");
        let scope = vec![RobotScope {
            repositories: vec!["ci/**".into()],
            actions: vec![Action::Pull, Action::Push],
        }];
        let secret = add(&path, "builder", scope.clone(), None).unwrap();
        let robots = Robots::open(Some(path.clone())).unwrap();
        let now = SystemTime::now();
        let r = robots.authenticate("builder", &secret, now).unwrap();
        assert!(r.allowed("ci/app").contains(&Action::Push));
        assert!(r.allowed("other").is_empty());
        assert!(robots.authenticate("builder", "wrong", now).is_none());
        assert!(robots.authenticate("nobody", &secret, now).is_none());
        assert!(
            add(&path, "builder", scope.clone(), None).is_err(),
            "names are unique"
        );
        // The file holds no secret.
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&secret));

        // No pause: the change is seen even within one clock tick.
        revoke(&path, "builder").unwrap();
        assert!(
            robots.authenticate("builder", &secret, now).is_none(),
            "revocation is seen without restart"
        );
        let again = add(&path, "builder", scope.clone(), None).unwrap();
        assert_ne!(again, secret);

        let short = add(
            &path,
            "short-lived",
            scope,
            Some(now + Duration::from_secs(60)),
        )
        .unwrap();
        assert!(robots.authenticate("short-lived", &short, now).is_some());
        assert!(
            robots
                .authenticate("short-lived", &short, now + Duration::from_secs(120))
                .is_none()
        );
        assert_eq!(list(&path).unwrap().len(), 3);
        assert!(add(&path, "Bad Name", vec![], None).is_err());
    }
}
