//! What a connection did, as plain numbers for the I/O layer's metrics. A leaf: each
//! module that acts classifies its own outcomes into these kinds.
//!
//! The session adds to a small `Copy` struct of integers as it works, and the I/O layer
//! drains it after each call ([`crate::Connection::take_counts`]). That costs an add per
//! stanza, where events would cost a queue push (and, as the event queue is freed when
//! empty, an allocation) per stanza. Stream errors need no counter here: they already end
//! the connection with [`crate::Event::Close`], which names the condition.

use crate::sasl::Mechanism;

/// A top-level element received, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Iq,
    Message,
    Presence,
    /// `<auth>`, `<response>` or `<abort>`.
    Sasl,
    StartTls,
    /// Anything else (answered with `unsupported-stanza-type`).
    Unsupported,
}

impl StanzaKind {
    /// Every kind, in [`StanzaKind::index`] order.
    pub const ALL: [Self; 6] = [
        Self::Iq,
        Self::Message,
        Self::Presence,
        Self::Sasl,
        Self::StartTls,
        Self::Unsupported,
    ];

    /// A metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Iq => "iq",
            Self::Message => "message",
            Self::Presence => "presence",
            Self::Sasl => "sasl",
            Self::StartTls => "starttls",
            Self::Unsupported => "unsupported",
        }
    }

    /// The position in [`StanzaKind::ALL`], so callers can keep one counter per kind in
    /// an array.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// An IQ answer sent, by what it answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// XEP-0279 sic:0 `<ip/>`.
    Sic0Ip,
    /// XEP-0279 sic:0 `<address/>`.
    Sic0Address,
    /// XEP-0279 sic:1 `<address/>`.
    Sic1Address,
    /// A SIC request for someone else's address, refused with `forbidden`.
    SicForbidden,
    DiscoInfo,
    DiscoItems,
    Ping,
    /// A resource was bound.
    Bind,
    /// The legacy RFC 3921 session request.
    Session,
    /// Any other stanza error.
    Error,
}

impl AnswerKind {
    /// Every kind, in [`AnswerKind::index`] order.
    pub const ALL: [Self; 10] = [
        Self::Sic0Ip,
        Self::Sic0Address,
        Self::Sic1Address,
        Self::SicForbidden,
        Self::DiscoInfo,
        Self::DiscoItems,
        Self::Ping,
        Self::Bind,
        Self::Session,
        Self::Error,
    ];

    /// A metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sic0Ip => "sic0_ip",
            Self::Sic0Address => "sic0_address",
            Self::Sic1Address => "sic1_address",
            Self::SicForbidden => "sic_forbidden",
            Self::DiscoInfo => "disco_info",
            Self::DiscoItems => "disco_items",
            Self::Ping => "ping",
            Self::Bind => "bind",
            Self::Session => "session",
            Self::Error => "error",
        }
    }

    /// The position in [`AnswerKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a SASL attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslOutcome {
    Success,
    /// The credentials or the identity were refused (`not-authorized` and its kin).
    NotAuthorized,
    /// The client sent `<abort/>`.
    Aborted,
    /// The exchange broke the protocol: malformed or badly encoded data, an unknown or
    /// unoffered mechanism, no TLS.
    ProtocolError,
}

impl SaslOutcome {
    /// Every outcome, in [`SaslOutcome::index`] order.
    pub const ALL: [Self; 4] = [
        Self::Success,
        Self::NotAuthorized,
        Self::Aborted,
        Self::ProtocolError,
    ];

    /// A metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::NotAuthorized => "not_authorized",
            Self::Aborted => "aborted",
            Self::ProtocolError => "protocol_error",
        }
    }

    /// The position in [`SaslOutcome::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Slots for SASL outcomes: one per mechanism in [`Mechanism::ALL`] plus one for
/// attempts that named no known mechanism.
const SASL_SLOTS: usize = Mechanism::ALL.len() + 1;

/// What the connection did since the counts were last taken. Adding saturates, so a
/// caller that never drains them gets capped numbers, not a panic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    stanzas: [u32; StanzaKind::ALL.len()],
    answers: [u32; AnswerKind::ALL.len()],
    sasl: [[u32; SaslOutcome::ALL.len()]; SASL_SLOTS],
    /// Times input was paused for the rate budgets.
    throttled: u32,
    /// Microseconds of pauses that ended.
    throttled_micros: u64,
}

impl Counts {
    /// Top-level elements received, by kind; kinds with a zero count are skipped.
    pub fn stanzas(&self) -> impl Iterator<Item = (StanzaKind, u32)> + '_ {
        StanzaKind::ALL
            .into_iter()
            .zip(self.stanzas)
            .filter(|&(_, n)| n > 0)
    }

    /// IQ answers written, by kind; kinds with a zero count are skipped.
    pub fn answers(&self) -> impl Iterator<Item = (AnswerKind, u32)> + '_ {
        AnswerKind::ALL
            .into_iter()
            .zip(self.answers)
            .filter(|&(_, n)| n > 0)
    }

    /// SASL attempts that ended, by mechanism (`None`: none the edge knows) and outcome;
    /// zero counts are skipped.
    pub fn sasl(&self) -> impl Iterator<Item = (Option<Mechanism>, SaslOutcome, u32)> + '_ {
        // Most calls count no SASL at all: skip empty rows before looking inside.
        let empty = [0; SaslOutcome::ALL.len()];
        let rows = self
            .sasl
            .iter()
            .enumerate()
            .filter(move |(_, row)| **row != empty);
        rows.flat_map(|(slot, outcomes)| {
            let mechanism = Mechanism::ALL.get(slot).copied();
            SaslOutcome::ALL
                .into_iter()
                .zip(*outcomes)
                .filter(|&(_, n)| n > 0)
                .map(move |(outcome, n)| (mechanism, outcome, n))
        })
    }

    /// IQ answers written in total: the requests whose replies are now pending output.
    pub fn answered(&self) -> u32 {
        self.answers
            .iter()
            .fold(0u32, |sum, &n| sum.saturating_add(n))
    }

    /// Times the session's input was paused because a rate budget was spent.
    pub fn throttled(&self) -> u32 {
        self.throttled
    }

    /// How long the pauses that ended lasted in total.
    pub fn throttled_for(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.throttled_micros)
    }

    /// Nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    pub(crate) fn stanza(&mut self, kind: StanzaKind) {
        bump(&mut self.stanzas[kind.index()]);
    }

    pub(crate) fn answer(&mut self, kind: AnswerKind) {
        bump(&mut self.answers[kind.index()]);
    }

    pub(crate) fn sasl_ended(&mut self, mechanism: Option<Mechanism>, outcome: SaslOutcome) {
        let slot = mechanism
            .and_then(|m| Mechanism::ALL.iter().position(|&known| known == m))
            .unwrap_or(Mechanism::ALL.len());
        if let Some(outcomes) = self.sasl.get_mut(slot) {
            bump(&mut outcomes[outcome.index()]);
        }
    }

    pub(crate) fn throttle_started(&mut self) {
        bump(&mut self.throttled);
    }

    pub(crate) fn throttle_ended(&mut self, lasted: std::time::Duration) {
        let micros = u64::try_from(lasted.as_micros()).unwrap_or(u64::MAX);
        self.throttled_micros = self.throttled_micros.saturating_add(micros);
    }
}

fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_all_lists() {
        assert!(
            StanzaKind::ALL
                .iter()
                .enumerate()
                .all(|(i, k)| k.index() == i)
        );
        assert!(
            AnswerKind::ALL
                .iter()
                .enumerate()
                .all(|(i, k)| k.index() == i)
        );
        assert!(
            SaslOutcome::ALL
                .iter()
                .enumerate()
                .all(|(i, k)| k.index() == i)
        );
    }

    #[test]
    fn counts_iterate_non_zero_entries() {
        let mut counts = Counts::default();
        assert!(counts.is_empty());
        counts.stanza(StanzaKind::Iq);
        counts.stanza(StanzaKind::Iq);
        counts.answer(AnswerKind::Ping);
        counts.answer(AnswerKind::Sic1Address);
        counts.sasl_ended(Some(Mechanism::Plain), SaslOutcome::Success);
        counts.sasl_ended(None, SaslOutcome::ProtocolError);
        assert_eq!(counts.stanzas().collect::<Vec<_>>(), [(StanzaKind::Iq, 2)]);
        assert_eq!(
            counts.answers().collect::<Vec<_>>(),
            [(AnswerKind::Sic1Address, 1), (AnswerKind::Ping, 1)]
        );
        assert_eq!(counts.answered(), 2);
        assert_eq!(
            counts.sasl().collect::<Vec<_>>(),
            [
                (Some(Mechanism::Plain), SaslOutcome::Success, 1),
                (None, SaslOutcome::ProtocolError, 1)
            ]
        );
        assert!(!counts.is_empty());
    }

    #[test]
    fn adding_saturates() {
        let mut counts = Counts::default();
        counts.stanzas[0] = u32::MAX;
        counts.stanza(StanzaKind::Iq);
        assert_eq!(counts.stanzas[0], u32::MAX);
    }
}
