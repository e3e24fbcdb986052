//! Results: per-round measurements merged per target, turned into rows of
//! metrics with one value per target and ratios to the first target;
//! printed as a table or saved as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::hist::Hist;

/// How a measurement is reported.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    /// Bytes moved per second (`MB/s`), and seconds per operation.
    Throughput,
    /// Operations per second (the unit names the operation), latency
    /// percentiles, and `MB/s` when bytes moved.
    Rate(&'static str),
    /// Latency percentiles of sequential requests.
    Latency,
    /// The server process: CPU time per operation, cores busy.
    Server,
}

/// What one round (or all rounds, merged) of a scenario measured.
pub(crate) struct Measurement {
    pub(crate) key: &'static str,
    pub(crate) kind: Kind,
    pub(crate) ops: u64,
    pub(crate) bytes: u64,
    pub(crate) elapsed: Duration,
    pub(crate) hist: Hist,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// Server CPU seconds ([`Kind::Server`]).
    pub(crate) cpu_secs: f64,
    /// Scenario-specific values (`tags returned`, ...): name, value.
    pub(crate) extras: Vec<(&'static str, f64)>,
}

impl Measurement {
    pub(crate) fn new(key: &'static str, kind: Kind) -> Self {
        Measurement {
            key,
            kind,
            ops: 0,
            bytes: 0,
            elapsed: Duration::ZERO,
            hist: Hist::default(),
            errors: 0,
            first_error: None,
            cpu_secs: 0.0,
            extras: Vec::new(),
        }
    }

    pub(crate) fn fail(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }

    /// Adds another round's (or worker's) numbers; elapsed times add up.
    pub(crate) fn merge(&mut self, o: &Measurement) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.elapsed += o.elapsed;
        self.hist.merge(&o.hist);
        self.errors += o.errors;
        self.cpu_secs += o.cpu_secs;
        if self.first_error.is_none() {
            self.first_error.clone_from(&o.first_error);
        }
        for (k, v) in &o.extras {
            match self.extras.iter_mut().find(|(kk, _)| kk == k) {
                Some(e) => e.1 = *v,
                None => self.extras.push((k, *v)),
            }
        }
    }

    /// The metrics: (name, unit, higher is better, value).
    pub(crate) fn metrics(&self) -> Vec<(String, &'static str, bool, Option<f64>)> {
        let name = |m: &str| {
            if self.key.is_empty() {
                m.to_owned()
            } else {
                format!("{} {m}", self.key)
            }
        };
        let secs = self.elapsed.as_secs_f64();
        let per_sec = |n: u64| (secs > 0.0 && n > 0).then(|| n as f64 / secs);
        let mut out = Vec::new();
        match self.kind {
            Kind::Throughput => {
                out.push((
                    name("MB/s"),
                    "MB/s",
                    true,
                    per_sec(self.bytes).map(|b| b / 1e6),
                ));
                out.push((
                    name("seconds"),
                    "s",
                    false,
                    (self.ops > 0).then(|| secs / self.ops as f64),
                ));
            }
            Kind::Rate(unit) => {
                out.push((name(unit), unit, true, per_sec(self.ops)));
                out.push((name("p50 ms"), "ms", false, self.hist.quantile_ms(0.50)));
                out.push((name("p99 ms"), "ms", false, self.hist.quantile_ms(0.99)));
                out.push((name("p99.9 ms"), "ms", false, self.hist.quantile_ms(0.999)));
                if self.bytes > 0 {
                    out.push((
                        name("MB/s"),
                        "MB/s",
                        true,
                        per_sec(self.bytes).map(|b| b / 1e6),
                    ));
                }
            }
            Kind::Latency => {
                out.push((name("p50 ms"), "ms", false, self.hist.quantile_ms(0.50)));
                out.push((name("p99 ms"), "ms", false, self.hist.quantile_ms(0.99)));
                out.push((name("mean ms"), "ms", false, self.hist.mean_ms()));
            }
            Kind::Server => {
                out.push((
                    name("CPU ms/op"),
                    "ms",
                    false,
                    (self.ops > 0).then(|| self.cpu_secs * 1e3 / self.ops as f64),
                ));
                out.push((
                    name("cores busy"),
                    "cores",
                    false,
                    (secs > 0.0).then(|| self.cpu_secs / secs),
                ));
            }
        }
        for (k, v) in &self.extras {
            let hib = !matches!(self.kind, Kind::Server);
            out.push((name(k), "", hib, Some(*v)));
        }
        out
    }
}

/// A target of the run.
#[derive(Debug, Clone, Serialize)]
pub struct TargetInfo {
    /// Label.
    pub name: String,
    /// URL.
    pub url: String,
}

/// One metric of a scenario, a value per target.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Metric name (`MB/s`, `p99 ms`, `page p50 ms`, ...).
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Whether a larger value is better.
    pub higher_is_better: bool,
    /// Value per target name (`None`: the scenario failed there).
    pub values: BTreeMap<String, Option<f64>>,
    /// First target's value divided by each other target's.
    pub ratios: BTreeMap<String, Option<f64>>,
}

/// A scenario's results on every target.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Metrics.
    pub rows: Vec<Row>,
    /// Failed requests per target.
    pub errors: BTreeMap<String, u64>,
    /// The first error message per target, if any (failed setup included).
    pub first_error: BTreeMap<String, String>,
    /// Operations measured per target.
    pub ops: BTreeMap<String, u64>,
    /// Seconds measured per target (all rounds).
    pub measured_secs: BTreeMap<String, f64>,
}

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Tool name and version.
    pub tool: String,
    /// Repository prefix used (unique per run).
    pub repo_prefix: String,
    /// Unix time the run started.
    pub started_unix: u64,
    /// Wall-clock seconds of the whole run.
    pub wall_secs: f64,
    /// Targets, the first being the reference of ratios.
    pub targets: Vec<TargetInfo>,
    /// The configuration.
    pub config: super::Config,
    /// Results per scenario.
    pub scenarios: Vec<ScenarioReport>,
}

impl ScenarioReport {
    pub(crate) fn build(
        name: &str,
        targets: &[TargetInfo],
        results: &[Result<Vec<Measurement>, String>],
    ) -> ScenarioReport {
        let mut rows: Vec<Row> = Vec::new();
        let mut errors = BTreeMap::new();
        let mut first_error = BTreeMap::new();
        let mut ops = BTreeMap::new();
        let mut measured = BTreeMap::new();
        for (t, r) in targets.iter().zip(results) {
            match r {
                Ok(ms) => {
                    let mut errs = 0;
                    for m in ms {
                        errs += m.errors;
                        if !matches!(m.kind, Kind::Server) {
                            *ops.entry(t.name.clone()).or_insert(0) += m.ops;
                            *measured.entry(t.name.clone()).or_insert(0.0) +=
                                m.elapsed.as_secs_f64();
                        }
                        if let Some(e) = &m.first_error {
                            first_error
                                .entry(t.name.clone())
                                .or_insert_with(|| e.clone());
                        }
                        for (metric, unit, hib, v) in m.metrics() {
                            let row = match rows.iter_mut().position(|r| r.metric == metric) {
                                Some(i) => &mut rows[i],
                                None => {
                                    rows.push(Row {
                                        metric: metric.clone(),
                                        unit: unit.to_owned(),
                                        higher_is_better: hib,
                                        values: targets
                                            .iter()
                                            .map(|t| (t.name.clone(), None))
                                            .collect(),
                                        ratios: BTreeMap::new(),
                                    });
                                    rows.last_mut().expect("just pushed")
                                }
                            };
                            row.values.insert(t.name.clone(), v);
                        }
                    }
                    errors.insert(t.name.clone(), errs);
                }
                Err(e) => {
                    first_error.insert(t.name.clone(), e.clone());
                }
            }
        }
        if let Some(first) = targets.first() {
            for row in &mut rows {
                let a = row.values.get(&first.name).copied().flatten();
                for t in &targets[1..] {
                    let b = row.values.get(&t.name).copied().flatten();
                    let ratio = match (a, b) {
                        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
                        _ => None,
                    };
                    row.ratios.insert(t.name.clone(), ratio);
                }
            }
        }
        ScenarioReport {
            name: name.to_owned(),
            rows,
            errors,
            first_error,
            ops,
            measured_secs: measured,
        }
    }
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v.abs() >= 1000.0 => format!("{v:.0}"),
        Some(v) if v.abs() >= 100.0 => format!("{v:.1}"),
        Some(v) if v.abs() >= 1.0 => format!("{v:.2}"),
        Some(v) => format!("{v:.3}"),
    }
}

impl Report {
    /// A human-readable table: scenario, metric, one column per target,
    /// then the first target's value divided by each other's.
    pub fn table(&self) -> String {
        let mut header = vec!["scenario".to_owned(), "metric".to_owned()];
        header.extend(self.targets.iter().map(|t| t.name.clone()));
        if let Some(first) = self.targets.first() {
            header.extend(
                self.targets[1..]
                    .iter()
                    .map(|t| format!("{}/{}", first.name, t.name)),
            );
        }
        let mut lines: Vec<Vec<String>> = vec![header];
        for s in &self.scenarios {
            let mut first_line = true;
            let mut push = |metric: String, cells: Vec<String>| {
                let mut l = vec![
                    if first_line {
                        s.name.clone()
                    } else {
                        String::new()
                    },
                    metric,
                ];
                l.extend(cells);
                lines.push(l);
                first_line = false;
            };
            for row in &s.rows {
                let mut cells: Vec<String> = self
                    .targets
                    .iter()
                    .map(|t| fmt_value(row.values.get(&t.name).copied().flatten()))
                    .collect();
                cells.extend(self.targets.iter().skip(1).map(|t| {
                    match row.ratios.get(&t.name).copied().flatten() {
                        Some(r) => format!("{r:.2}x"),
                        None => "-".to_owned(),
                    }
                }));
                push(row.metric.clone(), cells);
            }
            if s.errors.values().any(|&e| e > 0) || !s.first_error.is_empty() {
                let cells = self
                    .targets
                    .iter()
                    .map(
                        |t| match (s.errors.get(&t.name), s.first_error.get(&t.name)) {
                            (Some(e), _) => e.to_string(),
                            (None, Some(_)) => "failed".to_owned(),
                            (None, None) => "-".to_owned(),
                        },
                    )
                    .collect();
                push("errors".to_owned(), cells);
            }
        }
        let widths: Vec<usize> = (0..lines[0].len())
            .map(|i| {
                lines
                    .iter()
                    .map(|l| l.get(i).map_or(0, String::len))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for (n, l) in lines.iter().enumerate() {
            for (i, cell) in l.iter().enumerate() {
                if i < 2 {
                    let _ = write!(out, "{cell:<w$}  ", w = widths[i]);
                } else {
                    let _ = write!(out, "{cell:>w$}  ", w = widths[i]);
                }
            }
            out = out.trim_end().to_owned();
            out.push('\n');
            if n == 0 {
                let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                out.push_str(&"-".repeat(total));
                out.push('\n');
            }
        }
        for s in &self.scenarios {
            for (t, e) in &s.first_error {
                let _ = writeln!(out, "{} on {t}: {e}", s.name);
            }
        }
        out
    }
}
