//! The per-connection state machine.

use std::sync::Arc;
use std::time::Instant;

use stanza::{Token, Tokenizer};

use crate::counts::Counts;
use crate::event::{Cause, Event, Violation};
use crate::features::Transport;
use crate::link::{Addresses, TlsInfo};
use crate::machine::{Flow, Machine};
use crate::stream::Phase;
use crate::{Accounts, Config, ListenerKind};

/// Input buffers at least this large are shrunk when mostly empty, so one big stanza does
/// not pin its memory for the connection's lifetime.
const SHRINK_INPUT_ABOVE: usize = 8 * 1024;

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
        match self.machine.stream.phase {
            Phase::Closed => return,
            Phase::TlsPending => {
                // Whatever arrives before the handshake is plaintext that must not reach
                // the TLS layer or the stream after it.
                if !data.is_empty() {
                    self.machine
                        .fail(Cause::Violation(Violation::DataBeforeTls));
                }
                return;
            }
            Phase::AwaitHeader | Phase::Open => {}
        }
        if data.is_empty() {
            return;
        }
        self.machine.timers.activity(&self.machine.config, now);
        if self.machine.holding() {
            self.hold(data);
            return;
        }
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
        if self.reading() {
            self.machine
                .spend(|budget, config| budget.bytes(config, data.len(), now));
        }
        self.tidy_input();
    }

    /// The deadline from [`Connection::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.machine.stream.phase == Phase::Closed {
            return;
        }
        if let Some(expired) = self.machine.timers.expired(now) {
            self.machine.fail(expired);
            self.tidy_input();
            return;
        }
        if let Some(lasted) = self.machine.budget.resume(now) {
            self.machine.counts.throttle_ended(lasted);
            self.take_held_input(now);
        }
    }

    /// The verdict of the check an [`Event::CheckPassword`] asked for: the SASL exchange
    /// ends, and the input held meanwhile is taken in.
    pub fn password_checked(&mut self, verdict: crate::sasl::PasswordVerdict, now: Instant) {
        match self.machine.password_checked(verdict) {
            Flow::Restart { .. } => self.tokenizer.reset(),
            Flow::Continue | Flow::Stop => {}
        }
        if !self.machine.overflowed() {
            self.take_held_input(now);
        }
        self.tidy_input();
    }

    /// Processes the input held while the budgets or a password check paused it.
    fn take_held_input(&mut self, now: Instant) {
        if self.reading() && !self.machine.holding() && !self.input.is_empty() {
            let mut buf = std::mem::take(&mut self.input);
            let consumed = self.process(&buf, now);
            buf.drain(..consumed.min(buf.len()));
            self.input = buf;
        }
        self.tidy_input();
    }

    /// While `Some`, the rate budgets are spent: the I/O layer must not read from the
    /// client before that instant (TCP then pushes back), but keeps writing the answers
    /// owed. [`Connection::poll_timeout`] includes it, and
    /// [`Connection::handle_timeout`] takes in the input held meanwhile.
    pub fn read_paused_until(&self) -> Option<Instant> {
        match self.machine.stream.phase {
            Phase::Closed | Phase::TlsPending => None,
            Phase::AwaitHeader | Phase::Open => self.machine.budget.resume_at(),
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
        self.machine.fail(Cause::Replaced);
        self.tidy_input();
    }

    /// The edge is shutting down: send `<system-shutdown/>` and close.
    pub fn shutdown(&mut self) {
        self.machine.fail(Cause::Shutdown);
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
        let timers = match self.machine.stream.phase {
            Phase::Closed => return None,
            _ => self.machine.timers.next_deadline(),
        };
        match (timers, self.read_paused_until()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
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
        self.machine.identity.jid()
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
                    self.machine.fail(Cause::of_tokenizer(error));
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
            // A spent budget or a password check holds the rest of the input.
            if self.machine.holding() {
                break;
            }
        }
        base + self.tokenizer.compact()
    }

    /// Keeps input that arrived while the budgets paused it, up to one stanza's worth: an
    /// I/O layer that goes on reading meanwhile ends the stream.
    fn hold(&mut self, data: &[u8]) {
        if self.input.len() + data.len() > self.tokenizer.limits().max_stanza_bytes {
            self.machine.fail(Cause::ThrottleOverrun);
            self.tidy_input();
            return;
        }
        self.input.extend_from_slice(data);
    }

    /// Whether input is still being read (not closed, not waiting for TLS).
    fn reading(&self) -> bool {
        self.machine.stream.reading()
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
