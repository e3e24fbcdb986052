//! The authorization hook.

use async_trait::async_trait;
use http::HeaderMap;
use wharf_types::RepositoryName;

/// What a request wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `GET /v2/`: check that the client may talk to the registry at all.
    Base,
    /// Read manifests, blobs, tags, referrers.
    Pull,
    /// Upload blobs and manifests.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
    /// List repositories.
    Catalog,
}

impl Action {
    /// The action's name as token scopes spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Base => "base",
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Catalog => "catalog",
        }
    }
}

/// One access a request needs: an action, on a repository when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The action.
    pub action: Action,
    /// The repository, for repository actions.
    pub repository: Option<RepositoryName>,
}

/// The request facts an authorizer sees.
#[derive(Debug)]
pub struct RequestContext<'a> {
    /// Request headers (`Authorization` among them).
    pub headers: &'a HeaderMap,
    /// The peer address, when the server knows it.
    pub peer: Option<std::net::SocketAddr>,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// 401 with this `WWW-Authenticate` challenge.
    Challenge(String),
    /// 403: authenticated but not allowed.
    Deny,
    /// 429: too many failed attempts.
    RateLimited,
}

/// Decides whether a request may do what it asks. The registry calls it
/// with every access a request needs, before touching storage, so denials
/// never reveal whether a repository exists.
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Decides on `accesses` (all needed at once: e.g. push to one
    /// repository and pull from the one a blob is mounted from).
    async fn authorize(&self, request: &RequestContext<'_>, accesses: &[Access]) -> Decision;

    /// Whether the caller may pull from `repository`, without producing a
    /// challenge (used to pick a source for automatic mounts and to filter
    /// the catalog).
    async fn may_pull(&self, request: &RequestContext<'_>, repository: &RepositoryName) -> bool {
        let access = [Access {
            action: Action::Pull,
            repository: Some(repository.clone()),
        }];
        self.authorize(request, &access).await == Decision::Allow
    }
}

/// Allows everything (the default: an open registry).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

#[async_trait]
impl Authorizer for AllowAll {
    async fn authorize(&self, _: &RequestContext<'_>, _: &[Access]) -> Decision {
        Decision::Allow
    }

    async fn may_pull(&self, _: &RequestContext<'_>, _: &RepositoryName) -> bool {
        true
    }
}
