//! IQ handling: the RFC 6120 8.2.3 shape rules, then dispatch to SIC, disco, ping, bind
//! and session. Every get or set gets exactly one answer; results and errors from the
//! client are dropped (nothing here ever sends it a request).

use crate::counts::AnswerKind;
use crate::disco;
use crate::element::{Payload, StanzaType};
use crate::error::StanzaCondition;
use crate::jid::{self, Jid, JidError};
use crate::machine::{Flow, Machine};
use crate::sic::{self, SicForm};

/// Whom an IQ is addressed to, relative to the requester.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The session's domain, or no `to` at all (RFC 6120 10.3: the server answers).
    Server,
    /// The requester's own bare JID: the server answers on the account's behalf.
    Account,
    /// The requester's own full JID.
    OwnResource,
    /// Anyone else. The edge routes nothing, so nothing but errors goes there.
    Other,
}

/// What to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An empty result (ping, legacy session).
    Empty,
    Sic(SicForm),
    ServerInfo,
    AccountInfo,
    Items,
    Error(StanzaCondition),
}

impl Answer {
    /// How the answer is counted, given whether the request was a ping (the one other
    /// request answered with an empty result is the legacy session).
    fn counted(self, ping: bool) -> AnswerKind {
        match self {
            Self::Sic(SicForm::Ip0) => AnswerKind::Sic0Ip,
            Self::Sic(SicForm::Address0) => AnswerKind::Sic0Address,
            Self::Sic(SicForm::Address1) => AnswerKind::Sic1Address,
            // `forbidden` is only ever sent for SIC requests about someone else.
            Self::Error(StanzaCondition::Forbidden) => AnswerKind::SicForbidden,
            Self::Error(_) => AnswerKind::Error,
            Self::ServerInfo | Self::AccountInfo => AnswerKind::DiscoInfo,
            Self::Items => AnswerKind::DiscoItems,
            Self::Empty if ping => AnswerKind::Ping,
            Self::Empty => AnswerKind::Session,
        }
    }
}

impl Machine {
    pub(crate) fn on_iq(&mut self) -> Flow {
        let set = match self.element.stanza_type {
            StanzaType::Result | StanzaType::Error => return Flow::Continue,
            StanzaType::Get => false,
            StanzaType::Set => true,
            StanzaType::Other => return self.iq_answer(Answer::Error(StanzaCondition::BadRequest)),
        };
        if !self.element.has_id || self.element.children != 1 {
            return self.iq_answer(Answer::Error(StanzaCondition::BadRequest));
        }
        let Ok(target) = self.target() else {
            return self.iq_answer(Answer::Error(StanzaCondition::JidMalformed));
        };
        let answers = matches!(target, Target::Server | Target::Account);
        let answer = match self.element.payload {
            Payload::Bind => return self.on_bind(set),
            Payload::Sic(_) if set => Answer::Error(StanzaCondition::BadRequest),
            // XEP-0279 reveals an address: only the requester's own, never anyone else's.
            Payload::Sic(_) if target == Target::Other => Answer::Error(StanzaCondition::Forbidden),
            Payload::Sic(form) => Answer::Sic(form),
            Payload::Ping if !set && answers => Answer::Empty,
            Payload::DiscoInfo { node: true } | Payload::DiscoItems { node: true }
                if !set && answers =>
            {
                Answer::Error(StanzaCondition::ItemNotFound)
            }
            Payload::DiscoInfo { .. } if !set && target == Target::Server => Answer::ServerInfo,
            Payload::DiscoInfo { .. } if !set && target == Target::Account => Answer::AccountInfo,
            Payload::DiscoItems { .. } if !set && answers => Answer::Items,
            Payload::Session if set => Answer::Empty,
            _ => Answer::Error(StanzaCondition::ServiceUnavailable),
        };
        self.iq_answer(answer)
    }

    fn target(&self) -> Result<Target, JidError> {
        let Some(to) = self.element.to() else {
            return Ok(Target::Server);
        };
        let to = Jid::parse(to)?;
        let domain = self.stream.domain(&self.config).unwrap_or_default();
        if to.is_domain(domain) {
            return Ok(Target::Server);
        }
        if to.local() != self.identity.local() || !jid::domain_eq(to.domain(), domain) {
            return Ok(Target::Other);
        }
        Ok(match to.resource() {
            None => Target::Account,
            Some(resource) if Some(resource) == self.identity.resource() => Target::OwnResource,
            Some(_) => Target::Other,
        })
    }

    /// Writes the answer to the IQ just read: `to` the requester's full JID (once bound),
    /// `from` what it addressed (the domain when that was malformed), echoing its `id`.
    /// An IQ that addressed nothing gets an answer without `from` (RFC 6120 8.1.2.1):
    /// clients such as aioxmpp match the reply's `from` against the request's `to` and
    /// drop an answer that claims to come from the domain.
    pub(crate) fn iq_answer(&mut self, answer: Answer) -> Flow {
        self.counts
            .answer(answer.counted(self.element.payload == Payload::Ping));
        let from = match answer {
            Answer::Error(StanzaCondition::JidMalformed) => {
                Some(self.stream.domain(&self.config).unwrap_or_default())
            }
            _ => self.element.to(),
        };
        let to = self.identity.full();
        let id = self.element.id();
        let out = &mut self.out;
        let kind = if matches!(answer, Answer::Error(_)) {
            "error"
        } else {
            "result"
        };
        out.stanza_open("iq", kind, id, to, from);
        match answer {
            Answer::Empty => {
                out.raw("/>");
                return Flow::Continue;
            }
            Answer::Sic(form) => {
                out.raw(">");
                sic::write_answer(out, form, self.addresses.client);
            }
            Answer::ServerInfo => {
                out.raw(">");
                disco::write_server_info(out);
            }
            Answer::AccountInfo => {
                out.raw(">");
                disco::write_account_info(out);
            }
            Answer::Items => {
                out.raw(">");
                disco::write_items(out);
            }
            Answer::Error(condition) => {
                out.raw(">");
                out.stanza_error(condition);
            }
        }
        out.raw("</iq>");
        Flow::Continue
    }
}
