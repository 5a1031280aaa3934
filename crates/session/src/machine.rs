//! The protocol state behind [`crate::Connection`]: it reacts to one token at a time,
//! writes replies into its output buffer and queues events. The handlers for SASL,
//! binding, IQs and messages live in their own modules as further `impl Machine` blocks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use stanza::Token;

use crate::counts::{Counts, StanzaKind};
use crate::element::{Element, Kind, Payload};
use crate::error::{StreamCondition, StreamError};
use crate::features::{self, Transport};
use crate::limits::Limits;
use crate::sasl::{Mechanism, ServerExchange};
use crate::stream;
use crate::writer::Output;
use crate::{Accounts, Addresses, CloseReason, Config, Event, TlsInfo};

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

/// SASL progress.
#[derive(Debug)]
pub(crate) enum Auth {
    None,
    /// An exchange awaits the client's next `<response>`.
    Exchange(Box<ServerExchange>),
    Done,
}

/// What the token loop in [`crate::Connection`] does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// SASL succeeded: the stream restarts right after the element that ended at `end`
    /// (relative to the buffer given with the token); the tokenizer starts over there.
    Restart {
        end: usize,
    },
    /// Stop reading: the connection closed or awaits the TLS handshake.
    Stop,
}

#[derive(Debug)]
pub(crate) struct Machine {
    pub(crate) config: Arc<Config>,
    pub(crate) accounts: Arc<dyn Accounts>,
    pub(crate) addresses: Addresses,
    pub(crate) transport: Transport,
    pub(crate) phase: Phase,
    /// Index in `config.domains` of the domain the client's first header named.
    pub(crate) domain: Option<usize>,
    pub(crate) auth: Auth,
    pub(crate) auth_failures: u32,
    /// The mechanism the client's last `<auth>` named, until its outcome is counted.
    pub(crate) sasl_mechanism: Option<Mechanism>,
    /// `user@domain` once authenticated, `user@domain/resource` once bound.
    pub(crate) jid: String,
    /// Bytes of the localpart at the start of `jid`.
    pub(crate) local_len: usize,
    /// Bytes of the bare JID at the start of `jid` (set when bound).
    pub(crate) bare_len: usize,
    pub(crate) bound: bool,
    pub(crate) out: Output,
    pub(crate) events: VecDeque<Event>,
    pub(crate) limits: Limits,
    /// The top-level element being read.
    pub(crate) element: Element,
    /// What happened since the I/O layer last took the counts.
    pub(crate) counts: Counts,
}

impl Machine {
    pub(crate) fn new(
        config: Arc<Config>,
        accounts: Arc<dyn Accounts>,
        addresses: Addresses,
        transport: Transport,
        now: Instant,
    ) -> Self {
        let limits = Limits::new(&config, now);
        Self {
            config,
            accounts,
            addresses,
            transport,
            phase: Phase::AwaitHeader,
            domain: None,
            auth: Auth::None,
            auth_failures: 0,
            sasl_mechanism: None,
            jid: String::new(),
            local_len: 0,
            bare_len: 0,
            bound: false,
            out: Output::default(),
            events: VecDeque::new(),
            limits,
            element: Element::new(),
            counts: Counts::default(),
        }
    }

    /// One token from the tokenizer; `buffered` is the length of the buffer it came from,
    /// so a stanza end can tell whether more bytes follow it.
    pub(crate) fn on_token(&mut self, token: Token<'_>, buffered: usize, now: Instant) -> Flow {
        let flow = match token {
            Token::StreamOpen(tag) => {
                match stream::check_header(&tag, &self.config.domains, self.domain) {
                    Ok(index) => {
                        self.domain = Some(index);
                        let domain = served_domain(&self.config, self.domain);
                        stream::write_header(&mut self.out, domain, stream::client_from(&tag));
                        features::write_features(
                            &mut self.out,
                            &self.config,
                            &self.transport,
                            matches!(self.auth, Auth::Done),
                        );
                        self.phase = Phase::Open;
                        Flow::Continue
                    }
                    Err(error) => self.stop(error.into()),
                }
            }
            Token::Start(tag) => {
                self.element.start(&tag);
                Flow::Continue
            }
            Token::Text(text) => {
                self.element.text(text.raw);
                Flow::Continue
            }
            Token::End(tag) => {
                self.element.end(&tag);
                Flow::Continue
            }
            Token::StanzaEnd(span) => self.on_element(span.end, buffered > span.end, now),
            Token::NeedMore | Token::Whitespace => Flow::Continue,
            Token::StreamClose => {
                self.out.raw("</stream:stream>");
                self.close(CloseReason::ClientClosed);
                Flow::Stop
            }
        };
        if flow != Flow::Stop && self.overflowed() {
            return Flow::Stop;
        }
        flow
    }

    /// A complete top-level element; `more` says whether bytes follow it in the buffer.
    fn on_element(&mut self, end: usize, more: bool, now: Instant) -> Flow {
        self.counts.stanza(StanzaKind::of(self.element.kind));
        if !self.limits.take_stanza(&self.config, now) {
            return self.stop(StreamError::new(
                StreamCondition::PolicyViolation,
                "stanza rate exceeded",
            ));
        }
        let authenticated = matches!(self.auth, Auth::Done);
        match self.element.kind {
            Kind::StartTls => self.on_starttls(more),
            Kind::Auth(mechanism) => self.on_auth(mechanism, end),
            Kind::Response => self.on_response(end),
            Kind::Abort => self.on_abort(),
            Kind::Iq if authenticated && (self.bound || self.element.payload == Payload::Bind) => {
                self.on_iq()
            }
            Kind::Message if self.bound => self.on_message(),
            Kind::Presence if self.bound => Flow::Continue,
            Kind::Iq | Kind::Message | Kind::Presence => self.stop(StreamError::new(
                StreamCondition::NotAuthorized,
                if authenticated {
                    "bind a resource first"
                } else {
                    "authenticate first"
                },
            )),
            Kind::Unsupported => self.stop(StreamError::new(
                StreamCondition::UnsupportedStanzaType,
                "unsupported top-level element",
            )),
        }
    }

    /// `<starttls/>`: proceed unless TLS is not on offer, or the client already sent more
    /// bytes. Those would be plaintext injected ahead of the TLS layer (the STARTTLS
    /// command injection attack class), so they end the connection instead.
    fn on_starttls(&mut self, more: bool) -> Flow {
        if !self.transport.starttls_offered(&self.config) {
            return self.stop(StreamError::new(
                StreamCondition::PolicyViolation,
                "STARTTLS not offered",
            ));
        }
        if more {
            return self.stop(StreamError::new(
                StreamCondition::PolicyViolation,
                "data after <starttls/>",
            ));
        }
        self.out
            .raw("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        self.phase = Phase::TlsPending;
        self.events.push_back(Event::StartTls);
        Flow::Stop
    }

    /// The TLS handshake after `<proceed/>` completed; `false` if none was pending.
    pub(crate) fn tls_established(&mut self, info: TlsInfo) -> bool {
        if self.phase != Phase::TlsPending {
            return false;
        }
        self.transport.tls = Some(info);
        self.phase = Phase::AwaitHeader;
        true
    }

    /// Heap bytes held in buffers and per-stream state.
    pub(crate) fn heap_bytes(&self) -> usize {
        let exchange = match self.auth {
            Auth::Exchange(_) => std::mem::size_of::<ServerExchange>(),
            Auth::None | Auth::Done => 0,
        };
        self.out.capacity()
            + self.element.heap_bytes()
            + self.jid.capacity()
            + self.events.capacity() * std::mem::size_of::<Event>()
            + exchange
    }

    /// Sends a stream error, closes the stream and asks the I/O layer to close.
    pub(crate) fn fail(&mut self, error: StreamError) {
        match self.phase {
            Phase::Closed => return,
            // Plaintext must not be written into a TLS handshake: just close.
            Phase::TlsPending => {}
            // RFC 6120 4.9.1.1: a stream error needs an open stream, so answer the
            // header first.
            Phase::AwaitHeader => {
                let from = served_domain(&self.config, self.domain)
                    .or_else(|| self.config.domains.first().map(String::as_str));
                stream::write_header(&mut self.out, from, None);
                self.out.stream_error(error.condition, &error.detail);
            }
            Phase::Open => self.out.stream_error(error.condition, &error.detail),
        }
        self.close(CloseReason::StreamError {
            condition: error.condition.as_str(),
            detail: error.detail,
        });
    }

    /// [`Machine::fail`], for handlers that then stop reading.
    pub(crate) fn stop(&mut self, error: StreamError) -> Flow {
        self.fail(error);
        Flow::Stop
    }

    /// The client closed its side. Pending output stays: after a half-close the client
    /// may still read it, and the I/O layer drops it anyway if the socket failed.
    pub(crate) fn peer_closed(&mut self) {
        if self.phase != Phase::Closed {
            self.close(CloseReason::ClientClosed);
        }
    }

    /// Ends the connection: queues the close request and frees per-stanza state. If the
    /// client is not reading, the unsent output is dropped and the reason says so.
    fn close(&mut self, reason: CloseReason) {
        let reason = if self.out.unsent() > self.config.max_unsent_output {
            self.out.discard();
            CloseReason::OutputOverflow
        } else {
            reason
        };
        self.phase = Phase::Closed;
        self.auth = Auth::None;
        self.element = Element::new();
        self.events.push_back(Event::Close(reason));
    }

    /// Closes with [`CloseReason::OutputOverflow`] when the client does not read.
    pub(crate) fn overflowed(&mut self) -> bool {
        if self.phase != Phase::Closed && self.out.unsent() > self.config.max_unsent_output {
            self.close(CloseReason::OutputOverflow);
            return true;
        }
        false
    }
}

/// The served domain with index `index`.
pub(crate) fn served_domain(config: &Config, index: Option<usize>) -> Option<&str> {
    index
        .and_then(|i| config.domains.get(i))
        .map(String::as_str)
}
