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
//! `-- breakdown [CORPUS] [ROUNDS]` takes `stanza` alone apart instead: fed whole, in
//! reads that end where a stanza ends and in 1,500-byte reads, both read where they lie
//! in the corpus, and in 1,500-byte reads copied into a buffer first (the bench's
//! chunked feed), so that the differences show what the end of a read and the copy
//! each cost.
//!
//! `-- once CORPUS PARSER FEED` makes a single pass instead, for counting instructions:
//! `valgrind --tool=callgrind --toggle-collect='benches::routines::stanza_whole'
//! target/release/interleaved once c2s stanza whole` (name the one routine: a pattern
//! matching the helpers it calls too would toggle counting off inside them).

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use benches::routines::{self, ROUTINES};
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
    let breakdown = args.first().map(String::as_str) == Some("breakdown");
    let args = if breakdown { &args[1..] } else { &args[..] };
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
    if breakdown {
        return take_apart(&corpus, rounds);
    }
    let contenders = [
        ("stanza", FEEDS[0]),
        ("quick-xml", FEEDS[0]),
        ("stanza", FEEDS[1]),
        ("quick-xml", FEEDS[1]),
    ];
    let mut runs: Vec<Run> = Vec::new();
    for (parser, feed) in contenders {
        let Some(routine) = routine(parser, feed) else {
            return ExitCode::FAILURE;
        };
        let data = &corpus.bytes;
        runs.push((
            format!("{parser:>10} {feed:<13}"),
            Box::new(move || routine(black_box(data))),
        ));
    }
    let Some(p) = take_turns(&runs, &corpus, rounds) else {
        return ExitCode::FAILURE;
    };
    println!(
        "corpus {name}: {} bytes, {} stanzas, {rounds} rounds; ns per stanza, 10th percentile",
        corpus.bytes.len(),
        corpus.stanzas
    );
    for ((label, _), ns) in runs.iter().zip(&p) {
        println!("{label} {ns:8.0}");
    }
    println!(
        "stanza vs quick-xml: {:.2}× whole, {:.2}× {}",
        p[1] / p[0],
        p[3] / p[2],
        FEEDS[1]
    );
    ExitCode::SUCCESS
}

/// One contender: its label, and one pass of it over the corpus.
type Run<'a> = (String, Box<dyn Fn() -> routines::Tally + 'a>);

/// Each of `runs` timed once per round, in turns, as its 10th percentile in ns per stanza
/// (its least disturbed passes); `None`, said why, if one misses a stanza of `corpus`
/// (a routine that stops early would look fast, so counts are checked first).
fn take_turns(runs: &[Run<'_>], corpus: &Corpus, rounds: usize) -> Option<Vec<f64>> {
    for (label, run) in runs {
        let stanzas = run().stanzas;
        if stanzas != corpus.stanzas {
            eprintln!(
                "{} counted {stanzas} stanzas of {}",
                label.trim(),
                corpus.stanzas
            );
            return None;
        }
    }
    let mut times = vec![Vec::with_capacity(rounds); runs.len()];
    for _ in 0..rounds {
        for ((_, run), times) in runs.iter().zip(&mut times) {
            let start = Instant::now();
            black_box(run());
            times.push(start.elapsed().as_nanos() as f64 / corpus.stanzas as f64);
        }
    }
    Some(
        times
            .iter_mut()
            .map(|times| {
                times.sort_by(f64::total_cmp);
                times[(times.len() - 1) / 10]
            })
            .collect(),
    )
}

/// The `breakdown` mode (see the module docs): `stanza` fed four ways, in turns.
fn take_apart(corpus: &Corpus, rounds: usize) -> ExitCode {
    let data = corpus.bytes.as_slice();
    let every_read = routines::chunk_ends(data.len());
    // Each 1,500-byte mark moved on to the next stanza end, so no read cuts a token.
    let stanza_ends = routines::stanza_ends(data);
    let mut at_stanza_ends: Vec<usize> = every_read
        .iter()
        .map(|&mark| {
            let k = stanza_ends.partition_point(|&end| end < mark);
            stanza_ends.get(k).copied().unwrap_or(data.len())
        })
        .collect();
    at_stanza_ends.dedup();
    let runs: [Run; 4] = [
        (
            "whole".into(),
            Box::new(|| routines::stanza_whole(black_box(data))),
        ),
        (
            "in place, reads end at stanza ends".into(),
            Box::new(|| routines::stanza_in_place(black_box(data), &at_stanza_ends)),
        ),
        (
            "in place, 1,500-byte reads".into(),
            Box::new(|| routines::stanza_in_place(black_box(data), &every_read)),
        ),
        (
            "copied, 1,500-byte reads".into(),
            Box::new(|| routines::stanza_chunked(black_box(data))),
        ),
    ];
    let Some(p) = take_turns(&runs, corpus, rounds) else {
        return ExitCode::FAILURE;
    };
    println!(
        "corpus {}: {} stanzas, {rounds} rounds; stanza, ns per stanza, 10th percentile",
        corpus.name, corpus.stanzas
    );
    for ((feed, _), ns) in runs.iter().zip(&p) {
        println!("{feed:<36} {ns:6.0}  ({:+.0})", ns - p[0]);
    }
    ExitCode::SUCCESS
}
