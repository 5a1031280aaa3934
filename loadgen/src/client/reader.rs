//! Gathers what the client needs from one server element as its tokens arrive: its kind,
//! the `type` and `id` of an IQ, its payload, SIC address fields, SASL text, stream
//! features and error conditions. Only errors and server-initiated requests allocate.

use std::net::IpAddr;

use session::ns;
use session::sasl::Mechanism;
use stanza::{EndTag, StartTag};

/// Most text kept for one field; SASL payloads are a few hundred bytes.
const MAX_TEXT: usize = 16 * 1024;

/// The top-level element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Top {
    Features,
    StreamError,
    Proceed,
    TlsFailure,
    Challenge,
    Success,
    SaslFailure,
    Iq,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IqType {
    Get,
    Set,
    Result,
    Error,
    Other,
}

/// The first child of an IQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Payload {
    None,
    SicIp,
    SicAddress0,
    SicAddress1,
    DiscoInfo,
    Ping,
    Other,
}

/// Whose text is being collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    None,
    /// The SASL payload of `<challenge>`/`<success>`.
    Sasl,
    Mechanism,
    Ip,
    Port,
}

/// Stream features, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Features(u16);

impl Features {
    const STARTTLS: u16 = 1;
    const BIND: u16 = 1 << 1;
    const SESSION: u16 = 1 << 2;
    const SESSION_OPTIONAL: u16 = 1 << 3;
    /// One bit per [`Mechanism::ALL`] entry from here up.
    const MECHANISMS: u16 = 4;

    pub(super) fn starttls(self) -> bool {
        self.0 & Self::STARTTLS != 0
    }

    pub(super) fn bind(self) -> bool {
        self.0 & Self::BIND != 0
    }

    /// RFC 3921 session establishment is offered and not marked optional.
    pub(super) fn session_required(self) -> bool {
        self.0 & (Self::SESSION | Self::SESSION_OPTIONAL) == Self::SESSION
    }

    pub(super) fn offers(self, mechanism: Mechanism) -> bool {
        self.0 & Self::mechanism_bit(mechanism) != 0
    }

    /// The offered mechanism names, for error messages.
    pub(super) fn mechanisms(self) -> Vec<&'static str> {
        Mechanism::ALL
            .into_iter()
            .filter(|&m| self.offers(m))
            .map(Mechanism::name)
            .collect()
    }

    fn mechanism_bit(mechanism: Mechanism) -> u16 {
        let index = Mechanism::ALL
            .iter()
            .position(|&m| m == mechanism)
            .unwrap_or_default();
        1 << (Self::MECHANISMS + index as u16)
    }
}

/// A `get`/`set` IQ from the server, which must be answered.
#[derive(Debug)]
pub(super) struct Incoming {
    pub(super) id: String,
    pub(super) from: Option<String>,
}

#[derive(Debug)]
pub(super) struct Reader {
    pub(super) top: Top,
    pub(super) iq_type: IqType,
    /// The IQ id, when it is a number (every id loadgen sends is).
    pub(super) id: Option<u32>,
    pub(super) payload: Payload,
    pub(super) features: Features,
    pub(super) ip: Option<IpAddr>,
    pub(super) port: Option<u16>,
    /// Raw text of the SASL payload (after the element ended).
    pub(super) text: Vec<u8>,
    /// Error condition of a stream error, SASL failure or IQ error.
    pub(super) condition: Option<Box<str>>,
    pub(super) incoming: Option<Box<Incoming>>,
    /// A field's text could not be used (too long, bad escape).
    pub(super) malformed: bool,
    field: Field,
    in_error: bool,
    in_mechanisms: bool,
    in_session: bool,
}

impl Reader {
    pub(super) fn new() -> Self {
        Self {
            top: Top::Other,
            iq_type: IqType::Other,
            id: None,
            payload: Payload::None,
            features: Features::default(),
            ip: None,
            port: None,
            text: Vec::new(),
            condition: None,
            incoming: None,
            malformed: false,
            field: Field::None,
            in_error: false,
            in_mechanisms: false,
            in_session: false,
        }
    }

    pub(super) fn start(&mut self, tag: &StartTag<'_>) {
        match tag.depth {
            1 => self.begin(tag),
            2 => self.child(tag),
            3 => self.grandchild(tag),
            _ => {}
        }
    }

    pub(super) fn text(&mut self, raw: &str) {
        if self.field == Field::None {
            return;
        }
        if self.text.len() + raw.len() > MAX_TEXT {
            self.malformed = true;
            return;
        }
        self.text.extend_from_slice(raw.as_bytes());
    }

    pub(super) fn end(&mut self, tag: &EndTag<'_>) {
        match (self.field, tag.depth) {
            (Field::Sasl, 1) => self.field = Field::None, // keep the text for the caller
            (Field::Ip, 2 | 3) | (Field::Port, 3) | (Field::Mechanism, 3) => self.finish_field(),
            _ => {}
        }
        match tag.depth {
            2 => {
                self.in_mechanisms = false;
                self.in_session = false;
                self.in_error = false;
            }
            1 => self.field = Field::None,
            _ => {}
        }
    }

    /// Frees a text buffer grown by a large SASL payload, so idle sessions stay small.
    pub(super) fn shrink(&mut self) {
        if self.text.capacity() > 64 {
            self.text = Vec::new();
        }
        self.condition = None;
        self.incoming = None;
    }

    fn begin(&mut self, tag: &StartTag<'_>) {
        self.top = match (tag.namespace, tag.name.local) {
            (ns::CLIENT, "iq") => Top::Iq,
            (ns::STREAMS, "features") => Top::Features,
            (ns::STREAMS, "error") => Top::StreamError,
            (ns::TLS, "proceed") => Top::Proceed,
            (ns::TLS, "failure") => Top::TlsFailure,
            (ns::SASL, "challenge") => Top::Challenge,
            (ns::SASL, "success") => Top::Success,
            (ns::SASL, "failure") => Top::SaslFailure,
            _ => Top::Other,
        };
        self.iq_type = IqType::Other;
        self.id = None;
        self.payload = Payload::None;
        self.ip = None;
        self.port = None;
        self.text.clear();
        self.condition = None;
        self.incoming = None;
        self.malformed = false;
        self.in_error = false;
        self.in_mechanisms = false;
        self.in_session = false;
        self.field = Field::None;
        match self.top {
            Top::Features => self.features = Features::default(),
            Top::Challenge | Top::Success => self.field = Field::Sasl,
            Top::Iq => self.iq_attributes(tag),
            _ => {}
        }
    }

    fn iq_attributes(&mut self, tag: &StartTag<'_>) {
        let attrs = &tag.attributes;
        self.iq_type = match attrs.get("type") {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            Some("result") => IqType::Result,
            Some("error") => IqType::Error,
            _ => IqType::Other,
        };
        let id = attrs.get("id");
        self.id = id.and_then(|raw| raw.parse().ok());
        if matches!(self.iq_type, IqType::Get | IqType::Set) {
            let owned = |raw: &str| stanza::unescape(raw).map(|v| v.into_owned()).ok();
            self.incoming = Some(Box::new(Incoming {
                id: id.and_then(owned).unwrap_or_default(),
                from: attrs.get("from").and_then(owned),
            }));
        }
    }

    fn child(&mut self, tag: &StartTag<'_>) {
        let (namespace, local) = (tag.namespace, tag.name.local);
        match self.top {
            Top::Features => match (namespace, local) {
                (ns::TLS, "starttls") => self.features.0 |= Features::STARTTLS,
                (ns::SASL, "mechanisms") => self.in_mechanisms = true,
                (ns::BIND, "bind") => self.features.0 |= Features::BIND,
                (ns::SESSION, "session") => {
                    self.features.0 |= Features::SESSION;
                    self.in_session = true;
                }
                _ => {}
            },
            Top::StreamError if namespace == ns::STREAM_ERRORS && local != "text" => {
                self.set_condition(local);
            }
            Top::SaslFailure | Top::TlsFailure if local != "text" => self.set_condition(local),
            Top::Iq => {
                if local == "error" && namespace == ns::CLIENT {
                    self.in_error = true;
                    return;
                }
                if self.payload != Payload::None {
                    return;
                }
                self.payload = match (namespace, local) {
                    (ns::SIC0, "ip") => {
                        self.field = Field::Ip;
                        Payload::SicIp
                    }
                    (ns::SIC0, "address") => Payload::SicAddress0,
                    (ns::SIC1, "address") => Payload::SicAddress1,
                    (ns::DISCO_INFO, "query") => Payload::DiscoInfo,
                    (ns::PING, "ping") => Payload::Ping,
                    _ => Payload::Other,
                };
            }
            _ => {}
        }
    }

    fn grandchild(&mut self, tag: &StartTag<'_>) {
        let (namespace, local) = (tag.namespace, tag.name.local);
        if self.in_mechanisms && (namespace, local) == (ns::SASL, "mechanism") {
            self.field = Field::Mechanism;
        } else if self.in_session && (namespace, local) == (ns::SESSION, "optional") {
            self.features.0 |= Features::SESSION_OPTIONAL;
        } else if self.in_error && namespace == ns::STANZA_ERRORS && local != "text" {
            self.set_condition(local);
        } else if self.top == Top::Iq && !self.in_error {
            let address_ns = match self.payload {
                Payload::SicAddress0 => ns::SIC0,
                Payload::SicAddress1 => ns::SIC1,
                _ => return,
            };
            if namespace == address_ns {
                self.field = match local {
                    "ip" => Field::Ip,
                    "port" => Field::Port,
                    _ => Field::None,
                };
            }
        }
    }

    fn set_condition(&mut self, local: &str) {
        if self.condition.is_none() {
            self.condition = Some(local.into());
        }
    }

    fn finish_field(&mut self) {
        let field = std::mem::replace(&mut self.field, Field::None);
        let unescaped = std::str::from_utf8(&self.text)
            .ok()
            .and_then(|raw| stanza::unescape(raw).ok());
        match (field, unescaped.as_deref().map(str::trim)) {
            (_, None) => self.malformed = true,
            (Field::Ip, Some(text)) => match text.parse::<IpAddr>() {
                Ok(ip) => self.ip = Some(ip),
                Err(_) => self.malformed = true,
            },
            (Field::Port, Some(text)) => match text.parse::<u16>() {
                Ok(port) => self.port = Some(port),
                Err(_) => self.malformed = true,
            },
            (Field::Mechanism, Some(text)) => {
                if let Some(mechanism) = Mechanism::from_name(text) {
                    self.features.0 |= Features::mechanism_bit(mechanism);
                }
            }
            (Field::Sasl | Field::None, Some(_)) => {}
        }
        drop(unescaped);
        self.text.clear();
    }
}
