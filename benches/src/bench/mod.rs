//! `wharf-bench`: an end-to-end load generator for any OCI registry.
//!
//! Scenarios (see [`Scenario`]) run against one target, or against several
//! interleaved round by round (`A B`, then `B A`, ...) so that a noisy,
//! shared machine slows every target alike and the ratios stay fair.
//! [`run`] returns a [`Report`], printed as a table and saved as JSON by the
//! `wharf-bench` binary.

mod client;
mod data;
mod hist;
mod report;
mod scenarios;

use std::sync::Arc;
use std::time::Duration;

pub use client::Target;
pub use report::{Report, Row, ScenarioReport, TargetInfo};

/// Errors of the load generator.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// One measured workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// One large blob (`size`) pushed with `POST` then one `PUT` of the
    /// whole body; throughput from the `POST` to the `201`.
    PushLargeMono,
    /// The same in `chunk`-sized `PATCH`es and a closing `PUT`.
    PushLargeChunked,
    /// `GET` of a large blob (`pull_count` times per round), body discarded.
    PullLarge,
    /// `small_count` small blobs (`POST` + `PUT` each) by `clients` clients.
    PushSmall,
    /// `GET` of a manifest by tag on `connections` connections for
    /// `duration`: rate and latency percentiles.
    ManifestGet,
    /// The same with `HEAD`.
    ManifestHead,
    /// `tag_count` manifest `PUT`s by distinct tags, `clients` clients.
    TagPush,
    /// Tag listing of a `list_tags`-tag repository: one page of `page_size`
    /// at a random position, and the whole list (following `Link`).
    TagList,
    /// Image pushes (config, layers, manifest; `HEAD` checks first) and
    /// pulls (manifest by tag, then each blob) over many repositories,
    /// `clients` clients for `duration`.
    Mixed,
    /// Plain `GET` of the target URL itself on `connections` connections
    /// for `duration` (to measure a static server with the same client).
    HttpGet,
}

impl Scenario {
    /// Every registry scenario, in run order (not [`Scenario::HttpGet`]).
    pub const ALL: [Scenario; 9] = [
        Scenario::PushLargeMono,
        Scenario::PushLargeChunked,
        Scenario::PullLarge,
        Scenario::PushSmall,
        Scenario::ManifestGet,
        Scenario::ManifestHead,
        Scenario::TagPush,
        Scenario::TagList,
        Scenario::Mixed,
    ];

    /// The scenario's command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::PushLargeMono => "push-large-mono",
            Scenario::PushLargeChunked => "push-large-chunked",
            Scenario::PullLarge => "pull-large",
            Scenario::PushSmall => "push-small",
            Scenario::ManifestGet => "manifest-get",
            Scenario::ManifestHead => "manifest-head",
            Scenario::TagPush => "tag-push",
            Scenario::TagList => "tag-list",
            Scenario::Mixed => "mixed",
            Scenario::HttpGet => "http-get",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL
            .into_iter()
            .chain([Scenario::HttpGet])
            .find(|sc| sc.name() == s)
    }
}

/// Sizes, counts and durations of a run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Config {
    /// Scenarios to run, in order.
    pub scenarios: Vec<Scenario>,
    /// Rounds per scenario and target; targets alternate between rounds.
    pub rounds: usize,
    /// Large blob size (bytes).
    pub size: u64,
    /// Chunk size of the chunked push (bytes).
    pub chunk: u64,
    /// Downloads of the large blob per round.
    pub pull_count: usize,
    /// Small blobs pushed per round.
    pub small_count: usize,
    /// Size of a small blob (bytes).
    pub small_size: u64,
    /// Concurrent clients of the push, tag and mixed scenarios.
    pub clients: usize,
    /// Connections of the request-rate scenarios.
    pub connections: usize,
    /// Total measuring time of each rate scenario per target (split
    /// across rounds).
    pub duration: Duration,
    /// Size the test manifest is padded to (bytes).
    pub manifest_size: usize,
    /// Manifest pushes per round of `tag-push`.
    pub tag_count: usize,
    /// Tags in the `tag-list` repository.
    pub list_tags: usize,
    /// Page size of the `tag-list` page measurement.
    pub page_size: usize,
    /// Page requests per target (split across rounds).
    pub list_iters: usize,
    /// Full-list requests per target (split across rounds).
    pub full_list_iters: usize,
    /// Repositories of the mixed workload.
    pub mixed_repos: usize,
    /// Layers per image in the mixed workload.
    pub mixed_layers: usize,
    /// Layer size in the mixed workload (bytes).
    pub mixed_layer_size: u64,
    /// Image pulls per image push in the mixed workload.
    pub mixed_pulls_per_push: usize,
    /// Images prepared (hashed in advance) per round of the mixed workload;
    /// the round ends early if they run out.
    pub mixed_images: usize,
    /// File a `static+http://` reference target serves for the manifest
    /// scenarios (relative to its URL).
    pub static_small: String,
    /// File a `static+http://` reference target serves for `pull-large`.
    pub static_large: String,
    /// Longest a round of a count scenario (`push-small`, `tag-push`) may
    /// take: a slow target stops early and its rate is what it did in that
    /// time, so one slow peer cannot stretch the whole run.
    pub max_round: Duration,
    /// Longest the `tag-list` repository may take to fill; a target that
    /// cannot push `list_tags` tags in that time fails the scenario.
    pub max_setup: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Repository name prefix; a random one per run when empty.
    pub repo_prefix: String,
    /// No progress line on standard error.
    pub quiet: bool,
}

impl Default for Config {
    /// The full run: the sizes and counts of the performance targets.
    fn default() -> Self {
        Config {
            scenarios: Scenario::ALL.to_vec(),
            rounds: 1,
            size: 1 << 30,
            chunk: 16 << 20,
            pull_count: 3,
            small_count: 2000,
            small_size: 4096,
            clients: 16,
            connections: 32,
            duration: Duration::from_secs(10),
            manifest_size: 1200,
            tag_count: 5000,
            list_tags: 10_000,
            page_size: 100,
            list_iters: 400,
            full_list_iters: 20,
            mixed_repos: 20,
            mixed_layers: 2,
            mixed_layer_size: 256 << 10,
            mixed_pulls_per_push: 4,
            mixed_images: 1500,
            static_small: "m.json".to_owned(),
            static_large: "big.bin".to_owned(),
            max_round: Duration::from_secs(20),
            max_setup: Duration::from_secs(45),
            timeout: Duration::from_secs(600),
            repo_prefix: String::new(),
            quiet: false,
        }
    }
}

impl Config {
    /// A smoke-test preset: small sizes, a few seconds in all.
    pub fn quick() -> Self {
        Config {
            size: 8 << 20,
            chunk: 1 << 20,
            pull_count: 2,
            small_count: 100,
            clients: 4,
            connections: 4,
            duration: Duration::from_millis(600),
            tag_count: 100,
            list_tags: 250,
            page_size: 100,
            list_iters: 20,
            full_list_iters: 4,
            mixed_repos: 4,
            mixed_layer_size: 16 << 10,
            mixed_images: 200,
            max_round: Duration::from_secs(10),
            max_setup: Duration::from_secs(30),
            timeout: Duration::from_secs(60),
            ..Config::default()
        }
    }
}

/// Runs the configured scenarios against `targets` (several: interleaved
/// comparison, ratios relative to the first).
pub async fn run(config: &Config, targets: Vec<Target>) -> Report {
    let targets: Vec<Arc<Target>> = targets
        .into_iter()
        .map(|t| Arc::new(t.with_timeout(config.timeout)))
        .collect();
    scenarios::run_all(config, targets).await
}
