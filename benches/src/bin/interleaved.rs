//! Tokenizer ratios that a shared, noisy machine cannot skew: `stanza` and quick-xml
//! (whole and chunked, the criterion bench's routines) take turns on the same corpus,
//! one pass each per round, so that whatever else the machine does in a moment slows
//! all four alike; each routine's time per stanza is then its 10th percentile over all
//! rounds (its runs that were least disturbed), and ratios compare those.
//!
//! Usage: `cargo run --release -p benches --bin interleaved -- [CORPUS] [ROUNDS]`, with
//! CORPUS `c2s` (the default, the bench's 16 MiB client stream) or `sic`, and ROUNDS
//! 100 by default (about two minutes for `c2s`).
//!
//! `-- once CORPUS PARSER FEED` makes a single pass instead, for counting instructions:
//! `valgrind --tool=callgrind --toggle-collect='benches::routines::stanza_whole'
//! target/release/interleaved once c2s stanza whole` (name the one routine: a pattern
//! matching the helpers it calls too would toggle counting off inside them).

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use benches::routines::ROUTINES;
use benches::{Corpus, FEEDS, PARSERS};

fn corpus(name: &str) -> Option<Corpus> {
    benches::standard().into_iter().find(|c| c.name == name)
}

/// The routine of `PARSER` and `FEED` (as the criterion ids spell them).
fn routine(parser: &str, feed: &str) -> Option<benches::routines::Routine> {
    let p = PARSERS.iter().position(|&p| p == parser)?;
    let f = FEEDS.iter().position(|&f| f == feed)?;
    Some(ROUTINES[p][f])
}

fn once(args: &[String]) -> ExitCode {
    let [corpus_name, parser, feed] = args else {
        eprintln!("usage: interleaved once CORPUS PARSER FEED");
        return ExitCode::FAILURE;
    };
    let (Some(corpus), Some(routine)) = (corpus(corpus_name), routine(parser, feed)) else {
        eprintln!("unknown corpus, parser or feed: {corpus_name} {parser} {feed}");
        return ExitCode::FAILURE;
    };
    let tally = routine(black_box(&corpus.bytes));
    println!("{} stanzas, {} bytes unescaped", tally.stanzas, tally.bytes);
    if tally.stanzas == corpus.stanzas {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("once") {
        return once(&args[1..]);
    }
    let name = args.first().map_or("c2s", String::as_str);
    let rounds: usize = match args.get(1).map(|r| r.parse()) {
        None => 100,
        Some(Ok(r)) if r > 0 => r,
        Some(_) => {
            eprintln!("ROUNDS must be a positive number");
            return ExitCode::FAILURE;
        }
    };
    let Some(corpus) = corpus(name) else {
        eprintln!("unknown corpus {name}: c2s or sic");
        return ExitCode::FAILURE;
    };
    let contenders = [
        ("stanza", FEEDS[0]),
        ("quick-xml", FEEDS[0]),
        ("stanza", FEEDS[1]),
        ("quick-xml", FEEDS[1]),
    ];
    let mut runs: Vec<(&str, &str, benches::routines::Routine, Vec<f64>)> = Vec::new();
    for (parser, feed) in contenders {
        let Some(routine) = routine(parser, feed) else {
            return ExitCode::FAILURE;
        };
        // A routine that stops early would look fast: check its count first.
        let stanzas = routine(&corpus.bytes).stanzas;
        if stanzas != corpus.stanzas {
            eprintln!(
                "{parser} {feed} counted {stanzas} stanzas of {}",
                corpus.stanzas
            );
            return ExitCode::FAILURE;
        }
        runs.push((parser, feed, routine, Vec::with_capacity(rounds)));
    }
    for _ in 0..rounds {
        for (_, _, routine, times) in &mut runs {
            let start = Instant::now();
            black_box(routine(black_box(&corpus.bytes)));
            times.push(start.elapsed().as_nanos() as f64 / corpus.stanzas as f64);
        }
    }
    let p10 = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[(times.len() - 1) / 10]
    };
    println!(
        "corpus {name}: {} bytes, {} stanzas, {rounds} rounds; ns per stanza, 10th percentile",
        corpus.bytes.len(),
        corpus.stanzas
    );
    let mut p = Vec::new();
    for (parser, feed, _, times) in &mut runs {
        let ns = p10(times);
        println!("{parser:>10} {feed:<13} {ns:8.0}");
        p.push(ns);
    }
    println!(
        "stanza vs quick-xml: {:.2}× whole, {:.2}× {}",
        p[1] / p[0],
        p[3] / p[2],
        FEEDS[1]
    );
    ExitCode::SUCCESS
}
