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

use std::borrow::Cow;
use std::ops::Range;
use std::str;

use memchr::{memchr, memrchr};

use crate::Error;
use crate::chars::{self, Miss, RefState, RefStep, byte, same};
use crate::escape::{Reference, expand, unescape_attr_into};
use crate::utf8;
use crate::{decl, unescape, unescape_attr};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// Limits a stranger's input cannot exceed; each violation is `policy-violation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
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

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_stanza_bytes: 64 * 1024,
            max_depth: 32,
            max_attributes: 32,
            max_name_bytes: 256,
        }
    }
}

/// A possibly prefixed XML name, borrowed from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QName<'a> {
    pub prefix: Option<&'a str>,
    pub local: &'a str,
}

impl<'a> QName<'a> {
    #[inline]
    fn at(tag: &'a str, start: usize, colon: Option<usize>, end: usize) -> Self {
        match colon {
            Some(c) => Self {
                prefix: Some(sub(tag, start, c)),
                local: sub(tag, c + 1, end),
            },
            None => Self {
                prefix: None,
                local: sub(tag, start, end),
            },
        }
    }
}

/// One attribute. `raw_value` is exactly as on the wire, entities unresolved: call
/// [`Attribute::value`] to unescape it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub name: QName<'a>,
    pub raw_value: &'a str,
    /// Known while tokenizing: the value needs no unescaping.
    plain: bool,
}

impl<'a> Attribute<'a> {
    /// The unescaped, normalized value (see [`crate::unescape_attr`]); borrowed when
    /// there is nothing to change.
    #[inline]
    pub fn value(&self) -> Cow<'a, str> {
        if self.plain {
            return Cow::Borrowed(self.raw_value);
        }
        // Values were validated when the tag was tokenized, so unescaping cannot fail.
        unescape_attr(self.raw_value).unwrap_or(Cow::Borrowed(self.raw_value))
    }
}

/// A run of character data, `raw` exactly as on the wire (entities unresolved); one
/// run of text may come as several `Text` tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Text<'a> {
    pub raw: &'a str,
    kind: TextKind,
    /// With [`TextKind::References`]: every reference in `raw`, in order.
    refs: &'a [Reference],
}

/// What unescaping a [`Text`] takes, as the tokenizer found out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextKind {
    /// No reference and no CR: unescaping leaves it as it is.
    Plain,
    /// References, all of them recorded, and no CR.
    References,
    /// A CR, or a reference begun in an earlier read: unescaped from scratch.
    Other,
}

impl<'a> Text<'a> {
    /// The text with references resolved and line ends normalized (see
    /// [`crate::unescape`]); borrowed when there is nothing to change. The tokenizer
    /// already knows which, and where each reference is and what it stands for, so the
    /// text is neither scanned nor parsed again.
    #[inline]
    pub fn unescaped(&self) -> Cow<'a, str> {
        match self.kind {
            TextKind::Plain => Cow::Borrowed(self.raw),
            TextKind::References => Cow::Owned(expand(self.raw, self.refs)),
            // References were validated when the text was tokenized: this cannot fail.
            TextKind::Other => unescape(self.raw).unwrap_or(Cow::Borrowed(self.raw)),
        }
    }
}

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

/// Where one attribute lies in its tag; offsets are relative to the tag's `<`.
#[derive(Debug, Clone, Copy)]
struct AttrSpan {
    name_start: usize,
    name_end: usize,
    colon: Option<usize>,
    value_start: usize,
    value_end: usize,
    /// The value has no reference and no tab, LF or CR: unescaping leaves it as it is.
    plain: bool,
}

/// The attributes of a start tag, iterated lazily over the already-validated tag bytes
/// (no allocation). Namespace declarations (`xmlns`, `xmlns:p`) are included.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    tag: &'a str,
    spans: &'a [AttrSpan],
}

impl<'a> Attributes<'a> {
    /// The raw value of the first attribute whose name is exactly `name` (prefix included, e.g. `xml:lang`).
    #[inline]
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let tag = self.tag;
        self.spans
            .iter()
            .find(|s| tag.as_bytes().get(s.name_start..s.name_end) == Some(name.as_bytes()))
            .map(|s| sub(tag, s.value_start, s.value_end))
    }

    #[inline]
    fn attribute(tag: &'a str, s: &AttrSpan) -> Attribute<'a> {
        Attribute {
            name: QName::at(tag, s.name_start, s.colon, s.name_end),
            raw_value: sub(tag, s.value_start, s.value_end),
            plain: s.plain,
        }
    }
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let (first, rest) = self.spans.split_first()?;
        self.spans = rest;
        Some(Self::attribute(self.tag, first))
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.spans.len(), Some(self.spans.len()))
    }
}

impl ExactSizeIterator for Attributes<'_> {}

/// An element start tag (or the stream header).
#[derive(Debug, Clone)]
pub struct StartTag<'a> {
    pub name: QName<'a>,
    /// The element's namespace after resolving its prefix (or the default namespace) in
    /// scope, which may come from the stream header.
    pub namespace: &'a str,
    pub attributes: Attributes<'a>,
    /// `<x/>`: an [`EndTag`] token for it follows immediately.
    pub self_closing: bool,
    /// Nesting depth: 0 for the stream header, 1 for a stanza, 2 for its children, ...
    pub depth: usize,
}

/// An element end tag (also emitted right after a self-closing start tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTag<'a> {
    pub name: QName<'a>,
    /// Depth of the element that ended (1 for a stanza).
    pub depth: usize,
}

/// What [`Tokenizer::next`] found.
#[derive(Debug, Clone)]
pub enum Token<'a> {
    /// The buffer ends inside a token, or in text that waits for the markup after it:
    /// append more bytes and call again. Not an error.
    NeedMore,
    /// The `<stream:stream ...>` header (depth 0).
    StreamOpen(StartTag<'a>),
    /// An element start tag inside the stream.
    Start(StartTag<'a>),
    /// Character data inside a stanza (see [`Text`]).
    Text(Text<'a>),
    /// An element end tag.
    End(EndTag<'a>),
    /// The top-level stanza that just ended spans `buf[range]`, from its `<` to the `>`
    /// of its end tag. Emitted right after that stanza's depth-1 [`Token::End`].
    StanzaEnd(Range<usize>),
    /// Whitespace between stanzas (an RFC 6120 whitespace keepalive).
    Whitespace,
    /// `</stream:stream>`: the peer closed its stream.
    StreamClose,
}

/// Where the stream is, as far as the document structure goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the stream header: an XML declaration and whitespace may come.
    Prolog,
    /// The header is open: stanzas and whitespace.
    Stream,
    /// The stream element has ended: only whitespace may follow.
    Closed,
}

/// The token being read at `pos`, with enough state to resume its scan.
#[derive(Debug, Clone, Copy)]
enum Scan {
    /// Between tokens.
    Idle,
    StartTag(TagScan),
    EndTag(EndScan),
    /// The XML declaration; `?>` is searched from this offset on.
    Decl(usize),
    /// Text that starts with a reference whose scan stopped at this offset in this state.
    TextRef(usize, RefState),
}

#[derive(Debug, Clone, Copy)]
struct TagScan {
    /// Offset from `pos` where the scan resumes.
    i: usize,
    at: TagAt,
    /// End of the element name, once known.
    name_end: usize,
    name_colon: Option<usize>,
}

/// Where inside a start tag the scan is; attribute offsets go to `Scanner::attrs`.
#[derive(Debug, Clone, Copy)]
enum TagAt {
    Name,
    /// Between attributes; whether whitespace was seen since the last name or value.
    Space(bool),
    AttrName,
    BeforeEq,
    BeforeValue,
    /// Inside a value quoted by this byte.
    Value(u8),
    Ref(u8, RefState),
    /// After `/`.
    Slash,
}

#[derive(Debug, Clone, Copy)]
struct EndScan {
    i: usize,
    /// End of the name, or 0 while it is being scanned.
    name_end: usize,
    /// Offset of the colon in the name, if prefixed.
    colon: Option<usize>,
}

/// A token owed to the caller before more input is read.
#[derive(Debug, Clone, Copy)]
enum Pending {
    None,
    /// The end of the self-closing element on top of the stack.
    End,
    /// The stanza that started at `stanza_start` ended here.
    StanzaEnd(usize),
    StreamClose,
}

/// An open element of the current stanza.
#[derive(Debug, Clone, Copy)]
struct Frame {
    /// The name, relative to `stanza_start`.
    name: (usize, usize),
    /// Offset of the colon in the name, if prefixed.
    colon: Option<usize>,
    /// `ns.len()` before this element's declarations.
    ns_len: usize,
    /// The default namespace outside this element, restored when it ends.
    outer_default: NsRef,
}

/// Where a namespace prefix or name is stored.
#[derive(Debug, Clone, Copy)]
enum Loc {
    /// In the caller's buffer, relative to `stanza_start`.
    Buf(usize, usize),
    /// In `ns_arena` (a declaration whose value needed unescaping).
    Arena(usize, usize),
    /// In `header_store` (the header's bytes are gone after the next compact).
    Header(usize, usize),
}

/// A namespace declaration in scope, by position (so that a declaration copied into
/// `ns_arena` is found there by every element that refers to it).
#[derive(Debug, Clone, Copy)]
enum NsRef {
    /// None: the empty namespace name (only ever the default namespace).
    Empty,
    /// The `xml` prefix, bound by definition.
    Xml,
    /// `header_ns[i]`.
    Header(usize),
    /// `ns[i]`, declared inside the current stanza.
    Stanza(usize),
}

#[derive(Debug, Clone, Copy)]
struct NsDecl {
    /// Empty for the default namespace.
    prefix: Loc,
    uri: Loc,
}

/// A resolved namespace name: borrowed from the buffer (or static), or stored here.
enum NsOut<'b> {
    Str(&'b str),
    Stored(Stored),
}

/// A namespace name the tokenizer stores.
#[derive(Debug, Clone, Copy)]
enum Stored {
    Arena(usize, usize),
    Header(usize, usize),
}

/// Incremental tokenizer state for one XML stream. Holds no copy of the input except
/// the namespace declarations of the stream header (which the caller's buffer drops).
#[derive(Debug)]
pub struct Tokenizer {
    /// The first error, returned again by every later call.
    dead: Option<Error>,
    scanner: Scanner,
}

/// Everything but `dead`: a token borrows the scanner (attributes, stored namespace
/// names) while `next` still records an error, so the two are separate fields.
#[derive(Debug)]
struct Scanner {
    limits: Limits,
    phase: Phase,
    /// Nothing of this stream has been consumed yet, so an XML declaration may come.
    decl_allowed: bool,
    /// Start of the next unconsumed byte: the token being read starts here.
    pos: usize,
    scan: Scan,
    pending: Pending,
    /// A stanza is open (or its `StanzaEnd` is still pending) and started here.
    in_stanza: bool,
    stanza_start: usize,
    frames: Vec<Frame>,
    ns: Vec<NsDecl>,
    /// The default namespace in scope (the one lookup every unprefixed element needs).
    default_ns: NsRef,
    ns_arena: String,
    header_name: String,
    header_ns: Vec<NsDecl>,
    header_store: String,
    /// Attributes of the start tag being read or last returned.
    attrs: Vec<AttrSpan>,
    /// References in the text token being read or last returned.
    refs: Vec<Reference>,
    /// One past the last `>` in the buffer (0 if none): markup ends only at a `>`, so
    /// nothing after it is read but whitespace between stanzas (see `scan_token`).
    gt_end: usize,
    /// How much of the buffer has been searched for `gt_end`.
    gt_seen: usize,
    examined: u64,
}

impl Tokenizer {
    pub fn new(limits: Limits) -> Self {
        Self {
            dead: None,
            scanner: Scanner::new(limits),
        }
    }

    /// The limits this tokenizer enforces.
    pub fn limits(&self) -> &Limits {
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

impl Scanner {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            phase: Phase::Prolog,
            decl_allowed: true,
            pos: 0,
            scan: Scan::Idle,
            pending: Pending::None,
            in_stanza: false,
            stanza_start: 0,
            frames: Vec::new(),
            ns: Vec::new(),
            default_ns: NsRef::Empty,
            ns_arena: String::new(),
            header_name: String::new(),
            header_ns: Vec::new(),
            header_store: String::new(),
            attrs: Vec::new(),
            refs: Vec::new(),
            gt_end: 0,
            gt_seen: 0,
            examined: 0,
        }
    }

    fn reset(&mut self) {
        self.phase = Phase::Prolog;
        self.decl_allowed = true;
        self.pos = 0;
        self.scan = Scan::Idle;
        self.pending = Pending::None;
        self.in_stanza = false;
        self.stanza_start = 0;
        self.frames.clear();
        self.ns.clear();
        self.default_ns = NsRef::Empty;
        self.ns_arena.clear();
        self.header_name.clear();
        self.header_ns.clear();
        self.header_store.clear();
        self.attrs.clear();
        self.refs.clear();
        self.gt_end = 0;
        self.gt_seen = 0;
    }

    fn note(&mut self, n: usize) {
        self.examined += n as u64;
    }

    #[inline(always)]
    fn step<'a>(&'a mut self, buf: &'a [u8]) -> Step<'a> {
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

    /// `<?`: the XML declaration at the very start of a stream, or a forbidden PI.
    fn question<'a>(&'a mut self, buf: &'a [u8], lim: Lim) -> Step<'a> {
        if !self.decl_allowed || self.phase != Phase::Prolog {
            return Err(Error::ProcessingInstruction);
        }
        let rest = span(buf, self.pos, lim.end);
        self.note(rest.len().min(6));
        match rest.get(5) {
            None if b"<?xml".starts_with(rest) => lim.need_more(),
            Some(&c) if rest.starts_with(b"<?xml") && chars::is_ws(c) => self.decl(buf, lim, 6),
            _ => Err(Error::ProcessingInstruction),
        }
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

    /// Character data inside a stanza, validated and handed out up to the last point
    /// that is certainly valid: before a reference or UTF-8 sequence the read cut off,
    /// or before an error (which the next call then reports).
    fn text<'a>(
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

    fn start_tag<'a>(&'a mut self, buf: &'a [u8], lim: Lim, mut st: TagScan) -> Step<'a> {
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

    /// The start tag at `pos` (`rest` is the usable input from there): read in one
    /// pass by [`fast_start_tag`] and, in the common case ([`Self::open_plain`]),
    /// opened in the same call, which writes the token straight into the caller's;
    /// anything else goes to the resumable scanner. So does a tag that the input cuts
    /// off, which only happens when a value holds the input's last `>` (see
    /// [`Self::scan_token`]), and then only once a tag: the scanner keeps its place.
    #[inline(never)]
    fn start<'a>(&'a mut self, buf: &'a [u8], rest: &'a [u8], lim: Lim) -> Step<'a> {
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

    /// The start tag at `pos`, read from its `<` by the resumable scanner.
    fn start_over<'a>(&'a mut self, buf: &'a [u8], lim: Lim) -> Step<'a> {
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

    /// Whether [`Self::open_plain`] can open the start tag `c`.
    #[inline]
    fn is_plain(&self, c: &Complete) -> bool {
        let work = c.attrs;
        !(self.phase == Phase::Prolog || work.duplicates || work.declarations || work.prefixed)
            && c.name_colon.is_none()
    }

    /// The token for a start tag that [`Self::open_plain`] opened.
    #[inline(always)]
    fn start_token<'a>(&'a self, o: Opened<'a>) -> Token<'a> {
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
    fn finish_start<'a>(&'a mut self, buf: &'a [u8], b: &'a [u8], c: Complete) -> Step<'a> {
        let tag = self.tag_text(b, &c)?;
        self.open(buf, tag, c)
    }

    /// The complete start tag `c` at the start of `b`, as text. Names and whitespace
    /// passed the byte tables and values were screened for forbidden characters while
    /// scanning; only UTF-8 validity is left to check.
    #[inline(always)]
    fn tag_text<'b>(&mut self, b: &'b [u8], c: &Complete) -> Result<&'b str, Error> {
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
    fn open_plain<'b>(
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

    /// The end tag at `pos` (`rest` is the usable input from there): the common one
    /// compared with the open element's name in the same call, which writes the token
    /// straight into the caller's; anything else goes to the resumable scanner.
    #[inline(never)]
    fn end<'a>(&'a mut self, buf: &'a [u8], rest: &'a [u8], lim: Lim) -> Step<'a> {
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

    fn end_tag<'b>(&mut self, buf: &'b [u8], lim: Lim, mut st: EndScan) -> Step<'b> {
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

    /// Pops the innermost element of the stanza, which ends at `pos`.
    #[inline]
    fn close<'b>(&mut self, name: &'b str, colon: Option<usize>) -> EndTag<'b> {
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
    fn in_buf<'s>(&self, buf: &'s [u8], (a, b): (usize, usize)) -> &'s [u8] {
        span(buf, self.stanza_start + a, self.stanza_start + b)
    }
}

/// A start tag [`Scanner::open_plain`] opened, for its token.
struct Opened<'b> {
    tag: &'b str,
    name_end: usize,
    namespace: NsOut<'b>,
    self_closing: bool,
    depth: usize,
}

/// A start tag whose `>` was found; offsets are relative to its `<`.
#[derive(Debug, Clone, Copy)]
struct Complete {
    gt: usize,
    self_closing: bool,
    name_end: usize,
    name_colon: Option<usize>,
    /// What [`Scanner::open`] still has to do with the attributes.
    attrs: AttrWork,
}

/// What the attributes of a complete start tag still need, as far as the scan found out.
#[derive(Debug, Clone, Copy)]
struct AttrWork {
    /// Not yet checked for two attributes with the same name.
    duplicates: bool,
    /// Namespace declarations (`xmlns`, `xmlns:p`) may be among them.
    declarations: bool,
    /// Attributes with a prefix other than `xmlns` may be among them.
    prefixed: bool,
    /// With `declarations` false: the index of the one declaration, a default namespace
    /// (`xmlns`) with a value that needs no unescaping, the common case that
    /// [`Scanner::open`] handles without its attribute pass.
    default_decl: Option<usize>,
}

impl AttrWork {
    /// No attributes yet: nothing to do.
    const NONE: Self = Self {
        duplicates: false,
        declarations: false,
        prefixed: false,
        default_decl: None,
    };

    /// Nothing is known: check everything.
    const ALL: Self = Self {
        duplicates: true,
        declarations: true,
        prefixed: true,
        default_decl: None,
    };
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
fn fast_start_tag(b: &[u8], attrs: &mut Vec<AttrSpan>, limits: &Limits) -> Result<Complete, Miss> {
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

/// The end of the usable input: the buffer, or where the current unit (stanza, or token
/// outside stanzas) would exceed `max_stanza_bytes`.
#[derive(Debug, Clone, Copy)]
struct Lim {
    /// Where reading stops: after the last `>` of the buffer, or at the limit when the
    /// buffer goes past it.
    end: usize,
    /// The buffer goes past the limit, which is `end`: running out of input means the
    /// limit is hit.
    over: bool,
}

impl Lim {
    /// The part of `buf` that whitespace between stanzas may be read from: all of it,
    /// or up to the limit.
    #[inline(always)]
    fn avail(self, buf: &[u8]) -> &[u8] {
        if self.over {
            span(buf, 0, self.end)
        } else {
            buf
        }
    }

    fn need_more<'b>(self) -> Step<'b> {
        if self.over {
            Err(Error::StanzaTooLarge)
        } else {
            Ok(Token::NeedMore)
        }
    }
}

type Step<'b> = Result<Token<'b>, Error>;

/// Namespaces in XML 1.0 section 3 constraints on one declaration of `prefix` (empty:
/// the default namespace).
fn check_declaration(prefix: &str, uri: &str) -> Result<(), Error> {
    let reserved = match prefix {
        "xml" => uri != XML_NS,
        "xmlns" => true,
        _ => uri == XML_NS || uri == XMLNS_NS,
    };
    if reserved {
        return Err(Error::ReservedNamespace);
    }
    if !prefix.is_empty() && uri.is_empty() {
        return Err(Error::EmptyPrefixBinding);
    }
    Ok(())
}

/// Appends `s` to `store` and returns where it starts.
fn store(store: &mut String, s: &str) -> usize {
    let start = store.len();
    store.push_str(s);
    start
}

#[inline]
fn span(b: &[u8], start: usize, end: usize) -> &[u8] {
    b.get(start..end).unwrap_or_default()
}

/// Offsets handed in are always at ASCII delimiters, hence at char boundaries.
#[inline]
fn sub(s: &str, start: usize, end: usize) -> &str {
    s.get(start..end).unwrap_or_default()
}
