//! The parsing routines the tokenizer benches time, shared by the criterion bench
//! (`benches/tokenizers.rs`) and the `interleaved` runner: each does the work an edge
//! must do (visit every attribute value and every text run unescaped, and count
//! stanzas), fed the corpus whole or in [`CHUNK`]-byte reads.

use std::hint::black_box;
use std::io::{self, BufReader, Read};

use quick_xml::encoding::Decoder;
use quick_xml::events::Event as QEvent;
use quick_xml::events::{BytesRef, BytesStart};
use quick_xml::reader::{NsReader, Reader};
use rxml::error::EndOrError;
use rxml::{Event as REvent, Parse};
use stanza::{Token, Tokenizer, TokenizerLimits};

use crate::CHUNK;

/// What every routine returns: stanzas seen, and a checksum of unescaped lengths that
/// keeps the unescaping from being optimised away.
#[derive(Debug, Default, PartialEq)]
pub struct Tally {
    pub stanzas: u64,
    pub bytes: usize,
}

/// Visits one `stanza` token as the edge would.
fn stanza_token(token: &Token<'_>, tally: &mut Tally) {
    match token {
        Token::StreamOpen(tag) | Token::Start(tag) => {
            for attribute in tag.attributes.clone() {
                tally.bytes += attribute.value().len();
            }
        }
        Token::Text(text) => tally.bytes += text.unescaped().len(),
        Token::StanzaEnd(_) => tally.stanzas += 1,
        Token::End(_) | Token::Whitespace | Token::NeedMore | Token::StreamClose => {}
    }
}

/// Visits every token `tokenizer` finds in `buf` until it needs more input; whether the
/// stream closed.
#[inline(always)]
fn stanza_tokens(tokenizer: &mut Tokenizer, buf: &[u8], tally: &mut Tally) -> bool {
    loop {
        match &tokenizer.next(buf) {
            Ok(Token::NeedMore) => return false,
            Ok(Token::StreamClose) => return true,
            Ok(token) => stanza_token(token, tally),
            Err(e) => panic!("the corpus is well-formed: {e}"),
        }
    }
}

pub fn stanza_whole(data: &[u8]) -> Tally {
    let mut tokenizer = Tokenizer::new(TokenizerLimits::default());
    let mut tally = Tally::default();
    stanza_tokens(&mut tokenizer, data, &mut tally);
    tally
}

pub fn stanza_chunked(data: &[u8]) -> Tally {
    let mut tokenizer = Tokenizer::new(TokenizerLimits::default());
    let mut tally = Tally::default();
    let mut buf = Vec::with_capacity(TokenizerLimits::default().max_stanza_bytes);
    for read in data.chunks(CHUNK) {
        buf.extend_from_slice(read);
        if stanza_tokens(&mut tokenizer, &buf, &mut tally) {
            return tally;
        }
        let consumed = tokenizer.compact();
        buf.drain(..consumed);
    }
    tally
}

/// [`stanza_chunked`] without the copy: the reads end at `read_ends` (offsets into
/// `data`, ascending, the last one `data.len()`), and the tokenizer reads each where it
/// lies in `data`. For the `interleaved` runner's breakdown of what chunked input costs.
pub fn stanza_in_place(data: &[u8], read_ends: &[usize]) -> Tally {
    let mut tokenizer = Tokenizer::new(TokenizerLimits::default());
    let mut tally = Tally::default();
    let mut base = 0;
    for &end in read_ends {
        let read = data.get(base..end).unwrap_or_default();
        if stanza_tokens(&mut tokenizer, read, &mut tally) {
            return tally;
        }
        base += tokenizer.compact();
    }
    tally
}

/// Where the [`CHUNK`]-byte reads of an input of `len` bytes end, for
/// [`stanza_in_place`].
pub fn chunk_ends(len: usize) -> Vec<usize> {
    (1..=len.div_ceil(CHUNK))
        .map(|k| (k * CHUNK).min(len))
        .collect()
}

/// Where each stanza of `data` ends (one past its last byte), in order.
pub fn stanza_ends(data: &[u8]) -> Vec<usize> {
    let mut tokenizer = Tokenizer::new(TokenizerLimits::default());
    let mut ends = Vec::new();
    loop {
        match tokenizer.next(data) {
            Ok(Token::StanzaEnd(span)) => ends.push(span.end),
            Ok(Token::NeedMore | Token::StreamClose) => return ends,
            Ok(_) => {}
            Err(e) => panic!("the corpus is well-formed: {e}"),
        }
    }
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

pub fn quick_whole(data: &[u8]) -> Tally {
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

pub fn quick_ns_whole(data: &[u8]) -> Tally {
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

pub fn quick_chunked(data: &[u8]) -> Tally {
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

pub fn quick_ns_chunked(data: &[u8]) -> Tally {
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

pub fn rxml_whole(data: &[u8]) -> Tally {
    let mut tally = Tally::default();
    rxml_feed(&mut rxml::Parser::new(), data, &mut 0, &mut tally);
    tally
}

pub fn rxml_chunked(data: &[u8]) -> Tally {
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

/// A routine: stanzas seen and a checksum, for one pass over a corpus.
pub type Routine = fn(&[u8]) -> Tally;

/// Every routine by parser (in [`crate::PARSERS`] order) and feed (in [`crate::FEEDS`]
/// order).
pub const ROUTINES: [[Routine; 2]; 4] = [
    [stanza_whole, stanza_chunked],
    [quick_whole, quick_chunked],
    [rxml_whole, rxml_chunked],
    [quick_ns_whole, quick_ns_chunked],
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every feed visits the same stanzas and the same unescaped bytes as the whole one,
    /// so that the runner's comparisons are between like and like.
    #[test]
    fn every_stanza_feed_sees_the_same_stream() {
        let corpus = crate::c2s(64 << 10);
        let data = corpus.bytes.as_slice();
        let whole = stanza_whole(data);
        assert_eq!(whole.stanzas, corpus.stanzas);
        let ends = stanza_ends(data);
        assert_eq!(ends.len() as u64, corpus.stanzas);
        let mut at_stanza_ends = ends.clone();
        at_stanza_ends.push(data.len());
        assert_eq!(stanza_in_place(data, &at_stanza_ends), whole);
        assert_eq!(stanza_in_place(data, &chunk_ends(data.len())), whole);
        assert_eq!(stanza_chunked(data), whole);
    }
}
