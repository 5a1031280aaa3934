//! Prints the last `cargo bench -p benches --bench tokenizers` run as a markdown table,
//! ready to paste into benches/README.md.
//!
//! Usage: `cargo run -p benches --release --bin bench-table [CRITERION_DIR]`. The
//! directory defaults to `$CARGO_TARGET_DIR/criterion`, else the workspace's
//! `target/criterion`. Sizes and stanza counts come from regenerating the corpora, so
//! they always match what was measured. Times are criterion's median estimate.

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use benches::{CEILINGS, FEEDS, PARSERS};

/// Median nanoseconds per iteration of one benchmark, if it was run.
fn median_ns(dir: &Path, group: &str, function: &str, feed: &str) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(feed)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["median"]["point_estimate"].as_f64()
}

fn criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::args_os().nth(1) {
        return dir.into();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(target) => PathBuf::from(target).join("criterion"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/criterion"),
    }
}

/// Stanza rates span four orders of magnitude: keep three significant digits.
fn per_second(rate: f64) -> String {
    match rate {
        r if r >= 1e6 => format!("{:.2} M", r / 1e6),
        r if r >= 1e3 => format!("{:.0} k", r / 1e3),
        r => format!("{r:.0}"),
    }
}

fn ratio(this: f64, other: Option<f64>) -> String {
    other.map_or("–".into(), |other| format!("{:.2}×", this / other))
}

fn percent(this: f64, ceiling: Option<f64>) -> String {
    ceiling.map_or("–".into(), |ceiling| {
        format!("{:.0}%", 100.0 * this / ceiling)
    })
}

fn main() -> ExitCode {
    let dir = criterion_dir();
    let mut found = false;
    println!(
        "| corpus | parser | feed | MiB/s | stanzas/s | vs quick-xml | vs rxml | of memchr `<` | of memchr3 |"
    );
    println!("|---|---|---|---:|---:|---:|---:|---:|---:|");
    let mut notes = Vec::new();
    for corpus in benches::standard() {
        let bytes = corpus.bytes.len() as f64;
        notes.push(format!(
            "`{}`: {:.1} MiB, {} stanzas",
            corpus.name,
            bytes / f64::from(1 << 20),
            corpus.stanzas
        ));
        // Seconds per pass over the corpus, keyed by (function, feed).
        let mut secs = HashMap::new();
        for function in PARSERS.into_iter().chain(CEILINGS) {
            for feed in FEEDS {
                if let Some(ns) = median_ns(&dir, corpus.name, function, feed) {
                    secs.insert((function, feed), ns * 1e-9);
                    found = true;
                }
            }
        }
        let rate = |function, feed| secs.get(&(function, feed)).map(|s| bytes / s);
        let ceiling = |function| rate(function, FEEDS[0]);
        for function in PARSERS.into_iter().chain(CEILINGS) {
            for feed in FEEDS {
                let Some(this) = rate(function, feed) else {
                    continue;
                };
                // Ceilings are reference points, not contenders: no ratios for them.
                let comparisons = if PARSERS.contains(&function) {
                    [
                        ratio(this, rate(PARSERS[1], feed)),
                        ratio(this, rate(PARSERS[2], feed)),
                        percent(this, ceiling(CEILINGS[0])),
                        percent(this, ceiling(CEILINGS[1])),
                    ]
                    .join(" | ")
                } else {
                    ["–"; 4].join(" | ")
                };
                println!(
                    "| {} | {function} | {feed} | {:.0} | {} | {comparisons} |",
                    corpus.name,
                    this / f64::from(1 << 20),
                    per_second(this / bytes * corpus.stanzas as f64),
                );
            }
        }
    }
    println!();
    println!(
        "{}. Median of criterion's samples; ratios compare the same feed; ceilings are whole-buffer scans.",
        notes.join("; ")
    );
    if found {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "no criterion estimates under {}: run `cargo bench -p benches` first",
            dir.display()
        );
        ExitCode::FAILURE
    }
}
