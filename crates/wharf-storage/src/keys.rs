//! The metadata key layout. Every key is built here, from validated values.
//!
//! ```text
//! catalog/<repo>                              repository exists
//! repo/<repo>/_blob/<digest>                  blob is linked into the repository
//! repo/<repo>/_manifest/<digest>              manifest revision (media type, size, subject)
//! repo/<repo>/_tag/<tag>                      tag -> manifest digest
//! repo/<repo>/_ref/<subject>/<referrer>       referrer descriptor (JSON)
//! holder/<digest>/<repo>                      reverse index: repositories linking a blob
//! upload/<upload-id>                          upload session state (JSON)
//! ```
//!
//! Repository name components start with a letter or digit, so the `_`
//! segments can never collide with a nested repository's name, and prefixes
//! like `repo/a/_tag/` select exactly one repository's tags.

use wharf_types::{Digest, RepositoryName, Tag, UploadId};

use crate::backend::Key;

pub(crate) const CATALOG_PREFIX: &str = "catalog/";
pub(crate) const UPLOAD_PREFIX: &str = "upload/";

pub(crate) fn catalog(repo: &RepositoryName) -> Key {
    Key::from_parts(format!("{CATALOG_PREFIX}{repo}"))
}

pub(crate) fn repo_from_catalog(key: &Key) -> Option<RepositoryName> {
    key.as_str()
        .strip_prefix(CATALOG_PREFIX)
        .and_then(|n| RepositoryName::parse(n).ok())
}

pub(crate) fn blob_link(repo: &RepositoryName, digest: &Digest) -> Key {
    Key::from_parts(format!("repo/{repo}/_blob/{digest}"))
}

pub(crate) fn blob_links_prefix(repo: &RepositoryName) -> String {
    format!("repo/{repo}/_blob/")
}

pub(crate) fn holder(digest: &Digest, repo: &RepositoryName) -> Key {
    Key::from_parts(format!("holder/{digest}/{repo}"))
}

pub(crate) fn holders_prefix(digest: &Digest) -> String {
    format!("holder/{digest}/")
}

pub(crate) fn revision(repo: &RepositoryName, digest: &Digest) -> Key {
    Key::from_parts(format!("repo/{repo}/_manifest/{digest}"))
}

pub(crate) fn revisions_prefix(repo: &RepositoryName) -> String {
    format!("repo/{repo}/_manifest/")
}

pub(crate) fn tag(repo: &RepositoryName, tag: &Tag) -> Key {
    Key::from_parts(format!("repo/{repo}/_tag/{tag}"))
}

pub(crate) fn tags_prefix(repo: &RepositoryName) -> String {
    format!("repo/{repo}/_tag/")
}

pub(crate) fn referrer(repo: &RepositoryName, subject: &Digest, referrer: &Digest) -> Key {
    Key::from_parts(format!("repo/{repo}/_ref/{subject}/{referrer}"))
}

pub(crate) fn referrers_prefix(repo: &RepositoryName, subject: &Digest) -> String {
    format!("repo/{repo}/_ref/{subject}/")
}

pub(crate) fn upload(id: &UploadId) -> Key {
    Key::from_parts(format!("{UPLOAD_PREFIX}{id}"))
}

/// The last path segment of a key (a tag, a digest, a repository under `holder/`).
pub(crate) fn last_segment(key: &Key) -> &str {
    key.as_str().rsplit('/').next().unwrap_or_default()
}

/// The part of a key after a prefix.
pub(crate) fn after_prefix<'k>(key: &'k Key, prefix: &str) -> &'k str {
    key.as_str().strip_prefix(prefix).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_repositories_do_not_share_prefixes() {
        let a: RepositoryName = "a".parse().unwrap();
        let nested: RepositoryName = "a/tag".parse().unwrap();
        let t: Tag = "v1".parse().unwrap();
        let d = Digest::sha256(b"x");
        assert!(
            !blob_link(&nested, &d)
                .as_str()
                .starts_with(&tags_prefix(&a))
        );
        assert!(!tag(&nested, &t).as_str().starts_with(&tags_prefix(&a)));
        assert!(tag(&a, &t).as_str().starts_with(&tags_prefix(&a)));
        assert_eq!(last_segment(&tag(&a, &t)), "v1");
        assert_eq!(repo_from_catalog(&catalog(&nested)), Some(nested));
    }

    #[test]
    fn every_key_is_valid() {
        let r: RepositoryName = "team-a/app__x.y".parse().unwrap();
        let d = Digest::sha256(b"x");
        let t: Tag = "V1.0_rc-2".parse().unwrap();
        for k in [
            catalog(&r),
            blob_link(&r, &d),
            holder(&d, &r),
            revision(&r, &d),
            tag(&r, &t),
            referrer(&r, &d, &d),
            upload(&UploadId::random()),
        ] {
            assert!(Key::parse(k.as_str()).is_ok(), "{k}");
        }
    }
}
