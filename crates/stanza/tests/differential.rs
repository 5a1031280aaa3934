//! Differential tests: the `stanza` tokenizer against rxml and quick-xml as oracles.
//!
//! Oracle roles:
//! - Well-formed streams (generated): `stanza`, rxml and quick-xml must yield the same
//!   namespace-resolved elements, unescaped attributes (namespace declarations left out)
//!   and unescaped text (adjacent runs merged). rxml and quick-xml are first checked
//!   against each other, so a generator bug shows up as an oracle disagreement rather
//!   than as a tokenizer failure. Attribute values never contain literal tabs or line
//!   breaks and namespace names never contain references, because quick-xml neither
//!   normalizes the one nor unescapes the other (`corners_agree_with_rxml` covers both).
//! - Ill-formed streams (one mutation of a generated stream): rxml alone decides, since
//!   it enforces XML 1.0 and Namespaces in XML well-formedness. quick-xml is lenient in
//!   exactly the cases that matter here: it accepts the same attribute through two
//!   prefixes bound to one namespace, raw control characters, and references to
//!   characters XML forbids (`&#1;`, `&#xFFFE;`).
//! - Hand-picked corners: rxml decides, except where it is stricter than XML 1.0 or where
//!   this crate deliberately restricts XML (CDATA); each such case says so.
//! - `stanza` is fed in chunks cut at generated points (1 to 7 bytes or a few random
//!   cuts) with the caller-side buffer handling of the crate docs (append, `next` until
//!   `NeedMore`, `compact`, drain), and its result must not depend on the cuts.
//!
//! Run: `cargo test -p stanza --test differential`. Case counts are small enough for a
//! debug build to finish in seconds; raise `PROPTEST_CASES` for a longer soak.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use quick_xml::events::Event as QEvent;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use rxml::error::EndOrError;
use rxml::{Event as REvent, Parse};
use stanza::{StreamErrorCondition, Token, Tokenizer, TokenizerLimits};

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// One logical event, in the form all three parsers can be brought to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Start {
        ns: String,
        local: String,
        attrs: BTreeMap<(String, String), String>,
    },
    End,
    Text(String),
}

/// Builds the event list: merges adjacent text, and drops the whitespace between
/// stanzas (and before the root), which rxml and quick-xml report as text and `stanza`
/// as keepalives.
#[derive(Debug, Default)]
struct Events {
    list: Vec<Ev>,
    depth: usize,
}

impl Events {
    fn start(&mut self, ns: String, local: String, attrs: BTreeMap<(String, String), String>) {
        self.list.push(Ev::Start { ns, local, attrs });
        self.depth += 1;
    }

    fn end(&mut self) {
        self.list.push(Ev::End);
        self.depth = self.depth.saturating_sub(1);
    }

    fn text(&mut self, text: &str) {
        if text.is_empty() || (self.depth <= 1 && text.bytes().all(|b| b" \t\r\n".contains(&b))) {
            return;
        }
        match self.list.last_mut() {
            Some(Ev::Text(previous)) => previous.push_str(text),
            _ => self.list.push(Ev::Text(text.to_owned())),
        }
    }
}

/// Why `stanza` did not accept an input.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rejection {
    /// The tokenizer rejected it: the outcome ill-formed input must have.
    Tokenizer(stanza::Error),
    /// The tokenizer accepted something its own unescaping or the harness then refused.
    Harness(String),
}

/// Feeds `input` to a fresh tokenizer in chunks ending at `cuts` (sorted, in range).
fn run_stanza(input: &[u8], cuts: &[usize]) -> Result<Vec<Ev>, Rejection> {
    let mut tokenizer = Tokenizer::new(TokenizerLimits::default());
    let mut events = Events::default();
    // Per open element, innermost last: its name, to check end tags and depths, and its
    // prefix bindings, to resolve attribute names.
    let mut open: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let harness = |why: String| Err(Rejection::Harness(why));
    let mut buf = Vec::new();
    let mut fed = 0;
    // A tokenizer that stops making progress must fail the test, not hang it.
    let mut budget = 4 * input.len() + 64;
    for end in cuts.iter().copied().chain([input.len()]) {
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
        loop {
            budget = budget
                .checked_sub(1)
                .ok_or_else(|| Rejection::Harness("no progress".into()))?;
            match tokenizer.next(&buf).map_err(Rejection::Tokenizer)? {
                Token::NeedMore => break,
                Token::StreamOpen(tag) | Token::Start(tag) => {
                    if tag.depth != open.len() {
                        return harness(format!("{:?} at depth {}", tag.name, open.len()));
                    }
                    let mut scope = Vec::new();
                    for attribute in tag.attributes.clone() {
                        match (attribute.name.prefix, attribute.name.local) {
                            (Some("xmlns"), prefix) => {
                                scope.push((prefix.to_owned(), attribute.value().into_owned()))
                            }
                            (None, "xmlns") => {}
                            _ => continue,
                        }
                    }
                    open.push((format!("{:?}", tag.name), scope));
                    let mut attrs = BTreeMap::new();
                    for attribute in tag.attributes {
                        let ns = match (attribute.name.prefix, attribute.name.local) {
                            (Some("xmlns"), _) | (None, "xmlns") => continue,
                            (None, _) => String::new(),
                            (Some("xml"), _) => XML_NS.to_owned(),
                            (Some(prefix), _) => open
                                .iter()
                                .rev()
                                .flat_map(|(_, scope)| scope)
                                .find(|(p, _)| p == prefix)
                                .map(|(_, ns)| ns.clone())
                                .ok_or_else(|| {
                                    Rejection::Harness(format!(
                                        "accepted undeclared prefix {prefix}"
                                    ))
                                })?,
                        };
                        let key = (ns, attribute.name.local.to_owned());
                        if attrs.insert(key, attribute.value().into_owned()).is_some() {
                            return harness(format!("accepted duplicate {:?}", attribute.name));
                        }
                    }
                    events.start(tag.namespace.to_owned(), tag.name.local.to_owned(), attrs);
                }
                Token::End(end) => {
                    let name = open.pop().map(|(name, _)| name);
                    if name != Some(format!("{:?}", end.name)) || end.depth != open.len() {
                        return harness(format!("{end:?} closes {name:?}"));
                    }
                    events.end();
                }
                Token::Text(text) => {
                    let raw = text.raw;
                    let unescaped = stanza::unescape(raw).map_err(|e| {
                        Rejection::Harness(format!(
                            "accepted text {raw:?} that unescape rejects: {e}"
                        ))
                    })?;
                    if text.unescaped() != unescaped {
                        return harness(format!("{text:?} unescaped differs from {raw:?}"));
                    }
                    events.text(&unescaped);
                }
                Token::StanzaEnd(range) => {
                    let stanza = buf.get(range.clone()).unwrap_or_default();
                    if open.len() != 1 || !(stanza.starts_with(b"<") && stanza.ends_with(b">")) {
                        return harness(format!("StanzaEnd({range:?}) is not a stanza"));
                    }
                }
                Token::Whitespace => {}
                Token::StreamClose => {
                    events.end();
                    return Ok(events.list);
                }
            }
        }
        let consumed = tokenizer.compact();
        buf.drain(..consumed);
    }
    Ok(events.list)
}

/// The stream as rxml sees it (namespace-aware, validating), fed whole.
fn run_rxml(mut input: &[u8]) -> Result<Vec<Ev>, String> {
    let mut parser = rxml::Parser::new();
    let mut events = Events::default();
    loop {
        match parser.parse(&mut input, false) {
            Ok(Some(REvent::StartElement(_, (ns, local), attributes))) => {
                let attrs = attributes
                    .iter()
                    .map(|((ns, local), value)| {
                        ((ns.to_string(), local.to_string()), value.clone())
                    })
                    .collect();
                events.start(ns.to_string(), local.to_string(), attrs);
            }
            Ok(Some(REvent::EndElement(_))) => events.end(),
            Ok(Some(REvent::Text(_, text))) => events.text(&text),
            Ok(Some(REvent::XmlDeclaration(..))) => {}
            Ok(None) => return Ok(events.list),
            Err(EndOrError::NeedMoreData) if input.is_empty() => return Ok(events.list),
            Err(EndOrError::NeedMoreData) => {}
            Err(EndOrError::Error(e)) => return Err(e.to_string()),
        }
    }
}

fn namespace(result: ResolveResult<'_>) -> Result<String, String> {
    match result {
        ResolveResult::Bound(ns) => String::from_utf8(ns.0.to_vec()).map_err(|e| e.to_string()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(prefix) => Err(format!("unknown prefix {prefix:?}")),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

/// The stream as quick-xml's namespace-aware reader sees it, fed whole.
fn run_quick_xml(input: &[u8]) -> Result<Vec<Ev>, String> {
    let mut reader = NsReader::from_reader(input);
    let mut events = Events::default();
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        let ns = namespace(resolved);
        match event {
            QEvent::Start(ref tag) | QEvent::Empty(ref tag) => {
                let mut attrs = BTreeMap::new();
                for attribute in tag.attributes() {
                    let attribute = attribute.map_err(|e| e.to_string())?;
                    if attribute.key.as_namespace_binding().is_some() {
                        continue;
                    }
                    let (attr_ns, local) = reader.resolve_attribute(attribute.key);
                    let value = attribute
                        .decode_and_unescape_value(reader.decoder())
                        .map_err(|e| e.to_string())?;
                    attrs.insert(
                        (namespace(attr_ns)?, utf8(local.as_ref())?),
                        value.into_owned(),
                    );
                }
                events.start(ns?, utf8(tag.local_name().as_ref())?, attrs);
                if matches!(event, QEvent::Empty(_)) {
                    events.end();
                }
            }
            QEvent::End(_) => events.end(),
            QEvent::Text(text) => events.text(&text.xml10_content().map_err(|e| e.to_string())?),
            QEvent::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref().map_err(|e| e.to_string())? {
                    Some(c) => c.to_string(),
                    None => {
                        let name = reference.decode().map_err(|e| e.to_string())?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| format!("unknown entity {name}"))?
                            .to_owned()
                    }
                };
                events.text(&resolved);
            }
            QEvent::Decl(_) => {}
            QEvent::Eof => return Ok(events.list),
            other => return Err(format!("unexpected {other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------
// Generated streams
// ---------------------------------------------------------------------------------

const PREFIXES: [&str; 5] = ["a", "b", "ns1", "x-y", "é"];
const NAMESPACES: [&str; 5] = [
    "urn:a",
    "urn:b",
    "http://example.com/ns?q=1",
    "jabber:client",
    "urn:é:名",
];

#[derive(Debug, Clone)]
enum AttrPrefix {
    None,
    Xml,
    Declared(usize),
}

#[derive(Debug, Clone)]
struct Attr {
    prefix: AttrPrefix,
    local: String,
    /// Pieces already escaped for text; a piece that is the delimiting quote is escaped
    /// when rendered.
    value: Vec<String>,
}

/// Rendering choices, one bit each: double quotes, `<x/>` when empty, a space before
/// `/>` or `>`, declarations after attributes, spaces around `=`, newline-tab between
/// attributes, a space before the `>` of the end tag.
type Style = u8;

#[derive(Debug, Clone)]
struct Element {
    prefix: Option<usize>,
    local: String,
    /// `Some(None)` is `xmlns=''`.
    default_ns: Option<Option<usize>>,
    /// (prefix, namespace) index pairs; a prefix declared twice keeps the first.
    decls: Vec<(usize, usize)>,
    attrs: Vec<Attr>,
    children: Vec<Node>,
    style: Style,
}

#[derive(Debug, Clone)]
enum Node {
    Element(Element),
    /// Escaped pieces.
    Text(Vec<String>),
}

#[derive(Debug, Clone)]
struct Stream {
    declaration: u8,
    header_style: Style,
    header_prefix: Option<(usize, usize)>,
    /// Keepalive whitespace, then a stanza.
    stanzas: Vec<(String, Element)>,
    close: bool,
}

/// Names, avoiding the reserved `xml` start; some with non-ASCII name characters,
/// including U+00B7, which may follow but not start a name.
fn local_name() -> BoxedStrategy<String> {
    prop_oneof![
        6 => "[a-wyzA-Z_][a-zA-Z0-9_.-]{0,6}",
        1 => select(vec!["é", "名前", "a·b", "Ωmega", "body", "message", "x1"]).prop_map(String::from),
    ]
    .boxed()
}

fn char_reference() -> BoxedStrategy<String> {
    let xml_char = any::<char>().prop_filter("XML Char", |&c| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    });
    (xml_char, 0..3u8)
        .prop_map(|(c, form)| match form {
            0 => format!("&#{};", c as u32),
            1 => format!("&#x{:x};", c as u32),
            _ => format!("&#x00{:X};", c as u32),
        })
        .boxed()
}

fn entity() -> BoxedStrategy<String> {
    select(vec!["&lt;", "&gt;", "&amp;", "&quot;", "&apos;"])
        .prop_map(String::from)
        .boxed()
}

/// Multi-byte characters of every UTF-8 length, and XML 1.0 characters an
/// implementation might wrongly refuse (DEL, NEL, private use, the last plane).
fn multibyte() -> BoxedStrategy<String> {
    "[éüßЖ日本😀\u{FFFD}\u{E000}\u{10FFFF}\u{7F}\u{85}]{1,4}".boxed()
}

fn text() -> BoxedStrategy<Vec<String>> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 \t\n!?.,;:'\"/=>-]{1,12}",
        1 => multibyte(),
        1 => entity(),
        1 => char_reference(),
        // Line ends to normalize, so that reads cutting between CR and LF are tried.
        1 => select(vec!["\r\n", "\r", "\r\r\n", "\n\r"]).prop_map(String::from),
    ];
    prop::collection::vec(piece, 1..5).boxed()
}

fn attr() -> BoxedStrategy<Attr> {
    let piece = prop_oneof![
        4 => "[a-zA-Z0-9 !?.,;:/=>#%'\"-]{0,10}",
        1 => multibyte(),
        1 => entity(),
        1 => char_reference(),
    ];
    let prefix = prop_oneof![
        4 => Just(AttrPrefix::None),
        1 => Just(AttrPrefix::Xml),
        2 => (0..PREFIXES.len()).prop_map(AttrPrefix::Declared),
    ];
    (prefix, local_name(), prop::collection::vec(piece, 0..4))
        .prop_map(|(prefix, local, value)| Attr {
            prefix,
            local,
            value,
        })
        .boxed()
}

fn element_fields() -> BoxedStrategy<Element> {
    (
        prop::option::weighted(0.3, 0..PREFIXES.len()),
        local_name(),
        prop::option::weighted(0.2, prop::option::weighted(0.8, 0..NAMESPACES.len())),
        prop::collection::vec((0..PREFIXES.len(), 0..NAMESPACES.len()), 0..3),
        prop::collection::vec(attr(), 0..5),
        any::<Style>(),
    )
        .prop_map(|(prefix, local, default_ns, decls, attrs, style)| Element {
            prefix,
            local,
            default_ns,
            decls,
            attrs,
            children: Vec::new(),
            style,
        })
        .boxed()
}

fn element() -> BoxedStrategy<Element> {
    element_fields()
        .prop_recursive(3, 24, 4, |inner| {
            let child =
                prop_oneof![2 => inner.prop_map(Node::Element), 1 => text().prop_map(Node::Text)];
            (element_fields(), prop::collection::vec(child, 0..4)).prop_map(
                |(mut element, children)| {
                    element.children = children;
                    element
                },
            )
        })
        .boxed()
}

fn stream() -> BoxedStrategy<Stream> {
    (
        0..4u8,
        any::<Style>(),
        prop::option::of((0..PREFIXES.len(), 0..NAMESPACES.len())),
        prop::collection::vec(("[ \t\r\n]{0,3}", element()), 1..5),
        any::<bool>(),
    )
        .prop_map(
            |(declaration, header_style, header_prefix, stanzas, close)| Stream {
                declaration,
                header_style,
                header_prefix,
                stanzas,
                close,
            },
        )
        .boxed()
}

fn element_count(element: &Element) -> usize {
    1 + element
        .children
        .iter()
        .map(|child| match child {
            Node::Element(e) => element_count(e),
            Node::Text(_) => 0,
        })
        .sum::<usize>()
}

// ---------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Leave out the `>` of the start tag (even variant) or of the end tag (odd).
    DropGt,
    /// The end tag names another element.
    MismatchedEnd,
    /// The first attribute again (or `dup` twice).
    DuplicateAttribute,
    /// Two prefixes bound to one namespace, one local name.
    DuplicateExpandedName,
    /// `<` inside an attribute value.
    LtInAttribute,
    /// A malformed, unknown or forbidden-character reference, in text or a value.
    BadReference,
    /// Prefix `zz`, never declared, on the element (even) or an attribute (odd).
    UndeclaredPrefix,
    /// `xmlns:a=''`, which XML 1.0 namespaces forbid.
    EmptyPrefixBinding,
    /// A byte sequence that is not UTF-8, in text, a value, or the element name.
    InvalidUtf8,
    /// A character XML forbids, raw, in text or a value.
    ForbiddenChar,
}

impl Kind {
    /// The conditions the crate's error mapping may give this mutation (`DropGt` lets the
    /// following text be read as attributes, so anything but a limit or text between
    /// stanzas can result).
    fn conditions(self) -> &'static [StreamErrorCondition] {
        use StreamErrorCondition as C;
        match self {
            Kind::DropGt => &[
                C::NotWellFormed,
                C::RestrictedXml,
                C::BadNamespacePrefix,
                C::UnsupportedEncoding,
            ],
            Kind::MismatchedEnd
            | Kind::LtInAttribute
            | Kind::ForbiddenChar
            | Kind::DuplicateAttribute
            | Kind::DuplicateExpandedName
            | Kind::EmptyPrefixBinding => &[C::NotWellFormed],
            Kind::InvalidUtf8 => &[C::UnsupportedEncoding],
            Kind::BadReference => &[C::NotWellFormed, C::RestrictedXml],
            Kind::UndeclaredPrefix => &[C::BadNamespacePrefix],
        }
    }
}

#[derive(Debug, Clone)]
struct Mutation {
    kind: Kind,
    target: Index,
    variant: usize,
}

const BAD_REFERENCES: [&str; 14] = [
    "&foo;",
    "&#0;",
    "&#xD800;",
    "&#xFFFE;",
    "&amp",
    "& ",
    "&#;",
    "&#x;",
    "&#12a;",
    "&#X41;",
    "&#1114112;",
    "&#99999999999999999999;",
    "&lt ;",
    "&;",
];

const BAD_UTF8: [&[u8]; 8] = [
    b"\xFF",
    b"\xC3\x28",
    b"\xC0\x80",
    b"\xED\xA0\x80",
    b"\xF4\x90\x80\x80",
    b"\xE6\x97",
    b"\x80",
    b"\xF8\x88\x80\x80\x80",
];

const FORBIDDEN: [&[u8]; 9] = [
    b"\x00",
    b"\x01",
    b"\x08",
    b"\x0B",
    b"\x0C",
    b"\x1B",
    b"\x1F",
    "\u{FFFE}".as_bytes(),
    "\u{FFFF}".as_bytes(),
];

fn mutation() -> BoxedStrategy<Mutation> {
    let kind = select(vec![
        Kind::DropGt,
        Kind::MismatchedEnd,
        Kind::DuplicateAttribute,
        Kind::DuplicateExpandedName,
        Kind::LtInAttribute,
        Kind::BadReference,
        Kind::UndeclaredPrefix,
        Kind::EmptyPrefixBinding,
        Kind::InvalidUtf8,
        Kind::ForbiddenChar,
    ]);
    (kind, any::<Index>(), 0..64usize)
        .prop_map(|(kind, target, variant)| Mutation {
            kind,
            target,
            variant,
        })
        .boxed()
}

/// Where a mutation puts its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Site {
    Name,
    Attribute,
    Text,
}

impl Mutation {
    /// The bytes to insert and where, for the kinds that insert something.
    fn insertion(&self) -> Option<(Site, Vec<u8>)> {
        let in_text = self.variant.is_multiple_of(2);
        let (site, bytes): (Site, &[u8]) = match self.kind {
            Kind::BadReference => {
                let reference = BAD_REFERENCES[self.variant / 2 % BAD_REFERENCES.len()].as_bytes();
                (
                    if in_text { Site::Text } else { Site::Attribute },
                    reference,
                )
            }
            Kind::ForbiddenChar => {
                let forbidden = FORBIDDEN[self.variant / 2 % FORBIDDEN.len()];
                (
                    if in_text { Site::Text } else { Site::Attribute },
                    forbidden,
                )
            }
            Kind::InvalidUtf8 => {
                let site = [Site::Text, Site::Attribute, Site::Name][self.variant % 3];
                (site, BAD_UTF8[self.variant / 3 % BAD_UTF8.len()])
            }
            Kind::LtInAttribute => (Site::Attribute, b"<"),
            _ => return None,
        };
        Some((site, bytes.to_vec()))
    }
}

// ---------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------

struct Renderer<'m> {
    out: Vec<u8>,
    /// Prefix bindings per open element, innermost last.
    scopes: Vec<Vec<(String, String)>>,
    /// The mutation and the pre-order index of the stanza element it applies to.
    mutation: Option<(&'m Mutation, usize)>,
    next_index: usize,
    /// Offset of the first mutated byte: the input before it is well formed.
    mutated_at: Option<usize>,
}

impl Renderer<'_> {
    fn mark(&mut self) {
        self.mutated_at.get_or_insert(self.out.len());
    }

    fn resolve<'s>(&'s self, local: &'s [(String, String)], prefix: &str) -> Option<&'s str> {
        local
            .iter()
            .chain(self.scopes.iter().rev().flatten())
            .find(|(p, _)| p == prefix)
            .map(|(_, ns)| ns.as_str())
    }

    fn attribute(&mut self, style: Style, name: &str, value: &[u8]) {
        let quote = if style & 1 != 0 { b'"' } else { b'\'' };
        self.out
            .extend_from_slice(if style & 32 != 0 { b"\n\t" } else { b" " });
        self.out.extend_from_slice(name.as_bytes());
        self.out
            .extend_from_slice(if style & 16 != 0 { b" = " } else { b"=" });
        self.out.push(quote);
        self.out.extend_from_slice(value);
        self.out.push(quote);
    }

    fn value(pieces: &[String], style: Style) -> Vec<u8> {
        let (quote, escaped) = if style & 1 != 0 {
            ('"', "&quot;")
        } else {
            ('\'', "&apos;")
        };
        pieces.concat().replace(quote, escaped).into_bytes()
    }

    fn element(&mut self, element: &Element) {
        let index = self.next_index;
        self.next_index += 1;
        let mutation = self
            .mutation
            .filter(|&(_, target)| target == index)
            .map(|(m, _)| m);
        let kind = mutation.map(|m| m.kind);
        let variant = mutation.map_or(0, |m| m.variant);
        let insertion = mutation.and_then(Mutation::insertion);
        let style = element.style;

        let mut decls: Vec<(String, String)> = Vec::new();
        for &(prefix, ns) in &element.decls {
            if !decls.iter().any(|(p, _)| p == PREFIXES[prefix]) {
                decls.push((PREFIXES[prefix].to_owned(), NAMESPACES[ns].to_owned()));
            }
        }
        let undeclared_element = kind == Some(Kind::UndeclaredPrefix) && variant.is_multiple_of(2);
        let prefix = if undeclared_element {
            Some("zz")
        } else {
            element.prefix.map(|p| PREFIXES[p])
        };
        if let Some(prefix) = prefix.filter(|_| !undeclared_element)
            && self.resolve(&decls, prefix).is_none()
        {
            decls.push((prefix.to_owned(), format!("urn:auto:{prefix}")));
        }
        let qname = match prefix {
            Some(prefix) => format!("{prefix}:{}", element.local),
            None => element.local.clone(),
        };

        let mut seen: Vec<(String, String)> = Vec::new();
        let mut attrs: Vec<(String, Vec<u8>)> = Vec::new();
        for attr in &element.attrs {
            let (name, ns) = match attr.prefix {
                AttrPrefix::None => (attr.local.clone(), String::new()),
                AttrPrefix::Xml => (format!("xml:{}", attr.local), XML_NS.to_owned()),
                AttrPrefix::Declared(p) => {
                    let prefix = PREFIXES[p];
                    if self.resolve(&decls, prefix).is_none() {
                        decls.push((prefix.to_owned(), format!("urn:auto:{prefix}")));
                    }
                    let ns = self.resolve(&decls, prefix).unwrap_or_default().to_owned();
                    (format!("{prefix}:{}", attr.local), ns)
                }
            };
            let key = (ns, attr.local.clone());
            if !seen.contains(&key) {
                seen.push(key);
                attrs.push((name, Self::value(&attr.value, style)));
            }
        }

        if kind == Some(Kind::UndeclaredPrefix)
            || kind == Some(Kind::InvalidUtf8)
                && insertion
                    .as_ref()
                    .is_some_and(|(site, _)| *site == Site::Name)
        {
            self.mark();
        }
        self.out.push(b'<');
        self.out.extend_from_slice(qname.as_bytes());
        if let Some((Site::Name, bytes)) = &insertion {
            self.out.extend_from_slice(bytes);
        }
        let mut declarations: Vec<(String, Vec<u8>)> = decls
            .iter()
            .map(|(prefix, ns)| {
                (
                    format!("xmlns:{prefix}"),
                    Self::value(std::slice::from_ref(ns), style),
                )
            })
            .collect();
        if let Some(default) = element.default_ns {
            let ns = default.map_or("", |n| NAMESPACES[n]);
            declarations.push(("xmlns".to_owned(), Self::value(&[ns.to_owned()], style)));
        }
        let (first, second) = if style & 8 != 0 {
            (attrs, declarations)
        } else {
            (declarations, attrs)
        };
        for (name, value) in first.iter().chain(&second) {
            self.attribute(style, name, value);
        }

        match kind {
            Some(Kind::DuplicateAttribute) => {
                self.mark();
                let (name, value) = first
                    .iter()
                    .chain(&second)
                    .find(|(n, _)| !n.starts_with("xmlns"))
                    .cloned()
                    .unwrap_or(("dup".to_owned(), b"1".to_vec()));
                if name == "dup" {
                    self.attribute(style, "dup", b"0");
                }
                self.attribute(style, &name, &value);
            }
            Some(Kind::DuplicateExpandedName) => {
                self.mark();
                self.attribute(style, "xmlns:d1", b"urn:dup");
                self.attribute(style, "xmlns:d2", b"urn:dup");
                self.attribute(style, "d1:a", b"1");
                self.attribute(style, "d2:a", b"2");
            }
            Some(Kind::UndeclaredPrefix) if !undeclared_element => {
                self.mark();
                self.attribute(style, "zz:a", b"1");
            }
            Some(Kind::EmptyPrefixBinding) => {
                self.mark();
                self.attribute(style, "xmlns:a", b"");
            }
            _ => {}
        }
        if let Some((Site::Attribute, bytes)) = &insertion {
            self.mark();
            let value = [b"x".as_slice(), bytes, b"y"].concat();
            self.attribute(style, "m", &value);
        }

        let drop_start_gt = kind == Some(Kind::DropGt) && variant.is_multiple_of(2);
        // Mutations of the end tag or the content need an element that has them.
        let needs_content = kind == Some(Kind::MismatchedEnd)
            || kind == Some(Kind::DropGt) && variant % 2 == 1
            || matches!(insertion, Some((Site::Text, _)));
        if style & 4 != 0 {
            self.out.push(b' ');
        }
        if element.children.is_empty() && style & 2 != 0 && !needs_content {
            self.out.push(b'/');
            if drop_start_gt {
                self.mark();
            } else {
                self.out.push(b'>');
            }
            return;
        }
        if drop_start_gt {
            self.mark();
        } else {
            self.out.push(b'>');
        }
        if let Some((Site::Text, bytes)) = &insertion {
            self.mark();
            self.out
                .extend_from_slice(&[b"x".as_slice(), bytes, b"y"].concat());
        }

        self.scopes.push(decls);
        for child in &element.children {
            match child {
                Node::Element(child) => self.element(child),
                Node::Text(pieces) => self.out.extend_from_slice(pieces.concat().as_bytes()),
            }
        }
        self.scopes.pop();

        if kind == Some(Kind::MismatchedEnd) {
            self.mark();
        }
        self.out.extend_from_slice(b"</");
        self.out.extend_from_slice(qname.as_bytes());
        if kind == Some(Kind::MismatchedEnd) {
            self.out.push(b'x');
        }
        if style & 64 != 0 {
            self.out.push(b' ');
        }
        if kind == Some(Kind::DropGt) && variant % 2 == 1 {
            self.mark();
        } else {
            self.out.push(b'>');
        }
    }
}

/// The stream's bytes, and where the mutation (if any) starts.
fn render(stream: &Stream, mutation: Option<&Mutation>) -> (Vec<u8>, Option<usize>) {
    let total = stream
        .stanzas
        .iter()
        .map(|(_, e)| element_count(e))
        .sum::<usize>();
    let mut r = Renderer {
        out: Vec::new(),
        scopes: Vec::new(),
        mutation: mutation.map(|m| (m, m.target.index(total))),
        next_index: 0,
        mutated_at: None,
    };
    r.out.extend_from_slice(match stream.declaration {
        0 => b"".as_slice(),
        1 => b"<?xml version='1.0'?>",
        2 => b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
        _ => b"<?xml version='1.0'?>\n",
    });
    let style = stream.header_style & !(8 | 16);
    let mut header = vec![
        ("xmlns".to_owned(), "jabber:client".to_owned()),
        (
            "xmlns:stream".to_owned(),
            "http://etherx.jabber.org/streams".to_owned(),
        ),
        ("to".to_owned(), "example.net".to_owned()),
        ("version".to_owned(), "1.0".to_owned()),
        ("xml:lang".to_owned(), "en".to_owned()),
    ];
    let mut scope = vec![(
        "stream".to_owned(),
        "http://etherx.jabber.org/streams".to_owned(),
    )];
    if let Some((prefix, ns)) = stream.header_prefix {
        header.push((
            format!("xmlns:{}", PREFIXES[prefix]),
            NAMESPACES[ns].to_owned(),
        ));
        scope.push((PREFIXES[prefix].to_owned(), NAMESPACES[ns].to_owned()));
    }
    if stream.header_style & 8 != 0 {
        header.reverse();
    }
    r.out.extend_from_slice(b"<stream:stream");
    for (name, value) in &header {
        r.attribute(style, name, value.as_bytes());
    }
    r.out.push(b'>');
    r.scopes.push(scope);
    for (keepalive, stanza) in &stream.stanzas {
        r.out.extend_from_slice(keepalive.as_bytes());
        r.element(stanza);
    }
    if stream.close {
        r.out.extend_from_slice(b"</stream:stream>");
    }
    (r.out, r.mutated_at)
}

// ---------------------------------------------------------------------------------
// Feeding
// ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Feed {
    /// Reads of this many bytes.
    Every(usize),
    /// Reads ending at these points.
    Cuts(Vec<Index>),
}

fn feed() -> BoxedStrategy<Feed> {
    prop_oneof![
        (1..8usize).prop_map(Feed::Every),
        prop::collection::vec(any::<Index>(), 0..6).prop_map(Feed::Cuts),
    ]
    .boxed()
}

fn cuts(feed: &Feed, len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = match feed {
        Feed::Every(n) => (*n..len).step_by(*n).collect(),
        Feed::Cuts(points) => points.iter().map(|p| p.index(len.max(1))).collect(),
    };
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    // No regression files: a failure prints its minimal input, which goes into the findings.
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn show(input: &[u8]) -> String {
    String::from_utf8_lossy(input).into_owned()
}

proptest! {
    #![proptest_config(config(160))]

    #[test]
    fn well_formed_streams_agree_with_both_oracles(stream in stream(), feed in feed()) {
        let (input, _) = render(&stream, None);
        let expected = run_rxml(&input);
        prop_assert!(expected.is_ok(), "rxml rejects a generated stream: {:?}\n{}", expected, show(&input));
        prop_assert_eq!(&run_quick_xml(&input), &expected, "oracles disagree on\n{}", show(&input));
        let expected = expected.map_err(Rejection::Harness);
        prop_assert_eq!(&run_stanza(&input, &[]), &expected, "whole input\n{}", show(&input));
        let cuts = cuts(&feed, input.len());
        prop_assert_eq!(&run_stanza(&input, &cuts), &expected, "cut at {:?}\n{}", cuts, show(&input));
    }

    #[test]
    fn ill_formed_streams_are_rejected_like_rxml(stream in stream(), mutation in mutation(), feed in feed()) {
        let (input, at) = render(&stream, Some(&mutation));
        let at = at.expect("the target element exists");
        let prefix = &input[..at];
        prop_assert!(run_rxml(prefix).is_ok(), "harness: mutation before {}\n{}", at, show(&input));
        prop_assert!(run_stanza(prefix, &[]).is_ok(), "rejected the well-formed prefix {}: {:?}\n{}", at, run_stanza(prefix, &[]), show(prefix));

        let rxml = run_rxml(&input);
        let whole = run_stanza(&input, &[]);
        prop_assert!(!matches!(whole, Err(Rejection::Harness(_))), "{:?} accepted: {:?}\n{}", mutation.kind, whole, show(&input));
        prop_assert_eq!(whole.is_err(), rxml.is_err(), "{:?}: stanza {:?}, rxml {:?}\n{}", mutation.kind, whole, rxml, show(&input));
        if let Err(Rejection::Tokenizer(e)) = &whole {
            prop_assert!(
                mutation.kind.conditions().contains(&e.condition()),
                "{:?} gave {:?} ({:?})\n{}",
                mutation.kind,
                e,
                e.condition(),
                show(&input)
            );
        }
        let cuts = cuts(&feed, input.len());
        prop_assert_eq!(&run_stanza(&input, &cuts), &whole, "cut at {:?}\n{}", cuts, show(&input));
    }
}

// ---------------------------------------------------------------------------------
// Hand-picked corners, rxml as the oracle
// ---------------------------------------------------------------------------------

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
     xmlns:stream='http://etherx.jabber.org/streams' to='example.net' version='1.0'>";

/// What `stanza` must do with a corner input.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// What rxml does: the same events, or a rejection.
    Rxml,
    /// Accept, where rxml is stricter than XML 1.0 (events are not compared).
    Accept,
    /// Reject with this condition, where this crate deliberately restricts XML.
    Reject(StreamErrorCondition),
}

/// Corners of XML 1.0 and Namespaces that random generation rarely reaches: value and
/// line-end normalization, CDATA, references in namespace names, reserved prefixes,
/// name characters, references out of range, malformed UTF-8. Each goes after `HEADER`.
const CORNERS: &[(&str, &[u8], Expect)] = &[
    (
        "tab and newline in a value are normalized",
        b"<message a='x\ty\nz\r\nw'/>",
        Expect::Rxml,
    ),
    (
        "line ends in text are normalized",
        b"<message><body>a\r\nb\rc</body></message>",
        Expect::Rxml,
    ),
    (
        "CDATA section",
        b"<message><body><![CDATA[<x>&amp;]]></body></message>",
        Expect::Reject(StreamErrorCondition::RestrictedXml),
    ),
    (
        "reference in a namespace name",
        b"<message><x xmlns='urn:a&amp;b'/></message>",
        Expect::Rxml,
    ),
    (
        "reference in a prefixed namespace name",
        b"<message><p:x xmlns:p='urn:&#x61;'/></message>",
        Expect::Rxml,
    ),
    (
        "]]> in text",
        b"<message><body>a]]>b</body></message>",
        Expect::Rxml,
    ),
    (
        "]] in text",
        b"<message><body>a]]b]</body></message>",
        Expect::Rxml,
    ),
    (
        "]]> split by a reference",
        b"<message><body>a]]&gt;b]&#93;>c</body></message>",
        Expect::Rxml,
    ),
    ("comment", b"<message><!-- x --></message>", Expect::Rxml),
    (
        "processing instruction",
        b"<message><?foo bar?></message>",
        Expect::Rxml,
    ),
    (
        "empty prefix binding",
        b"<message><x xmlns:p=''/></message>",
        Expect::Rxml,
    ),
    (
        "xml prefix bound correctly",
        b"<message xmlns:xml='http://www.w3.org/XML/1998/namespace'/>",
        Expect::Rxml,
    ),
    (
        "xml prefix rebound",
        b"<message xmlns:xml='urn:other'/>",
        Expect::Rxml,
    ),
    (
        "xmlns prefix bound",
        b"<message xmlns:xmlns='urn:other'/>",
        Expect::Rxml,
    ),
    (
        "other prefix bound to the xml namespace",
        b"<message xmlns:p='http://www.w3.org/XML/1998/namespace'/>",
        Expect::Rxml,
    ),
    (
        "element with xmlns prefix",
        b"<message><xmlns:a/></message>",
        Expect::Rxml,
    ),
    (
        "default namespace undeclared",
        b"<message><x xmlns=''><y/></x></message>",
        Expect::Rxml,
    ),
    ("spaces around =", b"<message a = 'b' />", Expect::Rxml),
    (
        "no space between attributes",
        b"<message a='1'b='2'/>",
        Expect::Rxml,
    ),
    ("space inside />", b"<message a='1' / >", Expect::Rxml),
    ("space in end tag", b"<message></message >", Expect::Rxml),
    ("space after </", b"<message></ message>", Expect::Rxml),
    (
        "name starting with a digit",
        b"<message><1a/></message>",
        Expect::Rxml,
    ),
    (
        "two colons",
        b"<message><a:b:c xmlns:a='urn:a'/></message>",
        Expect::Rxml,
    ),
    ("empty prefix", b"<message><:a/></message>", Expect::Rxml),
    (
        "empty local part",
        b"<message><a: xmlns:a='urn:a'/></message>",
        Expect::Rxml,
    ),
    (
        "non-ASCII names",
        "<message><é 名='1'/><a·b/></message>".as_bytes(),
        Expect::Rxml,
    ),
    (
        "name starting with U+00B7",
        "<message><·a/></message>".as_bytes(),
        Expect::Rxml,
    ),
    (
        "reference to U+10FFFF",
        b"<message><body>&#x10FFFF;</body></message>",
        Expect::Rxml,
    ),
    (
        "reference beyond U+10FFFF",
        b"<message><body>&#x110000;</body></message>",
        Expect::Rxml,
    ),
    (
        "reference overflowing u32",
        b"<message><body>&#99999999999999999999;</body></message>",
        Expect::Rxml,
    ),
    (
        "reference with leading zeros (rxml refuses a valid CharRef)",
        b"<message><body>&#x0000000041;&#00065;</body></message>",
        Expect::Accept,
    ),
    (
        "reference with uppercase X",
        b"<message><body>&#X41;</body></message>",
        Expect::Rxml,
    ),
    (
        "reference to U+FFFE",
        b"<message><body>&#xFFFE;</body></message>",
        Expect::Rxml,
    ),
    (
        "reference to a surrogate",
        b"<message><body>&#xDFFF;</body></message>",
        Expect::Rxml,
    ),
    ("reference to NUL", b"<message a='&#0;'/>", Expect::Rxml),
    (
        "reference to a C0 control",
        b"<message a='&#1;'/>",
        Expect::Rxml,
    ),
    (
        "references to whitespace in a value are kept",
        b"<message a='x&#9;y&#10;z&#13;'/>",
        Expect::Rxml,
    ),
    (
        "< by reference in a value",
        b"<message a='&#60;&lt;'/>",
        Expect::Rxml,
    ),
    (
        "other quote in a value",
        b"<message a=\"it's\" b='say \"hi\"'/>",
        Expect::Rxml,
    ),
    (
        "> in text and values",
        b"<message a='>'><body>></body></message>",
        Expect::Rxml,
    ),
    (
        "raw U+FFFE",
        "<message><body>\u{FFFE}</body></message>".as_bytes(),
        Expect::Rxml,
    ),
    (
        "raw DEL and NEL",
        "<message><body>\u{7F}\u{85}</body></message>".as_bytes(),
        Expect::Rxml,
    ),
    (
        "raw C0 control",
        b"<message><body>\x1B</body></message>",
        Expect::Rxml,
    ),
    (
        "UTF-8 surrogate",
        b"<message><body>\xED\xA0\x80</body></message>",
        Expect::Rxml,
    ),
    (
        "overlong UTF-8",
        b"<message><body>\xC0\xBC</body></message>",
        Expect::Rxml,
    ),
    (
        "truncated UTF-8 before <",
        b"<message><body>\xE6\x97</body></message>",
        Expect::Rxml,
    ),
    (
        "UTF-8 beyond U+10FFFF",
        b"<message a='\xF4\x90\x80\x80'/>",
        Expect::Rxml,
    ),
    (
        "invalid UTF-8 in a name",
        b"<message><a\xFF/></message>",
        Expect::Rxml,
    ),
    (
        "undeclared entity in a value",
        b"<message a='&nbsp;'/>",
        Expect::Rxml,
    ),
    (
        "bare & in text",
        b"<message><body>a & b</body></message>",
        Expect::Rxml,
    ),
    (
        "unterminated reference",
        b"<message><body>&amp</body></message>",
        Expect::Rxml,
    ),
    ("attribute without value", b"<message a/>", Expect::Rxml),
    ("unquoted attribute value", b"<message a=1/>", Expect::Rxml),
    (
        "same attribute through two prefixes",
        b"<message xmlns:p='urn:x' xmlns:q='urn:x' p:a='1' q:a='2'/>",
        Expect::Rxml,
    ),
    (
        "same local name, prefixed and not",
        b"<message xmlns:p='urn:x' a='1' p:a='2'/>",
        Expect::Rxml,
    ),
    (
        "prefix declared after its use",
        b"<p:message p:a='1' xmlns:p='jabber:client'/>",
        Expect::Rxml,
    ),
    (
        "deep prefix inheritance",
        b"<message xmlns:p='urn:p'><a><b><p:c p:d='1'/></b></a></message>",
        Expect::Rxml,
    ),
    (
        "prefix shadowed in a child",
        b"<message xmlns:p='urn:1'><p:a xmlns:p='urn:2'/><p:b/></message>",
        Expect::Rxml,
    ),
    (
        "prefix from the stream header",
        b"<message><stream:error/></message>",
        Expect::Rxml,
    ),
];

/// Complete inputs, for corners of the prolog.
const PROLOGS: &[(&str, &[u8], Expect)] = &[
    ("BOM", b"\xEF\xBB\xBF<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Rxml),
    ("lower-case encoding", b"<?xml version='1.0' encoding='utf-8'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Rxml),
    ("standalone (rxml refuses a valid declaration)", b"<?xml version='1.0' standalone='yes'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Accept),
    ("XML 1.1, processed as 1.0 (XML 1.0 section 2.8; rxml refuses it)", b"<?xml version='1.1'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Accept),
    ("Latin-1", b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Rxml),
    ("DOCTYPE", b"<?xml version='1.0'?><!DOCTYPE stream><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Rxml),
    ("whitespace before the declaration", b" <?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Rxml),
    ("comment before the header", b"<!-- hi --><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'><message/>", Expect::Rxml),
    ("no declaration, double quotes", b"<stream:stream xmlns=\"jabber:client\" xmlns:stream=\"http://etherx.jabber.org/streams\"><message/>", Expect::Rxml),
];

#[test]
fn corners_agree_with_rxml() {
    let inputs = CORNERS
        .iter()
        .map(|&(what, body, expect)| (what, [HEADER.as_bytes(), body].concat(), expect))
        .chain(
            PROLOGS
                .iter()
                .map(|&(what, input, expect)| (what, input.to_vec(), expect)),
        );
    let mut disagreements = Vec::new();
    for (what, input, expect) in inputs {
        let rxml = run_rxml(&input);
        let stanza = run_stanza(&input, &[]);
        let bytewise = run_stanza(&input, &(1..input.len()).collect::<Vec<_>>());
        let agree = match (expect, &stanza, &rxml) {
            (Expect::Rxml, Ok(ours), Ok(theirs)) => ours == theirs,
            (Expect::Rxml, Err(Rejection::Tokenizer(_)), Err(_)) => true,
            (Expect::Accept, Ok(_), _) => true,
            (Expect::Reject(condition), Err(Rejection::Tokenizer(e)), _) => {
                e.condition() == condition
            }
            _ => false,
        };
        if !agree || bytewise != stanza {
            disagreements.push(format!(
                "{what} ({expect:?}): {}\n  stanza:   {stanza:?}\n  bytewise: {bytewise:?}\n  rxml:     {rxml:?}",
                show(&input[input.len().min(HEADER.len())..])
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
