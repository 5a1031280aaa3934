//! Zero-copy, incremental tokenizer for an RFC 6120 XML stream (sans-IO, like httparse).
//!
//! The caller owns one growable buffer per connection and appends bytes as they come off
//! the socket. It passes the whole buffer (always starting at the same base) to
//! [`Tokenizer::next`], which returns one [`Token`] borrowing from that buffer, or
//! [`Token::NeedMore`] when the bytes so far end inside a token. The tokenizer remembers
//! how far it has scanned, so bytes arriving one at a time are never rescanned. It reads
//! no further than the last `>` in the buffer (but for whitespace between stanzas): a
//! read that ends inside a tag leaves the tag for the next read instead of reading it in
//! part, and text after that `>` comes out once the markup after it has come (or the
//! stanza outgrows its limit), and so does an error in it.
//!
//! Between stanzas the caller calls [`Tokenizer::compact`] and drops that many leading
//! bytes from its buffer, so memory per connection is bounded by the stanza size limit.
//!
//! ```text
//! loop {
//!     match tokenizer.next(&buf)? {
//!         Token::NeedMore => break,          // read more from the socket
//!         Token::StanzaEnd(span) => { /* buf[span] is one complete stanza */ }
//!         token => { /* act on it */ }
//!     }
//! }
//! let n = tokenizer.compact();
//! buf.drain(..n);
//! ```
//!
//! What is accepted is RFC 6120 section 11's restricted XML, namespace-well-formed and
//! UTF-8 only. An XML declaration may open a stream (it is not a processing
//! instruction); comments, processing instructions, DTDs and entities other than the
//! five predefined ones are `restricted-xml`. So are CDATA sections: RFC 6120 does not
//! list them, but a CDATA section is the one construct whose content cannot be handed
//! out as raw text that [`unescape`] resolves, and XMPP software escapes text rather
//! than using them. Text between stanzas must be whitespace (`invalid-xml` otherwise).
//! Each rejection is a typed [`Error`] that names its stream error condition, the most
//! specific one RFC 6120 offers (never the catch-all `bad-format`).
//!
//! The same input gives the same tokens (text may arrive in more pieces) and the same
//! error however it is split into reads, and steady-state tokenizing allocates nothing.

// `unsafe` is denied everywhere but in `utf8`, which allows it to turn bytes it has just
// checked to be ASCII into `&str` without paying for `str::from_utf8`.
#![deny(unsafe_code)]

mod chars;
mod decl;
mod error;
mod escape;
mod tokenizer;
mod utf8;

pub use error::{Error, StreamErrorCondition};
pub use escape::{escape_attr, escape_text, unescape, unescape_attr};
pub use tokenizer::{
    Attribute, Attributes, EndTag, QName, StartTag, Text, Token, Tokenizer, TokenizerLimits,
};

#[cfg(test)]
mod tests;
