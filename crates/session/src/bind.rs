//! Resource binding (RFC 6120 section 7): the client's requested resource if it is valid,
//! else a random one the server picks. Conflicts across connections are the I/O layer's
//! business ([`crate::Event::Bound`], [`crate::Connection::replaced`]).

use std::borrow::Cow;

use crate::counts::AnswerKind;
use crate::error::StanzaCondition;
use crate::event::Event;
use crate::iq::Answer;
use crate::jid;
use crate::machine::{Flow, Machine};
use crate::ns;

impl Machine {
    /// A bind request (`set` false means type `get`, which binds nothing).
    pub(crate) fn on_bind(&mut self, set: bool) -> Flow {
        if !set {
            return self.iq_answer(Answer::Error(StanzaCondition::BadRequest));
        }
        // One resource per stream: this edge does not do RFC 6120 7.7.2.3 multi-binding.
        if self.identity.is_bound() {
            return self.iq_answer(Answer::Error(StanzaCondition::NotAllowed));
        }
        let resource: Cow<'_, str> = if self.element.has_resource {
            match stanza::unescape(&self.element.text) {
                Ok(resource) if jid::validate_resource(&resource).is_ok() => resource,
                _ => return self.iq_answer(Answer::Error(StanzaCondition::BadRequest)),
            }
        } else {
            Cow::Owned(format!("{:016x}", self.config.entropy.next_u64()))
        };
        self.identity.bind(&resource);
        self.timers.negotiated();
        // Text is only gathered for SASL and bind: nothing needs that scratch any more.
        self.element.text = String::new();
        let out = &mut self.out;
        out.stanza_open("iq", "result", self.element.id(), None, None);
        out.raw("><bind");
        out.attr("xmlns", ns::BIND);
        out.raw("><jid>");
        let full_jid = self.identity.full().unwrap_or_default();
        out.text(full_jid);
        out.raw("</jid></bind></iq>");
        self.counts.answer(AnswerKind::Bind);
        self.events.push_back(Event::Bound {
            full_jid: full_jid.to_owned(),
        });
        Flow::Continue
    }
}
