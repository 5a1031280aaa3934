//! Character data inside a stanza: validated in one scan that also records each
//! reference, so that [`Text::unescaped`] does not scan the text again.

use std::str;

use super::limits::Lim;
use super::span::span;
use super::state::{Scan, Scanner};
use super::token::{Step, Text, TextKind, Token};
use crate::chars::{self, RefState, RefStep};
use crate::escape::Reference;
use crate::{Error, utf8};

/// How many references a text token records for [`Text::unescaped`]; text with more is
/// unescaped from scratch. A stranger's text can hold thousands (a 64 KiB stanza of
/// `&lt;`), and the record's storage stays with the connection: this keeps it under a
/// kilobyte.
const MAX_RECORDED_REFS: usize = 32;

/// Records `r` among `refs` if there is room; whether there was.
#[inline(always)]
fn record(refs: &mut Vec<Reference>, r: Reference) -> bool {
    let room = refs.len() < MAX_RECORDED_REFS;
    if room {
        refs.push(r);
    }
    room
}

impl Scanner {
    /// Character data inside a stanza, validated and handed out up to the last point
    /// that is certainly valid: before a reference or UTF-8 sequence the read cut off,
    /// or before an error (which the next call then reports).
    pub(super) fn text<'a>(
        &'a mut self,
        buf: &'a [u8],
        lim: Lim,
        resume: Option<(usize, RefState)>,
    ) -> Step<'a> {
        let start = self.pos;
        self.refs.clear();
        let b = span(buf, start, lim.end);
        let max_name = self.limits.max_name_bytes;
        let mut i = 0;
        if let Some((at, rs)) = resume {
            self.scan = Scan::Idle;
            match chars::scan_ref(b, at, rs, max_name) {
                RefStep::Done { end, .. } => i = end,
                RefStep::Incomplete(rs) => {
                    self.note(b.len().saturating_sub(at));
                    self.scan = Scan::TextRef(b.len(), rs);
                    return lim.need_more();
                }
                RefStep::Invalid(e) => return Err(e),
            }
        }
        // Find where this run of text stops: `<`, the end of the input, or an error. One
        // scan finds markup, references and forbidden characters alike.
        let mut fail = None;
        let mut open_ref = None;
        let mut cr = false;
        // More references than `refs` records.
        let mut overflow = false;
        let stop = loop {
            let j = chars::skip_text(b, i);
            let Some(&c) = b.get(j) else {
                break b.len();
            };
            match c {
                b'<' => break j,
                b'&' => {
                    // The predefined entities and complete numeric references inline;
                    // everything else through the scanner.
                    let rest = b.get(j + 1..).unwrap_or_default();
                    if let Some((len, ch)) = chars::reference(rest) {
                        i = j + 1 + len;
                        overflow |= !record(&mut self.refs, Reference { at: j, end: i, ch });
                        continue;
                    }
                    match chars::scan_ref(b, j + 1, RefState::Amp, max_name) {
                        RefStep::Done { end, ch } => {
                            overflow |= !record(&mut self.refs, Reference { at: j, end, ch });
                            i = end;
                        }
                        RefStep::Incomplete(rs) => {
                            open_ref = Some(rs);
                            break j;
                        }
                        RefStep::Invalid(e) => {
                            fail = Some(e);
                            break j;
                        }
                    }
                }
                b'>' => {
                    // The two bytes before can only be text: a tag ends in `>`.
                    if buf.get((start + j).saturating_sub(2)..start + j) == Some(b"]]") {
                        fail = Some(Error::CDataEndInText);
                        break j;
                    }
                    i = j + 1;
                }
                // A control character or 0xEF: forbidden unless a tab, LF, CR or the
                // start of a character other than U+FFFE and U+FFFF. A sequence the input
                // cuts off is left to the UTF-8 check below, which waits for the rest.
                _ => {
                    cr |= c == b'\r';
                    let here = b.get(j..b.len().min(j + 3)).unwrap_or_default();
                    if chars::find_forbidden(here) == Some(0) {
                        fail = Some(Error::ForbiddenChar);
                        break j;
                    }
                    i = j + 1;
                }
            }
        };
        // The run was cut by the end of the input, not by markup or an error.
        let cut = stop == b.len() && fail.is_none() && open_ref.is_none();
        let scanned = if open_ref.is_some() {
            b.len()
        } else {
            (stop + 1).min(b.len())
        };
        self.note(scanned + stop);
        let run = b.get(..stop).unwrap_or_default();
        let mut text = match utf8::prefix(b, stop) {
            Ok(s) => s,
            Err(e) => {
                // A sequence cut off by the end of the input may still complete.
                if e.error_len().is_some() || stop < b.len() {
                    fail = Some(Error::InvalidUtf8);
                    open_ref = None;
                }
                str::from_utf8(run.get(..e.valid_up_to()).unwrap_or_default()).unwrap_or_default()
            }
        };
        // A CR the input ends with waits for the next read: with a LF after it, the
        // pair is one line end, and unescaping each text token must agree with
        // unescaping the whole run.
        if cut && fail.is_none() {
            text = text.strip_suffix('\r').unwrap_or(text);
        }
        if !text.is_empty() {
            self.pos += text.len();
            // Only references inside the token count (an error or a cut may end it
            // before the scan's stop).
            let inside = self.refs.partition_point(|r| r.end <= text.len());
            self.refs.truncate(inside);
            let kind = if resume.is_some() || cr || overflow {
                TextKind::Other
            } else if self.refs.is_empty() {
                TextKind::Plain
            } else {
                TextKind::References
            };
            return Ok(Token::Text(Text {
                raw: text,
                kind,
                refs: &self.refs,
            }));
        }
        if let Some(e) = fail {
            return Err(e);
        }
        if let Some(rs) = open_ref {
            self.scan = Scan::TextRef(b.len(), rs);
        }
        lim.need_more()
    }
}
