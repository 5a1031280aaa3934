//! Tokenizer throughput: the `stanza` tokenizer against quick-xml and rxml, and against
//! the memchr scans that bound any byte-at-a-time tokenizer.
//!
//! Reproduce the figures (about three minutes on two cores), then print the table:
//!
//! ```text
//! cargo bench -p benches --bench tokenizers
//! cargo run -p benches --release --bin bench-table
//! ```
//!
//! Criterion times each routine in a window of its own, so on a shared machine ratios
//! move with the host's load; `cargo run --release -p benches --bin interleaved`
//! (`src/bin/interleaved.rs`) runs the same routines taking turns instead.
//!
//! Corpora (see `benches/src/lib.rs`): `c2s`, a realistic 16 MiB client stream, and
//! `sic`, one million minimal SIC requests. Each parser gets the corpus `whole` (one
//! buffer) and `chunked-1500` (1,500-byte reads), and does the work an edge must do:
//! visit every attribute value and every text run unescaped, and count stanzas. Before
//! timing, each routine's stanza count is checked against the generator's, so a parser
//! that stops early cannot look fast. Add `-- --quick` for a rough run, or a filter such
//! as `-- sic/stanza` to run part of it.
//!
//! - `stanza`: whole passes the corpus as the buffer; chunked appends each read to a
//!   `Vec`, calls `next` until `NeedMore`, then `compact()` and drains the consumed
//!   prefix once per read (as the crate docs prescribe; draining at every stanza end
//!   would memmove the read's tail once per stanza).
//! - `quick-xml`: the plain `Reader` (no namespace resolution), the reference the
//!   targets are stated against: attributes iterated and values and text unescaped.
//! - `quick-xml-ns`: `NsReader`, so that it resolves namespaces and checks end names as
//!   `stanza` does; it still checks less (names are neither decoded nor checked for
//!   name characters, characters XML forbids pass, duplicate attributes are found by raw
//!   name only), so it is an optimistic competitor. For both quick-xml readers, whole uses the
//!   borrowed `&[u8]` reader (zero copy). Chunked uses the buffered reader over a
//!   `BufReader` that a source fills 1,500 bytes per `read`, with `read_*_into` into a
//!   reused `Vec`: the way quick-xml reads a socket. The borrowed reader cannot resume a
//!   token split across two slices, so feeding it per chunk is not an option.
//! - `rxml`: the push `Parser` (namespace-aware, fully validating), given the whole slice
//!   or one 1,500-byte slice at a time.
//! - `memchr`: visit every `<`, the floor of work for finding tags. Positions are
//!   summed rather than counted: `count()` has a fast path that never stops at a match.
//! - `memchr3`: count `<`, `&` and `>`, the bytes the `stanza` tokenizer's
//!   character-data scan stops at (`>` to catch `]]>`; attribute values stop at `<`, `&`
//!   and their quote instead): what a tokenizer whose only work were that SIMD scan
//!   would cost.

#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Duration;

use benches::routines::ROUTINES;
use benches::{CEILINGS, Corpus, FEEDS, PARSERS};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};

/// The bytes the `stanza` tokenizer's character-data scan stops at (its 16-byte scan in
/// `crates/stanza/src/chars.rs`).
const STOP_BYTES: [u8; 3] = [b'<', b'&', b'>'];

fn bench_corpus(c: &mut Criterion, corpus: &Corpus) {
    let data = corpus.bytes.as_slice();
    eprintln!(
        "corpus {}: {} bytes, {} stanzas",
        corpus.name,
        data.len(),
        corpus.stanzas
    );
    let mut group = c.benchmark_group(corpus.name);
    group
        .throughput(Throughput::Bytes(data.len() as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sampling_mode(SamplingMode::Flat);

    for (name, pair) in PARSERS.into_iter().zip(ROUTINES) {
        for (feed, routine) in FEEDS.into_iter().zip(pair) {
            // Checked inside the closure, which criterion skips for filtered-out ids.
            let mut checked = false;
            group.bench_with_input(BenchmarkId::new(name, feed), data, |b, data| {
                if !checked {
                    let stanzas = routine(data).stanzas;
                    assert_eq!(stanzas, corpus.stanzas, "{name} {feed} miscounted stanzas");
                    checked = true;
                }
                b.iter(|| routine(black_box(data)))
            });
        }
    }

    let [memchr_name, memchr3_name] = CEILINGS;
    group.bench_with_input(BenchmarkId::new(memchr_name, FEEDS[0]), data, |b, data| {
        b.iter(|| memchr::memchr_iter(b'<', black_box(data)).fold(0, usize::wrapping_add))
    });
    let [x, y, z] = STOP_BYTES;
    group.bench_with_input(BenchmarkId::new(memchr3_name, FEEDS[0]), data, |b, data| {
        b.iter(|| memchr::memchr3_iter(x, y, z, black_box(data)).fold(0, usize::wrapping_add))
    });
    group.finish();
}

fn tokenizers(c: &mut Criterion) {
    for corpus in benches::standard() {
        bench_corpus(c, &corpus);
    }
}

criterion_group!(benches, tokenizers);
criterion_main!(benches);
