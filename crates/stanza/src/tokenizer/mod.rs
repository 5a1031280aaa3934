//! The incremental tokenizer state machine.
//!
//! Every partial-token state is kept relative to `pos`, the start of the token being
//! read, and every namespace declaration and open element of the current stanza relative
//! to the stanza's start, so [`Tokenizer::compact`] only has to move those two offsets.
//!
//! Decisions depend only on bytes already seen, never on where a read happened to end:
//! nothing after the input's last `>` is read but whitespace between stanzas (every tag
//! ends at a `>`), and a token that is not complete all the same is resumed exactly
//! where its scan stopped, so the same input yields the same tokens (text may come in
//! more pieces) and the same error however it is split into reads, and no byte is
//! scanned more than a bounded number of times.
//!
//! The modules, each building only on those before it: `span` (slicing without a panic
//! path), `token` (what `next` hands out), `limits` (what input may not exceed, and where
//! one call stops reading), `scope` (namespace declarations and open elements), `state`
//! (the scanner between calls), `element` (a complete start tag opened, an element
//! closed), `resume` (the resumable tag scans), `fast` (the one-pass common tags), `text`
//! (character data) and `dispatch` (which of them reads the token at `pos`).

mod dispatch;
mod element;
mod fast;
mod limits;
mod resume;
mod scope;
mod span;
mod state;
mod text;
mod token;

pub use limits::TokenizerLimits;
pub use token::{Attribute, Attributes, EndTag, QName, StartTag, Text, Token};

use crate::Error;
use state::Scanner;

/// Incremental tokenizer state for one XML stream. Holds no copy of the input except
/// the namespace declarations of the stream header (which the caller's buffer drops).
#[derive(Debug)]
pub struct Tokenizer {
    /// The first error, returned again by every later call.
    dead: Option<Error>,
    scanner: Scanner,
}

impl Tokenizer {
    pub fn new(limits: TokenizerLimits) -> Self {
        Self {
            dead: None,
            scanner: Scanner::new(limits),
        }
    }

    /// The limits this tokenizer enforces.
    pub fn limits(&self) -> &TokenizerLimits {
        &self.scanner.limits
    }

    /// The next token from `buf`, the caller's buffer since the last [`Tokenizer::compact`].
    /// `buf` must begin with the same bytes as on the previous call (the caller only appends).
    #[inline]
    pub fn next<'a>(&'a mut self, buf: &'a [u8]) -> Result<Token<'a>, Error> {
        if let Some(e) = self.dead {
            return Err(e);
        }
        let step = self.scanner.step(buf);
        if let Err(e) = step {
            self.dead = Some(e);
        }
        step
    }

    /// How many leading bytes of the buffer the caller must now drop (`buf.drain(..n)`);
    /// offsets inside the tokenizer move down by the same amount. Never drops bytes of a
    /// stanza that has not ended.
    pub fn compact(&mut self) -> usize {
        let s = &mut self.scanner;
        let n = if s.in_stanza { s.stanza_start } else { s.pos };
        s.pos -= n;
        s.gt_end = s.gt_end.saturating_sub(n);
        s.gt_seen = s.gt_seen.saturating_sub(n);
        if s.in_stanza {
            s.stanza_start -= n;
        }
        n
    }

    /// Forget everything, for an RFC 6120 stream restart (after STARTTLS or SASL). The
    /// next byte passed in is the first of the new stream: drop the old stream's bytes
    /// (all of them, or up to the end of the last stanza) before calling `next` again.
    pub fn reset(&mut self) {
        self.dead = None;
        self.scanner.reset();
    }

    /// How many input bytes the tokenizer has looked at so far, counting a byte again
    /// each time it is looked at again. Evidence that work stays linear in the input
    /// however it is split; for tests.
    #[doc(hidden)]
    pub fn bytes_examined(&self) -> u64 {
        self.scanner.examined
    }
}
