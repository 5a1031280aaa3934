//! The counts a connection reports for metrics: stanzas by kind, IQ answers by kind and
//! SASL outcomes by mechanism, drained with `take_counts`.

use session::sasl::Mechanism;
use session::{AnswerKind, Cause, Config, Counts, SaslOutcome, StanzaKind, StreamCondition};

use crate::client::{Client, PASSWORD, SASL_NS, TLS13};

fn stanzas(counts: &Counts) -> Vec<(StanzaKind, u32)> {
    counts.stanzas().collect()
}

fn answers(counts: &Counts) -> Vec<(AnswerKind, u32)> {
    counts.answers().collect()
}

fn sasl(counts: &Counts) -> Vec<(Option<Mechanism>, SaslOutcome, u32)> {
    counts.sasl().collect()
}

#[test]
fn login_counts_starttls_sasl_and_bind() {
    let mut client = Client::new();
    client.open();
    client.starttls(TLS13);
    let counts = client.conn.take_counts();
    assert_eq!(stanzas(&counts), [(StanzaKind::StartTls, 1)]);
    assert!(client.conn.take_counts().is_empty(), "taking resets");

    client.open();
    client
        .auth_scram(Mechanism::ScramSha256Plus, "alice", PASSWORD)
        .expect("authenticated");
    let counts = client.conn.take_counts();
    assert_eq!(stanzas(&counts), [(StanzaKind::Sasl, 2)]);
    assert_eq!(
        sasl(&counts),
        [(Some(Mechanism::ScramSha256Plus), SaslOutcome::Success, 1)]
    );
    assert_eq!(counts.answered(), 0);

    client.open();
    client.bind(Some("desk"));
    let counts = client.conn.take_counts();
    assert_eq!(stanzas(&counts), [(StanzaKind::Iq, 1)]);
    assert_eq!(answers(&counts), [(AnswerKind::Bind, 1)]);
    assert_eq!(counts.answered(), 1);
}

#[test]
fn every_answer_kind_is_counted() {
    let mut client = Client::new();
    let jid = client.login();
    client.conn.take_counts();
    let requests = [
        (
            "get",
            None,
            "<ip xmlns='urn:xmpp:sic:0'/>",
            AnswerKind::Sic0Ip,
        ),
        (
            "get",
            None,
            "<address xmlns='urn:xmpp:sic:0'/>",
            AnswerKind::Sic0Address,
        ),
        (
            "get",
            None,
            "<address xmlns='urn:xmpp:sic:1'/>",
            AnswerKind::Sic1Address,
        ),
        (
            "get",
            Some("bob@localhost"),
            "<address xmlns='urn:xmpp:sic:1'/>",
            AnswerKind::SicForbidden,
        ),
        (
            "get",
            None,
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            AnswerKind::DiscoInfo,
        ),
        (
            "get",
            Some(jid.split('/').next().unwrap_or_default()),
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            AnswerKind::DiscoInfo,
        ),
        (
            "get",
            None,
            "<query xmlns='http://jabber.org/protocol/disco#items'/>",
            AnswerKind::DiscoItems,
        ),
        (
            "get",
            None,
            "<ping xmlns='urn:xmpp:ping'/>",
            AnswerKind::Ping,
        ),
        (
            "set",
            None,
            "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'/>",
            AnswerKind::Session,
        ),
        (
            "set",
            None,
            "<ping xmlns='urn:xmpp:ping'/>",
            AnswerKind::Error,
        ),
        (
            "get",
            None,
            "<unknown xmlns='urn:example'/>",
            AnswerKind::Error,
        ),
    ];
    for (kind, to, payload, expected) in requests {
        client.iq(kind, to, payload);
        let counts = client.conn.take_counts();
        assert_eq!(answers(&counts), [(expected, 1)], "{payload} to {to:?}");
        assert_eq!(stanzas(&counts), [(StanzaKind::Iq, 1)]);
    }
}

/// Several stanzas in one read are counted together; results from the client are
/// received but not answered.
#[test]
fn pipelined_stanzas_add_up() {
    let mut client = Client::new();
    client.login();
    client.conn.take_counts();
    client.send(
        "<iq type='get' id='a'><ping xmlns='urn:xmpp:ping'/></iq>\
         <iq type='get' id='b'><ping xmlns='urn:xmpp:ping'/></iq>\
         <iq type='get' id='c'><ip xmlns='urn:xmpp:sic:0'/></iq>\
         <iq type='result' id='d'/>\
         <presence/><message to='bob@localhost'><body>hi</body></message>",
    );
    let counts = client.conn.take_counts();
    assert_eq!(
        stanzas(&counts),
        [
            (StanzaKind::Iq, 4),
            (StanzaKind::Message, 1),
            (StanzaKind::Presence, 1)
        ]
    );
    assert_eq!(
        answers(&counts),
        [(AnswerKind::Sic0Ip, 1), (AnswerKind::Ping, 2)]
    );
    assert_eq!(counts.answered(), 3);
}

#[test]
fn sasl_failures_by_mechanism_and_outcome() {
    let config = Config {
        max_auth_failures: 10,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.open();
    client.starttls(TLS13);
    client.open();
    client.conn.take_counts();

    assert_eq!(
        client.auth_plain("alice", "wrong"),
        Err("not-authorized".to_owned())
    );
    assert_eq!(
        client.auth_scram(Mechanism::ScramSha1, "alice", "wrong"),
        Err("not-authorized".to_owned())
    );
    client.send(&format!("<auth xmlns='{SASL_NS}' mechanism='X-UNKNOWN'/>"));
    assert_eq!(client.sasl_reply(), Err("invalid-mechanism".to_owned()));
    client.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'/>"
    ));
    assert_eq!(
        client.sasl_reply().map(|e| e.name),
        Ok("challenge".to_owned())
    );
    client.send(&format!("<abort xmlns='{SASL_NS}'/>"));
    assert_eq!(client.sasl_reply(), Err("aborted".to_owned()));
    client.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>not base64!</auth>"
    ));
    assert_eq!(client.sasl_reply(), Err("incorrect-encoding".to_owned()));

    let counts = client.conn.take_counts();
    assert_eq!(
        sasl(&counts),
        [
            (Some(Mechanism::ScramSha256), SaslOutcome::Aborted, 1),
            (Some(Mechanism::ScramSha1), SaslOutcome::NotAuthorized, 1),
            (Some(Mechanism::Plain), SaslOutcome::NotAuthorized, 1),
            (Some(Mechanism::Plain), SaslOutcome::ProtocolError, 1),
            (None, SaslOutcome::ProtocolError, 1),
        ]
    );
    assert_eq!(stanzas(&counts), [(StanzaKind::Sasl, 7)]);

    client
        .auth_plain("alice", PASSWORD)
        .expect("authenticated at last");
    let counts = client.conn.take_counts();
    assert_eq!(
        sasl(&counts),
        [(Some(Mechanism::Plain), SaslOutcome::Success, 1)]
    );
}

/// Elements refused before authentication are still counted as received, and the stream
/// error they cause names a condition the edge can count.
#[test]
fn refused_stanzas_are_counted() {
    let mut client = Client::new();
    client.open();
    client.conn.take_counts();
    client.send("<iq type='get' id='x'><ping xmlns='urn:xmpp:ping'/></iq>");
    let condition = client.stream_error();
    let counts = client.conn.take_counts();
    assert_eq!(stanzas(&counts), [(StanzaKind::Iq, 1)]);
    assert_eq!(counts.answered(), 0);
    assert_eq!(condition, StreamCondition::NotAuthorized.as_str());
    assert_eq!(client.closed_by, Some(Cause::NotAuthenticated));
}
