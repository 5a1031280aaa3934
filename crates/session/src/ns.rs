//! XML namespaces of the protocols the edge speaks.

pub(crate) const STREAMS: &str = "http://etherx.jabber.org/streams";
pub(crate) const CLIENT: &str = "jabber:client";
pub(crate) const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub(crate) const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub(crate) const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub(crate) const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub(crate) const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub(crate) const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
pub(crate) const SIC0: &str = "urn:xmpp:sic:0";
pub(crate) const SIC1: &str = "urn:xmpp:sic:1";
pub(crate) const PING: &str = "urn:xmpp:ping";
pub(crate) const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub(crate) const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
