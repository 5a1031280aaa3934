//! An in-memory XMPP client that drives a `session::Connection`: it writes client XML into
//! the connection, parses everything the connection writes back with the stanza
//! tokenizer, and simulates the TLS handshake (there is no real TLS in this crate: after
//! `Event::StartTls` it reports `tls_established` with made-up exporter data).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use session::sasl::{
    self, ChannelBinding, Mechanism, SaltedPasswordCache, ScramClient, ScramCredentials, ScramHash,
};
use session::{
    Accounts, Addresses, Cause, CloseReason, Config, Connection, Event, ListenerKind, TlsInfo,
};
use stanza::{StartTag, Token, Tokenizer};

pub const DOMAIN: &str = "localhost";
pub const PASSWORD: &str = "secret";
pub const USERS: [&str; 2] = ["alice", "bob"];
pub const EXPORTER: [u8; 32] = [7; 32];
pub const TLS13: TlsInfo = TlsInfo {
    tls13: true,
    exporter: Some(EXPORTER),
};
pub const TLS12: TlsInfo = TlsInfo {
    tls13: false,
    exporter: None,
};
pub const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// Accounts held in memory, with a low iteration count to keep the tests fast.
#[derive(Debug)]
pub struct TestAccounts {
    credentials: HashMap<(String, ScramHash), ScramCredentials>,
}

impl TestAccounts {
    pub fn new() -> Self {
        let mut credentials = HashMap::new();
        for user in USERS {
            for hash in [ScramHash::Sha1, ScramHash::Sha256] {
                let stored = ScramCredentials::derive(PASSWORD, hash, user.as_bytes(), 64)
                    .expect("valid password");
                credentials.insert((user.to_owned(), hash), stored);
            }
        }
        Self { credentials }
    }
}

impl Accounts for TestAccounts {
    fn scram_credentials(&self, user: &str, _: &str, hash: ScramHash) -> Option<ScramCredentials> {
        self.credentials.get(&(user.to_owned(), hash)).cloned()
    }
}

/// An element the server sent, as a small tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub ns: String,
    /// Attributes by qualified name (`xml:lang`, `xmlns`), values unescaped.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    /// All character data directly inside, unescaped.
    pub text: String,
}

impl Element {
    fn from_tag(tag: &StartTag<'_>) -> Self {
        let attrs = tag
            .attributes
            .clone()
            .map(|attr| {
                let name = match attr.name.prefix {
                    Some(prefix) => format!("{prefix}:{}", attr.name.local),
                    None => attr.name.local.to_owned(),
                };
                (name, attr.value().into_owned())
            })
            .collect();
        Self {
            name: tag.name.local.to_owned(),
            ns: tag.namespace.to_owned(),
            attrs,
            children: Vec::new(),
            text: String::new(),
        }
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The only child, asserting there is exactly one.
    pub fn only_child(&self) -> &Element {
        assert_eq!(self.children.len(), 1, "one child expected in {self:?}");
        &self.children[0]
    }

    /// The condition of an `<error>` child: (error type, condition name).
    pub fn stanza_error(&self) -> (String, String) {
        assert_eq!(self.attr("type"), Some("error"), "not an error: {self:?}");
        let error = self.child("error").expect("error child");
        let condition = error.only_child();
        assert_eq!(condition.ns, STANZA_ERRORS);
        (
            error.attr("type").unwrap_or_default().to_owned(),
            condition.name.clone(),
        )
    }
}

/// One thing read from the server's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Header(Element),
    Element(Element),
    StreamClose,
}

/// The client's side of the stream: the server's output parsed with the stanza tokenizer.
#[derive(Debug)]
struct Parser {
    tokenizer: Tokenizer,
    buf: Vec<u8>,
    open: Vec<Element>,
}

impl Parser {
    fn new() -> Self {
        Self {
            tokenizer: Tokenizer::new(stanza::TokenizerLimits::default()),
            buf: Vec::new(),
            open: Vec::new(),
        }
    }

    fn feed(&mut self, data: &[u8], items: &mut VecDeque<Item>) {
        self.buf.extend_from_slice(data);
        let mut base = 0;
        loop {
            let mut restart_at = None;
            match self
                .tokenizer
                .next(&self.buf[base..])
                .expect("server output is well-formed")
            {
                Token::NeedMore => break,
                Token::StreamOpen(tag) => items.push_back(Item::Header(Element::from_tag(&tag))),
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
                        None => items.push_back(Item::Element(done)),
                    }
                }
                Token::StanzaEnd(span) => {
                    // The server restarts its stream after these (RFC 6120 5.4.3.3, 6.4.6).
                    if let Some(Item::Element(last)) = items.back()
                        && (last.name == "proceed" || last.name == "success")
                    {
                        restart_at = Some(span.end);
                    }
                }
                Token::Whitespace => {}
                Token::StreamClose => items.push_back(Item::StreamClose),
            }
            if let Some(end) = restart_at {
                base += end;
                self.tokenizer.reset();
            }
        }
        let done = base + self.tokenizer.compact();
        self.buf.drain(..done);
    }
}

/// A client attached to one server-side `Connection`.
#[derive(Debug)]
pub struct Client {
    pub conn: Connection,
    pub now: Instant,
    parser: Parser,
    items: VecDeque<Item>,
    events: VecDeque<Event>,
    /// Everything the server wrote since the last [`Client::take_raw`].
    raw: String,
    cache: SaltedPasswordCache,
    next_id: u32,
    /// The cause the connection reported with its last stream error.
    pub closed_by: Option<Cause>,
    /// Password checks are run as soon as the connection asks (else they are queued as
    /// events for the test to run).
    pub check_passwords: bool,
}

pub fn v4_client() -> SocketAddr {
    "203.0.113.7:40001".parse().expect("address")
}

impl Client {
    /// A client on the STARTTLS listener with the default config.
    pub fn new() -> Self {
        Self::with(Config::default(), ListenerKind::Starttls, None, v4_client())
    }

    pub fn with_config(config: Config) -> Self {
        Self::with(config, ListenerKind::Starttls, None, v4_client())
    }

    pub fn with(
        config: Config,
        kind: ListenerKind,
        tls: Option<TlsInfo>,
        client: SocketAddr,
    ) -> Self {
        let local: SocketAddr = match client {
            SocketAddr::V4(_) => "192.0.2.1:5222".parse().expect("address"),
            SocketAddr::V6(_) => "[2001:db8::1]:5222".parse().expect("address"),
        };
        let addresses = Addresses {
            client,
            peer: client,
            local,
        };
        let now = Instant::now();
        let conn = Connection::new(
            Arc::new(config),
            Arc::new(TestAccounts::new()),
            addresses,
            kind,
            tls,
            now,
        );
        Self {
            conn,
            now,
            parser: Parser::new(),
            items: VecDeque::new(),
            events: VecDeque::new(),
            raw: String::new(),
            cache: SaltedPasswordCache::default(),
            next_id: 0,
            closed_by: None,
            check_passwords: true,
        }
    }

    pub fn send(&mut self, xml: &str) {
        self.send_bytes(xml.as_bytes());
    }

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.conn.receive(bytes, self.now);
        self.pump();
    }

    /// Sends without reading anything back (a client that stopped reading).
    pub fn send_unread(&mut self, xml: &str) {
        self.conn.receive(xml.as_bytes(), self.now);
    }

    /// Reads what the server wrote and the events it raised.
    pub fn pump(&mut self) {
        loop {
            let out = self.conn.pending_output().to_vec();
            self.conn.output_written(out.len());
            self.raw
                .push_str(std::str::from_utf8(&out).expect("UTF-8 output"));
            self.parser.feed(&out, &mut self.items);
            let mut checked = false;
            while let Some(event) = self.conn.poll_event() {
                match event {
                    // What the I/O layer does, here at once and on this thread.
                    Event::CheckPassword(check) if self.check_passwords => {
                        self.conn.password_checked(check.run(), self.now);
                        checked = true;
                    }
                    event => self.events.push_back(event),
                }
            }
            if !checked {
                break;
            }
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Fires the connection's timer if it is due at the current time.
    pub fn fire_timer(&mut self) {
        if self.conn.poll_timeout().is_some_and(|at| at <= self.now) {
            self.conn.handle_timeout(self.now);
        }
        self.pump();
    }

    pub fn take_raw(&mut self) -> String {
        std::mem::take(&mut self.raw)
    }

    pub fn item(&mut self) -> Item {
        self.items
            .pop_front()
            .expect("the server sent nothing more")
    }

    pub fn element(&mut self) -> Element {
        match self.item() {
            Item::Element(element) => element,
            other => panic!("expected an element, got {other:?}"),
        }
    }

    pub fn no_items(&self) -> bool {
        self.items.is_empty()
    }

    pub fn event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// A stream header for `to` as real clients send it.
    pub fn header(to: &str) -> String {
        format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0' \
             xml:lang='en'>"
        )
    }

    /// Opens (or restarts) the stream; returns the server's header and features.
    pub fn open(&mut self) -> (Element, Element) {
        self.send(&Self::header(DOMAIN));
        let header = match self.item() {
            Item::Header(header) => header,
            other => panic!("expected a stream header, got {other:?}"),
        };
        let features = self.element();
        assert_eq!(features.name, "features");
        (header, features)
    }

    /// `<starttls/>`, then the simulated handshake.
    pub fn starttls(&mut self, info: TlsInfo) {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        assert_eq!(self.element().name, "proceed");
        assert_eq!(self.event(), Some(Event::StartTls));
        self.conn.tls_established(info);
        self.pump();
    }

    /// One SCRAM exchange; `Err` carries the SASL failure condition.
    pub fn auth_scram(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
    ) -> Result<(), String> {
        let binding = if mechanism.is_plus() {
            ChannelBinding::TlsExporter(EXPORTER)
        } else {
            ChannelBinding::Unsupported
        };
        let hash = mechanism.scram_hash().expect("a SCRAM mechanism");
        let mut scram = ScramClient::new(hash, user, password, binding);
        assert_eq!(scram.mechanism(), mechanism);
        self.send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='{}'>{}</auth>",
            mechanism.name(),
            sasl::encode_payload(&scram.client_first())
        ));
        let challenge = self.sasl_reply()?;
        assert_eq!(challenge.name, "challenge");
        let server_first = sasl::decode_payload(challenge.text.as_bytes()).expect("base64");
        let client_final = scram
            .handle_server_first(&server_first, &mut self.cache)
            .expect("server-first");
        self.send(&format!(
            "<response xmlns='{SASL_NS}'>{}</response>",
            sasl::encode_payload(&client_final)
        ));
        let success = self.sasl_reply()?;
        assert_eq!(success.name, "success");
        let server_final = sasl::decode_payload(success.text.as_bytes()).expect("base64");
        scram
            .verify_server_final(&server_final)
            .expect("server proves the credentials");
        self.expect_authenticated(user);
        Ok(())
    }

    /// PLAIN with the password in `<auth>`.
    pub fn auth_plain(&mut self, user: &str, password: &str) -> Result<(), String> {
        self.send(&format!(
            "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{}</auth>",
            sasl::encode_payload(&sasl::plain_client_response(None, user, password))
        ));
        let success = self.sasl_reply()?;
        assert_eq!(success.name, "success");
        self.expect_authenticated(user);
        Ok(())
    }

    /// The next SASL element; a `<failure>` becomes `Err(condition)`.
    pub fn sasl_reply(&mut self) -> Result<Element, String> {
        let reply = self.element();
        assert_eq!(reply.ns, SASL_NS);
        if reply.name == "failure" {
            return Err(reply.only_child().name.clone());
        }
        Ok(reply)
    }

    fn expect_authenticated(&mut self, user: &str) {
        assert_eq!(
            self.event(),
            Some(Event::Authenticated {
                bare_jid: format!("{user}@{DOMAIN}")
            })
        );
    }

    /// Binds `resource` (or a server-generated one); returns the full JID.
    pub fn bind(&mut self, resource: Option<&str>) -> String {
        let request = match resource {
            Some(resource) => format!("<resource>{resource}</resource>"),
            None => String::new(),
        };
        let reply = self.iq(
            "set",
            None,
            &format!("<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{request}</bind>"),
        );
        assert_eq!(reply.attr("type"), Some("result"), "{reply:?}");
        let jid = reply.only_child().child("jid").expect("jid").text.clone();
        assert_eq!(
            self.event(),
            Some(Event::Bound {
                full_jid: jid.clone()
            })
        );
        jid
    }

    /// STARTTLS (TLS 1.3), SCRAM-SHA-256 as alice, bind; returns the full JID.
    pub fn login(&mut self) -> String {
        self.login_as("alice", None)
    }

    pub fn login_as(&mut self, user: &str, resource: Option<&str>) -> String {
        self.open();
        self.starttls(TLS13);
        self.open();
        self.auth_scram(Mechanism::ScramSha256, user, PASSWORD)
            .expect("authenticated");
        let (_, features) = self.open();
        assert!(features.child("bind").is_some());
        self.bind(resource)
    }

    /// Sends an IQ with a fresh id and returns the reply, checking it echoes the id.
    pub fn iq(&mut self, kind: &str, to: Option<&str>, payload: &str) -> Element {
        self.next_id += 1;
        let id = format!("q{}", self.next_id);
        let to = to.map(|to| format!(" to='{to}'")).unwrap_or_default();
        self.send(&format!("<iq type='{kind}' id='{id}'{to}>{payload}</iq>"));
        let reply = self.element();
        assert_eq!(reply.name, "iq");
        assert_eq!(reply.attr("id"), Some(id.as_str()));
        reply
    }

    /// Expects a stream error now: the `<stream:error>`, the end of the stream and the
    /// close request. Returns the condition.
    pub fn stream_error(&mut self) -> String {
        let error = self.element();
        assert_eq!(
            (error.name.as_str(), error.ns.as_str()),
            ("error", "http://etherx.jabber.org/streams")
        );
        let condition = error.children[0].name.clone();
        assert_eq!(error.children[0].ns, "urn:ietf:params:xml:ns:xmpp-streams");
        assert_eq!(self.item(), Item::StreamClose);
        match self.event() {
            Some(Event::Close(CloseReason::StreamError(cause))) => {
                assert_eq!(cause.condition().as_str(), condition);
                self.closed_by = Some(cause);
            }
            other => panic!("expected a close for {condition}, got {other:?}"),
        }
        assert!(self.no_items());
        assert_eq!(self.conn.poll_timeout(), None);
        condition
    }

    /// Expects a stream error on a stream not opened yet: our header comes first.
    pub fn header_then_stream_error(&mut self) -> String {
        match self.item() {
            Item::Header(header) => assert_eq!(header.name, "stream"),
            other => panic!("expected a stream header, got {other:?}"),
        }
        self.stream_error()
    }
}
