//! Authentication and access control for the Wharf registry.
//!
//! - Users from an htpasswd file (bcrypt only), checked in constant time
//!   with respect to whether the user exists.
//! - An access [`policy`]: rules mapping repository globs to actions for
//!   users, groups, robots, `anonymous` and `authenticated`; default deny.
//! - Docker token auth: a built-in token endpoint issuing short-lived ES256
//!   JWTs with the granted subset of the requested scopes (GET with Basic or
//!   anonymous, and OAuth2 `password` / `refresh_token` grants), and strict
//!   verification (key chosen by the server, algorithm pinned to the key,
//!   `exp`/`nbf`/`iat` with a small leeway, issuer and audience checked);
//!   or trust in an external issuer's public key.
//! - [`robots`]: named service credentials with fixed scopes and expiry.
//! - Failed logins rate limited per user and per client address.
//!
//! The crate depends on `wharf-types` only; the server adapts [`Auth`] to
//! the registry's authorization hook.

mod auth;
pub mod htpasswd;
pub mod jwt;
pub mod policy;
mod ratelimit;
pub mod robots;

pub use auth::{Auth, AuthConfig, Decision, Mode, Need};
pub use htpasswd::Htpasswd;
pub use jwt::{SigningKey, VerifyKey};
pub use policy::{Action, Policy, RuleConfig, Subject};
pub use ratelimit::RateLimiter;

/// A configuration or credential-file problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Invalid configuration, with a message naming what is wrong.
    #[error("auth configuration: {0}")]
    Config(String),
}
