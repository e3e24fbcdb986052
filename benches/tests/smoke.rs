//! `wharf-bench --quick` against an in-process registry (memory backend
//! served by hyper), so the load generator keeps working: every scenario
//! runs in compare mode (the same registry twice) and must finish with
//! the expected counts and no errors. A second registry requires a token
//! (Basic credentials, then a `Bearer` challenge) to check the token dance.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use wharf_benches::bench::{self, Config, Scenario, Target};
use wharf_registry::{Access, Authorizer, Decision, Registry, RequestContext};
use wharf_storage::{MemoryBackend, Store};

const TOKEN: &str = "Bearer smoke-token";

/// Accepts only the token; challenges everything else towards `/token`.
struct TokenOnly {
    realm: String,
}

#[async_trait]
impl Authorizer for TokenOnly {
    async fn authorize(&self, request: &RequestContext<'_>, accesses: &[Access]) -> Decision {
        let auth = request.headers.get(http::header::AUTHORIZATION);
        if auth.is_some_and(|v| v.as_bytes() == TOKEN.as_bytes()) {
            return Decision::Allow;
        }
        let scope = accesses
            .iter()
            .find_map(|a| a.repository.as_ref())
            .map(|r| format!(",scope=\"repository:{r}:pull\""))
            .unwrap_or_default();
        Decision::Challenge(format!(
            "Bearer realm=\"{}\",service=\"smoke\"{scope}",
            self.realm
        ))
    }
}

/// Serves a registry on 127.0.0.1:0 (with a `/token` endpoint giving the
/// token to `user:secret` when `with_token`); returns its URL.
async fn serve(with_token: bool) -> String {
    serve_with(with_token, u64::MAX).await
}

/// [`serve`], refusing (`413`) any single `PUT` body larger than `max_put`
/// bytes, as some registries do.
async fn serve_with(with_token: bool, max_put: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut builder = Registry::builder(Store::new(MemoryBackend::new())).delete_enabled(true);
    if with_token {
        builder = builder.authorizer(TokenOnly {
            realm: format!("http://{addr}/token"),
        });
    }
    let registry = Arc::new(builder.build());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let registry = registry.clone();
                    async move {
                        let declared = req
                            .headers()
                            .get(http::header::CONTENT_LENGTH)
                            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
                        if req.method() == http::Method::PUT
                            && declared.is_some_and(|n| n > max_put)
                        {
                            let mut resp = Response::new(
                                Full::new(Bytes::from_static(b"{}"))
                                    .map_err(|e: Infallible| -> std::io::Error { match e {} })
                                    .boxed_unsync(),
                            );
                            *resp.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
                            return Ok::<_, Infallible>(resp);
                        }
                        if req.uri().path() == "/token" {
                            // base64("user:secret")
                            let ok = req
                                .headers()
                                .get(http::header::AUTHORIZATION)
                                .is_some_and(|v| v.as_bytes() == b"Basic dXNlcjpzZWNyZXQ=");
                            let (status, body) = if ok {
                                (StatusCode::OK, r#"{"token":"smoke-token"}"#)
                            } else {
                                (StatusCode::UNAUTHORIZED, "{}")
                            };
                            let mut resp = Response::new(
                                Full::new(Bytes::from_static(body.as_bytes()))
                                    .map_err(|e: Infallible| -> std::io::Error { match e {} })
                                    .boxed_unsync(),
                            );
                            *resp.status_mut() = status;
                            return Ok::<_, Infallible>(resp);
                        }
                        let resp = registry.handle(req).await;
                        Ok(resp.map(BodyExt::boxed_unsync))
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

fn quick() -> Config {
    let mut cfg = Config::quick();
    cfg.quiet = true;
    cfg.rounds = 2;
    cfg.duration = Duration::from_millis(400);
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_in_compare_mode() {
    let url = serve(false).await;
    let cfg = quick();
    // The registry runs in this process: watch it as target "a"'s server.
    let targets = vec![
        Target::new("a", &url, None)
            .unwrap()
            .with_pid(std::process::id()),
        Target::new("b", &url, None).unwrap(),
    ];
    let report = bench::run(&cfg, targets).await;
    println!("{}", report.table());
    assert_eq!(report.scenarios.len(), Scenario::ALL.len());
    for s in &report.scenarios {
        assert!(s.first_error.is_empty(), "{}: {:?}", s.name, s.first_error);
        for t in ["a", "b"] {
            assert_eq!(s.errors[t], 0, "{} on {t}", s.name);
            assert!(s.ops[t] > 0, "{} on {t}: nothing measured", s.name);
        }
        for row in &s.rows {
            if row.metric.starts_with("server ") {
                assert!(row.values["a"].is_some(), "{} {}", s.name, row.metric);
                assert!(row.values["b"].is_none(), "{} {}", s.name, row.metric);
                continue;
            }
            assert!(
                row.values.values().all(Option::is_some),
                "{} {}",
                s.name,
                row.metric
            );
            assert!(row.ratios["b"].is_some(), "{} {}", s.name, row.metric);
        }
    }
    let find = |name: &str| report.scenarios.iter().find(|s| s.name == name).unwrap();
    let value = |name: &str, metric: &str| {
        find(name)
            .rows
            .iter()
            .find(|r| r.metric == metric)
            .unwrap_or_else(|| panic!("{name} {metric}"))
            .values["a"]
            .unwrap()
    };
    // Counts are per round: two rounds each.
    assert_eq!(find("push-small").ops["a"], 2 * cfg.small_count as u64);
    assert_eq!(find("tag-push").ops["a"], 2 * cfg.tag_count as u64);
    assert_eq!(find("push-large-mono").ops["a"], 2);
    assert_eq!(find("pull-large").ops["a"], 2 * cfg.pull_count as u64);
    assert_eq!(value("tag-list", "full tags listed"), cfg.list_tags as f64);
    assert_eq!(
        value("tag-list", "page tags per page"),
        cfg.page_size as f64
    );
    assert!(value("push-large-mono", "MB/s") > 0.0);
    assert!(value("manifest-get", "p99 ms") >= value("manifest-get", "p50 ms"));
    assert!(value("mixed", "pull images/s") > 0.0);
    assert!(value("push-small", "server CPU ms/op") > 0.0);
    assert!(value("mixed", "server peak RSS MiB") > 1.0);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["targets"][1]["name"], "b");
    assert!(json["scenarios"][0]["rows"][0]["ratios"]["b"].is_number());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_dance() {
    let url = serve(true).await;
    let mut cfg = quick();
    cfg.rounds = 1;
    cfg.scenarios = vec![
        Scenario::PushSmall,
        Scenario::ManifestGet,
        Scenario::TagList,
    ];
    let creds = Some(("user".to_owned(), "secret".to_owned()));
    let report = bench::run(&cfg, vec![Target::new("auth", &url, creds).unwrap()]).await;
    for s in &report.scenarios {
        assert!(s.first_error.is_empty(), "{}: {:?}", s.name, s.first_error);
        assert_eq!(s.errors["auth"], 0, "{}", s.name);
    }
    // Without credentials every request is refused.
    cfg.scenarios = vec![Scenario::PushSmall];
    let report = bench::run(&cfg, vec![Target::new("anon", &url, None).unwrap()]).await;
    assert!(!report.scenarios[0].first_error.is_empty() || report.scenarios[0].errors["anon"] > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_get_of_any_url() {
    let url = serve(false).await;
    let mut cfg = quick();
    cfg.rounds = 1;
    cfg.scenarios = vec![Scenario::HttpGet];
    let target = Target::new("base", &format!("{url}/v2/"), None).unwrap();
    let report = bench::run(&cfg, vec![target]).await;
    let s = &report.scenarios[0];
    assert_eq!(s.errors["base"], 0, "{:?}", s.first_error);
    assert!(s.ops["base"] > 10);
}

/// A static file server: `/big.bin` is 3 MiB, anything else 1200 bytes.
async fn serve_static() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let len = if req.uri().path().ends_with("/big.bin") {
                        3 << 20
                    } else {
                        1200
                    };
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(vec![b'x'; len]))))
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_join_a_comparison() {
    let registry = serve(false).await;
    let files = serve_static().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick();
    cfg.scenarios = vec![
        Scenario::PushLargeMono,
        Scenario::PullLarge,
        Scenario::ManifestGet,
        Scenario::PushSmall,
    ];
    let targets = vec![
        Target::new("registry", &registry, None).unwrap(),
        Target::new("static", &format!("static+{files}"), None).unwrap(),
        Target::new("disk", &format!("file://{}", dir.path().display()), None).unwrap(),
    ];
    let report = bench::run(&cfg, targets).await;
    println!("{}", report.table());
    let get = |scenario: &str, metric: &str, target: &str| {
        let s = report
            .scenarios
            .iter()
            .find(|s| s.name == scenario)
            .unwrap();
        assert!(s.first_error.is_empty(), "{scenario}: {:?}", s.first_error);
        s.rows.iter().find(|r| r.metric == metric).unwrap().values[target]
    };
    assert!(get("push-large-mono", "MB/s", "disk").unwrap() > 0.0);
    assert!(get("push-large-mono", "MB/s", "static").is_none());
    assert!(get("pull-large", "MB/s", "static").unwrap() > 0.0);
    assert!(get("pull-large", "MB/s", "disk").is_none());
    assert!(get("manifest-get", "req/s", "static").unwrap() > 0.0);
    assert!(get("push-small", "blobs/s", "static").is_none());
    assert!(get("push-small", "blobs/s", "registry").unwrap() > 0.0);
    // The disk reference leaves nothing behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_large_after_a_refused_single_request_push() {
    // Refuses single-request bodies over 2 MiB; 1 MiB chunks pass.
    let url = serve_with(false, 2 << 20).await;
    let mut cfg = quick();
    cfg.rounds = 1;
    cfg.scenarios = vec![Scenario::PushLargeMono, Scenario::PullLarge];
    let report = bench::run(&cfg, vec![Target::new("strict", &url, None).unwrap()]).await;
    // The refusal arrives as the 413, or as the connection closing under
    // the body still being written, whichever the client sees first.
    let mono = &report.scenarios[0];
    let refusal = &mono.first_error["strict"];
    assert!(
        refusal.contains("413") || refusal.contains("writing a body"),
        "{refusal}"
    );
    // The blob to download was pushed in chunks instead.
    let pull = &report.scenarios[1];
    assert!(pull.first_error.is_empty(), "{:?}", pull.first_error);
    assert_eq!(pull.ops["strict"], cfg.pull_count as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_caps_bound_slow_targets() {
    let url = serve(false).await;
    let mut cfg = quick();
    cfg.rounds = 1;
    cfg.scenarios = vec![Scenario::PushSmall, Scenario::TagPush, Scenario::TagList];
    // A cap already over: count scenarios stop before any work, and the
    // tag-list repository cannot fill, which fails that scenario alone.
    cfg.max_round = Duration::ZERO;
    cfg.max_setup = Duration::ZERO;
    let report = bench::run(&cfg, vec![Target::new("r", &url, None).unwrap()]).await;
    for s in &report.scenarios[..2] {
        assert!(s.first_error.is_empty(), "{}: {:?}", s.name, s.first_error);
        assert_eq!(s.ops.get("r").copied().unwrap_or(0), 0, "{}", s.name);
    }
    let list = &report.scenarios[2];
    assert!(
        list.first_error["r"].contains(&format!("of {} tags pushed", cfg.list_tags)),
        "{:?}",
        list.first_error
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_can_sit_out_scenarios() {
    let url = serve(false).await;
    let mut cfg = quick();
    cfg.rounds = 1;
    cfg.scenarios = vec![Scenario::PushSmall, Scenario::ManifestHead];
    let targets = vec![
        Target::new("a", &url, None).unwrap(),
        Target::new("b", &url, None)
            .unwrap()
            .skipping(&[Scenario::PushSmall]),
    ];
    let report = bench::run(&cfg, targets).await;
    let small = &report.scenarios[0];
    assert!(small.first_error.is_empty(), "{:?}", small.first_error);
    assert_eq!(small.ops["a"], cfg.small_count as u64);
    assert!(!small.ops.contains_key("b"));
    let rate = small.rows.iter().find(|r| r.metric == "blobs/s").unwrap();
    assert!(rate.values["a"].is_some() && rate.values["b"].is_none());
    // Only the listed scenario is left out.
    assert!(report.scenarios[1].ops["b"] > 0);
}
