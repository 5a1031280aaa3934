//! The namespace declarations in scope and the open elements of the current stanza, by
//! position (relative to the stanza's start, or in the tokenizer's own storage), so that
//! compacting the buffer moves no declaration.

use crate::Error;

pub(super) const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";
pub(super) const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

/// An open element of the current stanza.
#[derive(Debug, Clone, Copy)]
pub(super) struct Frame {
    /// The name, relative to `stanza_start`.
    pub(super) name: (usize, usize),
    /// Offset of the colon in the name, if prefixed.
    pub(super) colon: Option<usize>,
    /// `ns.len()` before this element's declarations.
    pub(super) ns_len: usize,
    /// The default namespace outside this element, restored when it ends.
    pub(super) outer_default: NsRef,
}

/// Where a namespace prefix or name is stored.
#[derive(Debug, Clone, Copy)]
pub(super) enum Loc {
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
pub(super) enum NsRef {
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
pub(super) struct NsDecl {
    /// Empty for the default namespace.
    pub(super) prefix: Loc,
    pub(super) uri: Loc,
}

/// A resolved namespace name: borrowed from the buffer (or static), or stored here.
pub(super) enum NsOut<'b> {
    Str(&'b str),
    Stored(Stored),
}

/// A namespace name the tokenizer stores.
#[derive(Debug, Clone, Copy)]
pub(super) enum Stored {
    Arena(usize, usize),
    Header(usize, usize),
}

/// Namespaces in XML 1.0 section 3 constraints on one declaration of `prefix` (empty:
/// the default namespace).
pub(super) fn check_declaration(prefix: &str, uri: &str) -> Result<(), Error> {
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
pub(super) fn store(store: &mut String, s: &str) -> usize {
    let start = store.len();
    store.push_str(s);
    start
}
