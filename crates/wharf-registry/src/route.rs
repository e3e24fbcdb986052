//! Request paths parsed into typed routes.
//!
//! Repository names may have any number of `/`-separated components, so the
//! path is matched from the right: the last one or two segments say what is
//! asked for (`blobs/<digest>`, `manifests/<reference>`, `tags/list`, ...)
//! and everything before them is the name. Every part is parsed into its
//! validated type here, before any handler sees it.

use wharf_types::{
    Digest, DigestError, NameError, Reference, ReferenceError, RepositoryName, UploadId,
    UploadIdError,
};

/// An API endpoint with its validated path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/blobs/<digest>`
    Blob(RepositoryName, Digest),
    /// `/v2/<name>/blobs/uploads/`
    UploadStart(RepositoryName),
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload(RepositoryName, UploadId),
    /// `/v2/<name>/manifests/<reference>`
    Manifest(RepositoryName, Reference),
    /// `/v2/<name>/tags/list`
    Tags(RepositoryName),
    /// `/v2/<name>/referrers/<digest>`
    Referrers(RepositoryName, Digest),
}

/// What kind of endpoint a route is, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// Blob read or delete.
    Blob,
    /// Upload start or mount.
    UploadStart,
    /// Upload chunk, status, completion or cancel.
    Upload,
    /// Manifest read, write or delete.
    Manifest,
    /// Tag listing.
    Tags,
    /// Referrers listing.
    Referrers,
}

impl RouteKind {
    /// A short stable name (`blob`, `manifest`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RouteKind::Base => "base",
            RouteKind::Catalog => "catalog",
            RouteKind::Blob => "blob",
            RouteKind::UploadStart => "upload_start",
            RouteKind::Upload => "upload",
            RouteKind::Manifest => "manifest",
            RouteKind::Tags => "tags",
            RouteKind::Referrers => "referrers",
        }
    }
}

impl Route {
    /// The route's kind.
    pub fn kind(&self) -> RouteKind {
        match self {
            Route::Base => RouteKind::Base,
            Route::Catalog => RouteKind::Catalog,
            Route::Blob(..) => RouteKind::Blob,
            Route::UploadStart(_) => RouteKind::UploadStart,
            Route::Upload(..) => RouteKind::Upload,
            Route::Manifest(..) => RouteKind::Manifest,
            Route::Tags(_) => RouteKind::Tags,
            Route::Referrers(..) => RouteKind::Referrers,
        }
    }

    /// The repository the route addresses, if any.
    pub fn repository(&self) -> Option<&RepositoryName> {
        match self {
            Route::Base | Route::Catalog => None,
            Route::Blob(n, _)
            | Route::UploadStart(n)
            | Route::Upload(n, _)
            | Route::Manifest(n, _)
            | Route::Tags(n)
            | Route::Referrers(n, _) => Some(n),
        }
    }
}

/// Why a path is not a valid route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// Not an API path at all.
    #[error("no such endpoint")]
    NotFound,
    /// The repository name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The digest is invalid.
    #[error(transparent)]
    Digest(#[from] DigestError),
    /// The tag or digest of a manifest is invalid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The upload id is not one this registry could have issued.
    #[error(transparent)]
    UploadId(#[from] UploadIdError),
}

/// Longest path accepted; a valid route is far shorter.
pub const MAX_PATH_LEN: usize = 2048;

/// Parses a request path (without query) into a route.
///
/// ```
/// use wharf_registry::route::{parse, Route};
///
/// let r = parse("/v2/team/app/manifests/latest").unwrap();
/// assert!(matches!(r, Route::Manifest(n, _) if n.as_str() == "team/app"));
/// // Names may contain the endpoint words themselves.
/// let r = parse("/v2/blobs/manifests/tags/list").unwrap();
/// assert!(matches!(r, Route::Tags(n) if n.as_str() == "blobs/manifests"));
/// ```
pub fn parse(path: &str) -> Result<Route, RouteError> {
    if path.len() > MAX_PATH_LEN {
        return Err(RouteError::NotFound);
    }
    let rest = path.strip_prefix("/v2").ok_or(RouteError::NotFound)?;
    if rest.is_empty() || rest == "/" {
        return Ok(Route::Base);
    }
    let rest = rest.strip_prefix('/').ok_or(RouteError::NotFound)?;
    if rest == "_catalog" {
        return Ok(Route::Catalog);
    }
    let name = |n: &str| RepositoryName::parse(n).map_err(RouteError::from);

    // `<name>/blobs/uploads/` and `<name>/blobs/uploads` start an upload.
    for suffix in ["/blobs/uploads/", "/blobs/uploads"] {
        if let Some(n) = rest.strip_suffix(suffix) {
            return Ok(Route::UploadStart(name(n)?));
        }
    }
    let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
    if let Some(n) = head.strip_suffix("/blobs/uploads") {
        let n = name(n)?;
        return Ok(Route::Upload(n, UploadId::parse(last)?));
    }
    let (n, kind) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
    match (kind, last) {
        ("blobs", d) => {
            let n = name(n)?;
            Ok(Route::Blob(n, Digest::parse(d)?))
        }
        ("manifests", r) => {
            let n = name(n)?;
            Ok(Route::Manifest(n, Reference::parse(r)?))
        }
        ("tags", "list") => Ok(Route::Tags(name(n)?)),
        ("referrers", d) => {
            let n = name(n)?;
            Ok(Route::Referrers(n, Digest::parse(d)?))
        }
        _ => Err(RouteError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn every_endpoint() {
        assert_eq!(parse("/v2/"), Ok(Route::Base));
        assert_eq!(parse("/v2"), Ok(Route::Base));
        assert_eq!(parse("/v2/_catalog"), Ok(Route::Catalog));
        assert!(
            matches!(parse(&format!("/v2/a/b/c/blobs/{D}")), Ok(Route::Blob(n, d)) if n.as_str() == "a/b/c" && d.as_str() == D)
        );
        assert!(
            matches!(parse("/v2/a/blobs/uploads/"), Ok(Route::UploadStart(n)) if n.as_str() == "a")
        );
        assert!(matches!(
            parse("/v2/a/blobs/uploads"),
            Ok(Route::UploadStart(_))
        ));
        let id = UploadId::random();
        assert!(
            matches!(parse(&format!("/v2/a/blobs/uploads/{id}")), Ok(Route::Upload(_, i)) if i == id)
        );
        assert!(matches!(
            parse("/v2/a/manifests/v1"),
            Ok(Route::Manifest(_, Reference::Tag(_)))
        ));
        assert!(matches!(
            parse(&format!("/v2/a/manifests/{D}")),
            Ok(Route::Manifest(_, Reference::Digest(_)))
        ));
        assert!(matches!(parse("/v2/a/tags/list"), Ok(Route::Tags(_))));
        assert!(matches!(
            parse(&format!("/v2/a/referrers/{D}")),
            Ok(Route::Referrers(..))
        ));
    }

    #[test]
    fn names_may_contain_endpoint_words() {
        assert!(
            matches!(parse("/v2/v2/blobs/uploads/"), Ok(Route::UploadStart(n)) if n.as_str() == "v2")
        );
        assert!(
            matches!(parse("/v2/tags/list/tags/list"), Ok(Route::Tags(n)) if n.as_str() == "tags/list")
        );
        assert!(
            matches!(parse("/v2/manifests/manifests/latest"), Ok(Route::Manifest(n, _)) if n.as_str() == "manifests")
        );
        assert!(
            matches!(parse(&format!("/v2/blobs/uploads/blobs/{D}")), Ok(Route::Blob(n, _)) if n.as_str() == "blobs/uploads")
        );
    }

    #[test]
    fn rejects_bad_parts_with_typed_errors() {
        assert_eq!(parse("/v3/a/tags/list"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/a/unknown/x"), Err(RouteError::NotFound));
        assert_eq!(parse("/v2/a"), Err(RouteError::NotFound));
        assert!(matches!(parse("/v2/A/tags/list"), Err(RouteError::Name(_))));
        assert!(matches!(
            parse("/v2/a//b/tags/list"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            parse("/v2/../etc/tags/list"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            parse("/v2/a%2Fb/tags/list"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(parse("/v2//tags/list"), Err(RouteError::Name(_))));
        assert!(matches!(
            parse("/v2/a/blobs/sha256:abc"),
            Err(RouteError::Digest(_))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/sha256%3Aabc"),
            Err(RouteError::Digest(_))
        ));
        assert!(matches!(
            parse("/v2/a/manifests/bad:tag"),
            Err(RouteError::Reference(_))
        ));
        assert!(matches!(
            parse("/v2/a/manifests/-bad"),
            Err(RouteError::Reference(_))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/../../x"),
            Err(RouteError::Name(_)) | Err(RouteError::NotFound) | Err(RouteError::Digest(_))
        ));
        assert!(matches!(
            parse("/v2/a/blobs/uploads/not-a-uuid"),
            Err(RouteError::UploadId(_))
        ));
        assert_eq!(
            parse(&format!("/v2/{}/tags/list", "a/".repeat(2000))),
            Err(RouteError::NotFound)
        );
    }
}
