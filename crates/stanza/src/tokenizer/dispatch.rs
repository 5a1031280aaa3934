//! Each call's way to the scan that reads the token at `pos`: the token owed from the
//! last call, the scan a read cut short, or the next token by its first bytes; and the
//! little outside stanzas (whitespace, the XML declaration, forbidden markup).

use memchr::{memchr, memrchr};

use super::limits::Lim;
use super::span::span;
use super::state::{Pending, Phase, Scan, Scanner};
use super::token::{Step, Token};
use crate::{Error, chars, decl, utf8};

impl Scanner {
    #[inline(always)]
    pub(super) fn step<'a>(&'a mut self, buf: &'a [u8]) -> Step<'a> {
        if !matches!(self.pending, Pending::None) {
            return self.pending_token(buf);
        }
        self.scan_next(buf)
    }

    /// The next token from the input.
    #[inline(always)]
    fn scan_next<'a>(&'a mut self, buf: &'a [u8]) -> Step<'a> {
        // Here rather than in `scan_token`, whose every call would otherwise save
        // registers around this call that is made once a read.
        if buf.len() != self.gt_seen {
            self.find_last_gt(buf);
        }
        self.scan_token(buf)
    }

    /// The token owed since the last call. Out of line: about one call in six has one,
    /// and testing for it costs the others less than a jump through a table of cases.
    #[inline(never)]
    fn pending_token<'a>(&'a mut self, buf: &'a [u8]) -> Step<'a> {
        match std::mem::replace(&mut self.pending, Pending::None) {
            Pending::None => self.scan_next(buf),
            Pending::End => {
                let (name, colon) = match self.frames.last() {
                    Some(f) => (
                        utf8::from_utf8(self.in_buf(buf, f.name)).unwrap_or_default(),
                        f.colon,
                    ),
                    None => ("", None),
                };
                Ok(Token::End(self.close(name, colon)))
            }
            Pending::StanzaEnd(end) => {
                self.in_stanza = false;
                self.ns_arena.clear();
                Ok(Token::StanzaEnd(self.stanza_start..end))
            }
            Pending::StreamClose => Ok(Token::StreamClose),
        }
    }

    /// Reads the token at `pos`, resuming the scan that stopped there.
    ///
    /// Only the input up to its last `>` is read, but for whitespace between stanzas
    /// (see [`Lim::avail`]): every tag ends at a `>`, and text inside a stanza
    /// is of no use before the end tag that follows it. So a read that ends inside a
    /// token leaves it unread, rather than read in part and taken up again with the
    /// next read (which costs several times more), and text comes in fewer pieces. The
    /// bytes past the last `>` are read once a later one comes, or all at once when the
    /// stanza limit is exceeded, which is then reported as ever.
    #[inline]
    fn scan_token<'a>(&'a mut self, buf: &'a [u8]) -> Step<'a> {
        let unit = if self.in_stanza {
            self.stanza_start
        } else {
            self.pos
        };
        let limit = unit.saturating_add(self.limits.max_stanza_bytes);
        let over = buf.len() > limit;
        let lim = Lim {
            end: buf.len().min(if over { limit } else { self.gt_end }),
            over,
        };
        match self.scan {
            Scan::Idle => self.idle(buf, lim),
            Scan::StartTag(st) => self.start_tag(buf, lim, st),
            Scan::EndTag(st) => self.end_tag(buf, lim, st),
            Scan::Decl(i) => self.decl(buf, lim, i),
            Scan::TextRef(i, rs) => self.text(buf, lim, Some((i, rs))),
        }
    }

    /// Sets `gt_end` for the bytes the caller appended since the last call.
    #[inline(never)]
    fn find_last_gt(&mut self, buf: &[u8]) {
        if buf.len() < self.gt_seen {
            // Not the buffer the last call saw, plus more: search all of it.
            self.gt_seen = 0;
            self.gt_end = 0;
        }
        if let Some(k) = memrchr(b'>', span(buf, self.gt_seen, buf.len())) {
            self.gt_end = self.gt_seen + k + 1;
        }
        self.gt_seen = buf.len();
    }

    /// Starts the next token at `pos`.
    #[inline]
    fn idle<'a>(&'a mut self, buf: &'a [u8], lim: Lim) -> Step<'a> {
        let rest = span(buf, self.pos, lim.end);
        match rest.first() {
            Some(b'<') => {}
            Some(_) if !self.frames.is_empty() => return self.text(buf, lim, None),
            _ => return self.between_stanzas(buf, lim),
        }
        let Some(&second) = rest.get(1) else {
            self.note(1);
            return lim.need_more();
        };
        self.note(2);
        match second {
            b'/' => match self.phase {
                Phase::Prolog => Err(Error::UnexpectedEndTag),
                Phase::Closed => Err(Error::AfterStreamClose),
                Phase::Stream => self.end(buf, rest, lim),
            },
            b'?' => self.question(buf, lim),
            b'!' => self.bang(rest, lim),
            c if chars::is_name_start(c) => {
                if self.phase == Phase::Closed {
                    return Err(Error::AfterStreamClose);
                }
                self.start(buf, rest, lim)
            }
            _ => Err(Error::InvalidName),
        }
    }

    /// Nothing at `pos` before the last `>`, or something other than markup outside a
    /// stanza: whitespace, read up to the end of the buffer (whitespace may come after
    /// the last `>`), or what comes next is not complete yet.
    fn between_stanzas<'b>(&mut self, buf: &[u8], lim: Lim) -> Step<'b> {
        let avail = lim.avail(buf);
        match avail.get(self.pos) {
            Some(&c) if c != b'<' && self.frames.is_empty() => {
                self.whitespace(span(avail, self.pos, avail.len()))
            }
            _ => lim.need_more(),
        }
    }

    /// Whitespace outside stanzas; anything else there is an error.
    fn whitespace<'b>(&mut self, rest: &[u8]) -> Step<'b> {
        let n = rest
            .iter()
            .position(|&b| !chars::is_ws(b))
            .unwrap_or(rest.len());
        self.note(n + 1);
        if n > 0 {
            self.pos += n;
            self.decl_allowed = false;
            return Ok(Token::Whitespace);
        }
        Err(match self.phase {
            // A byte no UTF-8 sequence starts with (such as either byte order mark of
            // UTF-16, 0xFE 0xFF or 0xFF 0xFE) is no misplaced text but a wrong encoding.
            _ if rest.first().copied().is_some_and(chars::starts_no_utf8) => Error::InvalidUtf8,
            Phase::Prolog => Error::TextBeforeStream,
            Phase::Stream => Error::TextBetweenStanzas,
            Phase::Closed => Error::AfterStreamClose,
        })
    }

    /// `<!`: comments, CDATA sections and DTDs are all restricted XML.
    fn bang<'b>(&mut self, rest: &[u8], lim: Lim) -> Step<'b> {
        const MARKUP: [(&[u8], Error); 3] = [
            (b"<!--", Error::Comment),
            (b"<![CDATA[", Error::CData),
            (b"<!DOCTYPE", Error::Doctype),
        ];
        self.note(rest.len().min(9));
        let mut may_be = false;
        for (lead, error) in MARKUP {
            if rest.starts_with(lead) {
                return Err(error);
            }
            may_be |= lead.starts_with(rest);
        }
        if may_be {
            lim.need_more()
        } else {
            Err(Error::InvalidMarkup)
        }
    }

    /// `<?`: the XML declaration at the very start of a stream, or a forbidden PI, or
    /// `<?xml` elsewhere, which is neither (see [`Error::MisplacedXmlDecl`]).
    fn question<'a>(&'a mut self, buf: &'a [u8], lim: Lim) -> Step<'a> {
        let rest = span(buf, self.pos, lim.end);
        self.note(rest.len().min(6));
        // What of the target has come, up to its first three bytes: `xml` (in any case)?
        let target = rest.get(2..rest.len().min(5)).unwrap_or_default();
        let xml = b"xml"
            .get(..target.len())
            .is_some_and(|x| target.eq_ignore_ascii_case(x));
        let after = match rest.get(5) {
            None if xml => return lim.need_more(),
            Some(&c) if xml && (chars::is_ws(c) || c == b'?') => c,
            _ => return Err(Error::ProcessingInstruction),
        };
        let start = self.decl_allowed && self.phase == Phase::Prolog;
        if start && target == b"xml" && chars::is_ws(after) {
            return self.decl(buf, lim, 6);
        }
        Err(if start {
            Error::MalformedXmlDecl
        } else {
            Error::MisplacedXmlDecl
        })
    }

    #[inline(never)]
    fn decl<'a>(&'a mut self, buf: &'a [u8], lim: Lim, from: usize) -> Step<'a> {
        let b = span(buf, self.pos, lim.end);
        let mut i = from;
        loop {
            let Some(k) = memchr(b'?', b.get(i..).unwrap_or_default()) else {
                self.note(b.len().saturating_sub(from));
                self.scan = Scan::Decl(b.len());
                return lim.need_more();
            };
            let q = i + k;
            match b.get(q + 1) {
                None => {
                    self.note(q + 1 - from);
                    self.scan = Scan::Decl(q);
                    return lim.need_more();
                }
                Some(b'>') => {
                    let whole = b.get(..q + 2).unwrap_or_default();
                    self.note(q + 2 - from + whole.len());
                    decl::check(whole)?;
                    self.scan = Scan::Idle;
                    self.pos += whole.len();
                    self.decl_allowed = false;
                    // The declaration is no token: go on to the one after it.
                    return self.scan_token(buf);
                }
                Some(_) => i = q + 1,
            }
        }
    }
}
