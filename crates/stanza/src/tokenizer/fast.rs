//! The fast paths: the common start tag read in one straight pass and the common end
//! tag compared with the open element's name, each in a single call; anything else goes
//! to the resumable scans.

use super::element::{AttrWork, Complete};
use super::limits::{Lim, TokenizerLimits};
use super::span::span;
use super::state::{EndScan, Scanner};
use super::token::{AttrSpan, EndTag, Step, Token};
use crate::chars::{self, Miss, RefState, RefStep, byte};
use crate::utf8;

impl Scanner {
    /// The start tag at `pos` (`rest` is the usable input from there): read in one
    /// pass by [`fast_start_tag`] and, in the common case ([`Self::open_plain`]),
    /// opened in the same call, which writes the token straight into the caller's;
    /// anything else goes to the resumable scanner. So does a tag that the input cuts
    /// off, which only happens when a value holds the input's last `>` (see
    /// [`Self::scan_token`]), and then only once a tag: the scanner keeps its place.
    #[inline(never)]
    pub(super) fn start<'a>(&'a mut self, buf: &'a [u8], rest: &'a [u8], lim: Lim) -> Step<'a> {
        self.attrs.clear();
        match fast_start_tag(rest, &mut self.attrs, &self.limits) {
            Ok(c) => {
                self.note(c.gt + 1);
                if !self.is_plain(&c) {
                    return self.finish_start(buf, rest, c);
                }
                let tag = self.tag_text(rest, &c)?;
                let opened = self.open_plain(buf, tag, c)?;
                Ok(self.start_token(opened))
            }
            Err(miss) => {
                if miss == Miss::Cut {
                    self.note(rest.len());
                }
                self.start_over(buf, lim)
            }
        }
    }

    /// The end tag at `pos` (`rest` is the usable input from there): the common one
    /// compared with the open element's name in the same call, which writes the token
    /// straight into the caller's; anything else goes to the resumable scanner.
    #[inline(never)]
    pub(super) fn end<'a>(&'a mut self, buf: &'a [u8], rest: &'a [u8], lim: Lim) -> Step<'a> {
        if let Some(end) = self.fast_end_tag(buf, rest) {
            return Ok(Token::End(end));
        }
        self.end_tag(
            buf,
            lim,
            EndScan {
                i: 2,
                name_end: 0,
                colon: None,
            },
        )
    }

    /// The common end tag, `</name>` naming the open element of the stanza exactly,
    /// read by comparing it with that element's name, which was validated with its
    /// start tag. `None` for anything else (whitespace before `>`, a mismatch, the input
    /// cut short, the stream's end tag), which [`Self::end_tag`] then reads and reports.
    /// `rest` is the usable input from `pos` on.
    #[inline(always)]
    fn fast_end_tag<'b>(&mut self, buf: &'b [u8], rest: &'b [u8]) -> Option<EndTag<'b>> {
        let f = *self.frames.last()?;
        let len = f.name.1 - f.name.0;
        if rest.get(2 + len) != Some(&b'>') {
            return None;
        }
        // A non-ASCII name goes the long way; it is as valid there.
        let open_at = self.stanza_start + f.name.0;
        let name = match (rest.get(2..18), buf.get(open_at..open_at + 16)) {
            (Some(name), Some(open)) if len <= 16 => {
                utf8::same_ascii_16(name.try_into().ok()?, open.try_into().ok()?, len)?
            }
            _ => utf8::same_ascii(rest.get(2..2 + len)?, self.in_buf(buf, f.name))?,
        };
        self.note(len + 1);
        self.pos += len + 3;
        Some(self.close(name, f.colon))
    }
}

/// Reads a start tag that lies entirely in `b` (which starts at its `<`) in one
/// straight pass, recording attributes in `attrs`, checking them for duplicates and
/// noting what else [`Scanner::open`] has to do with them. It takes only the common
/// shape, ASCII names and `name='value'` with nothing around the `=`; on anything else
/// (an error, a limit, an unusual shape) it gives up with [`Miss::Odd`] and the
/// resumable scanner, which owns all the error reporting, reads the tag instead; so
/// this only has to agree with it on tags that are valid. [`Miss::Cut`] means that all
/// of `b` had the common shape and the tag goes on past it.
#[inline(always)]
fn fast_start_tag(
    b: &[u8],
    attrs: &mut Vec<AttrSpan>,
    limits: &TokenizerLimits,
) -> Result<Complete, Miss> {
    let (name_end, name_colon) = chars::fast_qname(b, 1)?;
    if name_end - 1 > limits.max_name_bytes {
        return Err(Miss::Odd);
    }
    let mut work = AttrWork::NONE;
    let mut i = name_end;
    loop {
        let mut c = byte(b, i)?;
        if chars::is_ws(c) {
            i += 1;
            c = byte(b, i)?;
            while chars::is_ws(c) {
                i += 1;
                c = byte(b, i)?;
            }
            if chars::is_ascii_start(c) {
                if attrs.len() >= limits.max_attributes {
                    return Err(Miss::Odd);
                }
                let a = fast_attribute(b, i, limits.max_name_bytes)?;
                let len = a.name_end - a.name_start;
                let name = span(b, a.name_start, a.name_end);
                for o in attrs.iter() {
                    if o.name_end - o.name_start == len
                        && b.get(o.name_start..o.name_end) == Some(name)
                    {
                        return Err(Miss::Odd);
                    }
                }
                if c == b'x' && b.get(a.name_start..a.name_start + 5) == Some(b"xmlns") {
                    // `xmlns` or `xmlns:p` declares; `xmlnsx` is an ordinary name.
                    match a.colon {
                        None if len == 5 && a.plain => work.default_decl = Some(attrs.len()),
                        None => work.declarations |= len == 5,
                        Some(c) if c - a.name_start == 5 => work.declarations = true,
                        Some(_) => work.prefixed = true,
                    }
                } else {
                    work.prefixed |= a.colon.is_some();
                }
                attrs.push(a);
                i = a.value_end + 1;
                continue;
            }
        }
        let (gt, self_closing) = match c {
            b'>' => (i, false),
            b'/' => match byte(b, i + 1)? {
                b'>' => (i + 1, true),
                _ => return Err(Miss::Odd),
            },
            _ => return Err(Miss::Odd),
        };
        if work.prefixed {
            work.prefixed = !only_xml_prefixed(b, attrs);
        }
        return Ok(Complete {
            gt,
            self_closing,
            name_end,
            name_colon,
            attrs: work,
        });
    }
}

/// Whether every prefixed attribute among `attrs` (of the tag `b`) has the prefix `xml`,
/// as in `xml:lang`: that prefix is bound by definition and no other prefix may name its
/// namespace, so such attributes need no lookup, and [`fast_start_tag`]'s raw-name check
/// already found their duplicates. Kept out of line: it runs only for prefixed attributes.
#[inline(never)]
fn only_xml_prefixed(b: &[u8], attrs: &[AttrSpan]) -> bool {
    attrs.iter().all(|a| match a.colon {
        Some(colon) => b.get(a.name_start..colon) == Some(b"xml"),
        None => true,
    })
}

/// One attribute `name='value'` starting at `b[name_start]`, for [`fast_start_tag`].
#[inline(always)]
fn fast_attribute(b: &[u8], name_start: usize, max_name: usize) -> Result<AttrSpan, Miss> {
    let (name_end, colon) = chars::fast_qname(b, name_start)?;
    if name_end - name_start > max_name || byte(b, name_end)? != b'=' {
        return Err(Miss::Odd);
    }
    let quote = byte(b, name_end + 1)?;
    if quote != b'\'' && quote != b'"' {
        return Err(Miss::Odd);
    }
    let value_start = name_end + 2;
    // The quote picks one of two scans with constant stop bytes.
    let i = if quote == b'\'' {
        chars::skip_value(b, value_start, b'\'')
    } else {
        chars::skip_value(b, value_start, b'"')
    };
    let (i, plain) = match byte(b, i)? {
        c if c == quote => (i, true),
        _ => value_rest(b, i, quote, max_name)?,
    };
    Ok(AttrSpan {
        name_start,
        name_end,
        colon,
        value_start,
        value_end: i,
        plain,
    })
}

/// The rest of an attribute value for [`fast_attribute`] from `b[i]`, the first byte
/// other than the quote that its scan stopped at (rare, so kept out of the caller's
/// way): where the value ends, and whether it is still plain (a 0xEF that starts a
/// character other than U+FFFE or U+FFFF leaves it so).
#[inline(never)]
fn value_rest(b: &[u8], mut i: usize, quote: u8, max_name: usize) -> Result<(usize, bool), Miss> {
    let mut plain = true;
    loop {
        match byte(b, i)? {
            c if c == quote => return Ok((i, plain)),
            b'&' => match chars::scan_ref(b, i + 1, RefState::Amp, max_name) {
                RefStep::Done { end, .. } => {
                    plain = false;
                    i = end;
                }
                RefStep::Incomplete(_) => return Err(Miss::Cut),
                RefStep::Invalid(_) => return Err(Miss::Odd),
            },
            b'\t' | b'\n' | b'\r' => {
                plain = false;
                i += 1;
            }
            0xEF => match chars::is_nonchar_at(b, i) {
                Some(false) => i += 1,
                Some(true) => return Err(Miss::Odd),
                None => return Err(Miss::Cut),
            },
            _ => return Err(Miss::Odd),
        }
        i = chars::skip_value(b, i, quote);
    }
}
