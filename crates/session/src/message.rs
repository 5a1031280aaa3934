//! Messages: the edge delivers nothing, so every message is bounced with
//! `service-unavailable` (RFC 6120 8.3.1: to and from swapped, `id` copied), except
//! errors, which are dropped so two entities never bounce errors at each other.

use crate::element::StanzaType;
use crate::error::StanzaCondition;
use crate::jid::Jid;
use crate::machine::{Flow, Machine};

impl Machine {
    pub(crate) fn on_message(&mut self) -> Flow {
        if self.element.stanza_type == StanzaType::Error {
            return Flow::Continue;
        }
        let domain = self.stream.domain(&self.config).unwrap_or_default();
        // No `to` means the sender's own bare JID (RFC 6120 8.1.1.1).
        let (condition, from) = match self.element.to() {
            None => (StanzaCondition::ServiceUnavailable, self.identity.bare()),
            Some(to) if Jid::parse(to).is_ok() => (StanzaCondition::ServiceUnavailable, Some(to)),
            Some(_) => (StanzaCondition::JidMalformed, Some(domain)),
        };
        let out = &mut self.out;
        let to = self.identity.full();
        out.stanza_open("message", "error", self.element.id(), to, from);
        out.raw(">");
        out.stanza_error(condition);
        out.raw("</message>");
        Flow::Continue
    }
}
