//! The tokens [`Tokenizer::next`](super::Tokenizer::next) hands out, borrowing from the
//! caller's buffer and the tokenizer, and what each knows about unescaping itself.

use std::borrow::Cow;
use std::ops::Range;

use super::span::sub;
use crate::Error;
use crate::escape::{Reference, expand};
use crate::{unescape, unescape_attr};

/// A possibly prefixed XML name, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QName<'a> {
    pub prefix: Option<&'a str>,
    pub local: &'a str,
}

impl<'a> QName<'a> {
    #[inline]
    pub(super) fn at(tag: &'a str, start: usize, colon: Option<usize>, end: usize) -> Self {
        match colon {
            Some(c) => Self {
                prefix: Some(sub(tag, start, c)),
                local: sub(tag, c + 1, end),
            },
            None => Self {
                prefix: None,
                local: sub(tag, start, end),
            },
        }
    }
}

/// One attribute. `raw_value` is exactly as on the wire, entities unresolved: call
/// [`Attribute::value`] to unescape it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub name: QName<'a>,
    pub raw_value: &'a str,
    /// Known while tokenizing: the value needs no unescaping.
    pub(super) plain: bool,
}

impl<'a> Attribute<'a> {
    /// The unescaped, normalized value (see [`crate::unescape_attr`]); borrowed when
    /// there is nothing to change.
    #[inline]
    pub fn value(&self) -> Cow<'a, str> {
        if self.plain {
            return Cow::Borrowed(self.raw_value);
        }
        // Values were validated when the tag was tokenized, so unescaping cannot fail.
        unescape_attr(self.raw_value).unwrap_or(Cow::Borrowed(self.raw_value))
    }
}

/// A run of character data, `raw` exactly as on the wire (entities unresolved); one
/// run of text may come as several `Text` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    pub raw: &'a str,
    pub(super) kind: TextKind,
    /// With [`TextKind::References`]: every reference in `raw`, in order.
    pub(super) refs: &'a [Reference],
}

/// What unescaping a [`Text`] takes, as the tokenizer found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TextKind {
    /// No reference and no CR: unescaping leaves it as it is.
    Plain,
    /// References, all of them recorded, and no CR.
    References,
    /// A CR, or a reference begun in an earlier read: unescaped from scratch.
    Other,
}

impl<'a> Text<'a> {
    /// The text with references resolved and line ends normalized (see
    /// [`crate::unescape`]); borrowed when there is nothing to change. The tokenizer
    /// already knows which, and where each reference is and what it stands for, so the
    /// text is neither scanned nor parsed again.
    #[inline]
    pub fn unescaped(&self) -> Cow<'a, str> {
        match self.kind {
            TextKind::Plain => Cow::Borrowed(self.raw),
            TextKind::References => Cow::Owned(expand(self.raw, self.refs)),
            // References were validated when the text was tokenized: this cannot fail.
            TextKind::Other => unescape(self.raw).unwrap_or(Cow::Borrowed(self.raw)),
        }
    }
}

/// Where one attribute lies in its tag; offsets are relative to the tag's `<`.
#[derive(Debug, Clone, Copy)]
pub(super) struct AttrSpan {
    pub(super) name_start: usize,
    pub(super) name_end: usize,
    pub(super) colon: Option<usize>,
    pub(super) value_start: usize,
    pub(super) value_end: usize,
    /// The value has no reference and no tab, LF or CR: unescaping leaves it as it is.
    pub(super) plain: bool,
}

/// The attributes of a start tag, iterated lazily over the already-validated tag bytes
/// (no allocation). Namespace declarations (`xmlns`, `xmlns:p`) are included.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub(super) tag: &'a str,
    pub(super) spans: &'a [AttrSpan],
}

impl<'a> Attributes<'a> {
    /// The raw value of the first attribute whose name is exactly `name` (prefix included, e.g. `xml:lang`).
    #[inline]
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let tag = self.tag;
        self.spans
            .iter()
            .find(|s| tag.as_bytes().get(s.name_start..s.name_end) == Some(name.as_bytes()))
            .map(|s| sub(tag, s.value_start, s.value_end))
    }

    #[inline]
    fn attribute(tag: &'a str, s: &AttrSpan) -> Attribute<'a> {
        Attribute {
            name: QName::at(tag, s.name_start, s.colon, s.name_end),
            raw_value: sub(tag, s.value_start, s.value_end),
            plain: s.plain,
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.spans.split_first()?;
        self.spans = rest;
        Some(Self::attribute(self.tag, first))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.spans.len(), Some(self.spans.len()))
    }
}

impl ExactSizeIterator for Attributes<'_> {}

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

/// What [`Tokenizer::next`](super::Tokenizer::next) found.
#[derive(Debug, Clone)]
pub enum Token<'a> {
    /// The buffer ends inside a token, or in text that waits for the markup after it:
    /// append more bytes and call again. Not an error.
    NeedMore,
    /// The `<stream:stream ...>` header (depth 0).
    StreamOpen(StartTag<'a>),
    /// An element start tag inside the stream.
    Start(StartTag<'a>),
    /// Character data inside a stanza (see [`Text`]).
    Text(Text<'a>),
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

/// What one call of the scanner yields.
pub(super) type Step<'b> = Result<Token<'b>, Error>;
