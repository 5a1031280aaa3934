//! Drives a whole `session::Connection` to a fuzzer-chosen phase with a scripted valid
//! prefix (fresh on either listener, after the stream header, after STARTTLS, during
//! SCRAM, after SASL, after bind), then feeds it the fuzzer's bytes in fuzzer-chosen
//! reads, interleaved with time advances, partial writes, `peer_closed`, `replaced`,
//! `shutdown` and TLS handshakes, and checks what a fuzzer can check:
//!
//! - no panic;
//! - everything the connection writes is a well-formed XMPP stream to a client's
//!   tokenizer, with the restarts after `<proceed/>` and `<success/>`, each restarted
//!   stream starting with `<?xml`, and a stream error ending in `</stream:stream>` with
//!   the condition its close reason names;
//! - events in a possible order (one STARTTLS, after which only `<proceed/>` is pending;
//!   authentication at most once and never in plaintext when TLS is required; a bind only
//!   after it, with the authenticated JID);
//! - once `Event::Close` came, nothing more is written, no event comes, no timer is set;
//! - output is never dropped while the stream is open, stays within
//!   `Config::max_unsent_output` plus the one `<proceed/>` written without that check,
//!   and a close keeps at most `max_unsent_output` of it;
//! - input fed while `read_paused_until()` says not to is held, not processed, and past
//!   one stanza's worth ends the stream with `Cause::ThrottleOverrun`; bytes after
//!   `<proceed/>` before the handshake end it with `DataBeforeTls`;
//! - `heap_bytes()` stays within bounds set by the limits, not by the input's length;
//! - left alone, every connection ends (its timers fire).
//!
//! Deterministic: seeded entropy, a fixed time base, a client SCRAM nonce of its own.
//!
//! Input layout: byte 0 picks the phase (low nibble) and the read size for the input
//! left once the operations are done (high nibble); byte 1 holds configuration flags;
//! byte 2 is the number N of operation bytes that follow; the rest is the client's bytes,
//! consumed by the operations that feed and then in reads of the chosen size.

#![no_main]
#![forbid(unsafe_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac as _};
use libfuzzer_sys::fuzz_target;
use session::sasl::{ScramCredentials, ScramHash};
use session::{
    Accounts, Addresses, Cause, CloseReason, Config, Connection, Event, ListenerKind,
    SeededEntropy, TlsInfo, Violation,
};
use sha2::{Digest as _, Sha256};
use stanza::{StartTag, Token, Tokenizer};

const DOMAIN: &str = "localhost";
const USERS: [&str; 2] = ["alice", "bob"];
const PASSWORD: &str = "secret";
/// Low, so that every PLAIN attempt and SCRAM login costs microseconds.
const ITERATIONS: u32 = 16;
const EXPORTER: [u8; 32] = [7; 32];
const CLIENT_NONCE: &str = "fuzzClientNonce0123456789abcdefgh";
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const STREAMS_NS: &str = "http://etherx.jabber.org/streams";
const STREAM_ERRORS_NS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const PROCEED: &[u8] = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' \
    xml:lang='en'>";

/// `SESSION_FUZZ_TRACE=1` prints how each run ended, to see what an input reaches.
static TRACE: LazyLock<bool> = LazyLock::new(|| std::env::var_os("SESSION_FUZZ_TRACE").is_some());

/// Every run measures time from the same instant.
static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

/// In-memory accounts, derived once per process.
static ACCOUNTS: LazyLock<Arc<FuzzAccounts>> = LazyLock::new(|| {
    let mut credentials = HashMap::new();
    for user in USERS {
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            let stored = ScramCredentials::derive(PASSWORD, hash, user.as_bytes(), ITERATIONS)
                .expect("valid password");
            credentials.insert((user.to_owned(), hash), stored);
        }
    }
    Arc::new(FuzzAccounts { credentials })
});

#[derive(Debug)]
struct FuzzAccounts {
    credentials: HashMap<(String, ScramHash), ScramCredentials>,
}

impl Accounts for FuzzAccounts {
    fn scram_credentials(&self, user: &str, _: &str, hash: ScramHash) -> Option<ScramCredentials> {
        self.credentials.get(&(user.to_owned(), hash)).cloned()
    }
}

/// Read sizes the operations choose from; the last means "all that is left".
const SIZES: [usize; 32] = [
    0,
    1,
    1,
    2,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    10,
    12,
    16,
    20,
    24,
    32,
    40,
    48,
    64,
    80,
    100,
    128,
    160,
    200,
    256,
    384,
    512,
    1024,
    2048,
    4096,
    usize::MAX,
];

/// Time steps, in milliseconds: around the budgets' refill times and the timers.
const STEPS_MS: [u64; 16] = [
    0, 1, 5, 20, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 29_999, 30_000, 60_000, 299_999,
    300_000,
];

/// Most reads the repeating operation makes in one run.
const MAX_REPEATS: usize = 1024;

/// Where the scripted prefix leaves the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing sent yet.
    Fresh,
    /// The client's first header answered with features.
    Opened,
    /// `<proceed/>` sent, the handshake not done yet.
    TlsPending,
    /// After the STARTTLS handshake, before the restarted header.
    AfterTls,
    /// The stream over TLS open, SASL offered.
    SecureOpened,
    /// `<auth>` with a SCRAM client-first sent, the challenge received.
    Scram,
    /// `<success/>` received, before the restarted header.
    Authenticated,
    /// The stream after SASL open, bind offered.
    AuthOpened,
    /// A resource bound.
    Bound,
}

const PHASES: [Phase; 9] = [
    Phase::Fresh,
    Phase::Opened,
    Phase::TlsPending,
    Phase::AfterTls,
    Phase::SecureOpened,
    Phase::Scram,
    Phase::Authenticated,
    Phase::AuthOpened,
    Phase::Bound,
];

/// What the first two bytes ask for.
#[derive(Debug, Clone, Copy)]
struct Setup {
    phase: Phase,
    /// Read size for the input left after the operations.
    tail_read: usize,
    small_limits: bool,
    tight_budgets: bool,
    small_output: bool,
    require_tls: bool,
    tls13: bool,
    direct_tls: bool,
    plain: bool,
    plus: bool,
}

impl Setup {
    fn new(phase: u8, flags: u8) -> Self {
        let tls13 = flags & 0x10 == 0;
        Self {
            phase: PHASES[usize::from(phase & 0x0f) % PHASES.len()],
            tail_read: [
                1, 2, 3, 5, 8, 16, 31, 64, 100, 256, 512, 1000, 1500, 4096, 64, 64,
            ][usize::from(phase >> 4)],
            small_limits: flags & 0x01 != 0,
            tight_budgets: flags & 0x02 != 0,
            small_output: flags & 0x04 != 0,
            require_tls: flags & 0x08 == 0,
            tls13,
            direct_tls: flags & 0x20 != 0,
            plain: flags & 0x40 != 0,
            plus: flags & 0x80 != 0 && tls13,
        }
    }

    fn config(&self) -> Config {
        let mut config = Config {
            domains: vec![DOMAIN.to_owned(), "example.net".to_owned()],
            require_tls: self.require_tls,
            tls_available: true,
            entropy: Arc::new(SeededEntropy::new(0)),
            ..Config::default()
        };
        if self.small_limits {
            config.stanza_limits = stanza::TokenizerLimits {
                max_stanza_bytes: 512,
                max_depth: 6,
                max_attributes: 8,
                max_name_bytes: 32,
            };
        }
        if self.tight_budgets {
            config.stanza_rate = 4.0;
            config.stanza_burst = 3;
            config.byte_rate = 4096;
            config.byte_burst = 1024;
        }
        if self.small_output {
            config.max_unsent_output = 1024;
        }
        config
    }

    fn tls(&self) -> TlsInfo {
        TlsInfo {
            tls13: self.tls13,
            exporter: self.tls13.then_some(EXPORTER),
        }
    }

    fn kind(&self) -> ListenerKind {
        if self.direct_tls {
            ListenerKind::DirectTls
        } else {
            ListenerKind::Starttls
        }
    }
}

/// An element the server sent, as a small tree.
#[derive(Debug, Clone)]
struct Element {
    name: String,
    ns: String,
    children: Vec<Element>,
    /// Character data directly inside, unescaped.
    text: String,
}

impl Element {
    fn from_tag(tag: &StartTag<'_>) -> Self {
        Self {
            name: tag.name.local.to_owned(),
            ns: tag.namespace.to_owned(),
            children: Vec::new(),
            text: String::new(),
        }
    }

    fn find(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|child| {
            if child.name == name {
                Some(child)
            } else {
                child.find(name)
            }
        })
    }
}

/// The client's view of the server's output: a tokenizer as a client runs it.
#[derive(Debug)]
struct Reader {
    tokenizer: Tokenizer,
    buf: Vec<u8>,
    open: Vec<Element>,
    /// The first bytes of the current stream, until they show `<?xml`.
    start: Vec<u8>,
    /// Elements kept for the scripted prefix.
    collect: bool,
    elements: VecDeque<Element>,
    /// The last top-level element, for the final check of a stream error.
    last: Option<Element>,
    headers: usize,
    stream_closed: bool,
}

impl Reader {
    fn new() -> Self {
        Self {
            tokenizer: Tokenizer::new(stanza::TokenizerLimits {
                max_stanza_bytes: 1 << 22,
                max_depth: 64,
                max_attributes: 64,
                max_name_bytes: 1024,
            }),
            buf: Vec::new(),
            open: Vec::new(),
            start: Vec::new(),
            collect: true,
            elements: VecDeque::new(),
            last: None,
            headers: 0,
            stream_closed: false,
        }
    }

    /// Checks the first bytes of a (re)started stream.
    fn check_start(&mut self, data: &[u8]) {
        if self.start.len() < 5 {
            let take = (5 - self.start.len()).min(data.len());
            self.start.extend_from_slice(&data[..take]);
            assert!(
                b"<?xml".starts_with(&self.start),
                "a server stream starts with {:?}, not <?xml",
                String::from_utf8_lossy(&self.start)
            );
        }
    }

    fn feed(&mut self, data: &[u8]) {
        self.check_start(data);
        self.buf.extend_from_slice(data);
        let mut base = 0;
        loop {
            let mut restart_at = None;
            let token = match self.tokenizer.next(&self.buf[base..]) {
                Ok(token) => token,
                Err(error) => panic!(
                    "server output is not a well-formed stream ({error}): {:?}",
                    String::from_utf8_lossy(&self.buf[base..])
                ),
            };
            match token {
                Token::NeedMore => break,
                Token::StreamOpen(tag) => {
                    assert_eq!(
                        (tag.name.local, tag.namespace),
                        ("stream", STREAMS_NS),
                        "server stream header"
                    );
                    self.headers += 1;
                }
                Token::Start(tag) => self.open.push(Element::from_tag(&tag)),
                Token::Text(text) => {
                    let text = text.unescaped();
                    self.open
                        .last_mut()
                        .expect("text inside an element")
                        .text
                        .push_str(&text);
                }
                Token::End(_) => {
                    let done = self.open.pop().expect("balanced");
                    match self.open.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => {
                            if self.collect {
                                self.elements.push_back(done.clone());
                            }
                            self.last = Some(done);
                        }
                    }
                }
                Token::StanzaEnd(span) => {
                    // The server restarts its stream after these (RFC 6120 5.4.3.3, 6.4.6).
                    if let Some(last) = &self.last
                        && ((last.name == "proceed"
                            && last.ns == "urn:ietf:params:xml:ns:xmpp-tls")
                            || (last.name == "success" && last.ns == SASL_NS))
                    {
                        restart_at = Some(span.end);
                    }
                }
                Token::Whitespace => {}
                Token::StreamClose => self.stream_closed = true,
            }
            if let Some(end) = restart_at {
                base += end;
                self.tokenizer.reset();
                self.start.clear();
                // What follows is the new stream's first bytes.
                let fresh = self.buf[base..].to_vec();
                self.check_start(&fresh);
            }
        }
        let done = base + self.tokenizer.compact();
        self.buf.drain(..done);
    }

    fn element(&mut self) -> Element {
        self.elements
            .pop_front()
            .expect("the server sent no element")
    }
}

/// The client side of SCRAM-SHA-256(-PLUS) with a fixed nonce.
#[derive(Debug)]
struct Scram {
    gs2: String,
    cbind: Vec<u8>,
    server_signature: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl Scram {
    fn new(plus: bool) -> Self {
        let gs2 = if plus { "p=tls-exporter,," } else { "n,," }.to_owned();
        let mut cbind = gs2.as_bytes().to_vec();
        if plus {
            cbind.extend_from_slice(&EXPORTER);
        }
        Self {
            gs2,
            cbind,
            server_signature: Vec::new(),
        }
    }

    fn first_bare() -> String {
        format!("n=alice,r={CLIENT_NONCE}")
    }

    fn client_first(&self) -> String {
        format!("{}{}", self.gs2, Self::first_bare())
    }

    fn client_final(&mut self, server_first: &str) -> String {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for attr in server_first.split(',') {
            match attr.split_at_checked(2) {
                Some(("r=", value)) => nonce = Some(value),
                Some(("s=", value)) => salt = B64.decode(value).ok(),
                Some(("i=", value)) => iterations = value.parse().ok(),
                _ => {}
            }
        }
        let nonce = nonce.expect("server-first nonce");
        assert!(nonce.starts_with(CLIENT_NONCE) && nonce.len() > CLIENT_NONCE.len());
        let (salt, iterations) = (salt.expect("salt"), iterations.expect("iterations"));
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(PASSWORD.as_bytes(), &salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode(&self.cbind));
        let auth_message = format!("{},{server_first},{without_proof}", Self::first_bare());
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = hmac(&hmac(&salted, b"Server Key"), auth_message.as_bytes());
        format!("{without_proof},p={}", B64.encode(proof))
    }

    fn verify(&self, server_final: &str) {
        assert_eq!(
            server_final,
            format!("v={}", B64.encode(&self.server_signature)),
            "server-final does not prove the credentials"
        );
    }
}

/// Bounds the connection must respect, from its configuration.
#[derive(Debug)]
struct Bounds {
    max_unsent: usize,
    max_stanza: usize,
}

/// The connection with its client.
#[derive(Debug)]
struct Harness {
    setup: Setup,
    conn: Connection,
    now: Instant,
    reader: Reader,
    bounds: Bounds,
    written: usize,
    /// Largest single read so far, which bounds the input held.
    max_read: usize,
    /// The last read, for the operation that repeats it, and how many repeats so far.
    last_read: Vec<u8>,
    repeats: usize,
    /// Most output pending after any call since the buffer last drained completely:
    /// what the output buffer may hold, whatever was written meanwhile.
    peak_pending: usize,
    /// `<proceed/>` is out; the handshake is due.
    tls_due: bool,
    tls_done: bool,
    authenticated: Option<String>,
    bound: Option<String>,
    close: Option<CloseReason>,
    /// Output produced (written plus pending) when the close came.
    produced_at_close: usize,
    /// The close came without a stream error on the wire: from `peer_closed`, or
    /// while the TLS handshake was due.
    quiet_close: bool,
    /// A PLAIN password check the connection handed out, run (as the edge runs it)
    /// before anything else reaches the connection.
    check: Option<session::sasl::PasswordCheck>,
    /// Bytes fed while reads were paused, since the pause began.
    held: usize,
    /// Events seen, for the scripted prefix.
    events: VecDeque<Event>,
}

/// What kind of call just happened, for the checks that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Other,
    /// `receive` of this many bytes while reads were paused.
    HeldReceive(usize),
    /// `receive` of bytes while the TLS handshake was due.
    ReceiveBeforeTls(usize),
    PeerClosed,
    /// `output_written` of this many bytes.
    Written(usize),
    /// A call that must change nothing.
    NoOp,
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let config = setup.config();
        let max_stanza = config.stanza_limits.max_stanza_bytes;
        let bounds = Bounds {
            max_unsent: config.max_unsent_output,
            max_stanza,
        };
        let client: SocketAddr = "203.0.113.7:40001".parse().expect("address");
        let addresses = Addresses {
            client,
            peer: "198.51.100.2:3000".parse().expect("address"),
            local: "192.0.2.1:5222".parse().expect("address"),
        };
        let now = *BASE;
        let conn = Connection::new(
            Arc::new(config),
            ACCOUNTS.clone(),
            addresses,
            setup.kind(),
            setup.direct_tls.then(|| setup.tls()),
            now,
        );
        Self {
            setup,
            conn,
            now,
            reader: Reader::new(),
            bounds,
            written: 0,
            max_read: 0,
            last_read: Vec::new(),
            repeats: 0,
            peak_pending: 0,
            tls_due: false,
            tls_done: setup.direct_tls,
            authenticated: None,
            bound: None,
            close: None,
            produced_at_close: 0,
            quiet_close: false,
            check: None,
            held: 0,
            events: VecDeque::new(),
        }
    }

    fn produced(&self) -> usize {
        self.written + self.conn.pending_output().len()
    }

    /// Runs one call on the connection and checks everything after it.
    fn call(&mut self, kind: Call, f: impl FnOnce(&mut Connection, Instant)) {
        let pending_before = self.conn.pending_output().len();
        let produced_before = self.produced();
        let was_closed = self.close.is_some();
        f(&mut self.conn, self.now);
        let pending = self.conn.pending_output().len();

        let mut events = 0;
        while let Some(event) = self.conn.poll_event() {
            events += 1;
            self.on_event(&event, kind);
            // A password check is answered by the harness itself (see `call`).
            if !matches!(event, Event::CheckPassword(_)) {
                self.events.push_back(event);
            }
        }

        if was_closed {
            assert_eq!(events, 0, "events after Close");
            assert!(
                self.produced() <= self.produced_at_close,
                "output written after Close"
            );
        }
        if let Some(reason) = self.close {
            assert_eq!(self.conn.poll_timeout(), None, "a timer after Close");
            assert_eq!(self.conn.read_paused_until(), None, "paused after Close");
            if !was_closed && reason == CloseReason::OutputOverflow {
                assert_eq!(pending, 0, "OutputOverflow kept output");
            }
        } else {
            let written = match kind {
                Call::Written(n) => n,
                _ => 0,
            };
            assert!(
                pending + written >= pending_before,
                "{} bytes of output dropped on an open stream",
                pending_before - pending - written
            );
            assert!(
                pending <= self.bounds.max_unsent + PROCEED.len(),
                "{pending} bytes pending, over max_unsent_output {}",
                self.bounds.max_unsent
            );
        }
        match kind {
            Call::HeldReceive(n) if !was_closed => match self.close {
                None => {
                    assert_eq!(pending, pending_before, "held input was answered");
                    assert_eq!(events, 0, "held input raised an event");
                    self.held += n;
                    assert!(
                        self.held <= self.bounds.max_stanza,
                        "{} bytes held while paused, over a stanza's worth",
                        self.held
                    );
                }
                Some(reason) => assert!(
                    matches!(
                        reason,
                        CloseReason::StreamError(Cause::ThrottleOverrun)
                            | CloseReason::OutputOverflow
                    ),
                    "input while paused closed with {reason:?}"
                ),
            },
            Call::ReceiveBeforeTls(n) if n > 0 && !was_closed => {
                assert_eq!(
                    self.close,
                    Some(CloseReason::StreamError(Cause::Violation(
                        Violation::DataBeforeTls
                    ))),
                    "plaintext before the handshake"
                );
                assert_eq!(
                    produced_before,
                    self.produced(),
                    "plaintext after <proceed/>"
                );
            }
            Call::NoOp => {
                assert_eq!(produced_before, self.produced(), "a no-op wrote");
                assert_eq!(events, 0, "a no-op raised an event");
            }
            _ => {}
        }
        if self.conn.read_paused_until().is_none() {
            self.held = 0;
        }

        // Memory follows what is held now, not what went through: the output buffer at
        // most four times the most output pending since it last drained (a buffer that
        // doubles, holding written bytes up to as many as are unsent), the input buffer
        // a stanza and a read, the scratch strings a stanza each, and fixed state.
        self.peak_pending = if pending == 0 {
            0
        } else {
            self.peak_pending.max(pending)
        };
        let heap = self.conn.heap_bytes();
        let heap_max = 4 * self.peak_pending
            + 512
            + 4 * (self.bounds.max_stanza + self.max_read)
            + 8 * self.bounds.max_stanza
            + 24 * 1024;
        assert!(
            heap <= heap_max,
            "heap_bytes {heap} over {heap_max} ({} bytes pending at most since the last drain, \
             {} written in all)",
            self.peak_pending,
            self.written
        );
        if let Some(check) = self.check.take() {
            // Boxed: one closure type however deep the calls nest.
            let answer: Box<dyn FnOnce(&mut Connection, Instant)> =
                Box::new(move |conn, now| conn.password_checked(check.run(), now));
            self.call(Call::Other, answer);
        }
    }

    fn on_event(&mut self, event: &Event, call: Call) {
        assert!(self.close.is_none(), "{event:?} after Close");
        match event {
            Event::StartTls => {
                assert_eq!(
                    self.setup.kind(),
                    ListenerKind::Starttls,
                    "STARTTLS on direct TLS"
                );
                assert!(!self.tls_done && !self.tls_due, "a second STARTTLS");
                assert!(
                    self.conn.pending_output().ends_with(PROCEED),
                    "StartTls without <proceed/> last"
                );
                self.tls_due = true;
            }
            Event::Authenticated { bare_jid } => {
                assert!(self.authenticated.is_none(), "authenticated twice");
                assert!(
                    USERS
                        .iter()
                        .any(|user| *bare_jid == format!("{user}@{DOMAIN}")),
                    "authenticated as {bare_jid}"
                );
                if self.setup.require_tls {
                    assert!(self.tls_done, "authenticated without TLS");
                }
                self.authenticated = Some(bare_jid.clone());
            }
            Event::Bound { full_jid } => {
                let bare = self.authenticated.as_ref().expect("bound before SASL");
                assert!(self.bound.is_none(), "bound twice");
                assert!(
                    full_jid.len() > bare.len() + 1
                        && full_jid.starts_with(bare.as_str())
                        && full_jid.as_bytes()[bare.len()] == b'/',
                    "bound {full_jid} for {bare}"
                );
                assert_eq!(self.conn.jid(), Some(full_jid.as_str()), "jid()");
                self.bound = Some(full_jid.clone());
            }
            Event::CheckPassword(check) => {
                assert!(self.check.is_none(), "two password checks out");
                assert!(self.authenticated.is_none(), "a password check after SASL");
                self.check = Some((**check).clone());
            }
            Event::Close(reason) => {
                let pending = self.conn.pending_output().len();
                assert!(
                    pending <= self.bounds.max_unsent,
                    "closed with {pending} bytes pending, over max_unsent_output"
                );
                self.close = Some(*reason);
                self.produced_at_close = self.produced();
                self.quiet_close = call == Call::PeerClosed || self.tls_due;
            }
        }
    }

    /// Writes `n` bytes of pending output to the client.
    fn write(&mut self, n: usize) {
        let n = n.min(self.conn.pending_output().len());
        if n == 0 {
            return;
        }
        let out = self.conn.pending_output()[..n].to_vec();
        self.reader.feed(&out);
        self.written += n;
        self.call(Call::Written(n), |conn, _| conn.output_written(n));
    }

    fn drain(&mut self) {
        self.write(usize::MAX);
    }

    /// Completes the TLS handshake the last `<proceed/>` asked for, as the edge does:
    /// all pending output first.
    fn handshake(&mut self) {
        self.drain();
        let info = self.setup.tls();
        self.call(Call::Other, |conn, _| conn.tls_established(info));
        self.tls_due = false;
        self.tls_done = true;
    }

    /// Waits out a pause of reads, as an I/O layer that honours it does.
    fn settle(&mut self) {
        for _ in 0..100_000 {
            let Some(at) = self.conn.read_paused_until() else {
                return;
            };
            self.now = self.now.max(at);
            self.call(Call::Other, |conn, now| conn.handle_timeout(now));
        }
        panic!("reads stay paused");
    }

    /// A read from the client, honouring the pause and the handshake unless `force`.
    fn receive(&mut self, data: &[u8], force: bool) {
        if !force {
            if self.tls_due && self.close.is_none() {
                self.handshake();
            }
            self.settle();
        }
        self.max_read = self.max_read.max(data.len());
        if !data.is_empty() {
            self.last_read = data.to_vec();
        }
        let kind = if self.tls_due {
            Call::ReceiveBeforeTls(data.len())
        } else if self.conn.read_paused_until().is_some() {
            Call::HeldReceive(data.len())
        } else {
            Call::Other
        };
        self.call(kind, |conn, now| conn.receive(data, now));
    }

    /// A scripted client step: sends and reads everything back.
    fn send(&mut self, xml: &str) {
        self.receive(xml.as_bytes(), false);
        self.settle();
        self.drain();
    }

    fn expect(&mut self, name: &str) -> Element {
        let element = self.reader.element();
        assert_eq!(element.name, name, "scripted prefix: {element:?}");
        element
    }

    fn expect_event(&mut self, expected: &Event) {
        let event = self.events.pop_front();
        assert_eq!(event.as_ref(), Some(expected), "scripted prefix");
    }

    fn open(&mut self) -> Element {
        self.send(HEADER);
        self.expect("features")
    }

    /// Drives the connection to the setup's phase.
    fn prefix(&mut self) {
        let phase = self.setup.phase;
        if phase == Phase::Fresh {
            return;
        }
        self.open();
        if phase == Phase::Opened {
            return;
        }
        if !self.setup.direct_tls {
            self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
            self.expect("proceed");
            self.expect_event(&Event::StartTls);
            if phase == Phase::TlsPending {
                return;
            }
            self.handshake();
            if phase == Phase::AfterTls {
                return;
            }
            self.open();
        }
        if matches!(
            phase,
            Phase::TlsPending | Phase::AfterTls | Phase::SecureOpened
        ) {
            return;
        }
        if phase == Phase::Scram || !self.setup.plain {
            let mut scram = Scram::new(self.setup.plus);
            let mechanism = if self.setup.plus {
                "SCRAM-SHA-256-PLUS"
            } else {
                "SCRAM-SHA-256"
            };
            self.send(&format!(
                "<auth xmlns='{SASL_NS}' mechanism='{mechanism}'>{}</auth>",
                B64.encode(scram.client_first())
            ));
            let challenge = self.expect("challenge");
            if phase == Phase::Scram {
                return;
            }
            let server_first = B64.decode(challenge.text.trim()).expect("base64");
            let server_first = String::from_utf8(server_first).expect("UTF-8");
            let client_final = scram.client_final(&server_first);
            self.send(&format!(
                "<response xmlns='{SASL_NS}'>{}</response>",
                B64.encode(client_final)
            ));
            let success = self.expect("success");
            let server_final = B64.decode(success.text.trim()).expect("base64");
            scram.verify(std::str::from_utf8(&server_final).expect("UTF-8"));
        } else {
            self.send(&format!(
                "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{}</auth>",
                B64.encode(format!("\0alice\0{PASSWORD}"))
            ));
            self.expect("success");
        }
        self.expect_event(&Event::Authenticated {
            bare_jid: format!("alice@{DOMAIN}"),
        });
        if phase == Phase::Authenticated {
            return;
        }
        let features = self.open();
        assert!(features.find("bind").is_some(), "no bind offered");
        if phase == Phase::AuthOpened {
            return;
        }
        self.send(
            "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>fuzz</resource></bind></iq>",
        );
        let reply = self.expect("iq");
        let jid = reply.find("jid").expect("bound JID").text.clone();
        assert_eq!(jid, format!("alice@{DOMAIN}/fuzz"));
        self.expect_event(&Event::Bound { full_jid: jid });
    }

    /// One operation byte: what it does is in its top three bits, how much in the rest.
    fn op(&mut self, op: u8, input: &mut &[u8]) {
        let p = usize::from(op & 0x1f);
        match op >> 5 {
            // Reads, honouring pauses and completing a due handshake first.
            0 | 1 | 6 => {
                let (read, rest) = input.split_at(SIZES[p].min(input.len()));
                *input = rest;
                self.receive(read, false);
            }
            // A read as it comes: while paused, or before the handshake.
            2 => {
                let (read, rest) = input.split_at(SIZES[p].min(input.len()));
                *input = rest;
                self.receive(read, true);
            }
            // A partial write: a few bytes, or a share of what is pending.
            3 => {
                let n = if p < 8 {
                    p + 1
                } else {
                    self.conn.pending_output().len() * (p - 7) / 24
                };
                self.write(n);
            }
            // Time: the next deadline, a spurious early wake-up, or a step.
            4 => {
                if p < 16 {
                    if p % 2 == 0
                        && let Some(at) = self.conn.poll_timeout()
                    {
                        self.now = self.now.max(at);
                    }
                } else {
                    self.now += Duration::from_millis(STEPS_MS[p - 16]);
                    if self.conn.poll_timeout().is_none_or(|at| at > self.now) {
                        return;
                    }
                }
                self.call(Call::Other, |conn, now| conn.handle_timeout(now));
            }
            // A client that pipelines: the last read again, 4 to 32 times (at most
            // `MAX_REPEATS` in a run, to keep runs fast), each time reading back all but 0
            // to 3 bytes of the answers.
            7 => {
                let read = std::mem::take(&mut self.last_read);
                let times = ((1 + (p >> 2)) * 4).min(MAX_REPEATS - self.repeats);
                self.repeats += times;
                for _ in 0..times {
                    self.receive(&read, false);
                    let pending = self.conn.pending_output().len();
                    self.write(pending.saturating_sub(p & 3));
                }
                self.last_read = read;
            }
            // What the I/O layer reports or does besides reads.
            _ => match p % 8 {
                0 => self.call(Call::PeerClosed, |conn, _| conn.peer_closed()),
                1 => self.call(Call::Other, |conn, _| conn.replaced()),
                2 => self.call(Call::Other, |conn, _| conn.shutdown()),
                3 if self.tls_due => self.handshake(),
                3 => {
                    let info = self.setup.tls();
                    self.call(Call::NoOp, |conn, _| conn.tls_established(info));
                }
                4 => self.call(Call::NoOp, |conn, now| conn.receive(&[], now)),
                5 => self.drain(),
                6 => {
                    let _ = self.conn.take_counts();
                    let _ = self.conn.addresses();
                    if let (Some(jid), None) = (self.conn.jid(), self.close) {
                        let expected = self.bound.as_ref().or(self.authenticated.as_ref());
                        assert_eq!(Some(jid), expected.map(String::as_str), "jid()");
                    }
                }
                _ => self.settle(),
            },
        }
    }

    /// Feeds what is left as an honest client would, then lets time run until the
    /// connection ends, and checks how it ended.
    fn finish(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            let (read, rest) = input.split_at(self.setup.tail_read.min(input.len()));
            input = rest;
            self.receive(read, false);
            self.drain();
        }
        for _ in 0..10_000 {
            if self.tls_due && self.close.is_none() {
                self.handshake();
            }
            self.drain();
            let Some(at) = self.conn.poll_timeout() else {
                break;
            };
            self.now = self.now.max(at);
            self.call(Call::Other, |conn, now| conn.handle_timeout(now));
        }
        self.drain();
        let reason = self.close.expect("the connection never ended");
        if *TRACE {
            eprintln!(
                "{:?}: {reason:?} after {} bytes out, authenticated {:?}, bound {:?}, {:?} elapsed",
                self.setup.phase,
                self.written,
                self.authenticated,
                self.bound,
                self.now - *BASE
            );
        }
        match reason {
            CloseReason::StreamError(cause) if !self.quiet_close => {
                let last = self.reader.last.as_ref().expect("a stream error");
                assert_eq!(
                    (last.name.as_str(), last.ns.as_str()),
                    ("error", STREAMS_NS),
                    "the last element before a close for {cause:?}"
                );
                let condition = last.children.first().expect("a condition");
                assert_eq!(condition.ns, STREAM_ERRORS_NS);
                assert_eq!(condition.name, cause.condition().as_str(), "condition");
                assert!(
                    self.reader.stream_closed,
                    "no </stream:stream> after the error"
                );
            }
            CloseReason::ClientClosed if !self.quiet_close => {
                assert!(
                    self.reader.stream_closed,
                    "no </stream:stream> for the client's"
                );
            }
            _ => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [phase, flags, ops, rest @ ..] = data else {
        return;
    };
    let (ops, input) = rest.split_at(usize::from(*ops).min(rest.len()));
    let setup = Setup::new(*phase, *flags);
    let mut harness = Harness::new(setup);
    harness.prefix();
    harness.reader.collect = false;
    harness.reader.elements.clear();
    harness.events.clear();
    let mut input = input;
    for &op in ops {
        harness.op(op, &mut input);
    }
    harness.finish(input);
});
