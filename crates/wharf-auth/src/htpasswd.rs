//! Users from an htpasswd file (bcrypt only).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::AuthError;

/// bcrypt cost for new entries (about 50-100 ms per check on current CPUs).
pub const DEFAULT_COST: u32 = 10;

/// Users and their bcrypt password hashes.
#[derive(Clone, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
    /// The bcrypt cost most entries use: unknown users are checked against
    /// a dummy hash of this cost, so they take as long as known ones.
    dummy_cost: u32,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes.
        f.debug_struct("Htpasswd")
            .field("users", &self.users.len())
            .finish()
    }
}

/// Whether a user name is acceptable: printable ASCII without `:` or
/// spaces, at most 128 bytes, and not starting with `robot$` (reserved
/// for robot accounts).
pub fn valid_user_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with(crate::robots::ROBOT_PREFIX)
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b':' && b != b'$')
}

impl Htpasswd {
    /// Parses htpasswd text. Every entry must be bcrypt (`$2a$`, `$2b$`,
    /// `$2x$`, `$2y$`); other hash kinds are rejected with the line number.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, AuthError> {
        let mut users = HashMap::new();
        let mut costs: HashMap<u32, usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |message: String| {
                AuthError::Config(format!("{}:{}: {message}", origin.display(), i + 1))
            };
            let Some((user, hash)) = line.split_once(':') else {
                return Err(err("expected user:hash".into()));
            };
            if !valid_user_name(user) {
                return Err(err(format!("invalid user name {user:?}")));
            }
            let kind = if hash.starts_with("$2a$")
                || hash.starts_with("$2b$")
                || hash.starts_with("$2x$")
                || hash.starts_with("$2y$")
            {
                None
            } else if hash.starts_with("$apr1$") {
                Some("Apache MD5 ($apr1$)")
            } else if hash.starts_with("{SHA}") {
                Some("SHA-1 ({SHA})")
            } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
                Some("SHA-crypt")
            } else if hash.starts_with('$') {
                Some("an unknown scheme")
            } else {
                Some("crypt or plain text")
            };
            if let Some(kind) = kind {
                return Err(err(format!(
                    "user {user:?} has a {kind} hash; only bcrypt is accepted (create entries with `wharf user add` or `htpasswd -B`)"
                )));
            }
            let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
                return Err(err(format!("user {user:?} has a malformed bcrypt hash")));
            };
            *costs.entry(parts.get_cost()).or_default() += 1;
            if users.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(err(format!("user {user:?} is listed twice")));
            }
        }
        // The most common cost (the higher one on a tie).
        let dummy_cost = costs
            .into_iter()
            .max_by_key(|&(cost, n)| (n, cost))
            .map_or(DEFAULT_COST, |(cost, _)| cost);
        Ok(Htpasswd { users, dummy_cost })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError::Config(format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text, path)
    }

    /// Whether the user exists.
    pub fn contains(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// The user names.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Prepares what checking an unknown user needs, so that even the first
    /// such check takes no longer than the others.
    pub fn warm_up(&self) {
        let _ = dummy_hash(self.dummy_cost);
    }

    /// Checks a password. Takes the same time whether or not the user
    /// exists (an unknown user is checked against a dummy hash of the same
    /// cost), so timing does not reveal which users exist.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            None => {
                let _ = bcrypt::verify(password, &dummy_hash(self.dummy_cost));
                false
            }
        }
    }
}

/// A bcrypt hash of a password nobody has, at `cost` (made once per cost).
fn dummy_hash(cost: u32) -> String {
    static DUMMIES: OnceLock<Mutex<HashMap<u32, String>>> = OnceLock::new();
    let cost = if cost == 0 { DEFAULT_COST } else { cost };
    let mut dummies = DUMMIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    dummies
        .entry(cost)
        .or_insert_with(|| {
            bcrypt::hash("wharf-dummy-password", cost).unwrap_or_else(|_| {
                "$2b$10$abcdefghijklmnopqrstuu0123456789012345678901234567890".into()
            })
        })
        .clone()
}

/// Adds or replaces a user in an htpasswd file, atomically (write to a
/// temporary file, fsync, rename). Creates the file if missing.
pub fn set_password(path: &Path, user: &str, password: &str, cost: u32) -> Result<(), AuthError> {
    if !valid_user_name(user) {
        return Err(AuthError::Config(format!("invalid user name {user:?}")));
    }
    if password.is_empty() {
        return Err(AuthError::Config("the password is empty".into()));
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(AuthError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    // Validate what is there before rewriting it.
    Htpasswd::parse(&existing, path)?;
    let hash =
        bcrypt::hash(password, cost).map_err(|e| AuthError::Config(format!("bcrypt: {e}")))?;
    let mut out = String::new();
    let mut replaced = false;
    for line in existing.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) {
            out.push_str(&format!("{user}:{hash}\n"));
            replaced = true;
        } else if !line.trim().is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("{user}:{hash}\n"));
    }
    write_atomic(path, out.as_bytes())
}

/// Writes a file atomically with owner-only permissions.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), AuthError> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |e: std::io::Error| AuthError::Config(format!("cannot write {}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp: PathBuf = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("auth")
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(data).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcrypt_only() {
        let p = Path::new("users");
        let hash = bcrypt::hash("secret", 4).unwrap();
        let h = Htpasswd::parse(&format!("# comment\nalice:{hash}\n\n"), p).unwrap();
        assert!(h.verify("alice", "secret"));
        assert!(!h.verify("alice", "wrong"));
        assert!(!h.verify("bob", "secret"));
        for (line, needle) in [
            ("bob:$apr1$abc$def", "Apache MD5"),
            ("bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("bob:plaintext", "plain text"),
            ("bob:$6$salt$hash", "SHA-crypt"),
            ("nocolon", "user:hash"),
            ("bad user:$2y$05$abc", "invalid user name"),
            ("bob:$2y$05$short", "malformed"),
        ] {
            let e = Htpasswd::parse(line, p).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("users:1"), "{line}: {e}");
        }
        let dup = format!("a:{hash}\na:{hash}\n");
        assert!(
            Htpasswd::parse(&dup, p)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn unknown_users_cost_as_much_as_known_ones() {
        let p = Path::new("users");
        let low = bcrypt::hash("a", 4).unwrap();
        let high = bcrypt::hash("b", 6).unwrap();
        let h = Htpasswd::parse(&format!("a:{low}\nb:{low}\nc:{high}\n"), p).unwrap();
        assert_eq!(h.dummy_cost, 4, "the most common cost");
        let dummy = dummy_hash(h.dummy_cost);
        assert_eq!(dummy.parse::<bcrypt::HashParts>().unwrap().get_cost(), 4);
        assert!(!h.verify("nobody", "a"));
        let h = Htpasswd::parse(&format!("c:{high}\n"), p).unwrap();
        assert_eq!(h.dummy_cost, 6);
        assert_eq!(Htpasswd::parse("", p).unwrap().dummy_cost, DEFAULT_COST);
    }

    #[test]
    fn set_password_adds_and_replaces_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("htpasswd");
        set_password(&path, "alice", "one", 4).unwrap();
        set_password(&path, "bob", "two", 4).unwrap();
        set_password(&path, "alice", "three", 4).unwrap();
        let h = Htpasswd::load(&path).unwrap();
        assert!(h.verify("alice", "three"));
        assert!(!h.verify("alice", "one"));
        assert!(h.verify("bob", "two"));
        assert_eq!(h.users().count(), 2);
        assert!(set_password(&path, "robot$x", "p", 4).is_err());
        assert!(set_password(&path, "carol", "", 4).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner-only permissions");
        }
    }
}
