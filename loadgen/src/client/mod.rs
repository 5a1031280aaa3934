//! One simulated client's XMPP session as a sans-IO state machine: plaintext bytes from the
//! server go in, bytes to send and measurements come out. The event loop owns the socket
//! and TLS; this type owns the protocol:
//!
//! ```text
//! Connecting → [TlsHandshake] → StreamHeader → Features → [StartTls → TlsHandshake →
//! StreamHeader → Features] → Auth → StreamHeader → Features → Bind → [Session] → Ready
//! ```
//!
//! It reuses the workspace's stanza tokenizer and SASL client, and keeps only small fixed
//! state while idle (no buffers: the caller lends its per-thread buffers).

mod reader;
mod request;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;

use session::ns;
use session::sasl::{self, ChannelBinding, Mechanism, SaltedPasswordCache, ScramClient};
use stanza::{Token, Tokenizer, TokenizerLimits};

use crate::accounts::Accounts;
use crate::histo::{ErrorKind, Metric, Recorder};
use crate::proxy_plan::ProxyPlan;
use crate::schedule::Nanos;
use reader::{IqType, Reader, Top};
use request::Wrong;
pub use request::{Mix, RequestKind};

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP upgraded with STARTTLS (RFC 6120).
    Starttls,
    /// TLS from the first byte (XEP-0368).
    Direct,
    /// No TLS at all (only for servers that allow it).
    None,
}

/// Protocol settings shared by every session of a run.
#[derive(Debug)]
pub struct Profile {
    pub tls: TlsMode,
    pub mechanism: Mechanism,
    /// How long any login step or request may wait for the server.
    pub timeout: Nanos,
    /// Most requests in flight on one session.
    pub pipeline: usize,
    /// Play the load balancer: start every connection with a PROXY header.
    pub proxy: Option<ProxyPlan>,
    header: Vec<u8>,
    /// ` to='domain'`, ready to splice into requests.
    to_domain: String,
}

impl Profile {
    /// `domain` must need no XML escaping (the command line checks it).
    pub fn new(
        domain: String,
        tls: TlsMode,
        mechanism: Mechanism,
        timeout: Nanos,
        pipeline: usize,
    ) -> Self {
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{}' to='{domain}' version='1.0'>",
            ns::CLIENT,
            ns::STREAMS
        )
        .into_bytes();
        let to_domain = format!(" to='{domain}'");
        Self {
            tls,
            mechanism,
            timeout,
            pipeline: pipeline.max(1),
            proxy: None,
            header,
            to_domain,
        }
    }
}

/// What a call needs from the thread that runs the session.
#[derive(Debug)]
pub struct Ctx<'a> {
    pub now: Nanos,
    pub profile: &'a Profile,
    pub accounts: &'a Accounts,
    pub cache: &'a mut SaltedPasswordCache,
    pub rec: &'a mut Recorder,
    /// Bytes to send to the server (plaintext; the caller encrypts when TLS is on).
    pub out: &'a mut Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Connecting,
    Proxy,
    TlsHandshake,
    StreamHeader,
    Features,
    StartTls,
    Auth,
    Bind,
    Session,
    Ready,
    Closing,
}

impl State {
    /// What the session waits for in this state, for timeout messages.
    fn waiting_for(self) -> &'static str {
        match self {
            State::Connecting => "the TCP connection",
            State::Proxy => "the PROXY header to be sent",
            State::TlsHandshake => "the TLS handshake",
            State::StreamHeader => "the server's stream header",
            State::Features => "stream features",
            State::StartTls => "the STARTTLS answer",
            State::Auth => "the SASL answer",
            State::Bind => "the bind result",
            State::Session => "the session result",
            State::Ready => "a reply",
            State::Closing => "the stream close",
        }
    }
}

/// What the event loop must do after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    /// Send the pending output, then start the TLS handshake.
    StartTls,
    /// The server closed the stream after ours: drop the connection.
    Close,
}

/// Why the session failed; it must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub detail: String,
}

impl Failure {
    fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
        }
    }
}

/// A request waiting for its reply.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u32,
    kind: RequestKind,
    intended: Nanos,
    sent: Nanos,
}

/// The id of login IQs (bind, session); requests count up from 1.
const LOGIN_ID: u32 = 0;

#[derive(Debug)]
pub struct Client {
    state: State,
    /// Which session this is; picks its account.
    session: u64,
    tokenizer: Tokenizer,
    reader: Reader,
    scram: Option<Box<ScramClient>>,
    /// RFC 9266 tls-exporter data, kept for a -PLUS mechanism until SASL.
    exporter: Option<Box<[u8; 32]>>,
    encrypted: bool,
    authenticated: bool,
    login_start: Nanos,
    stage_start: Nanos,
    /// When the current login step times out.
    deadline: Nanos,
    local: Option<SocketAddr>,
    next_id: u32,
    pending: Vec<Pending>,
}

impl Client {
    /// A session whose TCP connect was started at `now`.
    pub fn new(session: u64, ctx: &mut Ctx<'_>) -> Self {
        ctx.rec.counters().logins_started += 1;
        Self {
            state: State::Connecting,
            session,
            tokenizer: Tokenizer::new(TokenizerLimits::default()),
            reader: Reader::new(),
            scram: None,
            exporter: None,
            encrypted: false,
            authenticated: false,
            login_start: ctx.now,
            stage_start: ctx.now,
            deadline: ctx.now + ctx.profile.timeout,
            local: None,
            next_id: 1,
            pending: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_ready(&self) -> bool {
        self.state == State::Ready
    }

    /// Requests that can be sent now without exceeding the pipeline depth.
    pub fn free_slots(&self, profile: &Profile) -> usize {
        if self.is_ready() {
            profile.pipeline.saturating_sub(self.pending.len())
        } else {
            0
        }
    }

    /// The TCP connection is up; `local` is its address as this side sees it. With
    /// `--proxy` the state is then [`State::Proxy`]: send the header, then call
    /// [`Client::proxy_sent`].
    pub fn connected(&mut self, ctx: &mut Ctx<'_>, local: SocketAddr) -> Action {
        ctx.rec.record(Metric::Connect, ctx.now - self.stage_start);
        self.begin_stage(ctx);
        match &ctx.profile.proxy {
            Some(proxy) => {
                // The server must now report the header's address, not the socket's.
                self.local = Some(proxy.write(self.session, ctx.out));
                self.state = State::Proxy;
                Action::Continue
            }
            None => {
                self.local = Some(local);
                self.start_stream(ctx)
            }
        }
    }

    /// The PROXY header is with the kernel: its phase ends, TLS or the stream begins.
    pub fn proxy_sent(&mut self, ctx: &mut Ctx<'_>) -> Action {
        ctx.rec.record(Metric::Proxy, ctx.now - self.stage_start);
        self.begin_stage(ctx);
        self.start_stream(ctx)
    }

    fn start_stream(&mut self, ctx: &mut Ctx<'_>) -> Action {
        if ctx.profile.tls == TlsMode::Direct {
            self.state = State::TlsHandshake;
            Action::StartTls
        } else {
            self.open_stream(ctx);
            Action::Continue
        }
    }

    /// The TLS handshake finished; `exporter` is the RFC 9266 channel binding data when
    /// TLS 1.3 was negotiated.
    pub fn tls_established(&mut self, ctx: &mut Ctx<'_>, exporter: Option<[u8; 32]>) {
        ctx.rec.record(Metric::Tls, ctx.now - self.stage_start);
        self.encrypted = true;
        self.exporter = exporter.map(Box::new);
        self.begin_stage(ctx);
        self.open_stream(ctx);
    }

    /// Feeds the bytes received so far (`buf` starts with what the previous call left).
    /// Returns how many leading bytes of `buf` are consumed and must be dropped.
    pub fn receive(&mut self, ctx: &mut Ctx<'_>, buf: &[u8]) -> Result<(usize, Action), Failure> {
        loop {
            let mut stanza_done = false;
            let mut stream_open = false;
            let mut stream_closed = false;
            match self.tokenizer.next(buf) {
                Err(e) => {
                    return Err(self.lost(
                        ErrorKind::Protocol,
                        format!("malformed XML from the server: {e}"),
                    ));
                }
                Ok(Token::NeedMore) => return Ok((self.tokenizer.compact(), Action::Continue)),
                Ok(Token::StreamOpen(tag)) => {
                    if tag.namespace != ns::STREAMS || tag.name.local != "stream" {
                        return Err(self.lost(
                            ErrorKind::Protocol,
                            "the server's root element is not a stream",
                        ));
                    }
                    stream_open = true;
                }
                Ok(Token::Start(tag)) => self.reader.start(&tag),
                Ok(Token::Text(text)) => self.reader.text(text.raw),
                Ok(Token::End(tag)) => self.reader.end(&tag),
                Ok(Token::StanzaEnd(_)) => stanza_done = true,
                Ok(Token::Whitespace) => {}
                Ok(Token::StreamClose) => stream_closed = true,
            }
            if stream_open {
                if self.state != State::StreamHeader {
                    return Err(self.lost(ErrorKind::Protocol, "unexpected second stream header"));
                }
                self.state = State::Features;
            } else if stream_closed {
                if self.state == State::Closing {
                    return Ok((buf.len(), Action::Close));
                }
                return Err(self.lost(
                    ErrorKind::Stream,
                    format!(
                        "server closed the stream while waiting for {}",
                        self.state.waiting_for()
                    ),
                ));
            } else if stanza_done {
                match self.stanza(ctx)? {
                    Action::Continue => {}
                    // The stream restarts (or TLS starts): nothing after this element
                    // belongs to the old stream.
                    action => return Ok((buf.len(), action)),
                }
                if self.state == State::StreamHeader {
                    // SASL succeeded and the stream restarted: the tokenizer was reset.
                    return Ok((buf.len(), Action::Continue));
                }
            }
        }
    }

    /// Sends request `kind`, meant to be sent at `intended`. Only when [`Client::free_slots`].
    pub fn send_request(&mut self, ctx: &mut Ctx<'_>, kind: RequestKind, intended: Nanos) {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        kind.write(id, &ctx.profile.to_domain, ctx.out);
        if self.pending.capacity() == 0 {
            self.pending.reserve_exact(ctx.profile.pipeline);
        }
        self.pending.push(Pending {
            id,
            kind,
            intended,
            sent: ctx.now,
        });
        ctx.rec.record(Metric::SendLag, ctx.now - intended);
        ctx.rec.counters().requests_sent += 1;
    }

    /// Fails the login step, or times out the requests, whose deadline has passed. Returns
    /// the next deadline, if anything is still waiting.
    pub fn check_timeouts(&mut self, ctx: &mut Ctx<'_>) -> Result<Option<Nanos>, Failure> {
        let timeout = ctx.profile.timeout;
        if self.state != State::Ready {
            if ctx.now >= self.deadline {
                return Err(Failure::new(
                    ErrorKind::LoginTimeout,
                    format!(
                        "no answer within {:?} while waiting for {}",
                        std::time::Duration::from_nanos(timeout),
                        self.state.waiting_for()
                    ),
                ));
            }
            return Ok(Some(self.deadline));
        }
        let before = self.pending.len();
        self.pending.retain(|p| p.sent + timeout > ctx.now);
        let expired = (before - self.pending.len()) as u64;
        ctx.rec.errors(ErrorKind::RequestTimeout, expired, || {
            format!(
                "no reply within {:?}",
                std::time::Duration::from_nanos(timeout)
            )
        });
        Ok(self.next_deadline(timeout))
    }

    /// When [`Client::check_timeouts`] must next run, if anything is waiting.
    pub fn next_deadline(&self, timeout: Nanos) -> Option<Nanos> {
        if self.state == State::Ready {
            self.pending.iter().map(|p| p.sent + timeout).min()
        } else {
            Some(self.deadline)
        }
    }

    /// Requests sent and not yet answered.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Gives up on every outstanding request (the run is over): each counts as timed out.
    pub fn expire_all(&mut self, ctx: &mut Ctx<'_>) {
        let expired = std::mem::take(&mut self.pending).len() as u64;
        ctx.rec.errors(ErrorKind::RequestTimeout, expired, || {
            "no reply before the run ended".to_owned()
        });
    }

    /// Ends the stream politely; the server's `</stream:stream>` then yields [`Action::Close`].
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        ctx.out.extend_from_slice(b"</stream:stream>");
        self.state = State::Closing;
        self.deadline = ctx.now + ctx.profile.timeout;
    }

    /// The session is being dropped after a failure: its outstanding requests are lost.
    pub fn abandon(&mut self, ctx: &mut Ctx<'_>) {
        let lost = std::mem::take(&mut self.pending).len() as u64;
        ctx.rec.errors(ErrorKind::SessionLost, lost, || {
            "request outstanding when its session died".to_owned()
        });
    }

    /// The socket reached EOF or failed.
    pub fn peer_closed(&self, why: &str) -> Failure {
        self.lost(
            ErrorKind::Stream,
            format!(
                "connection {why} while waiting for {}",
                self.state.waiting_for()
            ),
        )
    }

    /// A failure of kind `kind` during login; once ready, any failure loses the session.
    fn lost(&self, kind: ErrorKind, detail: impl Into<String>) -> Failure {
        if self.state == State::Ready {
            Failure::new(ErrorKind::SessionLost, detail)
        } else {
            Failure::new(kind, detail)
        }
    }

    fn begin_stage(&mut self, ctx: &Ctx<'_>) {
        self.stage_start = ctx.now;
        self.deadline = ctx.now + ctx.profile.timeout;
    }

    fn open_stream(&mut self, ctx: &mut Ctx<'_>) {
        self.tokenizer.reset();
        ctx.out.extend_from_slice(&ctx.profile.header);
        self.state = State::StreamHeader;
    }

    /// A complete top-level element arrived.
    fn stanza(&mut self, ctx: &mut Ctx<'_>) -> Result<Action, Failure> {
        let top = self.reader.top;
        if top == Top::StreamError {
            let condition = self
                .reader
                .condition
                .as_deref()
                .unwrap_or("undefined-condition");
            return Err(self.lost(
                ErrorKind::Stream,
                format!("stream error from the server: {condition}"),
            ));
        }
        if top == Top::Iq && matches!(self.reader.iq_type, IqType::Get | IqType::Set) {
            self.answer_incoming(ctx);
            return Ok(Action::Continue);
        }
        match (self.state, top) {
            (State::Features, Top::Features) => self.features(ctx).map(|()| Action::Continue),
            (State::StartTls, Top::Proceed) => {
                self.state = State::TlsHandshake;
                Ok(Action::StartTls)
            }
            (State::StartTls, Top::TlsFailure) => {
                Err(Failure::new(ErrorKind::Tls, "the server refused STARTTLS"))
            }
            (State::Auth, Top::Challenge) => self.challenge(ctx).map(|()| Action::Continue),
            (State::Auth, Top::Success) => self.success(ctx).map(|()| Action::Continue),
            (State::Auth, Top::SaslFailure) => {
                let condition = self.reader.condition.as_deref().unwrap_or("no condition");
                Err(Failure::new(
                    ErrorKind::Auth,
                    format!(
                        "authentication failed for {} with {}: {condition}",
                        ctx.accounts.jid(self.session),
                        ctx.profile.mechanism.name()
                    ),
                ))
            }
            (State::Bind | State::Session, Top::Iq) if self.reader.id == Some(LOGIN_ID) => {
                self.login_iq(ctx).map(|()| Action::Continue)
            }
            (State::Ready | State::Closing, Top::Iq) => {
                self.reply(ctx);
                Ok(Action::Continue)
            }
            (_, Top::Other) => Ok(Action::Continue),
            (state, top) => Err(self.lost(
                ErrorKind::Protocol,
                format!(
                    "unexpected {top:?} element while waiting for {}",
                    state.waiting_for()
                ),
            )),
        }
    }

    fn features(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let features = self.reader.features;
        if !self.encrypted && ctx.profile.tls == TlsMode::Starttls {
            if !features.starttls() {
                return Err(Failure::new(
                    ErrorKind::Tls,
                    "the server does not offer STARTTLS",
                ));
            }
            ctx.out
                .extend_from_slice(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.state = State::StartTls;
            self.begin_stage(ctx);
            return Ok(());
        }
        if !self.authenticated {
            return self.authenticate(
                ctx,
                features.offers(ctx.profile.mechanism),
                features.mechanisms(),
            );
        }
        if !features.bind() {
            return Err(Failure::new(
                ErrorKind::Bind,
                "the server offers no resource binding",
            ));
        }
        ctx.out.extend_from_slice(
            b"<iq type='set' id='0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        );
        self.state = State::Bind;
        self.begin_stage(ctx);
        Ok(())
    }

    fn authenticate(
        &mut self,
        ctx: &mut Ctx<'_>,
        offered: bool,
        mechanisms: Vec<&str>,
    ) -> Result<(), Failure> {
        let mechanism = ctx.profile.mechanism;
        if !offered {
            return Err(Failure::new(
                ErrorKind::Auth,
                format!(
                    "the server does not offer {} (it offers: {})",
                    mechanism.name(),
                    mechanisms.join(", ")
                ),
            ));
        }
        let (user, password) = ctx.accounts.credentials(self.session);
        let initial = match mechanism.scram_hash() {
            None => sasl::plain_client_response(None, &user, password),
            Some(hash) => {
                let binding = if mechanism.is_plus() {
                    match self.exporter.take() {
                        Some(data) => ChannelBinding::TlsExporter(*data),
                        None => {
                            return Err(Failure::new(
                                ErrorKind::Auth,
                                format!(
                                    "{} needs TLS 1.3 (tls-exporter channel binding)",
                                    mechanism.name()
                                ),
                            ));
                        }
                    }
                } else {
                    ChannelBinding::Unsupported
                };
                let scram = ScramClient::new(hash, &user, password, binding);
                let first = scram.client_first();
                self.scram = Some(Box::new(scram));
                first
            }
        };
        self.exporter = None;
        ctx.out
            .extend_from_slice(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='");
        ctx.out.extend_from_slice(mechanism.name().as_bytes());
        ctx.out.extend_from_slice(b"'>");
        ctx.out
            .extend_from_slice(sasl::encode_payload(&initial).as_bytes());
        ctx.out.extend_from_slice(b"</auth>");
        self.state = State::Auth;
        self.begin_stage(ctx);
        Ok(())
    }

    fn sasl_payload(&self) -> Result<Vec<u8>, Failure> {
        sasl::decode_payload(&self.reader.text).map_err(|f| {
            Failure::new(
                ErrorKind::Auth,
                format!("bad SASL payload from the server: {f}"),
            )
        })
    }

    fn challenge(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let payload = self.sasl_payload()?;
        let scram = self
            .scram
            .as_mut()
            .ok_or_else(|| Failure::new(ErrorKind::Auth, "unexpected SASL challenge for PLAIN"))?;
        let response = scram
            .handle_server_first(&payload, ctx.cache)
            .map_err(|e| Failure::new(ErrorKind::Auth, format!("SCRAM: {e}")))?;
        ctx.out
            .extend_from_slice(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
        ctx.out
            .extend_from_slice(sasl::encode_payload(&response).as_bytes());
        ctx.out.extend_from_slice(b"</response>");
        Ok(())
    }

    fn success(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        if let Some(scram) = self.scram.take() {
            let payload = self.sasl_payload()?;
            scram
                .verify_server_final(&payload)
                .map_err(|e| Failure::new(ErrorKind::Auth, format!("SCRAM: {e}")))?;
        }
        ctx.rec.record(Metric::Sasl, ctx.now - self.stage_start);
        self.authenticated = true;
        self.reader.shrink();
        self.begin_stage(ctx);
        self.open_stream(ctx);
        Ok(())
    }

    fn login_iq(&mut self, ctx: &mut Ctx<'_>) -> Result<(), Failure> {
        let what = if self.state == State::Bind {
            "bind"
        } else {
            "session"
        };
        match self.reader.iq_type {
            IqType::Result => {}
            IqType::Error => {
                let condition = self.reader.condition.as_deref().unwrap_or("no condition");
                return Err(Failure::new(
                    ErrorKind::Bind,
                    format!("{what} failed: {condition}"),
                ));
            }
            _ => {
                return Err(Failure::new(
                    ErrorKind::Bind,
                    format!("{what}: unexpected IQ type"),
                ));
            }
        }
        if self.state == State::Bind {
            ctx.rec.record(Metric::Bind, ctx.now - self.stage_start);
            if self.reader.features.session_required() {
                ctx.out.extend_from_slice(
                    b"<iq type='set' id='0'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>",
                );
                self.state = State::Session;
                self.begin_stage(ctx);
                return Ok(());
            }
        }
        ctx.rec.record(Metric::Login, ctx.now - self.login_start);
        ctx.rec.counters().logins_ok += 1;
        self.state = State::Ready;
        self.reader.shrink();
        Ok(())
    }

    /// A result or error for one of our requests.
    fn reply(&mut self, ctx: &mut Ctx<'_>) {
        let found = self
            .reader
            .id
            .and_then(|id| self.pending.iter().position(|p| p.id == id));
        let Some(index) = found else {
            match self.reader.id {
                // Issued by us but already given up on.
                Some(id) if id < self.next_id => ctx.rec.counters().late_replies += 1,
                _ => ctx.rec.error(ErrorKind::WrongReply, || {
                    "reply with an id loadgen never sent".to_owned()
                }),
            }
            return;
        };
        let pending = self.pending.swap_remove(index);
        let Some(local) = self.local else { return };
        match pending.kind.verify(&self.reader, local) {
            Ok(()) => {
                let latency = ctx.now - pending.intended;
                ctx.rec.record(pending.kind.metric(), latency);
                ctx.rec.record(Metric::Requests, latency);
                ctx.rec.record(Metric::Service, ctx.now - pending.sent);
                ctx.rec.counters().replies_ok += 1;
            }
            Err(Wrong::ErrorReply(detail)) => ctx.rec.error(ErrorKind::ErrorReply, || detail),
            Err(Wrong::Reply(detail)) => ctx.rec.error(ErrorKind::WrongReply, || detail),
        }
        if self.reader.condition.is_some() {
            self.reader.shrink();
        }
    }

    /// Answers a request from the server: pings get a result, anything else
    /// `service-unavailable` (RFC 6120 8.4).
    fn answer_incoming(&mut self, ctx: &mut Ctx<'_>) {
        let Some(incoming) = self.reader.incoming.take() else {
            return;
        };
        let ping = self.reader.payload == reader::Payload::Ping;
        ctx.out.extend_from_slice(if ping {
            b"<iq type='result' id='"
        } else {
            b"<iq type='error' id='"
        });
        stanza::escape_attr(&incoming.id, ctx.out);
        ctx.out.push(b'\'');
        if let Some(from) = &incoming.from {
            ctx.out.extend_from_slice(b" to='");
            stanza::escape_attr(from, ctx.out);
            ctx.out.push(b'\'');
        }
        if ping {
            ctx.out.extend_from_slice(b"/>");
        } else {
            ctx.out.extend_from_slice(
                b"><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
            );
        }
    }
}
