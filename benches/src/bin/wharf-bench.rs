//! `wharf-bench`: end-to-end load generator for any OCI registry.
//!
//! ```text
//! # one registry
//! wharf-bench http://127.0.0.1:5000
//! # two (or more) registries, interleaved round by round, with ratios
//! wharf-bench --compare http://127.0.0.1:5000 http://127.0.0.1:5001 --names wharf,distribution
//! # a few scenarios, small sizes
//! wharf-bench http://127.0.0.1:5000 --quick --scenario push-small,manifest-get --json out.json
//! ```
//!
//! The table goes to standard output, progress to standard error.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use wharf_benches::bench::{self, Config, Scenario, Target};

/// End-to-end load generator for OCI registries (Wharf, Distribution, Zot, ...).
#[derive(Parser, Debug)]
#[command(name = "wharf-bench", version)]
struct Args {
    /// Registry base URLs (http://host:port). Two or more: compare mode.
    /// References may join a comparison: static+http://host:port[/dir] (a
    /// static file server: manifest scenarios fetch its small file,
    /// pull-large its large file) and file:///dir (large pushes become a
    /// file write plus fdatasync there).
    urls: Vec<String>,
    /// Compare registries: the same scenarios on each, interleaved round by
    /// round, with ratios to the first.
    #[arg(long, num_args = 2.., value_name = "URL")]
    compare: Vec<String>,
    /// Labels of the targets, comma-separated (default: host:port).
    #[arg(long, value_delimiter = ',')]
    names: Vec<String>,
    /// Process ids of the servers, comma-separated in target order, when
    /// they run on this machine: adds their CPU time per operation, cores
    /// busy and peak RSS to every scenario (0 skips a target).
    #[arg(long, value_delimiter = ',')]
    pids: Vec<u32>,
    /// Scenarios a target sits out, as NAME:SCENARIO, comma-separated
    /// (e.g. ferro:push-large-mono): its cells stay empty.
    #[arg(long, value_delimiter = ',')]
    skip: Vec<String>,
    /// Scenarios, comma-separated: push-large-mono, push-large-chunked,
    /// pull-large, push-small, manifest-get, manifest-head, tag-push,
    /// tag-list, mixed (all by default), and http-get (GET of the URL).
    #[arg(short, long, value_delimiter = ',')]
    scenario: Vec<String>,
    /// Small sizes and short durations (a smoke run of a few seconds).
    #[arg(long)]
    quick: bool,
    /// Rounds per scenario and target (default 2 when comparing, else 1).
    #[arg(long)]
    rounds: Option<usize>,
    /// Large blob size (e.g. 1GiB, 64MiB).
    #[arg(long, value_parser = parse_size)]
    size: Option<u64>,
    /// Chunk size of push-large-chunked.
    #[arg(long, value_parser = parse_size)]
    chunk_size: Option<u64>,
    /// Downloads of the large blob per round.
    #[arg(long)]
    pull_count: Option<usize>,
    /// Small blobs per round of push-small.
    #[arg(long)]
    small_count: Option<usize>,
    /// Size of a small blob.
    #[arg(long, value_parser = parse_size)]
    small_size: Option<u64>,
    /// Concurrent clients (push-small, tag-push, mixed).
    #[arg(long)]
    clients: Option<usize>,
    /// Connections of the rate scenarios (manifest-get/head, http-get).
    #[arg(long)]
    connections: Option<usize>,
    /// Seconds of each rate scenario per target (split across rounds).
    #[arg(long)]
    duration: Option<f64>,
    /// Manifest pushes per round of tag-push.
    #[arg(long)]
    tag_count: Option<usize>,
    /// Tags in the tag-list repository.
    #[arg(long)]
    list_tags: Option<usize>,
    /// Page size of tag-list.
    #[arg(long)]
    page_size: Option<usize>,
    /// Page requests of tag-list per target.
    #[arg(long)]
    list_iters: Option<usize>,
    /// Full listings of tag-list per target.
    #[arg(long)]
    full_list_iters: Option<usize>,
    /// Repositories of the mixed workload.
    #[arg(long)]
    mixed_repos: Option<usize>,
    /// Layers per image of the mixed workload.
    #[arg(long)]
    mixed_layers: Option<usize>,
    /// Layer size of the mixed workload.
    #[arg(long, value_parser = parse_size)]
    mixed_layer_size: Option<u64>,
    /// Image pulls per image push in the mixed workload.
    #[arg(long)]
    mixed_pulls_per_push: Option<usize>,
    /// Images prepared per round of the mixed workload.
    #[arg(long)]
    mixed_images: Option<usize>,
    /// Size the manifest of manifest-get/head is padded to.
    #[arg(long, value_parser = parse_size)]
    manifest_size: Option<u64>,
    /// Small file of static+http:// references (manifest scenarios).
    #[arg(long)]
    static_small: Option<String>,
    /// Large file of static+http:// references (pull-large).
    #[arg(long)]
    static_large: Option<String>,
    /// Longest round of push-small and tag-push, in seconds: a slower
    /// target stops early and is rated on what it did (default 20).
    #[arg(long)]
    max_round: Option<f64>,
    /// Longest the tag-list repository may take to fill, in seconds
    /// (default 45); a slower target fails tag-list.
    #[arg(long)]
    max_setup: Option<f64>,
    /// Per-request timeout in seconds.
    #[arg(long)]
    timeout: Option<f64>,
    /// Repository name prefix (default: wharf-bench-<random>).
    #[arg(long)]
    repo_prefix: Option<String>,
    /// User name (HTTP Basic, or for the token service on a Bearer challenge).
    #[arg(short, long, env = "WHARF_BENCH_USER")]
    user: Option<String>,
    /// Password.
    #[arg(short, long, env = "WHARF_BENCH_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<std::path::PathBuf>,
    /// Client worker threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// No progress output.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?} is not a size"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        u => return Err(format!("unknown unit {u:?} (use KiB, MiB, GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_owned())
}

fn config(a: &Args, comparing: bool) -> Result<Config, String> {
    let mut c = if a.quick {
        Config::quick()
    } else {
        Config::default()
    };
    if !a.scenario.is_empty() {
        c.scenarios = Vec::new();
        for s in &a.scenario {
            if s == "all" {
                c.scenarios.extend(Scenario::ALL);
                continue;
            }
            c.scenarios
                .push(Scenario::parse(s).ok_or_else(|| format!("unknown scenario {s:?}"))?);
        }
    }
    c.rounds = a.rounds.unwrap_or(if comparing { 2 } else { 1 }).max(1);
    macro_rules! set {
        ($($field:ident = $arg:expr),* $(,)?) => { $( if let Some(v) = $arg { c.$field = v; } )* };
    }
    set!(
        size = a.size,
        chunk = a.chunk_size,
        pull_count = a.pull_count,
        small_count = a.small_count,
        small_size = a.small_size,
        clients = a.clients,
        connections = a.connections,
        tag_count = a.tag_count,
        list_tags = a.list_tags,
        page_size = a.page_size,
        list_iters = a.list_iters,
        full_list_iters = a.full_list_iters,
        mixed_repos = a.mixed_repos,
        mixed_layers = a.mixed_layers,
        mixed_layer_size = a.mixed_layer_size,
        mixed_pulls_per_push = a.mixed_pulls_per_push,
        mixed_images = a.mixed_images,
        repo_prefix = a.repo_prefix.clone(),
        static_small = a.static_small.clone(),
        static_large = a.static_large.clone(),
    );
    if let Some(d) = a.duration {
        c.duration = Duration::try_from_secs_f64(d).map_err(|e| format!("--duration: {e}"))?;
    }
    if let Some(t) = a.max_round {
        c.max_round = Duration::try_from_secs_f64(t).map_err(|e| format!("--max-round: {e}"))?;
    }
    if let Some(t) = a.max_setup {
        c.max_setup = Duration::try_from_secs_f64(t).map_err(|e| format!("--max-setup: {e}"))?;
    }
    if let Some(t) = a.timeout {
        c.timeout = Duration::try_from_secs_f64(t).map_err(|e| format!("--timeout: {e}"))?;
    }
    if let Some(m) = a.manifest_size {
        c.manifest_size = usize::try_from(m).map_err(|e| e.to_string())?;
    }
    c.quiet = a.quiet;
    Ok(c)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let urls: Vec<String> = args.urls.iter().chain(&args.compare).cloned().collect();
    if urls.is_empty() {
        eprintln!("wharf-bench: give a registry URL (or --compare URL URL); see --help");
        return ExitCode::from(2);
    }
    let cfg = match config(&args, urls.len() > 1) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("wharf-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let credentials = args
        .user
        .clone()
        .map(|u| (u, args.password.clone().unwrap_or_default()));
    let names: Vec<String> = (0..urls.len())
        .map(|i| args.names.get(i).cloned().unwrap_or_default())
        .collect();
    for entry in &args.skip {
        let name = entry.split_once(':').map_or("", |(n, _)| n);
        if !args.names.is_empty() && !names.iter().any(|n| n == name) {
            eprintln!("wharf-bench: --skip {entry:?}: no target is named {name:?}");
            return ExitCode::from(2);
        }
    }
    let mut targets = Vec::new();
    for (i, url) in urls.iter().enumerate() {
        let name = args.names.get(i).cloned().unwrap_or_else(|| {
            url.trim_start_matches("static+")
                .trim_start_matches("http://")
                .trim_start_matches("file://")
                .trim_end_matches('/')
                .to_owned()
        });
        let mut skip = Vec::new();
        for entry in &args.skip {
            let parsed = entry
                .split_once(':')
                .and_then(|(n, s)| Some((n, Scenario::parse(s)?)));
            match parsed {
                Some((n, sc)) if n == name => skip.push(sc),
                Some(_) => {}
                None => {
                    eprintln!("wharf-bench: --skip {entry:?}: expected NAME:SCENARIO");
                    return ExitCode::from(2);
                }
            }
        }
        match Target::new(&name, url, credentials.clone()) {
            Ok(t) => targets.push(match args.pids.get(i) {
                Some(&pid) if pid > 0 => t.with_pid(pid).skipping(&skip),
                _ => t.skipping(&skip),
            }),
            Err(e) => {
                eprintln!("wharf-bench: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("wharf-bench: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = rt.block_on(bench::run(&cfg, targets));
    print!("{}", report.table());
    println!(
        "(run {:.1} s; prefix {})",
        report.wall_secs, report.repo_prefix
    );
    if let Some(path) = &args.json {
        let text = match serde_json::to_string_pretty(&report) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("wharf-bench: JSON: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("wharf-bench: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let failed = report
        .scenarios
        .iter()
        .any(|s| !s.first_error.is_empty() || s.errors.values().any(|&e| e > 0));
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("123"), Ok(123));
        assert!(parse_size("x").is_err());
    }
}
