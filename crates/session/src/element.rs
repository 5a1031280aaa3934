//! What the edge needs to know about the top-level element being read, gathered from its
//! tokens as they arrive: its kind, its addressing attributes, the one payload child of an
//! IQ and the little text it cares about (a SASL payload or a requested resource).
//!
//! One `Element` lives in the connection and is reused for every stanza, so its `String`s
//! keep their capacity and the fast path allocates nothing.

use stanza::{Attributes, EndTag, StartTag};

use crate::counts::StanzaKind;
use crate::ns;
use crate::sasl::Mechanism;
use crate::sic::SicForm;

/// Scratch strings that grew beyond this (a huge `id`, a SASL payload) are freed when the
/// next element starts, so one large stanza does not pin its memory.
const SCRATCH_KEEP: usize = 256;

/// The top-level element, by qualified name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    StartTls,
    /// `<auth>`; `None` when the `mechanism` attribute names nothing the edge knows.
    Auth(Option<Mechanism>),
    Response,
    Abort,
    Iq,
    Message,
    Presence,
    /// Anything else: `unsupported-stanza-type`.
    Unsupported,
}

impl Kind {
    /// How a received element is counted.
    pub(crate) fn counted(self) -> StanzaKind {
        match self {
            Self::Iq => StanzaKind::Iq,
            Self::Message => StanzaKind::Message,
            Self::Presence => StanzaKind::Presence,
            Self::Auth(_) | Self::Response | Self::Abort => StanzaKind::Sasl,
            Self::StartTls => StanzaKind::StartTls,
            Self::Unsupported => StanzaKind::Unsupported,
        }
    }
}

/// The `type` attribute of a stanza, as far as the edge distinguishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StanzaType {
    Get,
    Set,
    Result,
    Error,
    /// Missing, or a value the edge does not act on.
    Other,
}

/// The payload child of an IQ, by qualified name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// No child element (yet).
    None,
    /// A XEP-0279 Server IP Check request, in one of its wire forms.
    Sic(SicForm),
    Ping,
    /// disco#info; `node` says whether a `node` attribute was present.
    DiscoInfo {
        node: bool,
    },
    DiscoItems {
        node: bool,
    },
    Bind,
    Session,
    Other,
}

#[derive(Debug)]
pub(crate) struct Element {
    pub(crate) kind: Kind,
    pub(crate) stanza_type: StanzaType,
    /// The unescaped `id` attribute, meaningful when `has_id`.
    pub(crate) id: String,
    pub(crate) has_id: bool,
    /// The unescaped `to` attribute, meaningful when `has_to`.
    pub(crate) to: String,
    pub(crate) has_to: bool,
    /// Child elements of the top-level element.
    pub(crate) children: u32,
    /// The first child of an IQ.
    pub(crate) payload: Payload,
    /// Raw (still escaped) text: the SASL payload of `<auth>`/`<response>`, or the
    /// `<resource>` of a bind request.
    pub(crate) text: String,
    /// A bind request carried a `<resource>` element.
    pub(crate) has_resource: bool,
    /// Depth of the innermost open element.
    depth: usize,
    in_resource: bool,
}

impl Element {
    pub(crate) fn new() -> Self {
        Self {
            kind: Kind::Unsupported,
            stanza_type: StanzaType::Other,
            id: String::new(),
            has_id: false,
            to: String::new(),
            has_to: false,
            children: 0,
            payload: Payload::None,
            text: String::new(),
            has_resource: false,
            depth: 0,
            in_resource: false,
        }
    }

    /// Heap bytes held by the scratch strings.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.id.capacity() + self.to.capacity() + self.text.capacity()
    }

    /// The element's `id`, if it had one.
    pub(crate) fn id(&self) -> Option<&str> {
        self.has_id.then_some(self.id.as_str())
    }

    /// The element's `to`, if it had one.
    pub(crate) fn to(&self) -> Option<&str> {
        self.has_to.then_some(self.to.as_str())
    }

    /// Any start tag inside the stream.
    pub(crate) fn start(&mut self, tag: &StartTag<'_>) {
        self.depth = tag.depth;
        match tag.depth {
            1 => self.begin(tag),
            2 => {
                self.children = self.children.saturating_add(1);
                if self.kind == Kind::Iq && self.children == 1 {
                    self.payload = classify_payload(tag);
                }
            }
            3 if self.payload == Payload::Bind
                && self.children == 1
                && tag.namespace == ns::BIND
                && tag.name.local == "resource" =>
            {
                self.has_resource = true;
                self.in_resource = true;
            }
            _ => {}
        }
    }

    pub(crate) fn end(&mut self, tag: &EndTag<'_>) {
        if tag.depth == 3 {
            self.in_resource = false;
        }
        self.depth = tag.depth.saturating_sub(1);
    }

    pub(crate) fn text(&mut self, raw: &str) {
        let wanted = match self.kind {
            Kind::Auth(_) | Kind::Response => self.depth == 1,
            Kind::Iq => self.in_resource,
            _ => false,
        };
        if wanted {
            self.text.push_str(raw);
        }
    }

    fn begin(&mut self, tag: &StartTag<'_>) {
        self.kind = classify(tag);
        self.stanza_type = StanzaType::Other;
        reset_scratch(&mut self.id);
        self.has_id = false;
        reset_scratch(&mut self.to);
        self.has_to = false;
        self.children = 0;
        self.payload = Payload::None;
        reset_scratch(&mut self.text);
        self.has_resource = false;
        self.in_resource = false;
        if matches!(self.kind, Kind::Iq | Kind::Message | Kind::Presence) {
            self.read_addressing(tag.attributes.clone());
        }
    }

    fn read_addressing(&mut self, attributes: Attributes<'_>) {
        for attr in attributes {
            if attr.name.prefix.is_some() {
                continue;
            }
            match attr.name.local {
                "id" => {
                    self.id.clear();
                    self.id.push_str(&attr.value());
                    self.has_id = true;
                }
                "to" => {
                    self.to.clear();
                    self.to.push_str(&attr.value());
                    self.has_to = true;
                }
                "type" => {
                    self.stanza_type = match attr.raw_value {
                        "get" => StanzaType::Get,
                        "set" => StanzaType::Set,
                        "result" => StanzaType::Result,
                        "error" => StanzaType::Error,
                        _ => StanzaType::Other,
                    }
                }
                _ => {}
            }
        }
    }
}

fn reset_scratch(scratch: &mut String) {
    if scratch.capacity() > SCRATCH_KEEP {
        *scratch = String::new();
    } else {
        scratch.clear();
    }
}

fn classify(tag: &StartTag<'_>) -> Kind {
    match (tag.namespace, tag.name.local) {
        (ns::CLIENT, "iq") => Kind::Iq,
        (ns::CLIENT, "message") => Kind::Message,
        (ns::CLIENT, "presence") => Kind::Presence,
        (ns::TLS, "starttls") => Kind::StartTls,
        (ns::SASL, "auth") => Kind::Auth(
            tag.attributes
                .get("mechanism")
                .and_then(Mechanism::from_name),
        ),
        (ns::SASL, "response") => Kind::Response,
        (ns::SASL, "abort") => Kind::Abort,
        _ => Kind::Unsupported,
    }
}

fn classify_payload(tag: &StartTag<'_>) -> Payload {
    let node = || tag.attributes.get("node").is_some();
    match (tag.namespace, tag.name.local) {
        (ns::SIC0, "ip") => Payload::Sic(SicForm::Ip0),
        (ns::SIC0, "address") => Payload::Sic(SicForm::Address0),
        (ns::SIC1, "address") => Payload::Sic(SicForm::Address1),
        (ns::PING, "ping") => Payload::Ping,
        (ns::DISCO_INFO, "query") => Payload::DiscoInfo { node: node() },
        (ns::DISCO_ITEMS, "query") => Payload::DiscoItems { node: node() },
        (ns::BIND, "bind") => Payload::Bind,
        (ns::SESSION, "session") => Payload::Session,
        _ => Payload::Other,
    }
}
