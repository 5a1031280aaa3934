//! The resumable scans of start and end tags, which take every tag the fast paths do
//! not: they keep their place when the input ends inside a tag and own all the error
//! reporting.

use super::element::{AttrWork, Complete};
use super::limits::Lim;
use super::span::span;
use super::state::{EndScan, Phase, Scan, Scanner, TagAt, TagScan};
use super::token::{AttrSpan, Step, Token};
use crate::chars::{self, RefState, RefStep, same};
use crate::{Error, utf8};

impl Scanner {
    pub(super) fn start_tag<'a>(
        &'a mut self,
        buf: &'a [u8],
        lim: Lim,
        mut st: TagScan,
    ) -> Step<'a> {
        let b = span(buf, self.pos, lim.end);
        let max_name = self.limits.max_name_bytes;
        let from = st.i;
        let mut i = st.i;
        let done = loop {
            match st.at {
                TagAt::Name => {
                    i = chars::skip_name(b, i);
                    if i - 1 > max_name {
                        return Err(Error::NameTooLong);
                    }
                    if i == b.len() {
                        break None;
                    }
                    st.name_colon = chars::qname(span(b, 1, i))?.map(|c| c + 1);
                    st.name_end = i;
                    st.at = TagAt::Space(false);
                }
                TagAt::Space(ws) => {
                    let j = chars::skip_ws(b, i);
                    let ws = ws || j > i;
                    i = j;
                    st.at = TagAt::Space(ws);
                    match b.get(i) {
                        None => break None,
                        Some(b'>') => break Some((i, false)),
                        Some(b'/') => {
                            i += 1;
                            st.at = TagAt::Slash;
                        }
                        Some(&c) if chars::is_name_start(c) => {
                            if !ws {
                                return Err(Error::MissingWhitespace);
                            }
                            if self.attrs.len() >= self.limits.max_attributes {
                                return Err(Error::TooManyAttributes);
                            }
                            self.attrs.push(AttrSpan {
                                name_start: i,
                                name_end: i,
                                colon: None,
                                value_start: i,
                                value_end: i,
                                plain: true,
                            });
                            i += 1;
                            st.at = TagAt::AttrName;
                        }
                        Some(_) => return Err(Error::MalformedTag),
                    }
                }
                TagAt::AttrName => {
                    i = chars::skip_name(b, i);
                    let Some(a) = self.attrs.last_mut() else {
                        return Err(Error::MalformedTag);
                    };
                    if i - a.name_start > max_name {
                        return Err(Error::NameTooLong);
                    }
                    if i == b.len() {
                        break None;
                    }
                    a.colon = chars::qname(span(b, a.name_start, i))?.map(|c| c + a.name_start);
                    a.name_end = i;
                    st.at = TagAt::BeforeEq;
                }
                TagAt::BeforeEq => {
                    i = chars::skip_ws(b, i);
                    match b.get(i) {
                        None => break None,
                        Some(b'=') => {
                            i += 1;
                            st.at = TagAt::BeforeValue;
                        }
                        Some(_) => return Err(Error::AttributeWithoutValue),
                    }
                }
                TagAt::BeforeValue => {
                    i = chars::skip_ws(b, i);
                    match b.get(i) {
                        None => break None,
                        Some(&q @ (b'\'' | b'"')) => {
                            i += 1;
                            if let Some(a) = self.attrs.last_mut() {
                                a.value_start = i;
                            }
                            st.at = TagAt::Value(q);
                        }
                        Some(_) => return Err(Error::UnquotedAttributeValue),
                    }
                }
                TagAt::Value(q) => {
                    i = chars::skip_value(b, i, q);
                    match b.get(i) {
                        None => break None,
                        Some(&c) if c == q => {
                            if let Some(a) = self.attrs.last_mut() {
                                a.value_end = i;
                            }
                            i += 1;
                            st.at = TagAt::Space(false);
                        }
                        Some(b'<') => return Err(Error::LtInAttributeValue),
                        Some(&c @ (b'&' | b'\t' | b'\n' | b'\r')) => {
                            if let Some(a) = self.attrs.last_mut() {
                                a.plain = false;
                            }
                            i += 1;
                            if c == b'&' {
                                st.at = TagAt::Ref(q, RefState::Amp);
                            }
                        }
                        Some(0xEF) => match chars::is_nonchar_at(b, i) {
                            Some(false) => i += 1,
                            Some(true) => return Err(Error::ForbiddenChar),
                            None => break None,
                        },
                        Some(_) => return Err(Error::ForbiddenChar),
                    }
                }
                TagAt::Ref(q, rs) => match chars::scan_ref(b, i, rs, max_name) {
                    RefStep::Done { end, .. } => {
                        i = end;
                        st.at = TagAt::Value(q);
                    }
                    RefStep::Incomplete(rs) => {
                        i = b.len();
                        st.at = TagAt::Ref(q, rs);
                        break None;
                    }
                    RefStep::Invalid(e) => return Err(e),
                },
                TagAt::Slash => match b.get(i) {
                    None => break None,
                    Some(b'>') => break Some((i, true)),
                    Some(_) => return Err(Error::MalformedTag),
                },
            }
        };
        self.note(i.saturating_sub(from));
        let Some((gt, self_closing)) = done else {
            st.i = i;
            self.scan = Scan::StartTag(st);
            return lim.need_more();
        };
        self.scan = Scan::Idle;
        let tag = Complete {
            gt,
            self_closing,
            name_end: st.name_end,
            name_colon: st.name_colon,
            attrs: AttrWork::ALL,
        };
        self.finish_start(buf, b, tag)
    }

    /// The start tag at `pos`, read from its `<` by the resumable scanner.
    pub(super) fn start_over<'a>(&'a mut self, buf: &'a [u8], lim: Lim) -> Step<'a> {
        self.attrs.clear();
        self.start_tag(
            buf,
            lim,
            TagScan {
                i: 1,
                at: TagAt::Name,
                name_end: 0,
                name_colon: None,
            },
        )
    }

    pub(super) fn end_tag<'b>(&mut self, buf: &'b [u8], lim: Lim, mut st: EndScan) -> Step<'b> {
        let b = span(buf, self.pos, lim.end);
        let from = st.i;
        let mut i = st.i;
        if st.i == 2
            && let Ok((end, colon)) = chars::fast_qname(b, i)
            && end < b.len()
            && end - 2 <= self.limits.max_name_bytes
        {
            st.name_end = end;
            st.colon = colon.map(|c| c - 2);
            i = end;
        }
        if st.name_end == 0 {
            i = chars::skip_name(b, i);
            if i - 2 > self.limits.max_name_bytes {
                return Err(Error::NameTooLong);
            }
            if i == b.len() {
                self.note(i.saturating_sub(from));
                self.scan = Scan::EndTag(EndScan {
                    i,
                    name_end: 0,
                    colon: None,
                });
                return lim.need_more();
            }
            if i == 2 {
                return Err(Error::InvalidName);
            }
            st.colon = chars::qname(span(b, 2, i))?;
            st.name_end = i;
        }
        i = chars::skip_ws(b, i);
        self.note((i + 1).saturating_sub(from));
        match b.get(i) {
            None => {
                self.scan = Scan::EndTag(EndScan { i, ..st });
                return lim.need_more();
            }
            Some(b'>') => {}
            Some(_) => return Err(Error::MalformedTag),
        }
        self.scan = Scan::Idle;
        let name_bytes = span(b, 2, st.name_end);
        let name = utf8::from_utf8(name_bytes).map_err(|_| Error::InvalidUtf8)?;
        let open = match self.frames.last() {
            Some(f) => self.in_buf(buf, f.name),
            None => self.header_name.as_bytes(),
        };
        if !same(open, name_bytes) {
            return Err(Error::MismatchedEndTag);
        }
        self.pos += i + 1;
        if self.frames.is_empty() {
            self.phase = Phase::Closed;
            return Ok(Token::StreamClose);
        }
        Ok(Token::End(self.close(name, st.colon)))
    }
}
