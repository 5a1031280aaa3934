//! The client state machine against a scripted in-memory server.

use std::net::SocketAddr;

use session::sasl::{
    self, Mechanism, SaltedPasswordCache, ScramCredentials, ScramHash, ServerContext,
    ServerExchange, Step,
};

use super::*;
use crate::accounts::Accounts;
use crate::histo::{ErrorKind, Metric, Recorder};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' id='s1' from='localhost' version='1.0'>";
const SECOND: u64 = 1_000_000_000;

fn features(inner: &str) -> String {
    format!("<stream:features>{inner}</stream:features>")
}

fn mechanisms(names: &[&str]) -> String {
    let list: String = names
        .iter()
        .map(|n| format!("<mechanism>{n}</mechanism>"))
        .collect();
    features(&format!(
        "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{list}</mechanisms>"
    ))
}

const BIND_FEATURES: &str =
    "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>";
const BIND_RESULT: &str = "<iq type='result' id='0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>\
    <jid>user1@localhost/r1</jid></bind></iq>";

struct Harness {
    profile: Profile,
    accounts: Accounts,
    cache: SaltedPasswordCache,
    rec: Recorder,
    out: Vec<u8>,
    now: Nanos,
    rx: Vec<u8>,
    client: Client,
    local: SocketAddr,
}

impl Harness {
    fn new(tls: TlsMode, mechanism: Mechanism, pipeline: usize) -> Self {
        let profile = Profile::new("localhost".into(), tls, mechanism, 10 * SECOND, pipeline);
        let accounts = Accounts::pattern("user%d@localhost", 1, 10, "secret".into()).unwrap();
        let mut rec = Recorder::default();
        let mut cache = SaltedPasswordCache::default();
        let mut out = Vec::new();
        let client = Client::new(
            0,
            &mut Ctx {
                now: 0,
                profile: &profile,
                accounts: &accounts,
                cache: &mut cache,
                rec: &mut rec,
                out: &mut out,
            },
        );
        Self {
            profile,
            accounts,
            cache,
            rec,
            out,
            now: 0,
            rx: Vec::new(),
            client,
            local: "127.0.0.7:40001".parse().unwrap(),
        }
    }

    fn ctx(&mut self) -> (&mut Client, Ctx<'_>) {
        let ctx = Ctx {
            now: self.now,
            profile: &self.profile,
            accounts: &self.accounts,
            cache: &mut self.cache,
            rec: &mut self.rec,
            out: &mut self.out,
        };
        (&mut self.client, ctx)
    }

    fn connect(&mut self) -> Action {
        let local = self.local;
        let (client, mut ctx) = self.ctx();
        client.connected(&mut ctx, local)
    }

    /// Appends `bytes` to the receive buffer and lets the client consume what it can.
    fn feed(&mut self, bytes: &str) -> Result<Action, Failure> {
        self.rx.extend_from_slice(bytes.as_bytes());
        let mut rx = std::mem::take(&mut self.rx);
        let (client, mut ctx) = self.ctx();
        let result = client.receive(&mut ctx, &rx);
        if let Ok((consumed, _)) = result {
            rx.drain(..consumed);
            self.rx = rx;
        }
        result.map(|(_, action)| action)
    }

    fn sent(&mut self) -> String {
        String::from_utf8(std::mem::take(&mut self.out)).unwrap()
    }

    fn send(&mut self, kind: RequestKind, intended: Nanos) {
        let (client, mut ctx) = self.ctx();
        client.send_request(&mut ctx, kind, intended);
    }

    /// Everything after `<auth>` up to Ready.
    fn bind(&mut self) {
        assert!(
            self.sent()
                .starts_with("<?xml version='1.0'?><stream:stream")
        );
        self.feed(HEADER).unwrap();
        self.feed(BIND_FEATURES).unwrap();
        assert_eq!(
            self.sent(),
            "<iq type='set' id='0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
        );
        self.now += 1000;
        self.feed(BIND_RESULT).unwrap();
        assert!(self.client.is_ready());
    }

    fn login_plain(&mut self) {
        assert_eq!(self.connect(), Action::Continue);
        let header = self.sent();
        assert!(header.contains("to='localhost'"), "{header}");
        self.feed(HEADER).unwrap();
        self.feed(&mechanisms(&["SCRAM-SHA-1", "PLAIN"])).unwrap();
        let auth = self.sent();
        let expected = sasl::encode_payload(b"\0user1\0secret");
        assert_eq!(
            auth,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{expected}</auth>"
            )
        );
        self.feed("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .unwrap();
        self.bind();
    }

    fn sample(&mut self) -> crate::histo::Sample {
        self.rec.take_sample()
    }
}

#[test]
fn plain_login_without_tls_reaches_ready_and_times_each_stage() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.login_plain();
    let sample = h.sample();
    assert_eq!(sample.counters.logins_started, 1);
    assert_eq!(sample.counters.logins_ok, 1);
    for metric in [Metric::Connect, Metric::Sasl, Metric::Bind, Metric::Login] {
        assert_eq!(sample.histos.get(metric).len(), 1, "{metric:?}");
    }
    assert!(sample.histos.get(Metric::Tls).is_empty());
}

#[test]
fn scram_login_against_the_real_server_side() {
    for (mechanism, hash) in [
        (Mechanism::ScramSha256, ScramHash::Sha256),
        (Mechanism::ScramSha1, ScramHash::Sha1),
    ] {
        let mut h = Harness::new(TlsMode::None, mechanism, 1);
        #[derive(Debug)]
        struct One(ScramCredentials, ScramHash);
        impl session::Accounts for One {
            fn scram_credentials(
                &self,
                user: &str,
                domain: &str,
                hash: ScramHash,
            ) -> Option<ScramCredentials> {
                (user == "user1" && domain == "localhost" && hash == self.1).then(|| self.0.clone())
            }
        }
        let accounts = One(
            ScramCredentials::generate("secret", hash, 4096).unwrap(),
            hash,
        );
        let server = ServerContext {
            accounts: &accounts,
            domain: "localhost",
            tls_exporter: None,
            plus_advertised: false,
            entropy: &session::SystemEntropy,
        };
        h.connect();
        h.sent();
        h.feed(HEADER).unwrap();
        h.feed(&mechanisms(&["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]))
            .unwrap();
        let auth = h.sent();
        let payload = |element: &str| {
            let text = &element[element.find('>').unwrap() + 1..element.rfind('<').unwrap()];
            sasl::decode_payload(text.as_bytes()).unwrap()
        };
        assert!(
            auth.contains(&format!("mechanism='{}'", mechanism.name())),
            "{auth}"
        );
        let (mut exchange, step) = ServerExchange::start(mechanism, Some(&payload(&auth)), &server);
        let Step::Challenge(first) = step else {
            panic!("{step:?}")
        };
        h.feed(&format!(
            "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
            sasl::encode_payload(&first)
        ))
        .unwrap();
        let response = h.sent();
        let Step::Success {
            additional_data, ..
        } = exchange.step(&payload(&response), &server)
        else {
            panic!()
        };
        h.feed(&format!(
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</success>",
            sasl::encode_payload(&additional_data)
        ))
        .unwrap();
        h.bind();
        assert_eq!(h.cache.derivations(), 1);
    }
}

#[test]
fn a_forged_server_signature_fails_the_login() {
    let mut h = Harness::new(TlsMode::None, Mechanism::ScramSha256, 1);
    h.connect();
    h.sent();
    h.feed(HEADER).unwrap();
    h.feed(&mechanisms(&["SCRAM-SHA-256"])).unwrap();
    let auth = h.sent();
    let start = auth.find('>').unwrap() + 1;
    let first = sasl::decode_payload(&auth.as_bytes()[start..auth.rfind('<').unwrap()]).unwrap();
    let nonce = String::from_utf8(first)
        .unwrap()
        .rsplit("r=")
        .next()
        .unwrap()
        .to_owned();
    let server_first = format!("r={nonce}xyz,s={},i=4096", sasl::encode_payload(b"salt"));
    h.feed(&format!(
        "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</challenge>",
        sasl::encode_payload(server_first.as_bytes())
    ))
    .unwrap();
    h.sent();
    let forged = sasl::encode_payload(format!("v={}", sasl::encode_payload(&[0; 32])).as_bytes());
    let failure = h
        .feed(&format!(
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{forged}</success>"
        ))
        .unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Auth);
    assert!(failure.detail.contains("signature"), "{}", failure.detail);
}

#[test]
fn wrong_password_is_a_clear_auth_failure() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.connect();
    h.feed(HEADER).unwrap();
    h.feed(&mechanisms(&["PLAIN"])).unwrap();
    let failure = h
        .feed("<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>bad</text></failure>")
        .unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Auth);
    assert_eq!(
        failure.detail,
        "authentication failed for user1@localhost with PLAIN: not-authorized"
    );
}

#[test]
fn missing_mechanism_names_the_offered_ones() {
    let mut h = Harness::new(TlsMode::None, Mechanism::ScramSha256, 1);
    h.connect();
    h.feed(HEADER).unwrap();
    let failure = h.feed(&mechanisms(&["SCRAM-SHA-1", "PLAIN"])).unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Auth);
    assert!(
        failure.detail.contains("offers: SCRAM-SHA-1, PLAIN"),
        "{}",
        failure.detail
    );
}

#[test]
fn starttls_is_negotiated_before_sasl() {
    let mut h = Harness::new(TlsMode::Starttls, Mechanism::Plain, 1);
    h.connect();
    h.sent();
    h.feed(HEADER).unwrap();
    let offer = features(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
         <mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>",
    );
    assert_eq!(h.feed(&offer).unwrap(), Action::Continue);
    assert_eq!(
        h.sent(),
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
    );
    assert_eq!(
        h.feed("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .unwrap(),
        Action::StartTls
    );
    assert_eq!(h.client.state(), State::TlsHandshake);
    h.now += 5000;
    let (client, mut ctx) = h.ctx();
    client.tls_established(&mut ctx, None);
    assert!(h.sent().contains("<stream:stream"));
    h.feed(HEADER).unwrap();
    h.feed(&mechanisms(&["PLAIN"])).unwrap();
    assert!(h.sent().starts_with("<auth "));
    assert_eq!(h.sample().histos.get(Metric::Tls).len(), 1);

    let mut h = Harness::new(TlsMode::Starttls, Mechanism::Plain, 1);
    h.connect();
    h.feed(HEADER).unwrap();
    let failure = h.feed(&mechanisms(&["PLAIN"])).unwrap_err();
    assert_eq!(failure.kind, ErrorKind::Tls);
}

#[test]
fn input_split_anywhere_gives_the_same_login() {
    let script = [
        HEADER.to_owned(),
        mechanisms(&["PLAIN"]),
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".into(),
    ];
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.connect();
    for part in &script {
        for byte in part.as_bytes().chunks(1) {
            h.feed(std::str::from_utf8(byte).unwrap()).unwrap();
        }
    }
    h.bind();
}

#[test]
fn replies_are_verified_against_the_own_address() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 4);
    h.login_plain();
    h.sample();
    h.now = 10 * SECOND;
    let intended = h.now - 1000;
    h.send(RequestKind::Sic1Address, intended);
    h.send(RequestKind::Sic0Ip, intended);
    h.send(RequestKind::Sic0Address, intended);
    h.send(RequestKind::DiscoInfo, intended);
    assert_eq!(h.client.free_slots(&h.profile), 0);
    let sent = h.sent();
    assert!(
        sent.starts_with(
            "<iq type='get' id='1'><address xmlns='urn:xmpp:sic:1'/></iq><iq type='get' id='2'>"
        ),
        "{sent}"
    );
    assert!(sent.contains("<iq type='get' id='4' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"));
    h.now += 50_000;
    // Out of order, and the sic:0 address form with the port.
    h.feed(
        "<iq type='result' id='2' to='user1@localhost/r1'><ip xmlns='urn:xmpp:sic:0'>127.0.0.7</ip></iq>\
         <iq type='result' id='1'><address xmlns='urn:xmpp:sic:1'><ip>127.0.0.7</ip><port>40001</port></address></iq>\
         <iq type='result' id='4' from='localhost'><query xmlns='http://jabber.org/protocol/disco#info'>\
         <identity category='server' type='im'/><feature var='urn:xmpp:sic:1'/></query></iq>\
         <iq type='result' id='3'><address xmlns='urn:xmpp:sic:0'><ip>127.0.0.7</ip><port>40001</port></address></iq>",
    )
    .unwrap();
    let sample = h.sample();
    assert_eq!(sample.counters.replies_ok, 4);
    assert_eq!(sample.counters.total_errors(), 0, "{:?}", sample.examples);
    let requests = sample.histos.get(Metric::Requests);
    assert_eq!(requests.len(), 4);
    // Latency counts from the intended time, service time from the actual send.
    assert!(requests.equivalent(requests.max(), 51_000));
    assert!(
        sample
            .histos
            .get(Metric::Service)
            .equivalent(sample.histos.get(Metric::Service).max(), 50_000)
    );
    assert_eq!(sample.histos.get(Metric::SendLag).len(), 4);

    h.send(RequestKind::Sic1Address, h.now);
    h.send(RequestKind::Sic0Ip, h.now);
    h.send(RequestKind::Ping, h.now);
    h.send(RequestKind::DiscoInfo, h.now);
    h.feed(
        "<iq type='result' id='5'><address xmlns='urn:xmpp:sic:1'><ip>127.0.0.7</ip><port>1</port></address></iq>\
         <iq type='result' id='6'><ip xmlns='urn:xmpp:sic:0'>10.0.0.1</ip></iq>\
         <iq type='error' id='7'><ping xmlns='urn:xmpp:ping'/><error type='cancel'>\
         <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>\
         <iq type='result' id='8'/>",
    )
    .unwrap();
    let sample = h.sample();
    assert_eq!(sample.counters.replies_ok, 0);
    assert_eq!(sample.counters.error(ErrorKind::WrongReply), 3);
    assert_eq!(sample.counters.error(ErrorKind::ErrorReply), 1);
    let examples: Vec<&str> = sample.examples.iter().map(|(_, d)| d.as_str()).collect();
    assert!(
        examples
            .iter()
            .any(|d| d.contains("port 1, but ours is 40001")),
        "{examples:?}"
    );
    assert!(
        examples.iter().any(|d| d.contains("service-unavailable")),
        "{examples:?}"
    );
    assert_eq!(h.client.free_slots(&h.profile), 4);
}

#[test]
fn requests_and_login_steps_time_out() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 2);
    h.login_plain();
    h.sample();
    h.now = 100 * SECOND;
    h.send(RequestKind::Ping, h.now);
    h.now += SECOND;
    h.send(RequestKind::Ping, h.now);
    let (client, mut ctx) = h.ctx();
    assert_eq!(client.check_timeouts(&mut ctx), Ok(Some(110 * SECOND)));
    h.now = 110 * SECOND;
    let (client, mut ctx) = h.ctx();
    assert_eq!(client.check_timeouts(&mut ctx), Ok(Some(111 * SECOND)));
    assert_eq!(h.client.outstanding(), 1);
    // The late reply is not a second error.
    h.feed("<iq type='result' id='1'/>").unwrap();
    let sample = h.sample();
    assert_eq!(sample.counters.error(ErrorKind::RequestTimeout), 1);
    assert_eq!(sample.counters.late_replies, 1);

    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.connect();
    h.now = 10 * SECOND;
    let (client, mut ctx) = h.ctx();
    let failure = client.check_timeouts(&mut ctx).unwrap_err();
    assert_eq!(failure.kind, ErrorKind::LoginTimeout);
    assert!(
        failure.detail.contains("stream header"),
        "{}",
        failure.detail
    );
}

#[test]
fn server_pings_are_answered_and_stream_errors_end_the_session() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.login_plain();
    h.feed("<iq type='get' id='p&amp;1' from='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .unwrap();
    assert_eq!(h.sent(), "<iq type='result' id='p&amp;1' to='localhost'/>");
    h.send(RequestKind::Ping, h.now);
    let failure = h
        .feed("<stream:error><system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>")
        .unwrap_err();
    assert_eq!(failure.kind, ErrorKind::SessionLost);
    assert!(failure.detail.contains("system-shutdown"));
    let (client, mut ctx) = h.ctx();
    client.abandon(&mut ctx);
    assert_eq!(h.sample().counters.error(ErrorKind::SessionLost), 1);
}

#[test]
fn closing_waits_for_the_server_to_close() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.login_plain();
    let (client, mut ctx) = h.ctx();
    client.close(&mut ctx);
    assert_eq!(h.sent(), "</stream:stream>");
    assert_eq!(h.feed("</stream:stream>").unwrap(), Action::Close);
}

#[test]
fn legacy_session_is_established_when_required() {
    let mut h = Harness::new(TlsMode::None, Mechanism::Plain, 1);
    h.connect();
    h.feed(HEADER).unwrap();
    h.feed(&mechanisms(&["PLAIN"])).unwrap();
    h.feed("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
        .unwrap();
    h.feed(HEADER).unwrap();
    h.feed(&features(
        "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
    ))
    .unwrap();
    h.feed(BIND_RESULT).unwrap();
    assert!(h.sent().ends_with(
        "<iq type='set' id='0'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
    ));
    assert!(!h.client.is_ready());
    h.feed("<iq type='result' id='0'/>").unwrap();
    assert!(h.client.is_ready());
}

#[test]
fn proxy_header_comes_first_and_sic_must_report_its_source() {
    use crate::proxy_plan::{ProxyPlan, Sources, Version};
    for tls in [TlsMode::None, TlsMode::Direct] {
        let mut h = Harness::new(tls, Mechanism::Plain, 1);
        h.profile.proxy = Some(ProxyPlan {
            version: Version::V1,
            sources: Sources::parse("198.51.100.9", "4000").unwrap(),
            destination: "127.0.0.1:5222".parse().unwrap(),
        });
        assert_eq!(h.connect(), Action::Continue);
        assert_eq!(h.client.state(), State::Proxy);
        assert_eq!(h.sent(), "PROXY TCP4 198.51.100.9 127.0.0.1 4000 5222\r\n");
        h.now += 2000;
        let (client, mut ctx) = h.ctx();
        let action = client.proxy_sent(&mut ctx);
        let proxy = h.sample().histos.get(Metric::Proxy).clone();
        assert_eq!(proxy.len(), 1);
        assert!(proxy.equivalent(proxy.max(), 2000));
        if tls == TlsMode::Direct {
            // The ClientHello follows the header: nothing of the stream yet.
            assert_eq!(action, Action::StartTls);
            assert_eq!(h.client.state(), State::TlsHandshake);
            assert_eq!(h.sent(), "");
            continue;
        }
        assert_eq!(action, Action::Continue);
        assert!(h.sent().starts_with("<?xml"));
        h.feed(HEADER).unwrap();
        h.feed(&mechanisms(&["PLAIN"])).unwrap();
        h.sent();
        h.feed("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
            .unwrap();
        h.bind();
        h.send(RequestKind::Sic1Address, h.now);
        // The socket's own address (h.local) is now the wrong answer.
        h.feed(
            "<iq type='result' id='1'><address xmlns='urn:xmpp:sic:1'><ip>198.51.100.9</ip><port>4000</port></address></iq>",
        )
        .unwrap();
        h.send(RequestKind::Sic1Address, h.now);
        h.feed(
            "<iq type='result' id='2'><address xmlns='urn:xmpp:sic:1'><ip>127.0.0.7</ip><port>40001</port></address></iq>",
        )
        .unwrap();
        let sample = h.sample();
        assert_eq!(sample.counters.replies_ok, 1);
        assert_eq!(sample.counters.error(ErrorKind::WrongReply), 1);
        assert!(sample.examples[0].1.contains("ours is 198.51.100.9"));
    }
}
