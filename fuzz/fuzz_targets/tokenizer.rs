//! Feeds arbitrary bytes to the tokenizer whole and in fuzzer-chosen reads, with the
//! caller-side buffer handling of the crate docs, and checks that it never panics or
//! loops, that the reads do not change the tokens or the error, that a dead stream
//! stays dead, that end tags, depths and stanza ends fit the open elements, and that
//! every `Text` token and attribute value unescapes.
//!
//! Input layout: byte 0 picks the read sizes and the limits, bytes 1..3 seed the read
//! sizes, the rest is the stream. Small limits are used half the time so that the
//! policy-violation paths are reached by inputs of a few hundred bytes.

#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use stanza::{Error, Token, Tokenizer, TokenizerLimits};

/// A token with its borrowed parts copied out, comparable across runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owned {
    Open(Tag),
    Start(Tag),
    /// Raw text; adjacent `Text` tokens are merged, since where a run splits may
    /// depend on the reads.
    Text(String),
    End {
        name: (Option<String>, String),
        depth: usize,
    },
    /// The stanza's bytes, since the range is relative to a compacted buffer.
    StanzaEnd(Vec<u8>),
    /// Adjacent keepalives merged, for the same reason as text.
    Whitespace,
    StreamClose,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Tag {
    name: (Option<String>, String),
    namespace: String,
    attributes: Vec<(Option<String>, String, String, String)>,
    self_closing: bool,
    depth: usize,
}

fn tag(tag: &stanza::StartTag<'_>) -> Tag {
    Tag {
        name: (
            tag.name.prefix.map(str::to_owned),
            tag.name.local.to_owned(),
        ),
        namespace: tag.namespace.to_owned(),
        attributes: tag
            .attributes
            .clone()
            .map(|a| {
                let value = a.value().into_owned();
                (
                    a.name.prefix.map(str::to_owned),
                    a.name.local.to_owned(),
                    a.raw_value.to_owned(),
                    value,
                )
            })
            .collect(),
        self_closing: tag.self_closing,
        depth: tag.depth,
    }
}

fn push(tokens: &mut Vec<Owned>, token: Owned) {
    match (tokens.last_mut(), token) {
        (Some(Owned::Text(previous)), Owned::Text(more)) => previous.push_str(&more),
        (Some(Owned::Whitespace), Owned::Whitespace) => {}
        (_, token) => tokens.push(token),
    }
}

/// Asserts that a token fits the elements open before it, and updates them.
fn check_nesting(open: &mut Vec<(Option<String>, String)>, token: &Owned) {
    match token {
        Owned::Open(tag) | Owned::Start(tag) => {
            assert_eq!(tag.depth, open.len(), "start tag depth");
            assert_eq!(
                matches!(token, Owned::Open(_)),
                open.is_empty(),
                "header at depth 0 only"
            );
            open.push(tag.name.clone());
        }
        Owned::End { name, depth } => {
            assert_eq!(open.pop().as_ref(), Some(name), "end tag name");
            assert_eq!(*depth, open.len(), "end tag depth");
        }
        Owned::StanzaEnd(stanza) => {
            assert_eq!(open.len(), 1, "stanza end outside the stream");
            assert!(
                stanza.starts_with(b"<") && stanza.ends_with(b">"),
                "stanza span"
            );
        }
        Owned::Text(_) => assert!(open.len() > 1, "text outside a stanza"),
        // Before the header (depth 0) too: whitespace there is reported, not swallowed.
        Owned::Whitespace => assert!(open.len() <= 1, "keepalive inside a stanza"),
        Owned::StreamClose => assert_eq!(open.len(), 1, "close with stanzas open"),
    }
}

/// Everything the tokenizer produced for `input` read in `reads`, and how it ended.
fn run(limits: TokenizerLimits, input: &[u8], reads: &[usize]) -> (Vec<Owned>, Option<Error>) {
    let mut tokenizer = Tokenizer::new(limits);
    let mut tokens = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    // Names of the open elements, outermost first: end tags and depths must match them.
    let mut open: Vec<(Option<String>, String)> = Vec::new();
    // Each call either consumes bytes or emits one of the few tokens that consume none
    // (End after `/>`, StanzaEnd); anything beyond that is a loop.
    let mut budget = 4 * input.len() + 16;
    for &read in reads {
        buf.extend_from_slice(&input[fed..fed + read]);
        fed += read;
        loop {
            budget = budget.checked_sub(1).expect("tokenizer makes no progress");
            let token = match tokenizer.next(&buf) {
                Ok(token) => token,
                Err(error) => {
                    assert_eq!(
                        tokenizer.next(&buf).err(),
                        Some(error),
                        "a dead stream came back"
                    );
                    return (tokens, Some(error));
                }
            };
            let owned = match token {
                Token::NeedMore => break,
                Token::StreamOpen(t) => Owned::Open(tag(&t)),
                Token::Start(t) => Owned::Start(tag(&t)),
                Token::Text(text) => {
                    let raw = text.raw;
                    match stanza::unescape(raw) {
                        Ok(unescaped) => assert_eq!(text.unescaped(), unescaped, "{text:?}"),
                        Err(error) => panic!("Text {raw:?} does not unescape: {error}"),
                    }
                    Owned::Text(raw.to_owned())
                }
                Token::End(end) => Owned::End {
                    name: (
                        end.name.prefix.map(str::to_owned),
                        end.name.local.to_owned(),
                    ),
                    depth: end.depth,
                },
                Token::StanzaEnd(range) => Owned::StanzaEnd(buf[range].to_vec()),
                Token::Whitespace => Owned::Whitespace,
                Token::StreamClose => Owned::StreamClose,
            };
            check_nesting(&mut open, &owned);
            push(&mut tokens, owned);
        }
        let consumed = tokenizer.compact();
        assert!(consumed <= buf.len(), "compact() beyond the buffer");
        buf.drain(..consumed);
    }
    (tokens, None)
}

/// Read sizes covering `len`, from a seed; `max` bounds one read.
fn reads(len: usize, mut seed: u32, max: usize) -> Vec<usize> {
    let mut reads = Vec::new();
    let mut left = len;
    while left > 0 {
        // xorshift32; the seed is never zero.
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let read = (1 + seed as usize % max).min(left);
        reads.push(read);
        left -= read;
    }
    reads
}

fuzz_target!(|data: &[u8]| {
    let [mode, a, b, input @ ..] = data else {
        return;
    };
    let limits = if mode & 0x80 != 0 {
        TokenizerLimits {
            max_stanza_bytes: 256,
            max_depth: 4,
            max_attributes: 4,
            max_name_bytes: 16,
        }
    } else {
        TokenizerLimits::default()
    };
    let max = [1, 2, 7, 64, 1500][usize::from(mode & 0x7f) % 5];
    let seed = u32::from(u16::from_le_bytes([*a, *b])) | 0x1_0000;

    let whole = run(limits, input, &[input.len()]);
    let chunked = run(limits, input, &reads(input.len(), seed, max));
    assert_eq!(whole, chunked, "reads changed the outcome");
});
