//! Per-listener protocol settings, shared by all connections of the listener.

use std::sync::Arc;
use std::time::Duration;

use crate::entropy::{Entropy, SystemEntropy};

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// Plain TCP, upgraded with STARTTLS (port 5222).
    Starttls,
    /// TLS from the first byte (XEP-0368, port 5223): the edge completes the handshake
    /// before creating the [`crate::Connection`].
    DirectTls,
}

/// Protocol settings and the limits a client cannot exceed.
#[derive(Debug, Clone)]
pub struct Config {
    /// The XMPP domains served; the stream header's `to` must be one of them.
    pub domains: Vec<String>,
    /// Refuse SASL until STARTTLS has completed (on [`ListenerKind::Starttls`]).
    pub require_tls: bool,
    /// Whether STARTTLS can be offered at all (a certificate is configured).
    pub tls_available: bool,
    /// Tokenizer limits (stanza size, depth, attributes, names).
    pub stanza_limits: stanza::TokenizerLimits,
    /// Failed SASL attempts allowed before the stream is closed with `policy-violation`.
    pub max_auth_failures: u32,
    /// From connect to bound resource (covers TLS, SASL and bind).
    pub negotiation_timeout: Duration,
    /// No bytes from the client for this long closes the stream (`connection-timeout`).
    pub idle_timeout: Duration,
    /// Sustained stanzas per second taken from a session (token bucket rate). A client
    /// over it is throttled, never disconnected: its input waits until the bucket refills.
    pub stanza_rate: f64,
    /// Token bucket size: stanzas taken in a burst before throttling starts.
    pub stanza_burst: u32,
    /// Sustained bytes per second read from a session; over it, reading pauses.
    pub byte_rate: u64,
    /// Bytes read in a burst before throttling starts.
    pub byte_burst: u64,
    /// Most bytes of unsent output held for a client that does not read; beyond it the
    /// connection is closed without further writes.
    pub max_unsent_output: usize,
    /// Randomness for stream ids, server-chosen resources and SCRAM nonces; the system's
    /// CSPRNG unless a test makes it deterministic.
    pub entropy: Arc<dyn Entropy>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domains: vec!["localhost".to_owned()],
            require_tls: true,
            tls_available: true,
            stanza_limits: stanza::TokenizerLimits::default(),
            max_auth_failures: 3,
            negotiation_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            stanza_rate: 50.0,
            stanza_burst: 100,
            byte_rate: 64 * 1024,
            byte_burst: 256 * 1024,
            max_unsent_output: 256 * 1024,
            entropy: Arc::new(SystemEntropy),
        }
    }
}
