//! Zero-copy, incremental tokenizer for an RFC 6120 XML stream (sans-IO, like httparse).
//!
//! The caller owns one growable buffer per connection and appends bytes as they come off
//! the socket. It passes the whole buffer (always starting at the same base) to
//! [`Tokenizer::next`], which returns one [`Token`] borrowing from that buffer, or
//! [`Token::NeedMore`] when the bytes so far end inside a token. The tokenizer remembers
//! how far it has scanned, so bytes arriving one at a time are never rescanned.
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

#![forbid(unsafe_code)]

mod error;
mod escape;
mod tokenizer;

pub use error::{Error, StreamErrorCondition};
pub use escape::{escape_attr, escape_text, unescape};
pub use tokenizer::{Attribute, Attributes, EndTag, Limits, QName, StartTag, Token, Tokenizer};
