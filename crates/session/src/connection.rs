//! The per-connection state machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use stanza::{Token, Tokenizer};

use crate::counts::Counts;
use crate::error::{StreamCondition, StreamError};
use crate::features::Transport;
use crate::machine::{Flow, Machine, Phase};
use crate::{Accounts, Config, ListenerKind};

/// Input buffers at least this large are shrunk when mostly empty, so one big stanza does
/// not pin its memory for the connection's lifetime.
const SHRINK_INPUT_ABOVE: usize = 8 * 1024;

/// The addresses of one connection, as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client as the edge reports it in SIC answers: the socket peer, or the source
    /// a trusted load balancer gave in a PROXY header.
    pub client: SocketAddr,
    /// The socket's peer (the balancer, when there is one).
    pub peer: SocketAddr,
    /// The socket's local address.
    pub local: SocketAddr,
}

/// What the I/O layer reports once a TLS handshake has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsInfo {
    /// TLS 1.3 was negotiated (SCRAM-*-PLUS with tls-exporter is offered only then).
    pub tls13: bool,
    /// RFC 9266 tls-exporter channel binding data (label "EXPORTER-Channel-Binding",
    /// no context, 32 bytes), when TLS 1.3 was negotiated.
    pub exporter: Option<[u8; 32]>,
}

/// Why a connection ended; the edge logs it and (later) counts it by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its stream (`</stream:stream>`) or the socket.
    ClientClosed,
    /// The edge sent a stream error with this RFC 6120 condition.
    StreamError {
        condition: &'static str,
        detail: String,
    },
    /// Unsent output exceeded [`Config::max_unsent_output`]; nothing more was written.
    OutputOverflow,
}

/// Requests to the I/O layer and notable happenings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write all pending output (ending with `<proceed/>`), then run the TLS handshake as
    /// server and report it with [`Connection::tls_established`].
    StartTls,
    /// SASL succeeded for this bare JID.
    Authenticated { bare_jid: String },
    /// A resource was bound. The edge must replace any other connection bound to the same
    /// full JID ([`Connection::replaced`]).
    Bound { full_jid: String },
    /// Write all pending output, then close the socket.
    Close(CloseReason),
}

/// One client connection's protocol state.
///
/// Input is tokenized straight from the caller's slice when no partial stanza is pending,
/// so the common case (whole stanzas per read) copies nothing; only an unfinished tail is
/// kept in `input`, which is freed as soon as it empties.
#[derive(Debug)]
pub struct Connection {
    tokenizer: Tokenizer,
    /// Bytes of an unfinished token or stanza, the tokenizer's buffer between reads.
    input: Vec<u8>,
    machine: Machine,
}

impl Connection {
    /// A new connection. For [`ListenerKind::DirectTls`], `tls` carries the handshake result.
    pub fn new(
        config: Arc<Config>,
        accounts: Arc<dyn Accounts>,
        addresses: Addresses,
        kind: ListenerKind,
        tls: Option<TlsInfo>,
        now: Instant,
    ) -> Self {
        let tokenizer = Tokenizer::new(config.stanza_limits);
        let transport = Transport { kind, tls };
        Self {
            tokenizer,
            input: Vec::new(),
            machine: Machine::new(config, accounts, addresses, transport, now),
        }
    }

    /// Bytes read from the client.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        match self.machine.phase {
            Phase::Closed => return,
            Phase::TlsPending => {
                // Whatever arrives before the handshake is plaintext that must not reach
                // the TLS layer or the stream after it.
                if !data.is_empty() {
                    self.machine.fail(StreamError::new(
                        StreamCondition::PolicyViolation,
                        "data before the TLS handshake",
                    ));
                }
                return;
            }
            Phase::AwaitHeader | Phase::Open => {}
        }
        if data.is_empty() {
            return;
        }
        self.machine.limits.activity(&self.machine.config, now);
        if self.input.is_empty() {
            let consumed = self.process(data, now);
            if self.reading() {
                self.input
                    .extend_from_slice(data.get(consumed..).unwrap_or_default());
            }
        } else {
            let mut buf = std::mem::take(&mut self.input);
            buf.extend_from_slice(data);
            let consumed = self.process(&buf, now);
            buf.drain(..consumed.min(buf.len()));
            self.input = buf;
        }
        self.tidy_input();
    }

    /// The deadline from [`Connection::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.machine.phase == Phase::Closed {
            return;
        }
        if let Some(expired) = self.machine.limits.expired(now) {
            self.machine.fail(StreamError::new(
                StreamCondition::ConnectionTimeout,
                expired.detail(),
            ));
            self.tidy_input();
        }
    }

    /// The STARTTLS handshake completed; the stream restarts.
    pub fn tls_established(&mut self, info: TlsInfo) {
        if self.machine.tls_established(info) {
            self.tokenizer.reset();
            self.input = Vec::new();
        }
    }

    /// The socket reached EOF or failed.
    pub fn peer_closed(&mut self) {
        self.machine.peer_closed();
        self.tidy_input();
    }

    /// Another connection bound the same full JID: send `<conflict/>` and close.
    pub fn replaced(&mut self) {
        self.machine.fail(StreamError::new(
            StreamCondition::Conflict,
            "replaced by a new connection for the same resource",
        ));
        self.tidy_input();
    }

    /// The edge is shutting down: send `<system-shutdown/>` and close.
    pub fn shutdown(&mut self) {
        self.machine.fail(StreamError::new(
            StreamCondition::SystemShutdown,
            "server shutting down",
        ));
        self.tidy_input();
    }

    /// Bytes waiting to be written to the socket.
    pub fn pending_output(&self) -> &[u8] {
        self.machine.out.pending()
    }

    /// `n` bytes of [`Connection::pending_output`] were written.
    pub fn output_written(&mut self, n: usize) {
        self.machine.out.consumed(n);
    }

    /// The next request or event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        let event = self.machine.events.pop_front();
        if self.machine.events.is_empty() {
            // Events are rare (negotiation, close): hold no queue memory in between.
            self.machine.events = std::collections::VecDeque::new();
        }
        event
    }

    /// When [`Connection::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.machine.phase {
            Phase::Closed => None,
            _ => self.machine.limits.next_deadline(),
        }
    }

    /// What the connection did since the last call (stanzas received, IQ answers written,
    /// SASL outcomes), for metrics; the counts start over from zero. Cheap enough to call
    /// after every [`Connection::receive`].
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.machine.counts)
    }

    /// The connection's addresses.
    pub fn addresses(&self) -> &Addresses {
        &self.machine.addresses
    }

    /// Heap memory held in this connection's buffers and per-stream state (the input
    /// and output buffers, scratch strings, queued events), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.input.capacity() + self.machine.heap_bytes()
    }

    /// The bound full JID, or the bare JID once authenticated, if any.
    pub fn jid(&self) -> Option<&str> {
        (!self.machine.jid.is_empty()).then_some(self.machine.jid.as_str())
    }

    /// Runs the tokenizer over `buf` and returns how many leading bytes are done with.
    fn process(&mut self, buf: &[u8], now: Instant) -> usize {
        let mut base = 0;
        loop {
            let rest = buf.get(base..).unwrap_or_default();
            let flow = match self.tokenizer.next(rest) {
                Ok(Token::NeedMore) => break,
                Ok(token) => self.machine.on_token(token, rest.len(), now),
                Err(error) => {
                    let condition = StreamCondition::from(error.condition());
                    self.machine
                        .fail(StreamError::new(condition, error.to_string()));
                    Flow::Stop
                }
            };
            match flow {
                Flow::Continue => {}
                Flow::Restart { end } => {
                    base += end;
                    self.tokenizer.reset();
                }
                Flow::Stop => return buf.len(),
            }
        }
        base + self.tokenizer.compact()
    }

    /// Whether input is still being read (not closed, not waiting for TLS).
    fn reading(&self) -> bool {
        matches!(self.machine.phase, Phase::AwaitHeader | Phase::Open)
    }

    /// Frees the input buffer when it is empty or no longer read, and shrinks it when a
    /// large stanza left it mostly unused.
    fn tidy_input(&mut self) {
        if self.input.is_empty() || !self.reading() {
            self.input = Vec::new();
        } else if self.input.capacity() > SHRINK_INPUT_ABOVE
            && self.input.len() < self.input.capacity() / 4
        {
            self.input.shrink_to(self.input.len() * 2);
        }
    }
}
