//! What a stranger's input may not exceed, and where one call stops reading because of it.

use super::span::span;
use super::token::{Step, Token};
use crate::Error;

/// Limits a stranger's input cannot exceed; each violation is `policy-violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizerLimits {
    /// Largest top-level stanza in bytes, from its `<` to the end of its end tag. Also
    /// bounds the stream header and any single token outside a stanza.
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza (the stanza element itself is depth 1).
    pub max_depth: usize,
    /// Most attributes (namespace declarations included) on one element.
    pub max_attributes: usize,
    /// Longest element or attribute name (prefix and local part together) in bytes.
    /// Also bounds entity names in references.
    pub max_name_bytes: usize,
}

impl Default for TokenizerLimits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 64 * 1024,
            max_depth: 32,
            max_attributes: 32,
            max_name_bytes: 256,
        }
    }
}

/// The end of the usable input: the buffer, or where the current unit (stanza, or token
/// outside stanzas) would exceed `max_stanza_bytes`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lim {
    /// Where reading stops: after the last `>` of the buffer, or at the limit when the
    /// buffer goes past it.
    pub(super) end: usize,
    /// The buffer goes past the limit, which is `end`: running out of input means the
    /// limit is hit.
    pub(super) over: bool,
}

impl Lim {
    /// The part of `buf` that whitespace between stanzas may be read from: all of it,
    /// or up to the limit.
    #[inline(always)]
    pub(super) fn avail(self, buf: &[u8]) -> &[u8] {
        if self.over {
            span(buf, 0, self.end)
        } else {
            buf
        }
    }

    pub(super) fn need_more<'b>(self) -> Step<'b> {
        if self.over {
            Err(Error::StanzaTooLarge)
        } else {
            Ok(Token::NeedMore)
        }
    }
}
