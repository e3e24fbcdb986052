//! Authentication and access control from the outside: the real `wharf`
//! binary with an `[auth]` configuration, users made by `wharf user add`,
//! a robot made by `wharf robot add`, and plain HTTP/1.1 requests.
//!
//! - The access matrix: every endpoint x {anonymous, reader, writer, admin,
//!   robot} x {public, private, nonexistent repository}, in basic and in
//!   token mode (where the client does the token dance itself), with the
//!   exact status, error code and challenge of every answer, the state
//!   checked after each request (a refused request changed nothing), and
//!   private and nonexistent repositories answering alike to callers
//!   without access.
//! - Catalog filtering, cross-repository isolation of blobs, manifests and
//!   upload sessions, mounts from unreadable repositories.
//! - Forged and defective tokens against the running server, the OAuth2
//!   password and refresh grants, removed users and revoked robots, a token
//!   expiring in the middle of a chunked upload.
//! - Failed-login rate limiting per user and per client address, and the
//!   time a failed login takes for known and unknown users.
//! - Configuration errors stop `wharf serve` (and `wharf config check`).

mod common;

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{
    AuthServer, AuthSetup, HttpResp, Who, basic_auth, fails, ok, parse_challenge, password_of,
    query_escape, raw_request, raw_request_from, wharf_cmd, write_file,
};
use serde_json::{Value, json};
use wharf_auth::jwt::{Audience, Claims, ResourceAccess, SigningKey, VerifyKey};
use wharf_types::{Digest, UploadId};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const BASIC_CHALLENGE: &str = "Basic realm=\"wharf\", charset=\"UTF-8\"";

static UNIQUE: AtomicUsize = AtomicUsize::new(0);

/// A number no other call in this process returns.
fn unique() -> usize {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

fn sha(data: &[u8]) -> String {
    Digest::sha256(data).to_string()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

// ---- requests as the administrator (setup and state checks) ----

/// Requests as `admin` with Basic credentials (accepted in both modes).
struct Admin<'a> {
    s: &'a AuthServer,
    auth: String,
}

/// What was pushed to a repository by [`Admin::seed`].
#[derive(Debug, Clone)]
struct Seed {
    repo: String,
    config: String,
    config_size: usize,
    layer: String,
    layer_size: usize,
    digest: String,
}

impl<'a> Admin<'a> {
    fn new(s: &'a AuthServer) -> Admin<'a> {
        Admin {
            s,
            auth: basic_auth("admin", &password_of("admin")),
        }
    }

    fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResp {
        let mut h = vec![("Authorization", self.auth.as_str())];
        h.extend_from_slice(headers);
        raw_request(self.s.addr(), method, path, &h, body)
    }

    #[track_caller]
    fn push_blob(&self, repo: &str, data: &[u8]) -> String {
        let d = sha(data);
        let r = self.req(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/?digest={d}"),
            &[("Content-Type", "application/octet-stream")],
            data,
        );
        assert_eq!(r.status, 201, "admin push blob to {repo}: {}", r.text());
        d
    }

    #[track_caller]
    fn push_manifest(&self, repo: &str, reference: &str, bytes: &[u8]) -> String {
        let r = self.req(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", OCI_MANIFEST)],
            bytes,
        );
        assert_eq!(
            r.status,
            201,
            "admin push manifest {repo}:{reference}: {}",
            r.text()
        );
        let d = r.header("docker-content-digest").unwrap_or("").to_owned();
        assert_eq!(d, sha(bytes));
        d
    }

    /// Pushes a config and a layer (both unique to `repo`) and a manifest
    /// tagged `v1`.
    fn seed(&self, repo: &str) -> Seed {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"repo":"{repo}"}}"#
        )
        .into_bytes();
        let layer = format!("layer of {repo}").into_bytes();
        let mut seed = Seed {
            repo: repo.to_owned(),
            config: self.push_blob(repo, &config),
            config_size: config.len(),
            layer: self.push_blob(repo, &layer),
            layer_size: layer.len(),
            digest: String::new(),
        };
        let m = manifest(&seed, "seed");
        seed.digest = self.push_manifest(repo, "v1", &m);
        seed
    }

    /// Starts an upload session; returns its location (a path).
    #[track_caller]
    fn start_session(&self, repo: &str) -> String {
        let r = self.req("POST", &format!("/v2/{repo}/blobs/uploads/"), &[], b"");
        assert_eq!(r.status, 202, "admin start upload in {repo}: {}", r.text());
        r.header("location").expect("Location").to_owned()
    }

    fn blob_status(&self, repo: &str, digest: &str) -> u16 {
        self.req("HEAD", &format!("/v2/{repo}/blobs/{digest}"), &[], b"")
            .status
    }

    fn manifest_status(&self, repo: &str, reference: &str) -> u16 {
        self.req(
            "HEAD",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", OCI_MANIFEST)],
            b"",
        )
        .status
    }

    /// The bytes an upload session holds, or `None` if it is unknown.
    fn session_offset(&self, location: &str) -> Option<u64> {
        let r = self.req("GET", location, &[], b"");
        if r.status == 404 {
            return None;
        }
        assert_eq!(r.status, 204, "GET {location}: {}", r.text());
        let range = r.header("range").expect("Range").to_owned();
        let end: i64 = range
            .strip_prefix("0-")
            .and_then(|e| e.parse().ok())
            .unwrap_or_else(|| panic!("Range {range:?}"));
        // "0-0" is also what an empty session sends (the tests never upload
        // a single byte, so it means empty here).
        if range == "0-0" {
            return Some(0);
        }
        Some(end as u64 + 1)
    }
}

/// An image manifest over a seed's config and layer, made unique by `note`.
fn manifest(seed: &Seed, note: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": seed.config, "size": seed.config_size},
        "layers": [{"mediaType": OCI_LAYER, "digest": seed.layer, "size": seed.layer_size}],
        "annotations": {"org.example.note": note},
    }))
    .expect("json")
}

// ---- the client side: Basic, or the Docker token dance ----

#[derive(Debug, Clone, Default)]
struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Scopes a real client adds to the token request (the source of a
    /// cross-repository mount, as docker does).
    extra_scopes: Vec<String>,
}

impl Req {
    fn new(method: &'static str, path: impl Into<String>) -> Req {
        Req {
            method,
            path: path.into(),
            ..Default::default()
        }
    }

    fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    fn body(mut self, b: impl Into<Vec<u8>>) -> Req {
        self.body = b.into();
        self
    }

    fn send_with(&self, s: &AuthServer, authorization: Option<&str>) -> HttpResp {
        let mut h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(a) = authorization {
            h.push(("Authorization", a));
        }
        raw_request(s.addr(), self.method, &self.path, &h, &self.body)
    }
}

/// What a client saw: the first answer, the last (after the token dance),
/// and the claims of the token it used.
#[derive(Debug)]
struct Exchange {
    first: HttpResp,
    last: HttpResp,
    claims: Option<Value>,
}

/// The payload of a JWT, unverified.
fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("JWT payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url")).expect("JSON")
}

/// Sends `req` as `who`. Basic mode: with Basic credentials. Token mode:
/// first without credentials; on a Bearer challenge, GET the realm with the
/// challenge's scope (and `req.extra_scopes`), with Basic credentials or
/// anonymously, and retry with the token.
fn send(s: &AuthServer, who: Who, req: &Req) -> Exchange {
    if s.mode == "basic" {
        let r = req.send_with(s, s.basic(who).as_deref());
        return Exchange {
            first: r.clone(),
            last: r,
            claims: None,
        };
    }
    let first = req.send_with(s, None);
    let challenge = first.header("www-authenticate").unwrap_or("").to_owned();
    if first.status != 401 || !challenge.starts_with("Bearer ") {
        return Exchange {
            last: first.clone(),
            first,
            claims: None,
        };
    }
    let token = dance(s, who, &challenge, &req.extra_scopes);
    let last = req.send_with(s, Some(&format!("Bearer {token}")));
    Exchange {
        first,
        last,
        claims: Some(claims_of(&token)),
    }
}

/// Gets a token for a Bearer challenge, as `who`.
fn dance(s: &AuthServer, who: Who, challenge: &str, extra_scopes: &[String]) -> String {
    let (scheme, params) = parse_challenge(challenge);
    assert_eq!(scheme, "Bearer", "{challenge}");
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let realm = get("realm").expect("realm");
    let prefix = format!("http://{}", s.addr());
    let path = realm
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("realm {realm} is not on this server ({prefix})"))
        .to_owned();
    let mut url = format!(
        "{path}?service={}",
        query_escape(&get("service").expect("service"))
    );
    for scope in get("scope")
        .iter()
        .flat_map(|s| s.split(' '))
        .map(str::to_owned)
        .chain(extra_scopes.iter().cloned())
    {
        url.push_str(&format!("&scope={}", query_escape(&scope)));
    }
    let auth = s.basic(who);
    let headers: Vec<(&str, &str)> = auth
        .as_deref()
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = raw_request(s.addr(), "GET", &url, &headers, b"");
    assert_eq!(r.status, 200, "GET {url} as {who:?}: {}", r.text());
    assert_eq!(r.header("cache-control"), Some("no-store"));
    r.json()["token"].as_str().expect("token").to_owned()
}

// ---- the access matrix ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repo {
    Public,
    Private,
    /// A repository under `private/` that does not exist (a new name for
    /// every case, so that pushes by earlier cases do not create it).
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Act {
    Pull,
    Push,
    Delete,
}

impl Act {
    fn as_str(self) -> &'static str {
        match self {
            Act::Pull => "pull",
            Act::Push => "push",
            Act::Delete => "delete",
        }
    }

    /// The actions a challenge asks for (push comes with pull).
    fn scope_actions(self) -> &'static str {
        match self {
            Act::Pull => "pull",
            Act::Push => "pull,push",
            Act::Delete => "delete",
        }
    }
}

/// The standard policy, restated: what `who` may do on `repo`.
fn may(who: Who, repo: Repo, act: Act) -> bool {
    match who {
        Who::Admin => true,
        Who::Anonymous => repo == Repo::Public && act == Act::Pull,
        Who::Reader => act == Act::Pull,
        Who::Writer | Who::Robot => act == Act::Pull || (repo != Repo::Public && act == Act::Push),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ep {
    GetBlob,
    HeadBlob,
    GetManifestTag,
    HeadManifestTag,
    GetManifestDigest,
    HeadManifestDigest,
    Tags,
    Referrers,
    StartUpload,
    MonolithicPost,
    PatchSession,
    PutSession,
    GetSession,
    DeleteSession,
    PutManifest,
    DeleteManifest,
    DeleteTag,
    DeleteBlob,
    /// `?mount=&from=` a repository the caller may read.
    MountReadable,
    /// `?mount=&from=secret/vault` (only the admin may read it).
    MountUnreadable,
    /// `?mount=` without `from`, the blob in a repository the caller may read.
    AutoMountReadable,
    /// `?mount=` without `from`, the blob only in `secret/vault`.
    AutoMountUnreadable,
}

const REPO_ENDPOINTS: [Ep; 22] = [
    Ep::GetBlob,
    Ep::HeadBlob,
    Ep::GetManifestTag,
    Ep::HeadManifestTag,
    Ep::GetManifestDigest,
    Ep::HeadManifestDigest,
    Ep::Tags,
    Ep::Referrers,
    Ep::StartUpload,
    Ep::MonolithicPost,
    Ep::PatchSession,
    Ep::PutSession,
    Ep::GetSession,
    Ep::DeleteSession,
    Ep::PutManifest,
    Ep::DeleteManifest,
    Ep::DeleteTag,
    Ep::DeleteBlob,
    Ep::MountReadable,
    Ep::MountUnreadable,
    Ep::AutoMountReadable,
    Ep::AutoMountUnreadable,
];

impl Ep {
    fn needs(self) -> Act {
        match self {
            Ep::GetBlob
            | Ep::HeadBlob
            | Ep::GetManifestTag
            | Ep::HeadManifestTag
            | Ep::GetManifestDigest
            | Ep::HeadManifestDigest
            | Ep::Tags
            | Ep::Referrers => Act::Pull,
            Ep::DeleteManifest | Ep::DeleteTag | Ep::DeleteBlob => Act::Delete,
            _ => Act::Push,
        }
    }

    fn is_head(self) -> bool {
        matches!(
            self,
            Ep::HeadBlob | Ep::HeadManifestTag | Ep::HeadManifestDigest
        )
    }
}

/// A state check made as admin after a request.
#[derive(Debug, Clone)]
enum Check {
    Blob {
        repo: String,
        digest: String,
        present: bool,
    },
    Manifest {
        repo: String,
        reference: String,
        present: bool,
    },
    Session {
        location: String,
        offset: Option<u64>,
    },
}

impl Check {
    fn verify(&self, admin: &Admin<'_>) -> Result<(), String> {
        match self {
            Check::Blob {
                repo,
                digest,
                present,
            } => {
                let st = admin.blob_status(repo, digest);
                (st == if *present { 200 } else { 404 })
                    .then_some(())
                    .ok_or(format!(
                        "blob {digest} in {repo}: HEAD {st}, expected present={present}"
                    ))
            }
            Check::Manifest {
                repo,
                reference,
                present,
            } => {
                let st = admin.manifest_status(repo, reference);
                (st == if *present { 200 } else { 404 })
                    .then_some(())
                    .ok_or(format!(
                        "manifest {repo}:{reference}: HEAD {st}, expected present={present}"
                    ))
            }
            Check::Session { location, offset } => {
                let got = admin.session_offset(location);
                (got == *offset).then_some(()).ok_or(format!(
                    "session {location}: {got:?} bytes, expected {offset:?}"
                ))
            }
        }
    }
}

struct Prepared {
    req: Req,
    /// State after a refused request (nothing changed).
    unchanged: Vec<Check>,
    /// State after an allowed, successful request.
    changed: Vec<Check>,
}

/// The fixtures of one matrix run.
struct World<'a> {
    admin: Admin<'a>,
    public: Seed,
    private: Seed,
    secret: Seed,
}

impl World<'_> {
    /// Builds the request of one case, with fresh fixtures where it changes
    /// state, and the checks that tell whether it had an effect.
    fn prepare(&self, ep: Ep, repo: Repo, name: &str) -> Prepared {
        let a = &self.admin;
        let exists = repo != Repo::Missing;
        let seed = match repo {
            Repo::Public => &self.public,
            Repo::Private | Repo::Missing => &self.private,
        };
        let n = unique();
        let blob = |repo: &str, digest: &str, present: bool| Check::Blob {
            repo: repo.to_owned(),
            digest: digest.to_owned(),
            present,
        };
        let man = |reference: &str, present: bool| Check::Manifest {
            repo: name.to_owned(),
            reference: reference.to_owned(),
            present,
        };
        let new_session = || {
            if exists {
                a.start_session(name)
            } else {
                format!("/v2/{name}/blobs/uploads/{}", UploadId::random())
            }
        };
        let plain = |req: Req| Prepared {
            req,
            unchanged: Vec::new(),
            changed: Vec::new(),
        };
        let accept = ("Accept", OCI_MANIFEST);
        match ep {
            Ep::GetBlob | Ep::HeadBlob => plain(Req::new(
                if ep == Ep::GetBlob { "GET" } else { "HEAD" },
                format!("/v2/{name}/blobs/{}", seed.layer),
            )),
            Ep::GetManifestTag | Ep::HeadManifestTag => plain(
                Req::new(
                    if ep == Ep::GetManifestTag {
                        "GET"
                    } else {
                        "HEAD"
                    },
                    format!("/v2/{name}/manifests/v1"),
                )
                .header(accept.0, accept.1),
            ),
            Ep::GetManifestDigest | Ep::HeadManifestDigest => plain(
                Req::new(
                    if ep == Ep::GetManifestDigest {
                        "GET"
                    } else {
                        "HEAD"
                    },
                    format!("/v2/{name}/manifests/{}", seed.digest),
                )
                .header(accept.0, accept.1),
            ),
            Ep::Tags => plain(Req::new("GET", format!("/v2/{name}/tags/list"))),
            Ep::Referrers => plain(Req::new(
                "GET",
                format!("/v2/{name}/referrers/{}", seed.digest),
            )),
            Ep::StartUpload => plain(Req::new("POST", format!("/v2/{name}/blobs/uploads/"))),
            Ep::MonolithicPost => {
                let data = format!("monolithic blob {n}").into_bytes();
                let d = sha(&data);
                Prepared {
                    req: Req::new("POST", format!("/v2/{name}/blobs/uploads/?digest={d}"))
                        .header("Content-Type", "application/octet-stream")
                        .body(data),
                    unchanged: vec![blob(name, &d, false)],
                    changed: vec![blob(name, &d, true)],
                }
            }
            Ep::PatchSession => {
                let loc = new_session();
                let data = format!("chunk {n}").into_bytes();
                let len = data.len() as u64;
                Prepared {
                    req: Req::new("PATCH", loc.clone())
                        .header("Content-Type", "application/octet-stream")
                        .header("Content-Range", &format!("0-{}", len - 1))
                        .body(data),
                    unchanged: exists
                        .then(|| Check::Session {
                            location: loc.clone(),
                            offset: Some(0),
                        })
                        .into_iter()
                        .collect(),
                    changed: vec![Check::Session {
                        location: loc.clone(),
                        offset: Some(len),
                    }],
                }
            }
            Ep::PutSession => {
                let loc = new_session();
                let data = format!("completed upload {n}").into_bytes();
                let d = sha(&data);
                let mut unchanged = vec![blob(name, &d, false)];
                if exists {
                    unchanged.push(Check::Session {
                        location: loc.clone(),
                        offset: Some(0),
                    });
                }
                Prepared {
                    req: Req::new("PUT", format!("{loc}?digest={d}"))
                        .header("Content-Type", "application/octet-stream")
                        .body(data),
                    unchanged,
                    changed: vec![
                        blob(name, &d, true),
                        Check::Session {
                            location: loc,
                            offset: None,
                        },
                    ],
                }
            }
            Ep::GetSession => plain(Req::new("GET", new_session())),
            Ep::DeleteSession => {
                let loc = new_session();
                Prepared {
                    req: Req::new("DELETE", loc.clone()),
                    unchanged: exists
                        .then(|| Check::Session {
                            location: loc.clone(),
                            offset: Some(0),
                        })
                        .into_iter()
                        .collect(),
                    changed: vec![Check::Session {
                        location: loc,
                        offset: None,
                    }],
                }
            }
            Ep::PutManifest => {
                let tag = format!("put-{n}");
                let m = manifest(seed, &tag);
                Prepared {
                    req: Req::new("PUT", format!("/v2/{name}/manifests/{tag}"))
                        .header("Content-Type", OCI_MANIFEST)
                        .body(m),
                    unchanged: vec![man(&tag, false)],
                    changed: vec![man(&tag, true)],
                }
            }
            Ep::DeleteManifest => {
                let m = manifest(seed, &format!("delete-{n}"));
                let d = if exists {
                    a.push_manifest(name, &sha(&m), &m)
                } else {
                    sha(&m)
                };
                Prepared {
                    req: Req::new("DELETE", format!("/v2/{name}/manifests/{d}")),
                    unchanged: exists.then(|| man(&d, true)).into_iter().collect(),
                    changed: vec![man(&d, false)],
                }
            }
            Ep::DeleteTag => {
                let tag = format!("del-{n}");
                if exists {
                    a.push_manifest(name, &tag, &manifest(seed, "seed"));
                }
                Prepared {
                    req: Req::new("DELETE", format!("/v2/{name}/manifests/{tag}")),
                    unchanged: exists.then(|| man(&tag, true)).into_iter().collect(),
                    // The tag goes, the manifest stays.
                    changed: vec![man(&tag, false), man(&seed.digest, exists)],
                }
            }
            Ep::DeleteBlob => {
                let data = format!("blob to delete {n}").into_bytes();
                let d = if exists {
                    a.push_blob(name, &data)
                } else {
                    sha(&data)
                };
                Prepared {
                    req: Req::new("DELETE", format!("/v2/{name}/blobs/{d}")),
                    unchanged: exists.then(|| blob(name, &d, true)).into_iter().collect(),
                    changed: vec![blob(name, &d, false)],
                }
            }
            Ep::MountReadable
            | Ep::MountUnreadable
            | Ep::AutoMountReadable
            | Ep::AutoMountUnreadable => {
                let source = match ep {
                    Ep::MountReadable | Ep::AutoMountReadable => {
                        if repo == Repo::Public {
                            self.private.repo.clone()
                        } else {
                            self.public.repo.clone()
                        }
                    }
                    _ => self.secret.repo.clone(),
                };
                let d = a.push_blob(&source, format!("blob to mount {n}").as_bytes());
                let from = matches!(ep, Ep::MountReadable | Ep::MountUnreadable);
                let mut req = Req::new(
                    "POST",
                    if from {
                        format!("/v2/{name}/blobs/uploads/?mount={d}&from={source}")
                    } else {
                        format!("/v2/{name}/blobs/uploads/?mount={d}")
                    },
                );
                if from {
                    req.extra_scopes.push(format!("repository:{source}:pull"));
                }
                Prepared {
                    req,
                    unchanged: vec![blob(name, &d, false)],
                    // Filled in from the status: 201 mounted, 202 did not.
                    changed: vec![blob(name, &d, true)],
                }
            }
        }
    }
}

/// What a case must answer.
#[derive(Debug, Clone, PartialEq)]
struct Expect {
    status: u16,
    code: Option<&'static str>,
    challenge: Option<String>,
}

fn allowed_answer(ep: Ep, repo: Repo, who: Who, mode: &str) -> (u16, Option<&'static str>) {
    let exists = repo != Repo::Missing;
    let missing = |code| (404, Some(code));
    match ep {
        Ep::GetBlob | Ep::HeadBlob if exists => (200, None),
        Ep::GetBlob | Ep::HeadBlob => missing("BLOB_UNKNOWN"),
        Ep::GetManifestTag
        | Ep::HeadManifestTag
        | Ep::GetManifestDigest
        | Ep::HeadManifestDigest
            if exists =>
        {
            (200, None)
        }
        Ep::GetManifestTag
        | Ep::HeadManifestTag
        | Ep::GetManifestDigest
        | Ep::HeadManifestDigest => missing("MANIFEST_UNKNOWN"),
        Ep::Tags if exists => (200, None),
        Ep::Tags => missing("NAME_UNKNOWN"),
        // An unknown subject has no referrers: an empty list.
        Ep::Referrers => (200, None),
        Ep::StartUpload => (202, None),
        Ep::MonolithicPost => (201, None),
        Ep::PatchSession if exists => (202, None),
        Ep::PutSession if exists => (201, None),
        Ep::GetSession | Ep::DeleteSession if exists => (204, None),
        Ep::PatchSession | Ep::PutSession | Ep::GetSession | Ep::DeleteSession => {
            missing("BLOB_UPLOAD_UNKNOWN")
        }
        Ep::PutManifest if exists => (201, None),
        // The manifest's blobs are not in the new repository.
        Ep::PutManifest => (400, Some("MANIFEST_BLOB_UNKNOWN")),
        Ep::DeleteManifest | Ep::DeleteTag if exists => (202, None),
        Ep::DeleteManifest | Ep::DeleteTag => missing("MANIFEST_UNKNOWN"),
        Ep::DeleteBlob if exists => (202, None),
        Ep::DeleteBlob => missing("BLOB_UNKNOWN"),
        Ep::MountReadable => (201, None),
        // Never mounted from a repository the caller cannot read: a new
        // upload session instead.
        Ep::MountUnreadable => (if who == Who::Admin { 201 } else { 202 }, None),
        // In token mode the token carries only the target's scope, so no
        // other repository is readable for an automatic mount.
        Ep::AutoMountReadable => (if mode == "basic" { 201 } else { 202 }, None),
        Ep::AutoMountUnreadable => (
            if mode == "basic" && who == Who::Admin {
                201
            } else {
                202
            },
            None,
        ),
    }
}

fn bearer_challenge(s: &AuthServer, scope: Option<&str>, error: bool) -> String {
    let mut c = format!(
        "Bearer realm=\"http://{}/token\",service=\"wharf\"",
        s.addr()
    );
    if let Some(scope) = scope {
        c.push_str(&format!(",scope=\"{scope}\""));
    }
    if error {
        c.push_str(",error=\"insufficient_scope\"");
    }
    c
}

fn expect(s: &AuthServer, ep: Ep, who: Who, repo: Repo, name: &str) -> Expect {
    let act = ep.needs();
    if may(who, repo, act) {
        let (status, code) = allowed_answer(ep, repo, who, s.mode);
        return Expect {
            status,
            code: if ep.is_head() { None } else { code },
            challenge: None,
        };
    }
    let code = |c| if ep.is_head() { None } else { Some(c) };
    match (s.mode, who) {
        ("basic", Who::Anonymous) => Expect {
            status: 401,
            code: code("UNAUTHORIZED"),
            challenge: Some(BASIC_CHALLENGE.to_owned()),
        },
        ("basic", _) => Expect {
            status: 403,
            code: code("DENIED"),
            challenge: None,
        },
        _ => Expect {
            status: 401,
            code: code("UNAUTHORIZED"),
            challenge: Some(bearer_challenge(
                s,
                Some(&format!("repository:{name}:{}", act.scope_actions())),
                true,
            )),
        },
    }
}

/// One case's answer with the repository's name replaced, for comparing
/// private and nonexistent repositories.
fn normalized(r: &HttpResp, name: &str) -> (u16, Option<String>, String) {
    (
        r.status,
        r.header("www-authenticate")
            .map(|c| c.replace(name, "REPO")),
        r.text().replace(name, "REPO"),
    )
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    allowed: usize,
    refused: usize,
    compared: usize,
}

fn check_answer(
    s: &AuthServer,
    what: &str,
    ex: &Exchange,
    want: &Expect,
    failures: &mut Vec<String>,
) {
    let got = &ex.last;
    let mut wrong = Vec::new();
    if got.status != want.status {
        wrong.push(format!("status {} (want {})", got.status, want.status));
    }
    if got.error_code().as_deref() != want.code {
        wrong.push(format!(
            "code {:?} (want {:?})",
            got.error_code(),
            want.code
        ));
    }
    let challenge = got.header("www-authenticate").map(str::to_owned);
    if challenge != want.challenge {
        wrong.push(format!(
            "challenge {challenge:?} (want {:?})",
            want.challenge
        ));
    }
    if !wrong.is_empty() {
        failures.push(format!(
            "[{}] {what}: {}; body {}",
            s.mode,
            wrong.join(", "),
            got.text()
        ));
    }
}

fn matrix(mode: &'static str) {
    let started = Instant::now();
    let s = AuthSetup::new(mode).start();
    let world = World {
        admin: Admin::new(&s),
        public: Admin::new(&s).seed("public/app"),
        private: Admin::new(&s).seed("private/app"),
        secret: Admin::new(&s).seed("secret/vault"),
    };
    let mut failures: Vec<String> = Vec::new();
    let mut tally = Tally::default();

    // GET /v2/ and the catalog, which name no repository.
    for who in Who::ALL {
        tally.cases += 1;
        let ex = send(&s, who, &Req::new("GET", "/v2/"));
        let want = match (mode, who) {
            ("basic", Who::Anonymous) => Expect {
                status: 401,
                code: Some("UNAUTHORIZED"),
                challenge: Some(BASIC_CHALLENGE.to_owned()),
            },
            // Token mode: even an anonymous token opens /v2/.
            _ => Expect {
                status: 200,
                code: None,
                challenge: None,
            },
        };
        check_answer(&s, &format!("{who:?} GET /v2/"), &ex, &want, &mut failures);
        if mode == "token" {
            let first = &ex.first;
            if first.status != 401
                || first.header("www-authenticate") != Some(&bearer_challenge(&s, None, false))
            {
                failures.push(format!(
                    "[token] {who:?} GET /v2/ first answer: {} {:?}",
                    first.status,
                    first.header("www-authenticate")
                ));
            }
        }

        tally.cases += 1;
        let ex = send(&s, who, &Req::new("GET", "/v2/_catalog"));
        let want = Expect {
            status: 200,
            code: None,
            challenge: None,
        };
        check_answer(
            &s,
            &format!("{who:?} GET catalog"),
            &ex,
            &want,
            &mut failures,
        );
    }

    for ep in REPO_ENDPOINTS {
        for who in Who::ALL {
            let mut refused_answers = Vec::new();
            for repo in [Repo::Public, Repo::Private, Repo::Missing] {
                tally.cases += 1;
                let name = match repo {
                    Repo::Public => "public/app".to_owned(),
                    Repo::Private => "private/app".to_owned(),
                    Repo::Missing => format!("private/ghost-{}", unique()),
                };
                let what = format!("{who:?} {ep:?} on {name}");
                let p = world.prepare(ep, repo, &name);
                let ex = send(&s, who, &p.req);
                let want = expect(&s, ep, who, repo, &name);
                check_answer(&s, &what, &ex, &want, &mut failures);
                let allowed = may(who, repo, ep.needs());
                if allowed {
                    tally.allowed += 1;
                } else {
                    tally.refused += 1;
                }

                // State: nothing changed if refused (or if a mount fell back
                // to an upload session); the effect happened if it succeeded.
                let checks = if !allowed || ex.last.status == 202 && p.req.path.contains("mount=") {
                    &p.unchanged
                } else if (200..300).contains(&ex.last.status) {
                    &p.changed
                } else {
                    &p.unchanged
                };
                for c in checks {
                    if let Err(e) = c.verify(&world.admin) {
                        failures.push(format!("[{mode}] {what}: afterwards {e}"));
                    }
                }
                if ex.last.status == 202 && p.req.method == "POST" {
                    let loc = ex.last.header("location").unwrap_or("");
                    if !loc.starts_with(&format!("/v2/{name}/blobs/uploads/")) {
                        failures.push(format!("[{mode}] {what}: 202 with Location {loc:?}"));
                    }
                }

                // Token mode: the first, anonymous, answer challenges with
                // the scope the endpoint needs; the token grants exactly
                // the allowed part of it.
                if mode == "token" && !may(Who::Anonymous, repo, ep.needs()) {
                    let act = ep.needs();
                    let scope = format!("repository:{name}:{}", act.scope_actions());
                    let want = bearer_challenge(&s, Some(&scope), false);
                    if ex.first.status != 401
                        || ex.first.header("www-authenticate") != Some(want.as_str())
                    {
                        failures.push(format!(
                            "[token] {what}: first answer {} {:?}, want 401 {want}",
                            ex.first.status,
                            ex.first.header("www-authenticate")
                        ));
                    }
                    let requested: Vec<Act> = match act {
                        Act::Push => vec![Act::Pull, Act::Push],
                        a => vec![a],
                    };
                    let want_granted: Vec<&str> = requested
                        .into_iter()
                        .filter(|a| may(who, repo, *a))
                        .map(Act::as_str)
                        .collect();
                    let claims = ex.claims.clone().unwrap_or_default();
                    let granted: Vec<&str> = claims["access"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|a| a["type"] == "repository" && a["name"] == name.as_str())
                        .flat_map(|a| a["actions"].as_array().cloned().unwrap_or_default())
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .map(|x| match x.as_str() {
                            "pull" => "pull",
                            "push" => "push",
                            "delete" => "delete",
                            _ => "?",
                        })
                        .collect();
                    if granted != want_granted {
                        failures.push(format!(
                            "[token] {what}: token granted {granted:?}, want {want_granted:?} ({claims})"
                        ));
                    }
                    let sub = claims["sub"].as_str().unwrap_or("?");
                    let want_sub = match who {
                        Who::Anonymous => "",
                        Who::Reader => "reader",
                        Who::Writer => "writer",
                        Who::Admin => "admin",
                        Who::Robot => "robot$ci",
                    };
                    if sub != want_sub {
                        failures.push(format!("[token] {what}: token sub {sub:?}"));
                    }
                }
                if repo != Repo::Public && !allowed {
                    refused_answers.push((
                        name.clone(),
                        normalized(&ex.first, &name),
                        normalized(&ex.last, &name),
                    ));
                }
            }
            // A caller without access cannot tell a private repository from
            // one that does not exist.
            if let [(a, a_first, a_last), (b, b_first, b_last)] = &refused_answers[..] {
                tally.compared += 1;
                if a_first != b_first || a_last != b_last {
                    failures.push(format!(
                        "[{mode}] {who:?} {ep:?}: {a} and {b} answer differently: {a_last:?} vs {b_last:?}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "[{mode}] access matrix: {} cases ({} allowed, {} refused, {} private/nonexistent comparisons) in {:.1} s",
        tally.cases,
        tally.allowed,
        tally.refused,
        tally.compared,
        started.elapsed().as_secs_f64()
    );
    assert_eq!(tally.cases, 2 * Who::ALL.len() + 22 * 5 * 3);
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        tally.cases,
        failures.join("\n")
    );
}

#[test]
fn access_matrix_basic_mode() {
    matrix("basic");
}

#[test]
fn access_matrix_token_mode() {
    matrix("token");
}

// ---- catalog, isolation, mounts ----

/// The catalog as `who` sees it: in token mode with a token for
/// `registry:catalog:*` (anonymous callers need none).
fn catalog_as(s: &AuthServer, who: Who) -> (u16, Vec<String>) {
    let auth = match (s.mode, who) {
        (_, Who::Anonymous) => None,
        ("basic", _) => s.basic(who),
        _ => Some(format!("Bearer {}", s.token(who, &["registry:catalog:*"]))),
    };
    let r = Req::new("GET", "/v2/_catalog").send_with(s, auth.as_deref());
    let names = if r.status == 200 {
        r.json()["repositories"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    } else {
        Vec::new()
    };
    (r.status, names)
}

fn catalog_filtering(mode: &'static str) {
    let s = AuthSetup::new(mode).start();
    let admin = Admin::new(&s);
    for repo in ["public/app", "public/lib", "private/app", "secret/vault"] {
        admin.seed(repo);
    }
    let public = vec!["public/app", "public/lib"];
    let pullable = vec!["private/app", "public/app", "public/lib"];
    let all = vec!["private/app", "public/app", "public/lib", "secret/vault"];
    for (who, want) in [
        (Who::Anonymous, &public),
        (Who::Reader, &pullable),
        (Who::Writer, &pullable),
        (Who::Robot, &pullable),
        (Who::Admin, &all),
    ] {
        let (status, names) = catalog_as(&s, who);
        assert_eq!(status, 200, "[{mode}] {who:?}");
        assert_eq!(&names, want, "[{mode}] catalog as {who:?}");
    }
    if mode == "token" {
        // An anonymous token with the catalog scope sees what anonymous sees.
        let t = s.token(Who::Anonymous, &["registry:catalog:*"]);
        let r = Req::new("GET", "/v2/_catalog").send_with(&s, Some(&format!("Bearer {t}")));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["repositories"], json!(public));
        // A token without the catalog scope is challenged for it.
        let t = s.token(Who::Reader, &["repository:private/app:pull"]);
        let r = Req::new("GET", "/v2/_catalog").send_with(&s, Some(&format!("Bearer {t}")));
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(
            r.header("www-authenticate"),
            Some(bearer_challenge(&s, Some("registry:catalog:*"), true).as_str())
        );
    }
    // Pagination hides nothing extra: page by page, the same list.
    let mut seen = Vec::new();
    let mut path = "/v2/_catalog?n=1".to_owned();
    for _ in 0..10 {
        let r = Req::new("GET", path.clone()).send_with(&s, s.basic(Who::Reader).as_deref());
        assert_eq!(r.status, 200, "{}", r.text());
        for v in r.json()["repositories"].as_array().into_iter().flatten() {
            seen.push(v.as_str().unwrap_or("").to_owned());
        }
        match r.header("link") {
            Some(l) => {
                path = l
                    .trim_start_matches('<')
                    .split('>')
                    .next()
                    .unwrap_or("")
                    .to_owned()
            }
            None => break,
        }
    }
    assert_eq!(seen, pullable, "[{mode}] paged catalog as reader");
}

#[test]
fn catalog_lists_only_pullable_repositories_basic_mode() {
    catalog_filtering("basic");
}

#[test]
fn catalog_lists_only_pullable_repositories_token_mode() {
    catalog_filtering("token");
}

/// Authorization for `who` on one repository's scope: Basic, or a token.
fn authorization(s: &AuthServer, who: Who, scopes: &[&str]) -> Option<String> {
    match s.mode {
        "basic" => s.basic(who),
        _ => Some(format!("Bearer {}", s.token(who, scopes))),
    }
}

fn isolation(mode: &'static str) {
    let s = AuthSetup::new(mode).start();
    let admin = Admin::new(&s);
    let public = admin.seed("public/app");
    let private = admin.seed("private/app");
    let secret = admin.seed("secret/vault");

    // Content pushed to one repository is not served through another, to
    // anyone, the admin included.
    for (who, via, seed) in [
        (Who::Admin, "public/app", &private),
        (Who::Admin, "private/app", &secret),
        (Who::Anonymous, "public/app", &private),
        (Who::Anonymous, "public/app", &secret),
        (Who::Reader, "private/app", &secret),
        (Who::Reader, "public/app", &private),
        (Who::Writer, "private/app", &secret),
        (Who::Robot, "private/app", &secret),
        (Who::Robot, "public/app", &secret),
    ] {
        let scope = format!("repository:{via}:pull");
        let auth = if who == Who::Anonymous && mode == "basic" {
            None
        } else {
            authorization(&s, who, &[&scope])
        };
        for (method, path, code) in [
            (
                "GET",
                format!("/v2/{via}/blobs/{}", seed.layer),
                "BLOB_UNKNOWN",
            ),
            ("HEAD", format!("/v2/{via}/blobs/{}", seed.config), ""),
            (
                "GET",
                format!("/v2/{via}/manifests/{}", seed.digest),
                "MANIFEST_UNKNOWN",
            ),
        ] {
            let r = Req::new(method, path.clone())
                .header("Accept", OCI_MANIFEST)
                .send_with(&s, auth.as_deref());
            assert_eq!(
                r.status,
                404,
                "[{mode}] {who:?} {method} {path}: {}",
                r.text()
            );
            if method == "GET" {
                assert_eq!(r.error_code().as_deref(), Some(code), "{}", r.text());
            }
        }
    }
    // The same requests through the right repository work (so the 404s
    // above are about the repository, not the digests).
    for seed in [&public, &private, &secret] {
        let r = admin.req(
            "GET",
            &format!("/v2/{}/blobs/{}", seed.repo, seed.layer),
            &[],
            b"",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.body, format!("layer of {}", seed.repo).into_bytes());
    }

    // An upload session belongs to its repository: the admin cannot use a
    // writer's session through another repository's path.
    let writer = authorization(&s, Who::Writer, &["repository:private/app:pull,push"]);
    let r = Req::new("POST", "/v2/private/app/blobs/uploads/").send_with(&s, writer.as_deref());
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").expect("Location").to_owned();
    let id = loc.rsplit('/').next().expect("id").to_owned();
    let data = b"session data".to_vec();
    let d = sha(&data);
    for via in ["public/app", "private/other"] {
        let other = format!("/v2/{via}/blobs/uploads/{id}");
        for (method, path, body) in [
            ("GET", other.clone(), Vec::new()),
            ("PATCH", other.clone(), data.clone()),
            ("PUT", format!("{other}?digest={d}"), data.clone()),
            ("DELETE", other.clone(), Vec::new()),
        ] {
            let r = admin.req(method, &path, &[], &body);
            assert_eq!(
                r.status,
                404,
                "[{mode}] admin {method} {path}: {}",
                r.text()
            );
            assert_eq!(r.error_code().as_deref(), Some("BLOB_UPLOAD_UNKNOWN"));
        }
    }
    assert_eq!(admin.session_offset(&loc), Some(0), "session untouched");
    let r = Req::new("PUT", format!("{loc}?digest={d}"))
        .body(data.clone())
        .send_with(&s, writer.as_deref());
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(admin.blob_status("private/app", &d), 200);
    assert_eq!(admin.blob_status("public/app", &d), 404);
    assert_eq!(admin.blob_status("private/other", &d), 404);
}

#[test]
fn content_is_not_readable_through_another_repository_basic_mode() {
    isolation("basic");
}

#[test]
fn content_is_not_readable_through_another_repository_token_mode() {
    isolation("token");
}

fn mounts(mode: &'static str) {
    let s = AuthSetup::new(mode).start();
    let admin = Admin::new(&s);
    admin.seed("public/app");
    admin.seed("private/app");
    for who in [Who::Writer, Who::Robot] {
        let n = unique();
        let secret_blob = admin.push_blob("secret/vault", format!("secret {n}").as_bytes());
        let public_blob = admin.push_blob("public/app", format!("public {n}").as_bytes());
        for (query, extra) in [
            // The source exists, holds the blob, but cannot be read.
            (
                format!("mount={secret_blob}&from=secret/vault"),
                Some("repository:secret/vault:pull"),
            ),
            // Automatic: the only repository holding it cannot be read.
            (format!("mount={secret_blob}"), None),
            // A readable source that does not hold the blob.
            (
                format!("mount={secret_blob}&from=public/app"),
                Some("repository:public/app:pull"),
            ),
            // A source that does not exist.
            (
                format!("mount={secret_blob}&from=private/nothing-here"),
                Some("repository:private/nothing-here:pull"),
            ),
        ] {
            let mut scopes = vec!["repository:private/app:pull,push"];
            scopes.extend(extra);
            let auth = authorization(&s, who, &scopes);
            let r = Req::new("POST", format!("/v2/private/app/blobs/uploads/?{query}"))
                .send_with(&s, auth.as_deref());
            assert_eq!(
                r.status,
                202,
                "[{mode}] {who:?} POST ?{query} must not mount: {}",
                r.text()
            );
            let loc = r.header("location").expect("Location").to_owned();
            assert!(loc.starts_with("/v2/private/app/blobs/uploads/"), "{loc}");
            assert_eq!(admin.session_offset(&loc), Some(0));
            assert_eq!(
                admin.blob_status("private/app", &secret_blob),
                404,
                "[{mode}] {who:?} ?{query}: the blob was linked"
            );
            // The upload session it got instead works.
            let data = format!("fallback upload {n} {query}").into_bytes();
            let r = Req::new("PUT", format!("{loc}?digest={}", sha(&data)))
                .body(data)
                .send_with(&s, auth.as_deref());
            assert_eq!(r.status, 201, "{}", r.text());
        }
        // From a readable source with the blob: mounted.
        let auth = authorization(
            &s,
            who,
            &[
                "repository:private/app:pull,push",
                "repository:public/app:pull",
            ],
        );
        let r = Req::new(
            "POST",
            format!("/v2/private/app/blobs/uploads/?mount={public_blob}&from=public/app"),
        )
        .send_with(&s, auth.as_deref());
        assert_eq!(r.status, 201, "[{mode}] {who:?}: {}", r.text());
        assert_eq!(admin.blob_status("private/app", &public_blob), 200);
    }
    // The admin may read the vault: the same mount succeeds.
    let d = admin.push_blob("secret/vault", b"admin mounts this");
    let auth = authorization(
        &s,
        Who::Admin,
        &[
            "repository:private/app:pull,push",
            "repository:secret/vault:pull",
        ],
    );
    let r = Req::new(
        "POST",
        format!("/v2/private/app/blobs/uploads/?mount={d}&from=secret/vault"),
    )
    .send_with(&s, auth.as_deref());
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
fn mount_from_unreadable_repository_never_returns_201_basic_mode() {
    mounts("basic");
}

#[test]
fn mount_from_unreadable_repository_never_returns_201_token_mode() {
    mounts("token");
}

// ---- tokens ----

fn b64url(data: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(data)
}

/// The DER inside the first PEM block labelled `label`.
fn pem_der(pem: &str, label: &str) -> Vec<u8> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).expect("PEM begin") + begin.len();
    let stop = start + pem[start..].find(&end).expect("PEM end");
    let body: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .expect("PEM base64")
}

fn es256_pair(pkcs8: &[u8]) -> ring::signature::EcdsaKeyPair {
    ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .expect("P-256 PKCS#8")
}

/// A key nobody trusts.
fn attacker_pair() -> ring::signature::EcdsaKeyPair {
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .expect("generate");
    es256_pair(pkcs8.as_ref())
}

/// A compact JWT with any header, signed ES256 by `pair`.
fn sign_raw(pair: &ring::signature::EcdsaKeyPair, header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).expect("json")),
        b64url(&serde_json::to_vec(payload).expect("json"))
    );
    let sig = pair
        .sign(&ring::rand::SystemRandom::new(), input.as_bytes())
        .expect("sign");
    format!("{input}.{}", b64url(sig.as_ref()))
}

/// A JWT with any header and an HMAC-SHA256 "signature" keyed by `secret`.
fn sign_hs256(secret: &[u8], header: &Value, payload: &Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).expect("json")),
        b64url(&serde_json::to_vec(payload).expect("json"))
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mac = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(mac.as_ref()))
}

/// Claims like the server's, for `sub` with `actions` on `repo`.
fn good_claims(sub: &str, repo: &str, actions: &[&str]) -> Value {
    let now = now_secs();
    json!({
        "iss": "wharf",
        "sub": sub,
        "aud": "wharf",
        "exp": now + 300,
        "nbf": now - 1,
        "iat": now,
        "jti": format!("test-{}", unique()),
        "access": [{"type": "repository", "name": repo, "actions": actions}],
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

/// The server's key, read as the server wrote it, through wharf-auth.
fn server_signing_key(s: &AuthServer) -> SigningKey {
    SigningKey::from_pem(&s.signing_key_pem()).expect("the server's signing key")
}

fn claims_struct(sub: &str, repo: &str, actions: &[&str], exp: u64, iat: u64) -> Claims {
    Claims {
        iss: "wharf".into(),
        sub: sub.into(),
        aud: Audience::One("wharf".into()),
        exp,
        nbf: Some(iat),
        iat: Some(iat),
        jti: format!("test-{}", unique()),
        access: vec![ResourceAccess {
            kind: "repository".into(),
            name: repo.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }],
        kind: None,
    }
}

#[test]
fn forged_and_defective_tokens_are_refused() {
    let s = AuthSetup::new("token").start();
    let admin = Admin::new(&s);
    admin.seed("private/app");
    admin.seed("public/app");
    let pem = s.signing_key_pem();
    let real = es256_pair(&pem_der(&pem, "PRIVATE KEY"));
    let key = server_signing_key(&s);
    let VerifyKey::Es256(point) = key.verify_key() else {
        panic!("the built-in issuer signs ES256");
    };
    let public_pem = wharf_auth::jwt::es256_public_pem(&point);
    let spki = pem_der(&public_pem, "PUBLIC KEY");
    let attacker = attacker_pair();
    let attacker_point = ring::signature::KeyPair::public_key(&attacker)
        .as_ref()
        .to_vec();
    let jwk = json!({
        "kty": "EC", "crv": "P-256",
        "x": b64url(&attacker_point[1..33]), "y": b64url(&attacker_point[33..65]),
    });
    let es256 = json!({"alg": "ES256", "typ": "JWT"});
    let claims = good_claims("admin", "private/app", &["pull"]);
    let now = now_secs();

    let pull = |token: &str| {
        Req::new("GET", "/v2/private/app/manifests/v1")
            .header("Accept", OCI_MANIFEST)
            .send_with(&s, Some(&format!("Bearer {token}")))
    };

    // Controls: correctly signed tokens work, by ring and by wharf-auth, so
    // every refusal below is about the defect.
    for (what, t) in [
        ("ring-signed", sign_raw(&real, &es256, &claims)),
        (
            "wharf-auth-signed",
            key.sign(&claims_struct(
                "admin",
                "private/app",
                &["pull"],
                now + 300,
                now,
            ))
            .expect("sign"),
        ),
        (
            "exp 10 s ago, within the leeway",
            key.sign(&claims_struct(
                "admin",
                "private/app",
                &["pull"],
                now - 10,
                now - 310,
            ))
            .expect("sign"),
        ),
        (
            "audience list naming the service",
            sign_raw(
                &real,
                &es256,
                &with(claims.clone(), "aud", json!(["other", "wharf"])),
            ),
        ),
    ] {
        let r = pull(&t);
        assert_eq!(r.status, 200, "control {what}: {}", r.text());
    }

    let unsigned = |header: &Value, payload: &Value, sig: &str| {
        format!(
            "{}.{}.{sig}",
            b64url(&serde_json::to_vec(header).expect("json")),
            b64url(&serde_json::to_vec(payload).expect("json"))
        )
    };
    let valid = sign_raw(&real, &es256, &claims);
    let valid_sig = valid.rsplit('.').next().expect("sig").to_owned();
    let mut forged: Vec<(String, String)> = Vec::new();
    let mut add = |what: &str, t: String| forged.push((what.to_owned(), t));
    for alg in ["none", "None", "NONE"] {
        add(
            &format!("alg {alg}, no signature"),
            unsigned(&json!({"alg": alg, "typ": "JWT"}), &claims, ""),
        );
        add(
            &format!("alg {alg}, a valid signature kept"),
            unsigned(&json!({"alg": alg, "typ": "JWT"}), &claims, &valid_sig),
        );
    }
    add(
        "no alg",
        unsigned(&json!({"typ": "JWT"}), &claims, &valid_sig),
    );
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    add(
        "HS256 keyed by the public point",
        sign_hs256(&point, &hs, &claims),
    );
    add(
        "HS256 keyed by the public key DER",
        sign_hs256(&spki, &hs, &claims),
    );
    add(
        "HS256 keyed by the public key PEM",
        sign_hs256(public_pem.as_bytes(), &hs, &claims),
    );
    add(
        "HS256 keyed by the public key PEM, trimmed",
        sign_hs256(public_pem.trim().as_bytes(), &hs, &claims),
    );
    add(
        "RS256 header on an ES256 signature",
        sign_raw(&real, &json!({"alg": "RS256"}), &claims),
    );
    add(
        "ES384 header on an ES256 signature",
        sign_raw(&real, &json!({"alg": "ES384"}), &claims),
    );
    add(
        "embedded jwk of the attacker's key",
        sign_raw(&attacker, &json!({"alg": "ES256", "jwk": jwk}), &claims),
    );
    add(
        "jku to the attacker's key set",
        sign_raw(
            &attacker,
            &json!({"alg": "ES256", "jku": "http://127.0.0.1:1/jwks.json"}),
            &claims,
        ),
    );
    add(
        "x5u to the attacker's certificate",
        sign_raw(
            &attacker,
            &json!({"alg": "ES256", "x5u": "http://127.0.0.1:1/cert.pem"}),
            &claims,
        ),
    );
    add(
        "x5c with the attacker's key",
        sign_raw(
            &attacker,
            &json!({"alg": "ES256", "x5c": [b64url(&attacker_point)]}),
            &claims,
        ),
    );
    add(
        "attacker's key with the server's kid",
        sign_raw(
            &attacker,
            &json!({"alg": "ES256", "kid": claims_of_header(&valid)["kid"]}),
            &claims,
        ),
    );
    add(
        "attacker's key, plain header",
        sign_raw(&attacker, &es256, &claims),
    );
    add(
        "expired an hour ago (real key)",
        key.sign(&claims_struct(
            "admin",
            "private/app",
            &["pull"],
            now - 3600,
            now - 3900,
        ))
        .expect("sign"),
    );
    add(
        "expired 31 s past the leeway (real key)",
        key.sign(&claims_struct(
            "admin",
            "private/app",
            &["pull"],
            now - 62,
            now - 400,
        ))
        .expect("sign"),
    );
    add(
        "not valid for an hour (real key)",
        sign_raw(
            &real,
            &es256,
            &with(claims.clone(), "nbf", json!(now + 3600)),
        ),
    );
    add(
        "issued in an hour (real key)",
        sign_raw(
            &real,
            &es256,
            &with(claims.clone(), "iat", json!(now + 3600)),
        ),
    );
    add(
        "audience of another service (real key)",
        sign_raw(&real, &es256, &with(claims.clone(), "aud", json!("other"))),
    );
    add(
        "audience list without the service (real key)",
        sign_raw(
            &real,
            &es256,
            &with(claims.clone(), "aud", json!(["a", "b"])),
        ),
    );
    add(
        "another issuer (real key)",
        sign_raw(&real, &es256, &with(claims.clone(), "iss", json!("evil"))),
    );
    add(
        "a valid token for another repository",
        s.token(Who::Admin, &["repository:public/app:pull"]),
    );
    add("a valid token with no access", s.token(Who::Admin, &[]));
    // A real token of the reader, payload changed to name private/app and
    // admin; the signature is the server's own, for the old payload.
    let reader_public = s.token(Who::Reader, &["repository:public/app:pull"]);
    let mut payload = claims_of(&reader_public);
    payload["access"][0]["name"] = json!("private/app");
    let parts: Vec<&str> = reader_public.split('.').collect();
    add(
        "tampered payload (repository changed)",
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(&serde_json::to_vec(&payload).expect("json")),
            parts[2]
        ),
    );
    add(
        "signature of another token",
        format!("{}.{}.{valid_sig}", parts[0], parts[1]),
    );
    add(
        "refresh-kind claims (real key)",
        sign_raw(
            &real,
            &es256,
            &with(claims.clone(), "wharf_kind", json!("refresh")),
        ),
    );
    add("garbage", "not.a.token".to_owned());
    add("two parts", "abc.def".to_owned());
    add("empty", String::new());

    let mut wrong = Vec::new();
    for (what, t) in &forged {
        let r = pull(t);
        let challenge = r.header("www-authenticate").unwrap_or("");
        if r.status != 401
            || r.error_code().as_deref() != Some("UNAUTHORIZED")
            || !challenge.starts_with(&format!(
                "Bearer realm=\"http://{}/token\",service=\"wharf\",scope=\"repository:private/app:pull\"",
                s.addr()
            ))
        {
            wrong.push(format!("{what}: {} {challenge:?} {}", r.status, r.text()));
        }
    }
    assert!(
        wrong.is_empty(),
        "forged tokens not refused:\n{}",
        wrong.join("\n")
    );
    eprintln!("{} forged or defective tokens refused", forged.len());

    // A token with pull is not one with push or delete.
    let t = sign_raw(&real, &es256, &claims);
    let r = Req::new("POST", "/v2/private/app/blobs/uploads/")
        .send_with(&s, Some(&format!("Bearer {t}")));
    assert_eq!(r.status, 401, "{}", r.text());
    let r = Req::new("DELETE", "/v2/private/app/manifests/v1")
        .send_with(&s, Some(&format!("Bearer {t}")));
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(admin.manifest_status("private/app", "v1"), 200);
    // Bearer tokens are not accepted at the token endpoint.
    let r = s.token_response(
        Some(&format!("Bearer {t}")),
        &["repository:private/app:pull"],
    );
    assert_eq!(r.status, 401, "{}", r.text());
}

fn claims_of_header(token: &str) -> Value {
    let h = token.split('.').next().expect("header");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("base64url")).expect("JSON")
}

/// `POST /token` with a form.
fn post_token(s: &AuthServer, form: &[(&str, &str)]) -> HttpResp {
    let body: Vec<String> = form
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect();
    raw_request(
        s.addr(),
        "POST",
        "/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.join("&").as_bytes(),
    )
}

#[test]
fn oauth2_password_and_refresh_grants() {
    let s = AuthSetup::new("token").user("leaver").start();
    let admin = Admin::new(&s);
    admin.seed("private/app");
    let scope = "repository:private/app:pull,push,delete";
    let pw = password_of("reader");
    let password_grant = |user: &str, password: &str, offline: bool| {
        let mut form = vec![
            ("grant_type", "password"),
            ("service", "wharf"),
            ("client_id", "wharf-tests"),
            ("username", user),
            ("password", password),
            ("scope", scope),
        ];
        if offline {
            form.push(("access_type", "offline"));
        }
        post_token(&s, &form)
    };
    let tags = |token: &str| {
        Req::new("GET", "/v2/private/app/tags/list").send_with(&s, Some(&format!("Bearer {token}")))
    };

    // Password grant without offline access: an access token only, holding
    // the granted part of the scope (the reader may only pull).
    let r = password_grant("reader", &pw, false);
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = r.json();
    assert!(doc.get("refresh_token").is_none(), "{doc}");
    assert_eq!(doc["expires_in"], 300);
    let access = doc["access_token"].as_str().expect("access_token");
    let c = claims_of(access);
    assert_eq!(c["sub"], "reader");
    assert_eq!(
        c["access"],
        json!([{"type": "repository", "name": "private/app", "actions": ["pull"]}])
    );
    assert_eq!(tags(access).status, 200);

    // With offline access: a refresh token too.
    let r = password_grant("reader", &pw, true);
    assert_eq!(r.status, 200, "{}", r.text());
    let refresh = r.json()["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    // A refresh token is no access token, on the registry or at GET /token.
    let r = tags(&refresh);
    assert_eq!(
        r.status,
        401,
        "refresh token accepted as access: {}",
        r.text()
    );
    let r = s.token_response(
        Some(&format!("Bearer {refresh}")),
        &["repository:private/app:pull"],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    // The refresh grant gives fresh access tokens.
    let refresh_grant = |token: &str| {
        post_token(
            &s,
            &[
                ("grant_type", "refresh_token"),
                ("service", "wharf"),
                ("client_id", "wharf-tests"),
                ("refresh_token", token),
                ("scope", scope),
            ],
        )
    };
    let r = refresh_grant(&refresh);
    assert_eq!(r.status, 200, "{}", r.text());
    let fresh = r.json()["access_token"].as_str().expect("token").to_owned();
    assert_eq!(claims_of(&fresh)["sub"], "reader");
    assert_eq!(tags(&fresh).status, 200);
    // An access token is no refresh token.
    let r = refresh_grant(&fresh);
    assert_eq!(r.status, 401, "{}", r.text());
    // Nor is a forged one.
    let r = refresh_grant(&format!("{}x", &refresh[..refresh.len() - 1]));
    assert_eq!(r.status, 401, "{}", r.text());

    // Wrong passwords, unknown users, bad grants.
    assert_eq!(password_grant("reader", "wrong", true).status, 401);
    assert_eq!(password_grant("nobody", "wrong", true).status, 401);
    let r = post_token(&s, &[("grant_type", "client_credentials")]);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = post_token(
        &s,
        &[
            ("grant_type", "password"),
            ("service", "another"),
            ("username", "reader"),
            ("password", &pw),
        ],
    );
    assert_eq!(r.status, 400, "unknown service: {}", r.text());
    // Anonymous callers get no refresh token even when asking.
    let r = raw_request(
        s.addr(),
        "GET",
        "/token?service=wharf&offline_token=true&scope=repository%3Apublic%2Fapp%3Apull",
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json().get("refresh_token").is_none());

    // A user removed from the htpasswd file can no longer refresh. The file
    // is read at start, so the server is restarted (same data directory,
    // same signing key: the refresh token still verifies).
    let r = password_grant("leaver", &password_of("leaver"), true);
    assert_eq!(r.status, 200, "{}", r.text());
    let leaver_refresh = r.json()["refresh_token"]
        .as_str()
        .expect("refresh_token")
        .to_owned();
    assert_eq!(refresh_grant(&leaver_refresh).status, 200);
    let text = std::fs::read_to_string(&s.htpasswd).expect("htpasswd");
    let kept: String = text
        .lines()
        .filter(|l| !l.starts_with("leaver:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(kept, text);
    write_file(&s.htpasswd, kept);
    let still_running = refresh_grant(&leaver_refresh).status;
    eprintln!("refresh by a removed user before the restart: {still_running}");
    let s = s.restart();
    let r = post_token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("service", "wharf"),
            ("refresh_token", &leaver_refresh),
        ],
    );
    assert_eq!(r.status, 401, "removed user refreshed: {}", r.text());
    let r = post_token(
        &s,
        &[
            ("grant_type", "password"),
            ("service", "wharf"),
            ("username", "leaver"),
            ("password", &password_of("leaver")),
        ],
    );
    assert_eq!(r.status, 401, "{}", r.text());
    // The others' refresh tokens survive the restart.
    let r = post_token(
        &s,
        &[
            ("grant_type", "refresh_token"),
            ("service", "wharf"),
            ("refresh_token", &refresh),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

fn robot_revocation(mode: &'static str) {
    let s = AuthSetup::new(mode).start();
    let admin = Admin::new(&s);
    admin.seed("private/app");
    let robot_basic = s.basic(Who::Robot).expect("robot");
    let tags = |auth: &str| Req::new("GET", "/v2/private/app/tags/list").send_with(&s, Some(auth));
    assert_eq!(tags(&robot_basic).status, 200);
    let listed = ok(&mut s.robot_cmd(&["list"]));
    assert!(
        listed.contains("robot$ci\tactive") && listed.contains("private/**:pull,push"),
        "{listed}"
    );
    let (access, refresh) = if mode == "token" {
        let t = s.token(Who::Robot, &["repository:private/app:pull,push"]);
        assert_eq!(claims_of(&t)["sub"], "robot$ci");
        assert_eq!(tags(&format!("Bearer {t}")).status, 200);
        let r = post_token(
            &s,
            &[
                ("grant_type", "password"),
                ("service", "wharf"),
                ("username", &s.robot.0),
                ("password", &s.robot.1),
                ("access_type", "offline"),
            ],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let refresh = r.json()["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned();
        (Some(t), Some(refresh))
    } else {
        (None, None)
    };

    ok(&mut s.robot_cmd(&["revoke", "ci"]));
    let listed = ok(&mut s.robot_cmd(&["list"]));
    assert!(listed.contains("robot$ci\trevoked"), "{listed}");

    // At once, without a restart.
    let r = tags(&robot_basic);
    assert_eq!(
        r.status,
        401,
        "[{mode}] revoked robot (Basic): {}",
        r.text()
    );
    let old_tokens = access.clone().zip(refresh.clone());
    if let (Some(access), Some(refresh)) = (access, refresh) {
        let r = s.token_response(Some(&robot_basic), &["repository:private/app:pull"]);
        assert_eq!(r.status, 401, "revoked robot got a token: {}", r.text());
        let r = post_token(
            &s,
            &[
                ("grant_type", "refresh_token"),
                ("service", "wharf"),
                ("refresh_token", &refresh),
            ],
        );
        assert_eq!(r.status, 401, "revoked robot refreshed: {}", r.text());
        let r = tags(&format!("Bearer {access}"));
        assert_eq!(
            r.status,
            401,
            "a revoked robot's access token issued before the revocation still works: {}",
            r.text()
        );
    }
    // A new robot of the same name has a new secret; the old one stays dead.
    let out = ok(&mut s.robot_cmd(&["add", "ci", "--scope", "private/**:pull"]));
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("password:"))
        .expect("password")
        .trim()
        .to_owned();
    assert_ne!(secret, s.robot.1);
    assert_eq!(tags(&basic_auth("robot$ci", &secret)).status, 200);
    assert_eq!(tags(&robot_basic).status, 401);
    if mode == "token" {
        // Tokens of the revoked robot do not come back to life with the
        // name.
        let (access, refresh) = old_tokens.expect("tokens");
        let r = tags(&format!("Bearer {access}"));
        assert_eq!(r.status, 401, "old robot's access token: {}", r.text());
        let r = post_token(
            &s,
            &[
                ("grant_type", "refresh_token"),
                ("service", "wharf"),
                ("refresh_token", &refresh),
            ],
        );
        assert_eq!(r.status, 401, "old robot's refresh token: {}", r.text());
        // The new robot's tokens work.
        let t = s.token_response(
            Some(&basic_auth("robot$ci", &secret)),
            &["repository:private/app:pull"],
        );
        assert_eq!(t.status, 200, "{}", t.text());
        let t = t.json()["token"].as_str().expect("token").to_owned();
        assert_eq!(tags(&format!("Bearer {t}")).status, 200);
    }
    // Its scope is the new one: pull only.
    let r = Req::new("POST", "/v2/private/app/blobs/uploads/")
        .send_with(&s, Some(&basic_auth("robot$ci", &secret)));
    assert_eq!(r.status, 403, "{}", r.text());
}

#[test]
fn revoked_robot_is_refused_at_once_basic_mode() {
    robot_revocation("basic");
}

#[test]
fn revoked_robot_is_refused_at_once_token_mode() {
    robot_revocation("token");
}

#[test]
fn token_expiring_mid_upload_then_renewed_continues_the_session() {
    let s = AuthSetup::new("token").auth("token_ttl_secs = 2").start();
    let admin = Admin::new(&s);
    let scope = "repository:private/app:pull,push";
    let token = s.token(Who::Writer, &[scope]);
    let c = claims_of(&token);
    let iat = c["iat"].as_u64().expect("iat");
    assert_eq!(c["exp"].as_u64(), Some(iat + 2), "token_ttl_secs: {c}");
    let bearer = |t: &str| format!("Bearer {t}");

    let chunks: Vec<Vec<u8>> = (0..3u8)
        .map(|i| (0..100_000u32).map(|j| (j as u8) ^ i).collect())
        .collect();
    let all: Vec<u8> = chunks.concat();
    let r = Req::new("POST", "/v2/private/app/blobs/uploads/").send_with(&s, Some(&bearer(&token)));
    assert_eq!(r.status, 202, "{}", r.text());
    let loc = r.header("location").expect("Location").to_owned();
    let patch = |t: &str, offset: usize, data: &[u8]| {
        Req::new("PATCH", loc.clone())
            .header("Content-Type", "application/octet-stream")
            .header(
                "Content-Range",
                &format!("{offset}-{}", offset + data.len() - 1),
            )
            .body(data.to_vec())
            .send_with(&s, Some(&bearer(t)))
    };
    let r = patch(&token, 0, &chunks[0]);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-99999"));

    // The token expires (forged with the server's own key and the same
    // claims, exp past the 30 s leeway, rather than sleeping that long).
    let now = now_secs();
    let mut expired = claims_struct(
        "writer",
        "private/app",
        &["pull", "push"],
        now - 40,
        now - 42,
    );
    expired.jti = c["jti"].as_str().unwrap_or("").to_owned();
    let expired = server_signing_key(&s).sign(&expired).expect("sign");
    let r = patch(&expired, 100_000, &chunks[1]);
    assert_eq!(r.status, 401, "expired token accepted: {}", r.text());
    let challenge = r.header("www-authenticate").expect("challenge").to_owned();
    assert!(
        challenge.contains(&format!("scope=\"{scope}\"")),
        "{challenge}"
    );
    assert_eq!(admin.session_offset(&loc), Some(100_000), "session kept");

    // The client renews the token from the challenge and goes on with the
    // same session.
    let fresh = dance(&s, Who::Writer, &challenge, &[]);
    let r = patch(&fresh, 100_000, &chunks[1]);
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-199999"));
    let d = sha(&all);
    let r = Req::new("PUT", format!("{loc}?digest={d}"))
        .header("Content-Type", "application/octet-stream")
        .header("Content-Range", "200000-299999")
        .body(chunks[2].clone())
        .send_with(&s, Some(&bearer(&fresh)));
    assert_eq!(r.status, 201, "{}", r.text());
    let r =
        Req::new("GET", format!("/v2/private/app/blobs/{d}")).send_with(&s, Some(&bearer(&fresh)));
    assert_eq!(r.status, 200);
    assert!(r.body == all, "the blob came back different");
}

// ---- brute-force resistance ----

/// How a login attempt is made.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// Basic credentials on a registry endpoint.
    Registry,
    /// `GET /token` with Basic credentials.
    TokenGet,
    /// `POST /token` with the password grant.
    TokenPost,
}

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, last]))
}

/// One login as `user` from `from`; returns the status and error code.
fn attempt(
    s: &AuthServer,
    via: Via,
    from: Option<IpAddr>,
    user: &str,
    password: &str,
) -> (u16, String) {
    let r = match via {
        Via::Registry => raw_request_from(
            from,
            s.addr(),
            "GET",
            "/v2/",
            &[("Authorization", &basic_auth(user, password))],
            b"",
        ),
        Via::TokenGet => raw_request_from(
            from,
            s.addr(),
            "GET",
            "/token?service=wharf&scope=repository%3Aprivate%2Fapp%3Apull",
            &[("Authorization", &basic_auth(user, password))],
            b"",
        ),
        Via::TokenPost => {
            let body = format!(
                "grant_type=password&service=wharf&username={}&password={}",
                query_escape(user),
                query_escape(password)
            );
            raw_request_from(
                from,
                s.addr(),
                "POST",
                "/token",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                body.as_bytes(),
            )
        }
    };
    (r.status, r.error_code().unwrap_or_default())
}

fn rate_limiting(mode: &'static str, via: Via) {
    let s = AuthSetup::new(mode)
        .auth("max_failures = 3")
        .auth("failure_window_secs = 300")
        .user("carol")
        .start();
    Admin::new(&s).seed("private/app");
    let what = format!("[{mode} {via:?}]");
    let good = |user: &str| password_of(user);
    let (robot, robot_pw) = s.robot.clone();
    let ok_status = 200;

    // Per user: three failures for `reader`, each from another address (so
    // no address reaches the limit), then `reader` is refused everywhere,
    // also with the right password, while others are not.
    for last in 2..=4 {
        let (st, code) = attempt(&s, via, ip(last), "reader", "wrong");
        assert_eq!(st, 401, "{what} failure {} from .{last}: {code}", last - 1);
    }
    for (user, pw) in [("reader", "wrong"), ("reader", good("reader").as_str())] {
        let (st, code) = attempt(&s, via, ip(5), user, pw);
        assert_eq!(st, 429, "{what} {user} after 3 failures");
        assert_eq!(code, "TOOMANYREQUESTS", "{what}");
    }
    assert_eq!(
        attempt(&s, via, ip(5), "writer", &good("writer")).0,
        ok_status,
        "{what} another user from the same address"
    );

    // Per address: three failures from .6, for three different users (one
    // unknown), then everyone from .6 is refused, robots included, and the
    // same users from .7 are not.
    for user in ["writer", "admin", "nobody"] {
        let (st, _) = attempt(&s, via, ip(6), user, "wrong");
        assert_eq!(st, 401, "{what} {user} from .6");
    }
    for (user, pw) in [
        ("carol", good("carol")),
        ("admin", good("admin")),
        (robot.as_str(), robot_pw.clone()),
    ] {
        let (st, code) = attempt(&s, via, ip(6), user, &pw);
        assert_eq!(
            (st, code.as_str()),
            (429, "TOOMANYREQUESTS"),
            "{what} {user} from an address over the limit"
        );
        assert_eq!(
            attempt(&s, via, ip(7), user, &pw).0,
            ok_status,
            "{what} {user} from another address"
        );
    }

    // A success resets the user's count: two failures, a success, two more
    // failures, and the right password still works.
    for (last, pw) in [
        (10, "wrong"),
        (11, "wrong"),
        (12, good("carol").as_str()),
        (13, "wrong"),
        (14, "wrong"),
    ] {
        let (st, _) = attempt(&s, via, ip(last), "carol", pw);
        assert_eq!(
            st,
            if pw == "wrong" { 401 } else { 200 },
            "{what} carol from .{last}"
        );
    }
    assert_eq!(
        attempt(&s, via, ip(15), "carol", &good("carol")).0,
        200,
        "{what}"
    );
}

#[test]
fn failed_logins_are_rate_limited_basic_mode_registry() {
    rate_limiting("basic", Via::Registry);
}

#[test]
fn failed_logins_are_rate_limited_token_mode_registry() {
    rate_limiting("token", Via::Registry);
}

#[test]
fn failed_logins_are_rate_limited_token_get() {
    rate_limiting("token", Via::TokenGet);
}

#[test]
fn failed_logins_are_rate_limited_token_post() {
    rate_limiting("token", Via::TokenPost);
}

#[test]
fn rate_limit_ends_with_its_window() {
    let s = AuthSetup::new("basic")
        .auth("max_failures = 2")
        .auth("failure_window_secs = 2")
        .start();
    Admin::new(&s).seed("private/app");
    for _ in 0..2 {
        assert_eq!(attempt(&s, Via::Registry, ip(20), "reader", "wrong").0, 401);
    }
    let pw = password_of("reader");
    assert_eq!(attempt(&s, Via::Registry, ip(20), "reader", &pw).0, 429);
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(attempt(&s, Via::Registry, ip(20), "reader", &pw).0, 200);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn failed_login_takes_as_long_for_unknown_users() {
    // Cost 5 (about 2-3 ms a check here) so that the hash dominates the
    // request; the limiter is raised out of the way.
    let s = AuthSetup::new("basic")
        .cost(5)
        .auth("max_failures = 100000")
        .start();
    let time = |user: &str| {
        let start = Instant::now();
        let r = raw_request(
            s.addr(),
            "GET",
            "/v2/",
            &[("Authorization", &basic_auth(user, "not the password"))],
            b"",
        );
        let t = start.elapsed();
        assert_eq!(r.status, 401);
        t
    };
    // Warm up (the dummy hash may be made on first use).
    time("warm-up-unknown");
    time("reader");
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for i in 0..15 {
        known.push(time(["reader", "writer", "admin"][i % 3]));
        unknown.push(time(&format!("nobody-{i}")));
    }
    let (k, u) = (median(known), median(unknown));
    eprintln!("failed login, median of 15: known user {k:?}, unknown user {u:?}");
    assert!(
        k > Duration::from_millis(1) && u > Duration::from_millis(1),
        "known {k:?}, unknown {u:?}: a bcrypt check should take over 1 ms"
    );
    let ratio = k.as_secs_f64().max(u.as_secs_f64()) / k.as_secs_f64().min(u.as_secs_f64());
    assert!(
        ratio < 3.0,
        "a failed login takes {u:?} for an unknown user and {k:?} for a known one (x{ratio:.1}): \
         timing tells which users exist"
    );
}

// ---- configuration errors ----

/// Configurations that must not start, with what the message must say.
fn bad_configs(dir: &std::path::Path) -> Vec<(&'static str, String, &'static str)> {
    let htpasswd = dir.join("htpasswd");
    let hash = {
        let text = std::fs::read_to_string(&htpasswd).expect("htpasswd");
        text.lines()
            .next()
            .and_then(|l| l.split_once(':'))
            .map(|(_, h)| h.to_owned())
            .expect("entry")
    };
    let head = |mode: &str, file: &std::path::Path| {
        format!(
            "[auth]\nmode = \"{mode}\"\nhtpasswd = \"{}\"\n",
            file.display()
        )
    };
    let md5 = dir.join("htpasswd-md5");
    write_file(
        &md5,
        format!("alice:{hash}\nbob:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/\n"),
    );
    let sha1 = dir.join("htpasswd-sha1");
    write_file(&sha1, "carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n");
    let plain = dir.join("htpasswd-plain");
    write_file(&plain, "dave:hunter2\n");
    let push_rule = "[[auth.rules]]\nrepositories = [\"**\"]\nsubjects = [\"user:alice\"]\nactions = [\"pull\", \"push\"]\n";
    vec![
        (
            "no rules",
            format!("{}rules = []\n", head("basic", &htpasswd)),
            "no rules grant anything",
        ),
        (
            "no rules (token mode)",
            head("token", &htpasswd),
            "no rules grant anything",
        ),
        (
            "push granted to nobody",
            format!(
                "{}[[auth.rules]]\nrepositories = [\"**\"]\nsubjects = [\"authenticated\"]\nactions = [\"pull\", \"delete\"]\n",
                head("basic", &htpasswd)
            ),
            "no rule grants push",
        ),
        (
            "unknown user in a rule",
            format!(
                "{}{push_rule}[[auth.rules]]\nrepositories = [\"x/**\"]\nsubjects = [\"user:mallory\"]\nactions = [\"pull\"]\n",
                head("basic", &htpasswd)
            ),
            "unknown user \"mallory\"",
        ),
        (
            "unknown user in a group",
            format!(
                "{}[auth.groups]\nteam = [\"alice\", \"mallory\"]\n{push_rule}",
                head("basic", &htpasswd)
            ),
            "unknown user \"mallory\"",
        ),
        (
            "unknown group",
            format!(
                "{}{push_rule}[[auth.rules]]\nrepositories = [\"x/**\"]\nsubjects = [\"group:ghosts\"]\nactions = [\"pull\"]\n",
                head("basic", &htpasswd)
            ),
            "unknown group \"ghosts\"",
        ),
        (
            "anonymous granted push",
            format!(
                "{}{push_rule}[[auth.rules]]\nrepositories = [\"public/**\"]\nsubjects = [\"anonymous\"]\nactions = [\"pull\", \"push\"]\n",
                head("basic", &htpasswd)
            ),
            "anonymous may only be granted pull",
        ),
        (
            "an Apache MD5 htpasswd entry",
            format!("{}{push_rule}", head("basic", &md5)),
            "only bcrypt is accepted",
        ),
        (
            "a SHA-1 htpasswd entry",
            format!("{}{push_rule}", head("basic", &sha1)),
            "only bcrypt is accepted",
        ),
        (
            "a plain-text htpasswd entry",
            format!("{}{push_rule}", head("token", &plain)),
            "only bcrypt is accepted",
        ),
        (
            "a missing htpasswd file",
            format!("{}{push_rule}", head("basic", &dir.join("nope"))),
            "nope",
        ),
        (
            "a bad repository glob",
            format!(
                "{}[[auth.rules]]\nrepositories = [\"Team//**\"]\nsubjects = [\"user:alice\"]\nactions = [\"push\"]\n",
                head("basic", &htpasswd)
            ),
            "Team//**",
        ),
        (
            "an unknown action",
            format!(
                "{}[[auth.rules]]\nrepositories = [\"**\"]\nsubjects = [\"user:alice\"]\nactions = [\"push\", \"admin\"]\n",
                head("basic", &htpasswd)
            ),
            "admin",
        ),
        (
            "a token lifetime of 0",
            format!(
                "{}token_ttl_secs = 0\n{push_rule}",
                head("token", &htpasswd)
            ),
            "token_ttl_secs",
        ),
    ]
}

fn bad_config_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    common::ok_with_input(
        wharf_cmd(60)
            .args(["user", "add", "alice", "--cost", "4", "--htpasswd"])
            .arg(dir.path().join("htpasswd")),
        "alice-password\n",
    );
    dir
}

#[test]
fn auth_config_errors_stop_the_server_with_a_clear_message() {
    let dir = bad_config_dir();
    // The good base configuration does start (so the failures below are
    // the errors, not the setup).
    let good = dir.path().join("good.toml");
    write_file(
        &good,
        format!(
            "[auth]\nmode = \"basic\"\nhtpasswd = \"{}\"\n[[auth.rules]]\nrepositories = [\"**\"]\nsubjects = [\"user:alice\"]\nactions = [\"pull\", \"push\"]\n",
            dir.path().join("htpasswd").display()
        ),
    );
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(&good)
        .arg("--data-dir")
        .arg(dir.path().join("data-good"))
        .env("WHARF_LOG__LEVEL", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("read");
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening on"), "good config: {line:?}");

    for (what, toml, needle) in bad_configs(dir.path()) {
        let file = dir.path().join("bad.toml");
        write_file(&file, &toml);
        let out = fails(
            wharf_cmd(30)
                .args(["serve", "--listen", "127.0.0.1:0", "-c"])
                .arg(&file)
                .arg("--data-dir")
                .arg(dir.path().join("data")),
        );
        assert!(
            out.contains(needle) && !out.contains("listening on"),
            "{what}: `wharf serve` said:\n{out}\n(expected {needle:?})"
        );
    }
}

#[test]
fn config_check_reports_auth_errors() {
    let dir = bad_config_dir();
    let mut wrong = Vec::new();
    for (what, toml, needle) in bad_configs(dir.path()) {
        let file = dir.path().join("bad.toml");
        write_file(&file, &toml);
        let out = common::run(wharf_cmd(30).args(["config", "check"]).arg(&file));
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() || !said.contains(needle) {
            wrong.push(format!(
                "{what}: exit {}, {:?}",
                out.status,
                said.lines().next().unwrap_or("")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "`wharf config check` accepted configurations `wharf serve` refuses:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn empty_basic_credentials_are_anonymous() {
    // skopeo and podman (containers/image) answer a Basic challenge without
    // credentials by sending `Basic Og==` (":"): that is an anonymous
    // request, not a failed login that counts towards the rate limit.
    for mode in ["basic", "token"] {
        let s = AuthSetup::new(mode).auth("max_failures = 2").start();
        let admin = Admin::new(&s);
        admin.seed("public/app");
        admin.seed("private/app");
        let empty = basic_auth("", "");
        assert_eq!(empty, "Basic Og==");
        for _ in 0..4 {
            let r = Req::new("GET", "/v2/public/app/manifests/v1")
                .header("Accept", OCI_MANIFEST)
                .send_with(&s, Some(&empty));
            assert_eq!(r.status, 200, "[{mode}] {}", r.text());
            let r = Req::new("GET", "/v2/private/app/manifests/v1")
                .header("Accept", OCI_MANIFEST)
                .send_with(&s, Some(&empty));
            assert_eq!(r.status, 401, "[{mode}] {}", r.text());
            assert_eq!(r.error_code().as_deref(), Some("UNAUTHORIZED"));
        }
        if mode == "token" {
            // The token endpoint treats it as anonymous too.
            let r = s.token_response(Some(&empty), &["repository:public/app:pull"]);
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                claims_of(r.json()["token"].as_str().expect("token"))["sub"],
                ""
            );
        }
        // Nothing was counted against this address.
        let r = Req::new("GET", "/v2/private/app/tags/list")
            .send_with(&s, s.basic(Who::Reader).as_deref());
        assert_eq!(r.status, 200, "[{mode}] {}", r.text());
        // Empty user with a password, or a user with an empty password, is a
        // failed login.
        for bad in [basic_auth("", "x"), basic_auth("reader", "")] {
            let r = Req::new("GET", "/v2/").send_with(&s, Some(&bad));
            assert_eq!(r.status, 401, "[{mode}] {}", r.text());
        }
        let r = Req::new("GET", "/v2/").send_with(&s, s.basic(Who::Reader).as_deref());
        assert_eq!(r.status, 429, "[{mode}] two failures reach the limit");
    }
}
