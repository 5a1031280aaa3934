//! What the core asks of the I/O layer ([`Event`]) and why a connection ended
//! ([`CloseReason`], [`Cause`]), in types: the edge maps a close to its log line, its
//! stream-error counter and its limit counter with plain `match`es.

use std::fmt;

use crate::error::StreamCondition;
use crate::sasl::PasswordCheck;
use crate::stream::HeaderError;

/// Requests to the I/O layer and notable happenings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write all pending output (ending with `<proceed/>`), then run the TLS handshake as
    /// server and report it with [`crate::Connection::tls_established`].
    StartTls,
    /// Check this PLAIN password (PBKDF2) off the event loop and hand the verdict to
    /// [`crate::Connection::password_checked`]; input waits until then. Boxed: it is
    /// rare, and every queued event and every I/O task holding one pays for the largest.
    CheckPassword(Box<PasswordCheck>),
    /// SASL succeeded for this bare JID.
    Authenticated { bare_jid: String },
    /// A resource was bound. The edge must replace any other connection bound to the same
    /// full JID ([`crate::Connection::replaced`]).
    Bound { full_jid: String },
    /// Write all pending output, then close the socket.
    Close(CloseReason),
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its stream (`</stream:stream>`) or the socket.
    ClientClosed,
    /// The edge sent a stream error for this cause ([`Cause::condition`] on the wire).
    StreamError(Cause),
    /// Unsent output exceeded [`crate::Config::max_unsent_output`]; nothing more was
    /// written.
    OutputOverflow,
}

/// Why the edge ended a stream with a stream error. Each cause sends one RFC 6120
/// condition ([`Cause::condition`]) with its `Display` text as the `<text>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The client's stream header was refused.
    Header(HeaderError),
    /// The tokenizer found the input is not XML the stream may carry: not well-formed,
    /// restricted, with an unbound prefix, text between stanzas, or not UTF-8.
    Xml(stanza::Error),
    /// The tokenizer's limits ([`stanza::TokenizerLimits`]): a stanza too large, too
    /// deep, with too many attributes or too long a name.
    StanzaLimit(stanza::Error),
    /// No resource bound within [`crate::Config::negotiation_timeout`] of connecting.
    NegotiationTimeout,
    /// No bytes for [`crate::Config::idle_timeout`].
    IdleTimeout,
    /// Input kept arriving while the rate budgets had paused it, past one stanza's worth
    /// ([`stanza::TokenizerLimits::max_stanza_bytes`]): an I/O layer that does not honour
    /// [`crate::Connection::read_paused_until`]. Over-budget clients are otherwise
    /// throttled, never disconnected.
    ThrottleOverrun,
    /// [`crate::Config::max_auth_failures`] failed SASL attempts.
    AuthFailures,
    /// An iq, message or presence before authentication.
    NotAuthenticated,
    /// An iq (other than bind), message or presence before a resource was bound.
    NotBound,
    /// A top-level element the edge does not serve.
    UnsupportedStanza,
    /// A step out of the protocol's order.
    Violation(Violation),
    /// Another connection bound the same full JID ([`crate::Connection::replaced`]).
    Replaced,
    /// The edge is shutting down ([`crate::Connection::shutdown`]).
    Shutdown,
}

/// Steps a client took out of the protocol's order (all `policy-violation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Bytes after `<proceed/>`, before the TLS handshake: plaintext that must not reach
    /// the TLS layer.
    DataBeforeTls,
    /// Bytes in the same read after `<starttls/>` (the STARTTLS command injection class).
    DataAfterStartTls,
    /// `<starttls/>` where it is not offered.
    StartTlsNotOffered,
    /// SASL after a successful authentication.
    AlreadyAuthenticated,
}

impl Cause {
    /// The RFC 6120 condition this cause is sent as.
    pub fn condition(self) -> StreamCondition {
        match self {
            Self::Header(error) => error.condition(),
            Self::Xml(error) | Self::StanzaLimit(error) => error.condition().into(),
            Self::NegotiationTimeout | Self::IdleTimeout => StreamCondition::ConnectionTimeout,
            Self::ThrottleOverrun | Self::AuthFailures | Self::Violation(_) => {
                StreamCondition::PolicyViolation
            }
            Self::NotAuthenticated | Self::NotBound => StreamCondition::NotAuthorized,
            Self::UnsupportedStanza => StreamCondition::UnsupportedStanzaType,
            Self::Replaced => StreamCondition::Conflict,
            Self::Shutdown => StreamCondition::SystemShutdown,
        }
    }

    /// The cause of a tokenizer rejection: its limits apart from the rest.
    pub(crate) fn of_tokenizer(error: stanza::Error) -> Self {
        match error.condition() {
            stanza::StreamErrorCondition::PolicyViolation => Self::StanzaLimit(error),
            _ => Self::Xml(error),
        }
    }
}

impl fmt::Display for Cause {
    /// The human-readable reason, sent as the stream error's `<text>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Header(error) => error.fmt(f),
            Self::Xml(error) | Self::StanzaLimit(error) => error.fmt(f),
            Self::NegotiationTimeout => f.write_str("stream negotiation took too long"),
            Self::IdleTimeout => f.write_str("idle for too long"),
            Self::ThrottleOverrun => f.write_str("input beyond the rate budget while throttled"),
            Self::AuthFailures => f.write_str("too many failed authentication attempts"),
            Self::NotAuthenticated => f.write_str("authenticate first"),
            Self::NotBound => f.write_str("bind a resource first"),
            Self::UnsupportedStanza => f.write_str("unsupported top-level element"),
            Self::Violation(violation) => violation.fmt(f),
            Self::Replaced => f.write_str("replaced by a new connection for the same resource"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DataBeforeTls => "data before the TLS handshake",
            Self::DataAfterStartTls => "data after <starttls/>",
            Self::StartTlsNotOffered => "STARTTLS not offered",
            Self::AlreadyAuthenticated => "already authenticated",
        })
    }
}
