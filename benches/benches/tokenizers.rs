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
use std::io::{self, BufReader, Read};
use std::time::Duration;

use benches::{CEILINGS, CHUNK, Corpus, FEEDS, PARSERS};
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use quick_xml::encoding::Decoder;
use quick_xml::events::Event as QEvent;
use quick_xml::events::{BytesRef, BytesStart};
use quick_xml::reader::{NsReader, Reader};
use rxml::error::EndOrError;
use rxml::{Event as REvent, Parse};
use stanza::{Limits, Token, Tokenizer};

/// The bytes the `stanza` tokenizer's character-data scan stops at (its 16-byte scan in
/// `crates/stanza/src/chars.rs`).
const STOP_BYTES: [u8; 3] = [b'<', b'&', b'>'];

/// What every routine returns: stanzas seen, and a checksum of unescaped lengths that
/// keeps the unescaping from being optimised away.
#[derive(Debug, Default, PartialEq)]
struct Tally {
    stanzas: u64,
    bytes: usize,
}

/// Visits one `stanza` token as the edge would.
fn stanza_token(token: Token<'_>, tally: &mut Tally) {
    match token {
        Token::StreamOpen(tag) | Token::Start(tag) => {
            for attribute in tag.attributes {
                tally.bytes += attribute.value().len();
            }
        }
        Token::Text(text) => tally.bytes += text.unescaped().len(),
        Token::StanzaEnd(_) => tally.stanzas += 1,
        Token::End(_) | Token::Whitespace | Token::NeedMore | Token::StreamClose => {}
    }
}

fn stanza_whole(data: &[u8]) -> Tally {
    let mut tokenizer = Tokenizer::new(Limits::default());
    let mut tally = Tally::default();
    loop {
        match tokenizer.next(data).expect("well-formed corpus") {
            Token::NeedMore | Token::StreamClose => return tally,
            token => stanza_token(token, &mut tally),
        }
    }
}

fn stanza_chunked(data: &[u8]) -> Tally {
    let mut tokenizer = Tokenizer::new(Limits::default());
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(Limits::default().max_stanza_bytes);
    for read in data.chunks(CHUNK) {
        buf.extend_from_slice(read);
        loop {
            match tokenizer.next(&buf).expect("well-formed corpus") {
                Token::NeedMore => break,
                Token::StreamClose => return tally,
                token => stanza_token(token, &mut tally),
            }
        }
        let consumed = tokenizer.compact();
        buf.drain(..consumed);
    }
    tally
}

/// The two quick-xml readers, as far as the visit below needs them.
trait QuickReader {
    fn decoder(&self) -> Decoder;
    /// Resolves an attribute's namespace where the reader knows namespaces.
    fn resolve(&self, key: quick_xml::name::QName<'_>);
}

impl<R> QuickReader for NsReader<R> {
    fn decoder(&self) -> Decoder {
        // `NsReader` has no decoder of its own: it derefs to the plain reader.
        Reader::decoder(self)
    }
    fn resolve(&self, key: quick_xml::name::QName<'_>) {
        black_box(self.resolve_attribute(key));
    }
}

impl<R> QuickReader for Reader<R> {
    fn decoder(&self) -> Decoder {
        Reader::decoder(self)
    }
    fn resolve(&self, _: quick_xml::name::QName<'_>) {}
}

fn quick_attributes(reader: &impl QuickReader, tag: &BytesStart<'_>, tally: &mut Tally) {
    for attribute in tag.attributes() {
        let attribute = attribute.expect("valid attribute");
        reader.resolve(attribute.key);
        let value = attribute
            .decode_and_unescape_value(reader.decoder())
            .expect("valid value");
        tally.bytes += value.len();
    }
}

fn quick_reference(reference: &BytesRef<'_>) -> usize {
    match reference.resolve_char_ref().expect("valid reference") {
        Some(c) => c.len_utf8(),
        None => {
            let name = reference.decode().expect("UTF-8");
            quick_xml::escape::resolve_predefined_entity(&name)
                .expect("predefined")
                .len()
        }
    }
}

/// Visits one quick-xml event; returns false at the end of the stream.
fn quick_event(
    reader: &impl QuickReader,
    event: QEvent<'_>,
    depth: &mut usize,
    tally: &mut Tally,
) -> bool {
    match event {
        QEvent::Start(tag) => {
            quick_attributes(reader, &tag, tally);
            *depth += 1;
        }
        QEvent::Empty(tag) => {
            quick_attributes(reader, &tag, tally);
            if *depth == 1 {
                tally.stanzas += 1;
            }
        }
        QEvent::End(_) => {
            *depth -= 1;
            if *depth == 1 {
                tally.stanzas += 1;
            }
            return *depth > 0;
        }
        QEvent::Text(text) => tally.bytes += text.decode().expect("UTF-8").len(),
        QEvent::GeneralRef(reference) => tally.bytes += quick_reference(&reference),
        QEvent::Eof => return false,
        _ => {}
    }
    true
}

fn quick_whole(data: &[u8]) -> Tally {
    let mut reader = Reader::from_reader(data);
    let mut tally = Tally::default();
    let mut depth = 0;
    loop {
        let event = reader.read_event().expect("well-formed corpus");
        if !quick_event(&reader, event, &mut depth, &mut tally) {
            return tally;
        }
    }
}

fn quick_ns_whole(data: &[u8]) -> Tally {
    let mut reader = NsReader::from_reader(data);
    let mut tally = Tally::default();
    let mut depth = 0;
    loop {
        let (_, event) = reader.read_resolved_event().expect("well-formed corpus");
        if !quick_event(&reader, event, &mut depth, &mut tally) {
            return tally;
        }
    }
}

/// A socket stand-in: each `read` copies at most one chunk, as `recv` would.
struct ChunkedSource<'a>(&'a [u8]);

impl Read for ChunkedSource<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(out.len()).min(CHUNK);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fn quick_chunked(data: &[u8]) -> Tally {
    let mut reader = Reader::from_reader(BufReader::with_capacity(CHUNK, ChunkedSource(data)));
    let mut tally = Tally::default();
    let mut depth = 0;
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .expect("well-formed corpus");
        if !quick_event(&reader, event, &mut depth, &mut tally) {
            return tally;
        }
        buf.clear();
    }
}

fn quick_ns_chunked(data: &[u8]) -> Tally {
    let mut reader = NsReader::from_reader(BufReader::with_capacity(CHUNK, ChunkedSource(data)));
    let mut tally = Tally::default();
    let mut depth = 0;
    let mut buf = Vec::new();
    loop {
        let (_, event) = reader
            .read_resolved_event_into(&mut buf)
            .expect("well-formed corpus");
        if !quick_event(&reader, event, &mut depth, &mut tally) {
            return tally;
        }
        buf.clear();
    }
}

/// Feeds one slice to rxml; returns false at the end of the stream.
fn rxml_feed(
    parser: &mut rxml::Parser,
    mut data: &[u8],
    depth: &mut usize,
    tally: &mut Tally,
) -> bool {
    loop {
        match parser.parse(&mut data, false) {
            Ok(Some(REvent::StartElement(_, _, attributes))) => {
                tally.bytes += attributes.values().map(String::len).sum::<usize>();
                *depth += 1;
            }
            Ok(Some(REvent::EndElement(_))) => {
                *depth -= 1;
                if *depth == 1 {
                    tally.stanzas += 1;
                }
                if *depth == 0 {
                    return false;
                }
            }
            Ok(Some(REvent::Text(_, text))) => tally.bytes += text.len(),
            Ok(Some(REvent::XmlDeclaration(..))) => {}
            Ok(None) => return false,
            // rxml may stop before the end of the slice; call again until it is empty.
            Err(EndOrError::NeedMoreData) if data.is_empty() => return true,
            Err(EndOrError::NeedMoreData) => {}
            Err(EndOrError::Error(e)) => panic!("rxml rejected the corpus: {e}"),
        }
    }
}

fn rxml_whole(data: &[u8]) -> Tally {
    let mut tally = Tally::default();
    rxml_feed(&mut rxml::Parser::new(), data, &mut 0, &mut tally);
    tally
}

fn rxml_chunked(data: &[u8]) -> Tally {
    let mut parser = rxml::Parser::new();
    let mut tally = Tally::default();
    let mut depth = 0;
    for read in data.chunks(CHUNK) {
        if !rxml_feed(&mut parser, read, &mut depth, &mut tally) {
            break;
        }
    }
    tally
}

type Routine = fn(&[u8]) -> Tally;

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

    let routines: [[Routine; 2]; 4] = [
        [stanza_whole, stanza_chunked],
        [quick_whole, quick_chunked],
        [rxml_whole, rxml_chunked],
        [quick_ns_whole, quick_ns_chunked],
    ];
    for (name, pair) in PARSERS.into_iter().zip(routines) {
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
