//! The stream itself (RFC 6120 section 4): where it is ([`Stream`]: phase, domain,
//! transport), and the headers that open it: checking the client's and writing ours.

use std::fmt;

use stanza::StartTag;

use crate::Config;
use crate::error::StreamCondition;
use crate::features::Transport;
use crate::jid::{self, Jid};
use crate::ns;
use crate::writer::Output;

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the client's stream header (at connect and after each restart). Our
    /// response header is not written yet.
    AwaitHeader,
    /// Both headers exchanged; stanzas flow.
    Open,
    /// `<proceed/>` sent; the I/O layer runs the TLS handshake. Nothing more is read or
    /// written in plaintext.
    TlsPending,
    /// A close was requested; input is ignored and no more output is produced.
    Closed,
}

/// The stream's state across its restarts (after STARTTLS and after SASL).
#[derive(Debug)]
pub(crate) struct Stream {
    pub(crate) phase: Phase,
    /// Index in `config.domains` of the domain the client's first header named.
    domain: Option<usize>,
    pub(crate) transport: Transport,
}

impl Stream {
    pub(crate) fn new(transport: Transport) -> Self {
        Self {
            phase: Phase::AwaitHeader,
            domain: None,
            transport,
        }
    }

    /// Input is read: the stream is not closed and not waiting for TLS.
    pub(crate) fn reading(&self) -> bool {
        matches!(self.phase, Phase::AwaitHeader | Phase::Open)
    }

    /// The served domain the client's header named, once it did.
    pub(crate) fn domain<'c>(&self, config: &'c Config) -> Option<&'c str> {
        self.domain
            .and_then(|i| config.domains.get(i))
            .map(String::as_str)
    }

    /// Checks a client's header: its domain must be served and, on a restarted stream,
    /// the one the first header named.
    pub(crate) fn accept_header(
        &mut self,
        tag: &StartTag<'_>,
        config: &Config,
    ) -> Result<(), HeaderError> {
        self.domain = Some(check_header(tag, &config.domains, self.domain)?);
        self.phase = Phase::Open;
        Ok(())
    }
}

/// Why a client's stream header is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The root is not qualified by the stream namespace (RFC 6120 4.8.1:
    /// `invalid-namespace`).
    StreamNamespace,
    /// The root is in the stream namespace but not named `stream`: a namespace that is
    /// right, for an element its schema (RFC 6120 appendix A.1) does not have as root;
    /// checking that is validation (4.9.3.11: `invalid-xml`).
    NotStream,
    /// The default namespace is not `jabber:client` (RFC 6120 4.8.2, 4.9.3.10:
    /// `invalid-namespace`).
    ContentNamespace,
    /// No `version`, or a major version other than 1 (RFC 6120 4.7.5:
    /// `unsupported-version`).
    Version,
    /// `to` is missing or names a domain not served here (or, on a restarted stream, a
    /// different domain than before): `host-unknown` (4.9.3.6), as no served domain is
    /// named; `improper-addressing` (4.9.3.7) is about stanzas between servers.
    HostUnknown,
}

impl HeaderError {
    /// The stream error condition it is sent as.
    pub fn condition(self) -> StreamCondition {
        match self {
            Self::StreamNamespace | Self::ContentNamespace => StreamCondition::InvalidNamespace,
            Self::NotStream => StreamCondition::InvalidXml,
            Self::Version => StreamCondition::UnsupportedVersion,
            Self::HostUnknown => StreamCondition::HostUnknown,
        }
    }
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::StreamNamespace => "stream namespace must be http://etherx.jabber.org/streams",
            Self::NotStream => "root element must be stream:stream",
            Self::ContentNamespace => "default namespace must be jabber:client",
            Self::Version => "version 1.0 required",
            Self::HostUnknown => "domain not served here",
        })
    }
}

/// Checks a client's stream header and returns the index in `domains` of the domain it
/// addresses. `current` is the domain of the stream being restarted, which the new header
/// must name again.
fn check_header(
    tag: &StartTag<'_>,
    domains: &[String],
    current: Option<usize>,
) -> Result<usize, HeaderError> {
    if tag.namespace != ns::STREAMS {
        return Err(HeaderError::StreamNamespace);
    }
    if tag.name.local != "stream" {
        return Err(HeaderError::NotStream);
    }
    if tag.attributes.get("xmlns") != Some(ns::CLIENT) {
        return Err(HeaderError::ContentNamespace);
    }
    if !tag.attributes.get("version").is_some_and(is_version_1) {
        return Err(HeaderError::Version);
    }
    let to = tag.attributes.get("to").ok_or(HeaderError::HostUnknown)?;
    let to = to.strip_suffix('.').unwrap_or(to);
    let index = domains
        .iter()
        .position(|domain| jid::domain_eq(domain, to))
        .ok_or(HeaderError::HostUnknown)?;
    match current {
        Some(current) if current != index => Err(HeaderError::HostUnknown),
        _ => Ok(index),
    }
}

/// RFC 6120 4.7.5: `major.minor`, two non-negative integers; any 1.x is served as 1.0.
fn is_version_1(version: &str) -> bool {
    let Some((major, minor)) = version.split_once('.') else {
        return false;
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    numeric(major) && numeric(minor) && major.trim_start_matches('0') == "1"
}

/// The client's `from`, when it is a JID worth echoing as our `to` (RFC 6120 4.7.2).
pub(crate) fn client_from<'a>(tag: &StartTag<'a>) -> Option<&'a str> {
    tag.attributes
        .get("from")
        .filter(|from| !from.contains('&') && Jid::parse(from).is_ok())
}

/// Our response stream header; `id` is fresh randomness (RFC 6120 4.7.3).
pub(crate) fn write_header(out: &mut Output, id: u64, from: Option<&str>, to: Option<&str>) {
    out.raw("<?xml version='1.0'?><stream:stream");
    out.attr("xmlns", ns::CLIENT);
    out.attr("xmlns:stream", ns::STREAMS);
    out.raw(" id='");
    out.display(format_args!("{id:016x}"));
    out.raw("'");
    if let Some(from) = from {
        out.attr("from", from);
    }
    if let Some(to) = to {
        out.attr("to", to);
    }
    out.raw(" version='1.0' xml:lang='en'>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        for ok in ["1.0", "1.1", "01.0", "1.10"] {
            assert!(is_version_1(ok), "{ok}");
        }
        for bad in ["", "1", "0.9", "2.0", "1.", ".0", "1.0a", "10.0"] {
            assert!(!is_version_1(bad), "{bad}");
        }
    }
}
