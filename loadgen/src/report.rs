//! The end-of-run report: a percentile table per phase and request kind, error counts
//! with the first example of each, loadgen's own cost, and the same as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::histo::{Counters, ErrorKind, Histos, Metric};

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub p99_99: f64,
    pub max: f64,
}

impl Row {
    pub fn of(h: &Histogram<u64>) -> Self {
        let us = |nanos: u64| nanos as f64 / 1e3;
        Row {
            count: h.len(),
            mean: h.mean() / 1e3,
            p50: us(h.value_at_quantile(0.5)),
            p90: us(h.value_at_quantile(0.9)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            p99_99: us(h.value_at_quantile(0.9999)),
            max: us(h.max()),
        }
    }
}

/// Rows for every metric that has data, keyed by metric name, in [`Metric::ALL`] order.
pub fn rows(histos: &Histos) -> Vec<(&'static str, Row)> {
    Metric::ALL
        .into_iter()
        .filter(|&m| !histos.get(m).is_empty())
        .map(|m| (m.name(), Row::of(histos.get(m))))
        .collect()
}

/// A latency in µs as a short human string.
pub fn human_us(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else {
        format!("{us:.0}µs")
    }
}

/// The percentile table.
pub fn table(rows: &[(&str, Row)]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "count", "p50", "p90", "p99", "p99.9", "p99.99", "max"
    );
    for (name, r) in rows {
        let _ = writeln!(
            out,
            "{:<14} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            name,
            r.count,
            human_us(r.p50),
            human_us(r.p90),
            human_us(r.p99),
            human_us(r.p99_9),
            human_us(r.p99_99),
            human_us(r.max)
        );
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub server: String,
    pub domain: String,
    pub tls: String,
    pub sasl: String,
    /// `--proxy`: the header version and the synthetic sources.
    pub proxy: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sessions {
    pub requested: u64,
    pub started: u64,
    pub established: u64,
    /// Sessions whose TLS state was reduced to their traffic keys once logged in
    /// (TLS 1.3 without a -PLUS mechanism).
    pub tls_compacted: u64,
    pub ramp_seconds: f64,
    /// Established sessions per second of ramp.
    pub setup_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    /// Target rate of the last (or only) request phase.
    pub rate: f64,
    pub due: u64,
    pub sent: u64,
    pub ok: u64,
    pub late_replies: u64,
    /// Correct replies per second of request phase.
    pub achieved_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Errors {
    pub total: u64,
    /// Errors per login attempt plus request due.
    pub ratio: f64,
    pub max_ratio: f64,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// The first occurrence of each kind, with detail.
    pub examples: BTreeMap<&'static str, String>,
}

impl Errors {
    pub fn new(
        counters: &Counters,
        requested_sessions: u64,
        examples: &[(ErrorKind, String)],
        max_ratio: f64,
    ) -> Self {
        let total = counters.total_errors();
        let operations = (requested_sessions + counters.requests_due).max(1);
        Errors {
            total,
            ratio: total as f64 / operations as f64,
            max_ratio,
            by_kind: ErrorKind::ALL
                .into_iter()
                .filter(|&k| counters.error(k) > 0)
                .map(|k| (k.name(), counters.error(k)))
                .collect(),
            examples: examples
                .iter()
                .map(|(k, detail)| (k.name(), detail.clone()))
                .collect(),
        }
    }
}

/// What loadgen itself cost: the numbers that tell whether it, not the server, was the
/// bottleneck.
#[derive(Debug, Clone, Serialize)]
pub struct Cost {
    pub threads: usize,
    /// CPU seconds (user + system) during the login ramp.
    pub ramp_cpu_seconds: f64,
    pub cpu_per_login_us: f64,
    /// CPU seconds during request phases.
    pub request_cpu_seconds: f64,
    pub cpu_per_request_us: f64,
    /// CPU used over wall time and threads during requests (1.0 = every thread busy).
    pub request_cpu_utilization: f64,
    pub rss_before_ramp_bytes: u64,
    pub rss_after_ramp_bytes: u64,
    /// RSS growth over the whole ramp per established session, with the histograms and
    /// buffers that grow early in any run.
    pub rss_per_session_bytes: f64,
    /// RSS growth per session over the second half of the ramp: what one more idle
    /// session costs. None when the ramp was too short or too small to split.
    pub rss_per_idle_session_bytes: Option<f64>,
    /// Open-file limit after raising it.
    pub nofile_limit: u64,
}

/// One step of `--saturate`.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate: f64,
    pub achieved_rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
    pub error_ratio: f64,
    pub loadgen_cpu_utilization: f64,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Saturation {
    pub slo_p99_us: f64,
    /// The highest rate that passed, if any did.
    pub max_rate: Option<f64>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub pass: bool,
    /// Why the run failed, when it did.
    pub failure: Option<String>,
    pub target: Target,
    pub sessions: Sessions,
    pub requests: Requests,
    pub errors: Errors,
    /// Latency percentiles in µs by metric (requests: from intended send time).
    pub latency_us: BTreeMap<&'static str, Row>,
    pub loadgen: Cost,
    /// Warnings that qualify the numbers (loadgen was busy, sends ran late).
    pub warnings: Vec<String>,
    pub saturation: Option<Saturation>,
}

impl Summary {
    /// The human-readable report.
    pub fn render(&self, histos: &Histos) -> String {
        let mut out = String::new();
        let t = &self.target;
        let _ = writeln!(
            out,
            "target {} domain {} tls {} sasl {}",
            t.server, t.domain, t.tls, t.sasl
        );
        if let Some(proxy) = &t.proxy {
            let _ = writeln!(out, "PROXY header {proxy}");
        }
        let s = &self.sessions;
        let _ = writeln!(
            out,
            "sessions {}/{} established in {:.2}s ({:.0}/s)",
            s.established, s.requested, s.ramp_seconds, s.setup_rate
        );
        let r = &self.requests;
        let _ = writeln!(
            out,
            "requests {} due, {} sent, {} ok ({:.0}/s of {:.0}/s target), {} late replies",
            r.due, r.sent, r.ok, r.achieved_rate, r.rate, r.late_replies
        );
        let _ = writeln!(
            out,
            "\nlatency (requests from intended send time; service-time from actual send):"
        );
        out.push_str(&table(&rows(histos)));
        let e = &self.errors;
        let _ = writeln!(
            out,
            "\nerrors {} (ratio {:.6}, allowed {})",
            e.total, e.ratio, e.max_ratio
        );
        for (kind, count) in &e.by_kind {
            let example = e.examples.get(kind).map(String::as_str).unwrap_or_default();
            let _ = writeln!(out, "  {kind:<16} {count:>10}  e.g. {example}");
        }
        let c = &self.loadgen;
        let _ = writeln!(
            out,
            "\nloadgen cost: {} threads, {:.1}µs CPU per login, {:.2}µs CPU per request, {:.0}% CPU while sending, {}",
            c.threads,
            c.cpu_per_login_us,
            c.cpu_per_request_us,
            c.request_cpu_utilization * 100.0,
            match c.rss_per_idle_session_bytes {
                Some(idle) => format!(
                    "{idle:.0} bytes RSS per idle session ({:.0} averaged over the ramp)",
                    c.rss_per_session_bytes
                ),
                None => format!(
                    "{:.0} bytes RSS per session (averaged over the ramp, histograms and buffers included)",
                    c.rss_per_session_bytes
                ),
            }
        );
        if let Some(sat) = &self.saturation {
            let _ = writeln!(
                out,
                "\nsaturation search (p99 bound {}):",
                human_us(sat.slo_p99_us)
            );
            let _ = writeln!(
                out,
                "{:>12} {:>12} {:>9} {:>9} {:>9} {:>10} {:>6}  result",
                "rate", "achieved", "p50", "p99", "max", "errors", "cpu"
            );
            for step in &sat.steps {
                let _ = writeln!(
                    out,
                    "{:>12.0} {:>12.0} {:>9} {:>9} {:>9} {:>10.6} {:>5.0}%  {}",
                    step.rate,
                    step.achieved_rate,
                    human_us(step.p50_us),
                    human_us(step.p99_us),
                    human_us(step.max_us),
                    step.error_ratio,
                    step.loadgen_cpu_utilization * 100.0,
                    if step.pass { "pass" } else { "fail" }
                );
            }
            match sat.max_rate {
                Some(rate) => {
                    let _ = writeln!(out, "highest rate within bound: {rate:.0}/s");
                }
                None => {
                    let _ = writeln!(out, "no rate stayed within the bound");
                }
            }
        }
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
        match &self.failure {
            None => out.push_str("\nPASS\n"),
            Some(why) => {
                let _ = writeln!(out, "\nFAIL: {why}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_skip_empty_metrics_and_use_microseconds() {
        let mut histos = Histos::default();
        for v in 1..=1000u64 {
            histos.record(Metric::Ping, v * 1000);
        }
        let rows = rows(&histos);
        assert_eq!(rows.len(), 1);
        let (name, row) = &rows[0];
        assert_eq!(*name, "ping");
        assert_eq!(row.count, 1000);
        assert!((row.p50 - 500.0).abs() < 1.0, "{}", row.p50);
        assert!((row.max - 1000.0).abs() < 1.0, "{}", row.max);
        let text = table(&rows);
        assert!(text.contains("p99.99"));
        assert!(text.contains("ping"));
    }

    #[test]
    fn human_units() {
        assert_eq!(human_us(12.4), "12µs");
        assert_eq!(human_us(1500.0), "1.50ms");
        assert_eq!(human_us(2_500_000.0), "2.50s");
    }
}
