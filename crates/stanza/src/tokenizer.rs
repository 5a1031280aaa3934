//! The incremental tokenizer state machine.

use std::ops::Range;

use crate::Error;

/// Limits a stranger's input cannot exceed; each violation is `policy-violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level stanza in bytes, from its `<` to the end of its end tag. Also
    /// bounds the stream header and any single token outside a stanza.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza element itself is depth 1).
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Longest element or attribute name (prefix and local part together) in bytes.
    pub max_name_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_stanza_bytes: 64 * 1024, max_depth: 32, max_attributes: 32, max_name_bytes: 256 }
    }
}

/// A possibly prefixed XML name, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QName<'a> {
    pub prefix: Option<&'a str>,
    pub local: &'a str,
}

/// One attribute. `raw_value` is exactly as on the wire, entities unresolved: call
/// [`Attribute::value`] to unescape it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub name: QName<'a>,
    pub raw_value: &'a str,
}

impl<'a> Attribute<'a> {
    /// The unescaped value; borrowed when it contains no entity reference.
    pub fn value(&self) -> std::borrow::Cow<'a, str> {
        // Values were validated when the tag was tokenized, so unescaping cannot fail.
        unimplemented!()
    }
}

/// The attributes of a start tag, iterated lazily over the already-validated tag bytes
/// (no allocation). Namespace declarations (`xmlns`, `xmlns:p`) are included.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    raw: &'a str,
}

impl<'a> Attributes<'a> {
    /// The raw value of the first attribute whose name is exactly `name` (prefix included, e.g. `xml:lang`).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let _ = name;
        unimplemented!()
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;
    fn next(&mut self) -> Option<Self::Item> {
        let _ = self.raw;
        unimplemented!()
    }
}

/// An element start tag (or the stream header).
#[derive(Debug, Clone)]
pub struct StartTag<'a> {
    pub name: QName<'a>,
    /// The element's namespace after resolving its prefix (or the default namespace) in
    /// scope, which may come from the stream header.
    pub namespace: &'a str,
    pub attributes: Attributes<'a>,
    /// `<x/>`: an [`EndTag`] token for it follows immediately.
    pub self_closing: bool,
    /// Nesting depth: 0 for the stream header, 1 for a stanza, 2 for its children, ...
    pub depth: usize,
}

/// An element end tag (also emitted right after a self-closing start tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTag<'a> {
    pub name: QName<'a>,
    /// Depth of the element that ended (1 for a stanza).
    pub depth: usize,
}

/// What [`Tokenizer::next`] found.
#[derive(Debug, Clone)]
pub enum Token<'a> {
    /// The buffer ends inside a token: append more bytes and call again. Not an error.
    NeedMore,
    /// The `<stream:stream ...>` header (depth 0).
    StreamOpen(StartTag<'a>),
    /// An element start tag inside the stream.
    Start(StartTag<'a>),
    /// Character data inside a stanza, raw (entities unresolved; see [`crate::unescape`]).
    /// One text run may be split over several `Text` tokens.
    Text(&'a str),
    /// An element end tag.
    End(EndTag<'a>),
    /// The top-level stanza that just ended spans `buf[range]`, from its `<` to the `>`
    /// of its end tag. Emitted right after that stanza's depth-1 [`Token::End`].
    StanzaEnd(Range<usize>),
    /// Whitespace between stanzas (an RFC 6120 whitespace keepalive).
    Whitespace,
    /// `</stream:stream>`: the peer closed its stream.
    StreamClose,
}

/// Incremental tokenizer state for one XML stream. Holds no copy of the input except
/// the namespace declarations of the stream header (which the caller's buffer drops).
#[derive(Debug)]
pub struct Tokenizer {
    limits: Limits,
}

impl Tokenizer {
    pub fn new(limits: Limits) -> Self {
        Self { limits }
    }

    /// The limits this tokenizer enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The next token from `buf`, the caller's buffer since the last [`Tokenizer::compact`].
    /// `buf` must begin with the same bytes as on the previous call (the caller only appends).
    pub fn next<'a>(&'a mut self, buf: &'a [u8]) -> Result<Token<'a>, Error> {
        let _ = buf;
        unimplemented!()
    }

    /// How many leading bytes of the buffer the caller must now drop (`buf.drain(..n)`);
    /// offsets inside the tokenizer move down by the same amount. Never drops bytes of a
    /// stanza that has not ended.
    pub fn compact(&mut self) -> usize {
        unimplemented!()
    }

    /// Forget everything, for an RFC 6120 stream restart (after STARTTLS or SASL).
    pub fn reset(&mut self) {
        unimplemented!()
    }
}
