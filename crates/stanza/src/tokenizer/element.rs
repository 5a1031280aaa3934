//! A complete start tag opened: checked for duplicates, its namespace declarations put
//! in scope, its names resolved, and its token made; and the element closed again.

use super::scope::{
    Frame, Loc, NsDecl, NsOut, NsRef, Stored, XML_NS, XMLNS_NS, check_declaration, store,
};
use super::span::{span, sub};
use super::state::{Pending, Phase, Scanner};
use super::token::{Attributes, EndTag, QName, StartTag, Step, Token};
use crate::chars::same;
use crate::escape::unescape_attr_into;
use crate::{Error, utf8};

impl Scanner {
    /// Whether [`Self::open_plain`] can open the start tag `c`.
    #[inline]
    pub(super) fn is_plain(&self, c: &Complete) -> bool {
        let work = c.attrs;
        !(self.phase == Phase::Prolog || work.duplicates || work.declarations || work.prefixed)
            && c.name_colon.is_none()
    }

    /// The token for a start tag that [`Self::open_plain`] opened.
    #[inline(always)]
    pub(super) fn start_token<'a>(&'a self, o: Opened<'a>) -> Token<'a> {
        let namespace = match o.namespace {
            NsOut::Str(ns) => ns,
            NsOut::Stored(Stored::Arena(a, b)) => sub(&self.ns_arena, a, b),
            NsOut::Stored(Stored::Header(a, b)) => sub(&self.header_store, a, b),
        };
        Token::Start(StartTag {
            name: QName {
                prefix: None,
                local: sub(o.tag, 1, o.name_end),
            },
            namespace,
            attributes: Attributes {
                tag: o.tag,
                spans: &self.attrs,
            },
            self_closing: o.self_closing,
            depth: o.depth,
        })
    }

    #[inline(always)]
    pub(super) fn finish_start<'a>(
        &'a mut self,
        buf: &'a [u8],
        b: &'a [u8],
        c: Complete,
    ) -> Step<'a> {
        let tag = self.tag_text(b, &c)?;
        self.open(buf, tag, c)
    }

    /// The complete start tag `c` at the start of `b`, as text. Names and whitespace
    /// passed the byte tables and values were screened for forbidden characters while
    /// scanning; only UTF-8 validity is left to check.
    #[inline(always)]
    pub(super) fn tag_text<'b>(&mut self, b: &'b [u8], c: &Complete) -> Result<&'b str, Error> {
        self.note(c.gt + 1);
        utf8::prefix(b, c.gt + 1).map_err(|_| Error::InvalidUtf8)
    }

    /// A complete, lexically valid start tag: namespaces, duplicates, depth.
    fn open<'a>(&'a mut self, buf: &'a [u8], tag: &'a str, st: Complete) -> Step<'a> {
        if self.is_plain(&st) {
            let opened = self.open_plain(buf, tag, st)?;
            return Ok(self.start_token(opened));
        }
        let header = self.phase == Phase::Prolog;
        let work = st.attrs;
        let depth = if header { 0 } else { self.frames.len() + 1 };
        if depth > self.limits.max_depth {
            return Err(Error::TooDeep);
        }
        let t = tag.as_bytes();
        if depth == 1 {
            self.in_stanza = true;
            self.stanza_start = self.pos;
        }
        // Offsets of this tag relative to the stanza start, for declarations kept in `ns`.
        let rel = if header {
            0
        } else {
            self.pos - self.stanza_start
        };
        let ns_len = self.ns.len();
        let outer_default = self.default_ns;
        if header {
            self.header_ns.clear();
            self.header_store.clear();
            self.header_name.clear();
            self.header_name.push_str(sub(tag, 1, st.name_end));
        }
        // Duplicates and namespace declarations first (unless the scan ruled them out);
        // prefixed attributes are resolved afterwards, once all of this element's
        // declarations are in scope.
        let prefixed = if work.duplicates || work.declarations || header {
            self.declare(tag, rel, header, work.duplicates)?
        } else {
            if let Some(a) = work.default_decl.and_then(|k| self.attrs.get(k)) {
                // `xmlns='uri'`, alone among plain attributes: no unescaping, and the
                // only rule a default declaration can break is naming a reserved
                // namespace.
                let uri = span(t, a.value_start, a.value_end);
                if uri == XML_NS.as_bytes() || uri == XMLNS_NS.as_bytes() {
                    return Err(Error::ReservedNamespace);
                }
                let at = rel + a.name_end;
                self.default_ns = NsRef::Stanza(self.ns.len());
                self.ns.push(NsDecl {
                    prefix: Loc::Buf(at, at),
                    uri: Loc::Buf(rel + a.value_start, rel + a.value_end),
                });
            }
            work.prefixed
        };
        let ns = match st.name_colon {
            Some(c) => {
                let prefix = span(t, 1, c);
                if prefix == b"xmlns" {
                    return Err(Error::ReservedNamespace);
                }
                self.lookup(buf, prefix).ok_or(Error::UndeclaredPrefix)?
            }
            None => self.default_ns,
        };
        if prefixed {
            self.check_prefixed(buf, t)?;
        }
        let ns = self.resolve(buf, ns, tag, rel);
        let self_closing = st.self_closing;
        if header {
            self.phase = Phase::Stream;
            if self_closing {
                self.phase = Phase::Closed;
                self.pending = Pending::StreamClose;
            }
        } else {
            self.frames.push(Frame {
                name: (rel + 1, rel + st.name_end),
                colon: st.name_colon.map(|c| c - 1),
                ns_len,
                outer_default,
            });
            if self_closing {
                self.pending = Pending::End;
            }
        }
        self.pos += tag.len();
        self.decl_allowed = false;
        let namespace = match ns {
            NsOut::Str(ns) => ns,
            NsOut::Stored(Stored::Arena(a, b)) => sub(&self.ns_arena, a, b),
            NsOut::Stored(Stored::Header(a, b)) => sub(&self.header_store, a, b),
        };
        let start = StartTag {
            name: QName::at(tag, 1, st.name_colon, st.name_end),
            namespace,
            attributes: Attributes {
                tag,
                spans: &self.attrs,
            },
            self_closing,
            depth,
        };
        Ok(if header {
            Token::StreamOpen(start)
        } else {
            Token::Start(start)
        })
    }

    /// [`Self::open`] for the common element inside a stanza, as the scan found it: an
    /// unprefixed name, no prefixed attributes, no duplicates, and no namespace
    /// declaration but perhaps a default one (`xmlns='uri'`) that needs no unescaping.
    #[inline(always)]
    pub(super) fn open_plain<'b>(
        &mut self,
        buf: &'b [u8],
        tag: &'b str,
        st: Complete,
    ) -> Result<Opened<'b>, Error> {
        let depth = self.frames.len() + 1;
        if depth > self.limits.max_depth {
            return Err(Error::TooDeep);
        }
        if depth == 1 {
            self.in_stanza = true;
            self.stanza_start = self.pos;
        }
        let rel = self.pos - self.stanza_start;
        let ns_len = self.ns.len();
        let outer_default = self.default_ns;
        let declared = st
            .attrs
            .default_decl
            .and_then(|k| self.attrs.get(k))
            .copied();
        let ns = match declared {
            Some(a) => {
                // The only rule a default declaration can break is naming a reserved
                // namespace; the element is in the namespace it declares.
                let uri = sub(tag, a.value_start, a.value_end);
                if uri == XML_NS || uri == XMLNS_NS {
                    return Err(Error::ReservedNamespace);
                }
                let at = rel + a.name_end;
                self.default_ns = NsRef::Stanza(ns_len);
                self.ns.push(NsDecl {
                    prefix: Loc::Buf(at, at),
                    uri: Loc::Buf(rel + a.value_start, rel + a.value_end),
                });
                NsOut::Str(uri)
            }
            None => self.resolve(buf, outer_default, tag, rel),
        };
        self.frames.push(Frame {
            name: (rel + 1, rel + st.name_end),
            colon: None,
            ns_len,
            outer_default,
        });
        if st.self_closing {
            self.pending = Pending::End;
        }
        self.pos += tag.len();
        Ok(Opened {
            tag,
            name_end: st.name_end,
            namespace: ns,
            self_closing: st.self_closing,
            depth,
        })
    }

    /// The attribute pass of [`Self::open`] over the start tag `tag` (at `rel` in the
    /// stanza): duplicates (if `duplicates`) and namespace declarations, which are put
    /// in scope. Returns whether there are prefixed attributes to resolve.
    #[inline(never)]
    fn declare(
        &mut self,
        tag: &str,
        rel: usize,
        header: bool,
        duplicates: bool,
    ) -> Result<bool, Error> {
        let t = tag.as_bytes();
        let mut prefixed = false;
        for k in 0..self.attrs.len() {
            let Some(&a) = self.attrs.get(k) else { break };
            let name = span(t, a.name_start, a.name_end);
            let earlier = self.attrs.get(..k).unwrap_or_default();
            if duplicates
                && earlier
                    .iter()
                    .any(|o| same(span(t, o.name_start, o.name_end), name))
            {
                return Err(Error::DuplicateAttribute);
            }
            let prefix = match a.colon {
                None if name == b"xmlns" => (a.name_end, a.name_end),
                Some(c) if span(t, a.name_start, c) == b"xmlns" => (c + 1, a.name_end),
                Some(_) => {
                    prefixed = true;
                    continue;
                }
                None => continue,
            };
            let p = sub(tag, prefix.0, prefix.1);
            let raw = sub(tag, a.value_start, a.value_end);
            // Escaped names are unescaped straight into storage that is reused.
            let decl = if header {
                let at = store(&mut self.header_store, p);
                let mid = self.header_store.len();
                unescape_attr_into(raw, &mut self.header_store)?;
                let end = self.header_store.len();
                check_declaration(p, sub(&self.header_store, mid, end))?;
                NsDecl {
                    prefix: Loc::Header(at, mid),
                    uri: Loc::Header(mid, end),
                }
            } else if !a.plain {
                let at = self.ns_arena.len();
                unescape_attr_into(raw, &mut self.ns_arena)?;
                let end = self.ns_arena.len();
                check_declaration(p, sub(&self.ns_arena, at, end))?;
                NsDecl {
                    prefix: Loc::Buf(rel + prefix.0, rel + prefix.1),
                    uri: Loc::Arena(at, end),
                }
            } else {
                check_declaration(p, raw)?;
                NsDecl {
                    prefix: Loc::Buf(rel + prefix.0, rel + prefix.1),
                    uri: Loc::Buf(rel + a.value_start, rel + a.value_end),
                }
            };
            if header {
                if prefix.0 == prefix.1 {
                    self.default_ns = NsRef::Header(self.header_ns.len());
                }
                self.header_ns.push(decl);
            } else {
                if prefix.0 == prefix.1 {
                    self.default_ns = NsRef::Stanza(self.ns.len());
                }
                self.ns.push(decl);
            }
        }
        Ok(prefixed)
    }

    /// Prefixed attributes of the start tag `t` (all its declarations are in scope):
    /// each prefix must be bound, and two prefixes bound to one namespace make `p:x`
    /// and `q:x` the same name.
    fn check_prefixed(&self, buf: &[u8], t: &[u8]) -> Result<(), Error> {
        let attrs = self.attrs.as_slice();
        for (k, a) in attrs.iter().enumerate() {
            let Some(c) = a.colon else { continue };
            let prefix = span(t, a.name_start, c);
            if prefix == b"xmlns" {
                continue;
            }
            let uri = self.lookup(buf, prefix).ok_or(Error::UndeclaredPrefix)?;
            let local = span(t, c + 1, a.name_end);
            for o in attrs.get(..k).unwrap_or_default() {
                let Some(oc) = o.colon else { continue };
                let other = span(t, o.name_start, oc);
                if other == b"xmlns" || !same(span(t, oc + 1, o.name_end), local) {
                    continue;
                }
                if self
                    .lookup(buf, other)
                    .is_some_and(|l| self.uri(buf, l) == self.uri(buf, uri))
                {
                    return Err(Error::DuplicateAttribute);
                }
            }
        }
        Ok(())
    }

    /// The namespace name `r` stands for, as the start tag `tag` (at `rel` in the
    /// stanza) will hand it out. A declaration made in an enclosing element is copied
    /// into `ns_arena` the first time it is needed, so that elements inside it borrow it
    /// from there instead of validating its bytes as UTF-8 again each time; each
    /// declaration is copied at most once per stanza, so the arena stays within the
    /// stanza's size.
    #[inline]
    fn resolve<'b>(&mut self, buf: &'b [u8], r: NsRef, tag: &'b str, rel: usize) -> NsOut<'b> {
        let (uri, slot) = match r {
            NsRef::Empty => return NsOut::Str(""),
            NsRef::Xml => return NsOut::Str(XML_NS),
            NsRef::Header(i) => match self.header_ns.get(i) {
                Some(d) => (d.uri, None),
                None => return NsOut::Str(""),
            },
            NsRef::Stanza(i) => match self.ns.get(i) {
                Some(d) => (d.uri, Some(i)),
                None => return NsOut::Str(""),
            },
        };
        match uri {
            Loc::Buf(a, b) if a >= rel => NsOut::Str(sub(tag, a - rel, b - rel)),
            Loc::Buf(a, b) => NsOut::Stored(self.arena_copy(buf, (a, b), slot)),
            Loc::Arena(a, b) => NsOut::Stored(Stored::Arena(a, b)),
            Loc::Header(a, b) => NsOut::Stored(Stored::Header(a, b)),
        }
    }

    /// [`Self::resolve`]'s copy of the namespace name at `at` (relative to the stanza
    /// start) into `ns_arena`, recorded in declaration `slot`; once per declaration and
    /// stanza, so kept out of the common path.
    #[inline(never)]
    fn arena_copy(&mut self, buf: &[u8], at: (usize, usize), slot: Option<usize>) -> Stored {
        let s = utf8::from_utf8(self.in_buf(buf, at)).unwrap_or_default();
        let start = store(&mut self.ns_arena, s);
        let end = self.ns_arena.len();
        if let Some(d) = slot.and_then(|i| self.ns.get_mut(i)) {
            d.uri = Loc::Arena(start, end);
        }
        Stored::Arena(start, end)
    }

    /// Pops the innermost element of the stanza, which ends at `pos`.
    #[inline]
    pub(super) fn close<'b>(&mut self, name: &'b str, colon: Option<usize>) -> EndTag<'b> {
        let depth = self.frames.len();
        if let Some(f) = self.frames.pop() {
            self.ns.truncate(f.ns_len);
            self.default_ns = f.outer_default;
        }
        if self.frames.is_empty() {
            self.pending = Pending::StanzaEnd(self.pos);
        }
        EndTag {
            name: QName::at(name, 0, colon, name.len()),
            depth,
        }
    }

    /// The declaration binding `prefix` where the current element is, innermost first.
    fn lookup(&self, buf: &[u8], prefix: &[u8]) -> Option<NsRef> {
        if prefix == b"xml" {
            return Some(NsRef::Xml);
        }
        let stanza = self
            .ns
            .iter()
            .rposition(|d| same(self.loc(buf, d.prefix), prefix));
        if let Some(i) = stanza {
            return Some(NsRef::Stanza(i));
        }
        self.header_ns
            .iter()
            .rposition(|d| same(self.loc(buf, d.prefix), prefix))
            .map(NsRef::Header)
    }

    /// The namespace name `r` stands for, as bytes.
    fn uri<'s>(&'s self, buf: &'s [u8], r: NsRef) -> &'s [u8] {
        let decl = match r {
            NsRef::Empty => return b"",
            NsRef::Xml => return XML_NS.as_bytes(),
            NsRef::Header(i) => self.header_ns.get(i),
            NsRef::Stanza(i) => self.ns.get(i),
        };
        decl.map_or(b"", |d| self.loc(buf, d.uri))
    }

    fn loc<'s>(&'s self, buf: &'s [u8], loc: Loc) -> &'s [u8] {
        match loc {
            Loc::Buf(a, b) => self.in_buf(buf, (a, b)),
            Loc::Arena(a, b) => span(self.ns_arena.as_bytes(), a, b),
            Loc::Header(a, b) => span(self.header_store.as_bytes(), a, b),
        }
    }

    /// Bytes at offsets relative to the stanza start.
    pub(super) fn in_buf<'s>(&self, buf: &'s [u8], (a, b): (usize, usize)) -> &'s [u8] {
        span(buf, self.stanza_start + a, self.stanza_start + b)
    }
}

/// A start tag [`Scanner::open_plain`] opened, for its token.
pub(super) struct Opened<'b> {
    tag: &'b str,
    name_end: usize,
    namespace: NsOut<'b>,
    self_closing: bool,
    depth: usize,
}

/// A start tag whose `>` was found; offsets are relative to its `<`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Complete {
    pub(super) gt: usize,
    pub(super) self_closing: bool,
    pub(super) name_end: usize,
    pub(super) name_colon: Option<usize>,
    /// What [`Scanner::open`] still has to do with the attributes.
    pub(super) attrs: AttrWork,
}

/// What the attributes of a complete start tag still need, as far as the scan found out.
#[derive(Debug, Clone, Copy)]
pub(super) struct AttrWork {
    /// Not yet checked for two attributes with the same name.
    pub(super) duplicates: bool,
    /// Namespace declarations (`xmlns`, `xmlns:p`) may be among them.
    pub(super) declarations: bool,
    /// Attributes with a prefix other than `xmlns` may be among them.
    pub(super) prefixed: bool,
    /// With `declarations` false: the index of the one declaration, a default namespace
    /// (`xmlns`) with a value that needs no unescaping, the common case that
    /// [`Scanner::open`] handles without its attribute pass.
    pub(super) default_decl: Option<usize>,
}

impl AttrWork {
    /// No attributes yet: nothing to do.
    pub(super) const NONE: Self = Self {
        duplicates: false,
        declarations: false,
        prefixed: false,
        default_decl: None,
    };

    /// Nothing is known: check everything.
    pub(super) const ALL: Self = Self {
        duplicates: true,
        declarations: true,
        prefixed: true,
        default_decl: None,
    };
}
