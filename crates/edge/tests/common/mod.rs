//! Shared test support: a fixture directory (certificate, key, users file), an in-process
//! server and its metrics, the real binary as a child process, and a minimal XMPP client
//! that parses what the server sends.

#![allow(dead_code)]

pub mod scrape;

use std::collections::VecDeque;
use std::fmt;
use std::io::BufRead as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge::config::{ListenerConfig, ListenerKind};
use edge::users::{StoredUser, UsersFile};
use edge::{Config, Server};
use prometheus_client::registry::Registry;
use rustls::pki_types::{CertificateDer, ServerName};
use session::sasl::{self, ChannelBinding, SaltedPasswordCache, ScramClient, ScramHash};
use stanza::{QName, StartTag, Token, Tokenizer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use scrape::Scrape;

/// How long any single expectation may take before the test fails.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Iterations for test accounts: low, so debug-build PBKDF2 stays fast.
pub const ITERATIONS: u32 = 256;
pub const PASSWORD: &str = "secret";

/// A temporary directory with a certificate for `localhost`, its key and a users file
/// holding alice@localhost and bob@localhost (password [`PASSWORD`]).
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cert_der: CertificateDer<'static>,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub users: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let users = dir.path().join("users.toml");
        let mut file = UsersFile::default();
        for jid in ["alice@localhost", "bob@localhost"] {
            file.users.insert(
                jid.to_owned(),
                StoredUser::from_password(PASSWORD, ITERATIONS).unwrap(),
            );
        }
        file.save(&users).unwrap();
        Self {
            dir,
            cert_der: generated.cert.der().clone(),
            cert,
            key,
            users,
        }
    }

    /// A configuration for in-process servers: ephemeral ports on 127.0.0.1 and [::1].
    pub fn config(&self) -> Config {
        let mut config = Config::embedded();
        config.users_file = self.users.clone();
        config.tls.cert = Some(self.cert.clone());
        config.tls.key = Some(self.key.clone());
        // The IPv6 STARTTLS listener uses SO_REUSEPORT with two accept loops.
        let mut reuse_port =
            ListenerConfig::new(ListenerKind::Starttls, "[::1]:0".parse().unwrap());
        reuse_port.reuse_port_workers = 2;
        config.listeners = vec![
            ListenerConfig::new(ListenerKind::Starttls, "127.0.0.1:0".parse().unwrap()),
            ListenerConfig::new(ListenerKind::DirectTls, "127.0.0.1:0".parse().unwrap()),
            reuse_port,
            ListenerConfig::new(ListenerKind::DirectTls, "[::1]:0".parse().unwrap()),
        ];
        config.shutdown.grace_period = Duration::from_millis(100);
        config.shutdown.force_after = Duration::from_millis(500);
        config.admin.address = "127.0.0.1:0".parse().unwrap();
        config
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A TLS client configuration trusting the fixture's certificate.
    pub fn tls(&self, alpn: bool) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        if alpn {
            config.alpn_protocols = vec![b"xmpp-client".to_vec()];
        }
        TlsConnector::from(Arc::new(config))
    }
}

/// A server running in this process until dropped or stopped.
pub struct Running {
    pub addrs: Vec<(ListenerKind, SocketAddr)>,
    /// The admin endpoint, when enabled.
    pub admin: Option<SocketAddr>,
    metrics: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), edge::Error>>>,
}

impl Running {
    pub fn start(config: Config) -> Self {
        let server = Server::bind(config).unwrap();
        let addrs = server.local_addrs();
        let admin = server.admin_addr();
        let metrics = server.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Self {
            addrs,
            admin,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The server's metrics now.
    pub fn scrape(&self) -> Scrape {
        Scrape::of(&self.metrics)
    }

    /// [`Scrape::sum`] of a fresh scrape.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.scrape().sum(name, labels)
    }

    /// Live connections, in every negotiation state.
    pub fn connections_active(&self) -> u64 {
        self.metric("xmpp_edge_sessions", &[])
    }

    /// `xmpp_edge_limit_triggers_total` for `limit`.
    pub fn limit_triggers(&self, limit: &str) -> u64 {
        self.metric("xmpp_edge_limit_triggers_total", &[("limit", limit)])
    }

    /// Successful SASL authentications, by any mechanism.
    pub fn authenticated(&self) -> u64 {
        self.metric("xmpp_edge_sasl_total", &[("outcome", "success")])
    }

    /// The first listener of `kind` whose address is IPv6 (`v6`) or IPv4.
    pub fn addr(&self, kind: ListenerKind, v6: bool) -> SocketAddr {
        self.addrs
            .iter()
            .find(|(k, a)| *k == kind && a.is_ipv6() == v6)
            .unwrap()
            .1
    }

    /// Starts the shutdown without waiting for it (see [`Running::stop`]).
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    pub async fn stop(mut self) {
        self.begin_stop();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STEP_TIMEOUT, task)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Polls `condition` until it holds, failing the test after [`STEP_TIMEOUT`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Upgrading,
}

impl Io {
    fn stream(&mut self) -> &mut (dyn Stream + '_) {
        match self {
            Io::Plain(tcp) => tcp,
            Io::Tls(tls) => tls.as_mut(),
            Io::Upgrading => unreachable!("stream used during the TLS upgrade"),
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// The streams namespace, of `<stream:features>` and `<stream:error>`.
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";

/// One element the server sent, parsed: its name as on the wire (`stream:features`),
/// namespace, unescaped attributes (namespace declarations included) and text, and its
/// child elements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub namespace: String,
    pub attributes: Vec<(String, String)>,
    /// The element's own character data, unescaped (not its children's).
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    fn from_tag(tag: &StartTag<'_>) -> Self {
        Self {
            name: qualified(tag.name),
            namespace: tag.namespace.to_owned(),
            attributes: tag
                .attributes
                .clone()
                .map(|a| (qualified(a.name), a.value().into_owned()))
                .collect(),
            text: String::new(),
            children: Vec::new(),
        }
    }

    /// The name without its prefix.
    pub fn local(&self) -> &str {
        self.name
            .split_once(':')
            .map_or(self.name.as_str(), |(_, local)| local)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first child named `local`.
    pub fn child(&self, local: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.local() == local)
    }

    /// The first element named `local` below this one, depth first.
    pub fn find(&self, local: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| {
            if c.local() == local {
                Some(c)
            } else {
                c.find(local)
            }
        })
    }

    /// Every element named `local` below this one, depth first.
    pub fn all(&self, local: &str) -> Vec<&Element> {
        let mut found = Vec::new();
        for child in &self.children {
            if child.local() == local {
                found.push(child);
            }
            found.extend(child.all(local));
        }
        found
    }

    /// The text of every element named `local` below this one.
    pub fn texts(&self, local: &str) -> Vec<&str> {
        self.all(local)
            .into_iter()
            .map(|e| e.text.as_str())
            .collect()
    }

    /// The condition of an error element (`<failure>`, `<stream:error>`, an IQ's
    /// `<error>`): its first child that is not `<text>`.
    pub fn condition(&self) -> Option<&str> {
        self.children
            .iter()
            .map(Element::local)
            .find(|&local| local != "text")
    }
}

/// The element serialized again, for failure messages.
impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Vec::new();
        write!(f, "<{}", self.name)?;
        for (name, value) in &self.attributes {
            out.clear();
            stanza::escape_attr(value, &mut out);
            write!(f, " {name}='{}'", String::from_utf8_lossy(&out))?;
        }
        if self.text.is_empty() && self.children.is_empty() {
            return f.write_str("/>");
        }
        out.clear();
        stanza::escape_text(&self.text, &mut out);
        write!(f, ">{}", String::from_utf8_lossy(&out))?;
        for child in &self.children {
            child.fmt(f)?;
        }
        write!(f, "</{}>", self.name)
    }
}

fn qualified(name: QName<'_>) -> String {
    match name.prefix {
        Some(prefix) => format!("{prefix}:{}", name.local),
        None => name.local.to_owned(),
    }
}

/// What a connection delivered before the server closed it.
#[derive(Debug)]
pub struct Closed {
    /// Complete top-level elements that came after the last expected one.
    pub elements: Vec<Element>,
    /// Bytes that came after the last expected element, whatever they parse to.
    pub bytes: u64,
    /// The server ended its stream with `</stream:stream>`.
    pub stream_closed: bool,
    /// Where the server's output stopped being a valid XMPP stream, if it did.
    pub malformed: Option<stanza::Error>,
}

impl Closed {
    /// Not a byte came after the last expected element.
    pub fn is_silent(&self) -> bool {
        self.bytes == 0
    }

    /// The condition of the `<stream:error>` the server sent, if it sent one.
    pub fn stream_error(&self) -> Option<&str> {
        self.elements
            .iter()
            .find(|e| e.namespace == NS_STREAMS && e.local() == "error")?
            .condition()
    }
}

/// A minimal XMPP client that parses the server's output with the workspace's own
/// tokenizer and hands tests the elements.
pub struct Client {
    io: Io,
    /// Received bytes the tokenizer has not consumed yet.
    buf: Vec<u8>,
    tokenizer: Tokenizer,
    /// Elements of the stanza being received, outermost first.
    open: Vec<Element>,
    /// The stanza that just ended, until its `StanzaEnd` tells where it ended.
    ended: Option<Element>,
    /// Complete stanzas not yet expected, with the stream offset where each ended.
    received: VecDeque<(Element, u64)>,
    /// The stream offset of `buf[0]`.
    offset: u64,
    /// Bytes received in all.
    total: u64,
    /// The stream offset where the last expected element ended.
    expected_end: u64,
    stream_closed: bool,
    malformed: Option<stanza::Error>,
    pub local: SocketAddr,
    exporter: Option<[u8; 32]>,
    pub alpn: Option<Vec<u8>>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Self {
        Self::from_tcp(TcpStream::connect(addr).await.unwrap())
    }

    /// A client on a socket the test connected (and perhaps configured) itself.
    pub fn from_tcp(tcp: TcpStream) -> Self {
        let local = tcp.local_addr().unwrap();
        Self {
            io: Io::Plain(tcp),
            buf: Vec::new(),
            tokenizer: Tokenizer::new(Default::default()),
            open: Vec::new(),
            ended: None,
            received: VecDeque::new(),
            offset: 0,
            total: 0,
            expected_end: 0,
            stream_closed: false,
            malformed: None,
            local,
            exporter: None,
            alpn: None,
        }
    }

    /// Connects to a direct-TLS listener.
    pub async fn connect_tls(addr: SocketAddr, connector: &TlsConnector) -> Self {
        let mut client = Self::connect(addr).await;
        client.handshake(connector).await;
        client
    }

    /// Starts TLS on the plain connection (direct TLS after a PROXY header, say).
    pub async fn handshake(&mut self, connector: &TlsConnector) {
        assert_eq!(
            self.total,
            self.expected_end,
            "data before the TLS handshake: {:?}",
            self.unexpected()
        );
        let Io::Plain(tcp) = std::mem::replace(&mut self.io, Io::Upgrading) else {
            panic!("already TLS")
        };
        let name = ServerName::try_from("localhost").unwrap();
        let tls = tokio::time::timeout(STEP_TIMEOUT, connector.connect(name, tcp))
            .await
            .unwrap()
            .unwrap();
        let conn = tls.get_ref().1;
        self.alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
        if conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
            self.exporter = conn
                .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .ok();
        }
        self.io = Io::Tls(Box::new(tls));
    }

    pub async fn send(&mut self, text: &str) {
        self.try_send(text).await.unwrap();
    }

    pub async fn try_send(&mut self, text: &str) -> std::io::Result<()> {
        self.try_send_bytes(text.as_bytes()).await
    }

    /// Sends raw bytes, such as a binary PROXY v2 header.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.try_send_bytes(bytes).await.unwrap();
    }

    async fn try_send_bytes(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let stream = self.io.stream();
        stream.write_all(bytes).await?;
        stream.flush().await
    }

    /// Reads until a complete top-level element named `name` (as on the wire, such as
    /// `stream:features`) has arrived and returns it; elements before it are dropped.
    pub async fn expect(&mut self, name: &str) -> Element {
        let deadline = tokio::time::Instant::now() + STEP_TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            while let Some((element, end)) = self.received.pop_front() {
                if element.name == name {
                    self.expected_end = end;
                    return element;
                }
                skipped.push(element);
            }
            if let Some(error) = self.malformed {
                panic!(
                    "malformed server output while waiting for <{name}>: {error}; skipped {skipped:?}"
                );
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, self.io.stream().read(&mut chunk)).await;
            match read {
                Ok(Ok(0)) => panic!(
                    "connection closed while waiting for <{name}>; skipped {skipped:?}, then {:?}",
                    self.unexpected()
                ),
                Ok(Ok(n)) => self.receive(&chunk[..n]),
                Ok(Err(e)) => panic!(
                    "read error waiting for <{name}>: {e}; skipped {skipped:?}, then {:?}",
                    self.unexpected()
                ),
                Err(_) => panic!(
                    "timed out waiting for <{name}>; skipped {skipped:?}, then {:?}",
                    self.unexpected()
                ),
            }
        }
    }

    /// Reads until the server closes the connection; returns what came after the last
    /// expected element.
    pub async fn expect_closed(&mut self, within: Duration) -> Closed {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut chunk = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.io.stream().read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => self.receive(&chunk[..n]),
                Err(_) => panic!(
                    "connection not closed within {within:?}; got {:?}",
                    self.unexpected()
                ),
            }
        }
        let closed = Closed {
            elements: self
                .received
                .drain(..)
                .map(|(element, _)| element)
                .collect(),
            bytes: self.total - self.expected_end,
            stream_closed: self.stream_closed,
            malformed: self.malformed,
        };
        self.expected_end = self.total;
        closed
    }

    /// Tokenizes newly received bytes into elements.
    fn receive(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.total += bytes.len() as u64;
        if self.malformed.is_some() {
            return;
        }
        loop {
            let token = match self.tokenizer.next(&self.buf) {
                Ok(token) => token,
                Err(error) => {
                    self.malformed = Some(error);
                    return;
                }
            };
            match token {
                Token::NeedMore => break,
                Token::StreamOpen(_) | Token::Whitespace => {}
                Token::Start(tag) => self.open.push(Element::from_tag(&tag)),
                Token::Text(text) => {
                    if let Some(element) = self.open.last_mut() {
                        element.text.push_str(&text.unescaped());
                    }
                }
                Token::End(_) => {
                    let element = self.open.pop().expect("an open element");
                    match self.open.last_mut() {
                        Some(parent) => parent.children.push(element),
                        None => self.ended = Some(element),
                    }
                }
                Token::StanzaEnd(span) => {
                    let element = self.ended.take().expect("the stanza that ended");
                    self.received
                        .push_back((element, self.offset + span.end as u64));
                }
                Token::StreamClose => self.stream_closed = true,
            }
        }
        let consumed = self.tokenizer.compact();
        self.buf.drain(..consumed);
        self.offset += consumed as u64;
    }

    /// What arrived after the last expected element, for failure messages.
    fn unexpected(&self) -> String {
        let elements: Vec<String> = self.received.iter().map(|(e, _)| e.to_string()).collect();
        format!(
            "{elements:?} and {:?} unparsed",
            String::from_utf8_lossy(&self.buf)
        )
    }

    /// Sends a stream header and waits for the features. The server answers with a new
    /// stream, so parsing starts afresh.
    pub async fn open_stream(&mut self) -> Element {
        assert!(
            self.received.is_empty() && self.buf.iter().all(u8::is_ascii_whitespace),
            "unread data before the stream restart: {}",
            self.unexpected()
        );
        self.offset += self.buf.len() as u64;
        self.buf.clear();
        self.tokenizer.reset();
        self.open.clear();
        self.ended = None;
        self.stream_closed = false;
        self.send(
            "<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xml:lang='en' \
             xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
        )
        .await;
        self.expect("stream:features").await
    }

    /// Opens the stream, upgrades with STARTTLS and opens the encrypted stream.
    pub async fn starttls(&mut self, connector: &TlsConnector) -> Element {
        let features = self.open_stream().await;
        assert!(features.child("starttls").is_some(), "{features}");
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await;
        self.expect("proceed").await;
        self.handshake(connector).await;
        self.open_stream().await
    }

    /// SCRAM authentication, then the stream restart; returns the new features.
    pub async fn scram(
        &mut self,
        user: &str,
        password: &str,
        hash: ScramHash,
        plus: bool,
    ) -> Element {
        let binding = if plus {
            ChannelBinding::TlsExporter(self.exporter.expect("TLS 1.3 exporter"))
        } else {
            ChannelBinding::Unsupported
        };
        let mut scram = ScramClient::new(hash, user, password, binding);
        let mut cache = SaltedPasswordCache::default();
        self.send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>{}</auth>",
            scram.mechanism().name(),
            sasl::encode_payload(&scram.client_first())
        ))
        .await;
        let challenge = self.expect("challenge").await;
        let server_first = sasl::decode_payload(challenge.text.as_bytes()).unwrap();
        let client_final = scram
            .handle_server_first(&server_first, &mut cache)
            .unwrap();
        self.send(&format!(
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</response>",
            sasl::encode_payload(&client_final)
        ))
        .await;
        let success = self.expect("success").await;
        let server_final = sasl::decode_payload(success.text.as_bytes()).unwrap();
        scram.verify_server_final(&server_final).unwrap();
        self.open_stream().await
    }

    /// Binds `resource`; returns the full JID the server assigned.
    pub async fn bind(&mut self, resource: &str) -> String {
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
             <resource>{resource}</resource></bind></iq>"
        ))
        .await;
        let iq = self.expect("iq").await;
        assert_eq!(iq.attr("type"), Some("result"), "{iq}");
        iq.find("jid").expect("a bound JID").text.clone()
    }

    /// STARTTLS, SCRAM-SHA-256 and bind in one go.
    pub async fn login(
        addr: SocketAddr,
        connector: &TlsConnector,
        user: &str,
        resource: &str,
    ) -> Self {
        let mut client = Self::connect(addr).await;
        client.starttls(connector).await;
        client.scram(user, PASSWORD, ScramHash::Sha256, false).await;
        client.bind(resource).await;
        client
    }

    /// Sends an IQ get with `payload` and returns the response IQ.
    pub async fn iq_get(&mut self, id: &str, payload: &str) -> Element {
        self.send(&format!(
            "<iq type='get' id='{id}' to='localhost'>{payload}</iq>"
        ))
        .await;
        let iq = self.expect("iq").await;
        assert_eq!(iq.attr("id"), Some(id), "{iq}");
        iq
    }

    pub async fn ping(&mut self, id: &str) {
        let iq = self.iq_get(id, "<ping xmlns='urn:xmpp:ping'/>").await;
        assert_eq!(iq.attr("type"), Some("result"), "{iq}");
    }
}

/// The `xmpp-edge` binary running as a child process, its log collected line by line.
pub struct Process {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_xmpp-edge")
}

impl Process {
    /// Runs `command` (the binary, possibly wrapped) with stderr captured.
    pub fn spawn(mut command: Command) -> Self {
        command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    /// Runs the binary with `--config config`.
    pub fn run(config: &Path) -> Self {
        let mut command = Command::new(binary());
        command.arg("--config").arg(config);
        Self::spawn(command)
    }

    pub fn log_contains(&self, text: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(text))
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for `count` "listening" lines and returns their (kind, address).
    pub async fn listening(&mut self, count: usize) -> Vec<(String, SocketAddr)> {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let found: Vec<(String, SocketAddr)> = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|line| line.contains(" listening "))
                .filter_map(|line| {
                    Some((
                        field(line, "listener")?.to_owned(),
                        field(line, "address")?.parse().ok()?,
                    ))
                })
                .collect();
            if found.len() >= count {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("xmpp-edge exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "xmpp-edge did not start:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The admin endpoint's address, from its start-up log line.
    pub async fn admin_addr(&self) -> SocketAddr {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .filter(|line| line.contains("admin endpoint"))
                .find_map(|line| field(line, "address")?.parse().ok());
            if let Some(address) = found {
                return address;
            }
            assert!(
                Instant::now() < deadline,
                "no admin endpoint:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Waits for the process to exit and returns its status.
    pub async fn wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "xmpp-edge still running:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response from the admin endpoint.
pub struct HttpResponse {
    pub status: u16,
    /// Header lines as sent, without the status line.
    pub headers: String,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` (a complete HTTP request head) to `addr` and reads the response until
/// the server closes the connection; `None` when it closed without answering.
pub async fn http_try(addr: SocketAddr, request: &str) -> Option<HttpResponse> {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(STEP_TIMEOUT, tcp.read_to_end(&mut raw))
        .await
        .expect("admin endpoint answers in time")
        .unwrap();
    if raw.is_empty() {
        return None;
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    Some(HttpResponse {
        status,
        headers: headers.replace("\r\n", "\n"),
        body: body.to_owned(),
    })
}

/// [`http_try`], expecting an answer.
pub async fn http_raw(addr: SocketAddr, request: &str) -> HttpResponse {
    http_try(addr, request)
        .await
        .expect("the admin endpoint answered")
}

/// A GET of `path` with `accept` as the Accept header.
pub async fn http_get(addr: SocketAddr, path: &str, accept: &str) -> HttpResponse {
    http_raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: {accept}\r\n\r\n"),
    )
    .await
}

/// The value of `name=value` in a log line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..].split_whitespace().next()
}

/// A configuration file for the binary with one listener of each kind on 127.0.0.1:0.
pub fn write_config(fixture: &Fixture, extra_limits: &str, shutdown: &str, tls: bool) -> PathBuf {
    let tls = if tls {
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            fixture.cert, fixture.key
        )
    } else {
        String::new()
    };
    let text = format!(
        "domains = [\"localhost\"]\nusers_file = {:?}\n{tls}\
         [[listeners]]\nkind = \"starttls\"\naddress = \"127.0.0.1:0\"\n\
         [[listeners]]\nkind = \"direct_tls\"\naddress = \"127.0.0.1:0\"\n\
         [limits]\n{extra_limits}\n[shutdown]\n{shutdown}\n[log]\nfilter = \"info\"\n\
         [admin]\naddress = \"127.0.0.1:0\"\n",
        fixture.users
    );
    let path = fixture.path("xmpp-edge.toml");
    std::fs::write(&path, text).unwrap();
    path
}
