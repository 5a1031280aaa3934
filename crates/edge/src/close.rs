//! Why a connection ended, in its three forms: [`End`] for the `connection closed` log
//! line, [`Ended`] for the `reason` of `xmpp_edge_connections_closed_total`, and the
//! [`LimitTrigger`] a session's close stands for ([`limit_of`]).

use std::fmt;
use std::io;

use session::{Cause, CloseReason};

use crate::admission::LimitTrigger;
use crate::metrics::label_enum;
use crate::proxy_listener;

label_enum! {
    /// How a connection ended (the `reason` of `xmpp_edge_connections_closed_total`).
    Ended {
        /// The client closed its stream or the socket.
        Client => "client_closed",
        /// The edge sent a stream error.
        StreamError => "stream_error",
        /// The client did not read its output.
        OutputOverflow => "output_overflow",
        /// The socket failed.
        Io => "io_error",
        TlsFailed => "tls_failed",
        TlsTimeout => "tls_timeout",
        /// Shutdown ran out of time.
        Forced => "forced",
        /// Refused at admission by a connection limit.
        Refused => "refused",
        /// No acceptable PROXY header (see `xmpp_edge_proxy_headers_total`).
        ProxyHeader => "proxy_header",
    }
}

/// Why a connection task ended, for the close log line and the counters.
#[derive(Debug)]
pub enum End {
    /// The session closed the stream.
    Session(CloseReason),
    /// The socket reached EOF and the session had nothing more to say.
    PeerClosed,
    Io(io::Error),
    TlsTimeout,
    TlsFailed(io::Error),
    /// No acceptable PROXY header.
    Proxy(proxy_listener::Failure),
    /// The client address in the PROXY header is over its limit.
    Refused(LimitTrigger),
    /// The session asked for STARTTLS on an encrypted stream.
    UnexpectedStartTls,
    /// Shutdown ran out of time.
    Forced,
}

impl End {
    pub fn counted(&self) -> Ended {
        match self {
            Self::Session(CloseReason::ClientClosed) | Self::PeerClosed => Ended::Client,
            Self::Session(CloseReason::OutputOverflow) => Ended::OutputOverflow,
            Self::Session(CloseReason::StreamError(_)) | Self::UnexpectedStartTls => {
                Ended::StreamError
            }
            Self::Io(_) => Ended::Io,
            Self::TlsTimeout => Ended::TlsTimeout,
            Self::TlsFailed(_) => Ended::TlsFailed,
            Self::Proxy(_) => Ended::ProxyHeader,
            Self::Refused(_) => Ended::Refused,
            Self::Forced => Ended::Forced,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(CloseReason::ClientClosed) | Self::PeerClosed => {
                f.write_str("client closed")
            }
            Self::Session(CloseReason::StreamError(cause)) => {
                write!(f, "stream error {} ({cause})", cause.condition().as_str())
            }
            Self::Session(CloseReason::OutputOverflow) => {
                f.write_str("client not reading (unsent output limit)")
            }
            Self::Io(error) => write!(f, "socket error: {error}"),
            Self::TlsTimeout => f.write_str("TLS handshake timeout"),
            Self::TlsFailed(error) => write!(f, "TLS handshake failed: {error}"),
            Self::Proxy(failure) => failure.fmt(f),
            Self::Refused(limit) => write!(f, "refused after the PROXY header: {limit:?}"),
            Self::UnexpectedStartTls => f.write_str("STARTTLS requested on an encrypted stream"),
            Self::Forced => f.write_str("closed by force at shutdown"),
        }
    }
}

/// The limit a session close stands for, if any: timeouts and the stanza limits, not
/// protocol violations.
pub fn limit_of(reason: &CloseReason) -> Option<LimitTrigger> {
    match reason {
        CloseReason::OutputOverflow => Some(LimitTrigger::OutputOverflow),
        CloseReason::StreamError(cause) => match cause {
            Cause::NegotiationTimeout => Some(LimitTrigger::NegotiationTimeout),
            Cause::IdleTimeout => Some(LimitTrigger::IdleTimeout),
            Cause::StanzaLimit(_) | Cause::AuthFailures | Cause::ThrottleOverrun => {
                Some(LimitTrigger::StanzaPolicy)
            }
            Cause::Header(_)
            | Cause::Xml(_)
            | Cause::NotAuthenticated
            | Cause::NotBound
            | Cause::UnsupportedStanza
            | Cause::Violation(_)
            | Cause::Replaced
            | Cause::Shutdown => None,
        },
        CloseReason::ClientClosed => None,
    }
}

#[cfg(test)]
mod tests {
    use session::Violation;

    use super::*;

    #[test]
    fn close_reasons_map_to_limits() {
        let closed = |cause| limit_of(&CloseReason::StreamError(cause));
        assert_eq!(
            closed(Cause::NegotiationTimeout),
            Some(LimitTrigger::NegotiationTimeout)
        );
        assert_eq!(closed(Cause::IdleTimeout), Some(LimitTrigger::IdleTimeout));
        assert_eq!(
            closed(Cause::StanzaLimit(stanza::Error::StanzaTooLarge)),
            Some(LimitTrigger::StanzaPolicy)
        );
        assert_eq!(
            closed(Cause::AuthFailures),
            Some(LimitTrigger::StanzaPolicy)
        );
        // Protocol violations are policy-violation on the wire but no limit.
        assert_eq!(
            closed(Cause::Violation(Violation::AlreadyAuthenticated)),
            None
        );
        assert_eq!(closed(Cause::Violation(Violation::DataBeforeTls)), None);
        assert_eq!(
            limit_of(&CloseReason::OutputOverflow),
            Some(LimitTrigger::OutputOverflow)
        );
        assert_eq!(limit_of(&CloseReason::ClientClosed), None);
    }

    #[test]
    fn the_log_line_names_condition_and_cause() {
        let end = End::Session(CloseReason::StreamError(Cause::IdleTimeout));
        assert_eq!(
            end.to_string(),
            "stream error connection-timeout (idle for too long)"
        );
    }
}
