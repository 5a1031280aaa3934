//! The scanner's state between calls: where the stream is, the token being read and how
//! far its scan got, and the current stanza's elements and namespaces. The scans that
//! move it live in the sibling modules, each an `impl Scanner` of its own.

use super::limits::TokenizerLimits;
use super::scope::{Frame, NsDecl, NsRef};
use super::token::AttrSpan;
use crate::chars::RefState;
use crate::escape::Reference;

/// Where the stream is, as far as the document structure goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Before the stream header: an XML declaration and whitespace may come.
    Prolog,
    /// The header is open: stanzas and whitespace.
    Stream,
    /// The stream element has ended: only whitespace may follow.
    Closed,
}

/// The token being read at `pos`, with enough state to resume its scan.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scan {
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
pub(super) struct TagScan {
    /// Offset from `pos` where the scan resumes.
    pub(super) i: usize,
    pub(super) at: TagAt,
    /// End of the element name, once known.
    pub(super) name_end: usize,
    pub(super) name_colon: Option<usize>,
}

/// Where inside a start tag the scan is; attribute offsets go to `Scanner::attrs`.
#[derive(Debug, Clone, Copy)]
pub(super) enum TagAt {
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
pub(super) struct EndScan {
    pub(super) i: usize,
    /// End of the name, or 0 while it is being scanned.
    pub(super) name_end: usize,
    /// Offset of the colon in the name, if prefixed.
    pub(super) colon: Option<usize>,
}

/// A token owed to the caller before more input is read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Pending {
    None,
    /// The end of the self-closing element on top of the stack.
    End,
    /// The stanza that started at `stanza_start` ended here.
    StanzaEnd(usize),
    StreamClose,
}

/// Everything but `dead`: a token borrows the scanner (attributes, stored namespace
/// names) while `next` still records an error, so the two are separate fields.
#[derive(Debug)]
pub(super) struct Scanner {
    pub(super) limits: TokenizerLimits,
    pub(super) phase: Phase,
    /// Nothing of this stream has been consumed yet, so an XML declaration may come.
    pub(super) decl_allowed: bool,
    /// Start of the next unconsumed byte: the token being read starts here.
    pub(super) pos: usize,
    pub(super) scan: Scan,
    pub(super) pending: Pending,
    /// A stanza is open (or its `StanzaEnd` is still pending) and started here.
    pub(super) in_stanza: bool,
    pub(super) stanza_start: usize,
    pub(super) frames: Vec<Frame>,
    pub(super) ns: Vec<NsDecl>,
    /// The default namespace in scope (the one lookup every unprefixed element needs).
    pub(super) default_ns: NsRef,
    pub(super) ns_arena: String,
    pub(super) header_name: String,
    pub(super) header_ns: Vec<NsDecl>,
    pub(super) header_store: String,
    /// Attributes of the start tag being read or last returned.
    pub(super) attrs: Vec<AttrSpan>,
    /// References in the text token being read or last returned.
    pub(super) refs: Vec<Reference>,
    /// One past the last `>` in the buffer (0 if none): markup ends only at a `>`, so
    /// nothing after it is read but whitespace between stanzas (see `scan_token`).
    pub(super) gt_end: usize,
    /// How much of the buffer has been searched for `gt_end`.
    pub(super) gt_seen: usize,
    pub(super) examined: u64,
}

impl Scanner {
    pub(super) fn new(limits: TokenizerLimits) -> Self {
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

    pub(super) fn reset(&mut self) {
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

    pub(super) fn note(&mut self, n: usize) {
        self.examined += n as u64;
    }
}
