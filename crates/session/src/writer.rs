//! The output buffer and the XML fragments every reply is built from. Replies are written
//! straight into one `Vec<u8>`, escaping every value that came from the client.

use crate::error::{StanzaCondition, StreamCondition};
use crate::ns;

/// Capacity reserved on the first write into an empty buffer: one reserve covers a typical
/// reply instead of a chain of doublings.
const INITIAL_CAPACITY: usize = 512;

/// Bytes waiting for the socket. Freed entirely once drained, so an idle connection holds
/// no output memory.
#[derive(Debug, Default)]
pub(crate) struct Output {
    buf: Vec<u8>,
    /// How many leading bytes of `buf` the I/O layer has written.
    written: usize,
}

impl Output {
    pub(crate) fn pending(&self) -> &[u8] {
        self.buf.get(self.written..).unwrap_or_default()
    }

    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes produced but not yet written.
    pub(crate) fn unsent(&self) -> usize {
        self.buf.len() - self.written
    }

    pub(crate) fn consumed(&mut self, n: usize) {
        self.written = self.written.saturating_add(n).min(self.buf.len());
        if self.written == self.buf.len() {
            self.discard();
        } else if self.written >= self.buf.len() - self.written {
            // A client that never quite catches up must not keep what it has read: once
            // the written part is as large as the unsent rest, the rest moves to the front.
            // It moves no more bytes than were written, so writing stays O(1) per byte.
            self.buf.drain(..self.written);
            self.written = 0;
        }
    }

    /// Drops everything unsent and frees the buffer.
    pub(crate) fn discard(&mut self) {
        self.buf = Vec::new();
        self.written = 0;
    }

    /// Appends markup that contains no client data.
    pub(crate) fn raw(&mut self, markup: &str) {
        if self.buf.capacity() == 0 {
            self.buf.reserve(INITIAL_CAPACITY.max(markup.len()));
        }
        self.buf.extend_from_slice(markup.as_bytes());
    }

    /// Appends escaped character data.
    pub(crate) fn text(&mut self, text: &str) {
        stanza::escape_text(text, &mut self.buf);
    }

    /// Appends ` name='value'` with the value escaped.
    pub(crate) fn attr(&mut self, name: &str, value: &str) {
        self.raw(" ");
        self.raw(name);
        self.raw("='");
        stanza::escape_attr(value, &mut self.buf);
        self.raw("'");
    }

    /// Appends a number as decimal text.
    pub(crate) fn number(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        self.buf.extend_from_slice(&digits[at..]);
    }

    /// Appends formatted text known to need no escaping (an IP address).
    pub(crate) fn display(&mut self, value: impl std::fmt::Display) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(self.buf, "{value}");
    }

    /// `<stream:error><condition/><text>detail</text></stream:error></stream:stream>`.
    pub(crate) fn stream_error(&mut self, condition: StreamCondition, detail: &str) {
        self.raw("<stream:error><");
        self.raw(condition.as_str());
        self.attr("xmlns", ns::STREAM_ERRORS);
        self.raw("/>");
        if !detail.is_empty() {
            self.raw("<text");
            self.attr("xmlns", ns::STREAM_ERRORS);
            self.raw(">");
            self.text(detail);
            self.raw("</text>");
        }
        self.raw("</stream:error></stream:stream>");
    }

    /// The start tag of a reply stanza: `<name type='..' id='..' to='..' from='..'>`, each
    /// addressing attribute only when given.
    pub(crate) fn stanza_open(
        &mut self,
        name: &str,
        kind: &str,
        id: Option<&str>,
        to: Option<&str>,
        from: Option<&str>,
    ) {
        self.raw("<");
        self.raw(name);
        self.raw(" type='");
        self.raw(kind);
        self.raw("'");
        if let Some(id) = id {
            self.attr("id", id);
        }
        if let Some(to) = to {
            self.attr("to", to);
        }
        if let Some(from) = from {
            self.attr("from", from);
        }
    }

    /// `<error type='..'><condition xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>`.
    pub(crate) fn stanza_error(&mut self, condition: StanzaCondition) {
        self.raw("<error type='");
        self.raw(condition.error_type());
        self.raw("'><");
        self.raw(condition.as_str());
        self.attr("xmlns", ns::STANZA_ERRORS);
        self.raw("/></error>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let mut out = Output::default();
        for n in [0, 7, 5222, u64::MAX] {
            out.number(n);
            out.raw(",");
        }
        assert_eq!(out.pending(), b"0,7,5222,18446744073709551615,");
    }

    #[test]
    fn frees_when_drained() {
        let mut out = Output::default();
        out.raw("abcdef");
        out.consumed(2);
        assert_eq!(out.pending(), b"cdef");
        assert_eq!(out.unsent(), 4);
        out.consumed(100);
        assert_eq!(out.pending(), b"");
        assert_eq!(out.buf.capacity(), 0);
    }

    #[test]
    fn written_bytes_are_dropped_before_the_buffer_drains() {
        let mut out = Output::default();
        for _ in 0..10_000 {
            out.raw("0123456789");
            out.consumed(out.unsent() - 1);
            assert!(out.buf.len() <= 2 * 11, "{} bytes kept", out.buf.len());
        }
        assert_eq!(out.pending(), b"9");
    }
}
