//! Why a connection ended, in its three forms: [`End`] for the `connection closed` log
//! line, [`Ended`] for the `reason` of `xmpp_edge_connections_closed_total`, and the
//! [`LimitTrigger`] a session's close stands for ([`limit_of`]).

use std::fmt;
use std::io;

use session::CloseReason;

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
            Self::Session(CloseReason::StreamError { .. }) | Self::UnexpectedStartTls => {
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
            Self::Session(CloseReason::StreamError { condition, detail }) if detail.is_empty() => {
                write!(f, "stream error {condition}")
            }
            Self::Session(CloseReason::StreamError { condition, detail }) => {
                write!(f, "stream error {condition} ({detail})")
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

/// The limit a session close stands for, if any. `bound` tells a negotiation timeout
/// (before a resource was bound) from an idle timeout.
pub fn limit_of(reason: &CloseReason, bound: bool) -> Option<LimitTrigger> {
    match reason {
        CloseReason::OutputOverflow => Some(LimitTrigger::OutputOverflow),
        CloseReason::StreamError {
            condition: "connection-timeout",
            ..
        } => Some(if bound {
            LimitTrigger::IdleTimeout
        } else {
            LimitTrigger::NegotiationTimeout
        }),
        CloseReason::StreamError {
            condition: "policy-violation" | "resource-constraint",
            ..
        } => Some(LimitTrigger::StanzaPolicy),
        CloseReason::StreamError { .. } | CloseReason::ClientClosed => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_map_to_limits() {
        let timeout = CloseReason::StreamError {
            condition: "connection-timeout",
            detail: String::new(),
        };
        assert_eq!(
            limit_of(&timeout, false),
            Some(LimitTrigger::NegotiationTimeout)
        );
        assert_eq!(limit_of(&timeout, true), Some(LimitTrigger::IdleTimeout));
        assert_eq!(
            limit_of(&CloseReason::OutputOverflow, true),
            Some(LimitTrigger::OutputOverflow)
        );
        assert_eq!(limit_of(&CloseReason::ClientClosed, true), None);
    }
}
