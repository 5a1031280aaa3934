//! Stream negotiation: headers, STARTTLS, features, restarts and closing.

use std::time::Duration;

use session::sasl::Mechanism;
use session::{Cause, CloseReason, Config, Event, HeaderError, ListenerKind, Violation};

use crate::client::{Client, DOMAIN, Item, PASSWORD, TLS12, TLS13, v4_client};

fn mechanisms(features: &crate::client::Element) -> Vec<String> {
    features
        .child("mechanisms")
        .map(|m| m.children.iter().map(|c| c.text.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn header_and_starttls_required() {
    let mut client = Client::new();
    let (header, features) = client.open();
    assert_eq!(header.name, "stream");
    assert_eq!(header.ns, "http://etherx.jabber.org/streams");
    assert_eq!(header.attr("from"), Some(DOMAIN));
    assert_eq!(header.attr("version"), Some("1.0"));
    assert_eq!(header.attr("xml:lang"), Some("en"));
    assert_eq!(header.attr("xmlns"), Some("jabber:client"));
    let id = header.attr("id").expect("stream id");
    assert_eq!(id.len(), 16);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    let starttls = features.only_child();
    assert_eq!(
        (starttls.name.as_str(), starttls.ns.as_str()),
        ("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
    );
    assert!(starttls.child("required").is_some());
    assert!(
        mechanisms(&features).is_empty(),
        "no SASL before TLS when TLS is required"
    );
}

#[test]
fn header_echoes_client_from_as_to() {
    let mut client = Client::new();
    client.send(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='LocalHost' from='alice@localhost' version='1.0'>",
    );
    let Item::Header(header) = client.item() else {
        panic!("no header")
    };
    assert_eq!(header.attr("to"), Some("alice@localhost"));
    assert_eq!(header.attr("from"), Some(DOMAIN));
}

#[test]
fn starttls_then_mechanisms_over_tls13() {
    let mut client = Client::new();
    let (first, _) = client.open();
    client.starttls(TLS13);
    let (second, features) = client.open();
    assert_ne!(
        first.attr("id"),
        second.attr("id"),
        "a fresh stream id per stream"
    );
    assert!(features.child("starttls").is_none());
    assert_eq!(
        mechanisms(&features),
        [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );
}

#[test]
fn no_plus_over_tls12() {
    let mut client = Client::new();
    client.open();
    client.starttls(TLS12);
    let (_, features) = client.open();
    assert_eq!(
        mechanisms(&features),
        ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]
    );
}

#[test]
fn direct_tls_offers_sasl_at_once() {
    let mut client = Client::with(
        Config::default(),
        ListenerKind::DirectTls,
        Some(TLS13),
        v4_client(),
    );
    let (_, features) = client.open();
    assert!(features.child("starttls").is_none());
    assert_eq!(mechanisms(&features).len(), 5);
}

#[test]
fn optional_tls_offers_scram_but_not_plain_in_plaintext() {
    let mut client = Client::with_config(Config {
        require_tls: false,
        ..Config::default()
    });
    let (_, features) = client.open();
    let starttls = features.child("starttls").expect("starttls offered");
    assert!(starttls.children.is_empty(), "not required");
    assert_eq!(mechanisms(&features), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
}

#[test]
fn no_starttls_without_certificate() {
    let mut client = Client::with_config(Config {
        require_tls: false,
        tls_available: false,
        ..Config::default()
    });
    let (_, features) = client.open();
    assert!(features.child("starttls").is_none());
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(
        client.closed_by,
        Some(Cause::Violation(Violation::StartTlsNotOffered))
    );
}

#[test]
fn host_unknown() {
    let mut client = Client::new();
    client.send(&Client::header("example.org"));
    assert_eq!(client.header_then_stream_error(), "host-unknown");
    assert_eq!(
        client.closed_by,
        Some(Cause::Header(HeaderError::HostUnknown))
    );
}

#[test]
fn missing_to_is_host_unknown() {
    let mut client = Client::new();
    client.send(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         version='1.0'>",
    );
    assert_eq!(client.header_then_stream_error(), "host-unknown");
    assert_eq!(
        client.closed_by,
        Some(Cause::Header(HeaderError::HostUnknown))
    );
}

#[test]
fn restart_must_name_the_same_domain() {
    let config = Config {
        domains: vec![DOMAIN.into(), "other.example".into()],
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.open();
    client.starttls(TLS13);
    client.send(&Client::header("other.example"));
    assert_eq!(client.header_then_stream_error(), "host-unknown");
    assert_eq!(
        client.closed_by,
        Some(Cause::Header(HeaderError::HostUnknown))
    );
}

#[test]
fn unsupported_version() {
    for version in [" version='2.0'", " version='0.9'", ""] {
        let mut client = Client::new();
        client.send(&format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             to='localhost'{version}>"
        ));
        assert_eq!(
            client.header_then_stream_error(),
            "unsupported-version",
            "{version:?}"
        );
        assert_eq!(client.closed_by, Some(Cause::Header(HeaderError::Version)));
    }
}

#[test]
fn invalid_namespace() {
    for (header, error) in [
        // Wrong stream namespace (RFC 6120 4.8.1).
        (
            "<stream:stream xmlns='jabber:client' xmlns:stream='urn:wrong' to='localhost' \
             version='1.0'>",
            HeaderError::StreamNamespace,
        ),
        // Wrong content namespace (4.8.2, 4.9.3.10).
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
             to='localhost' version='1.0'>",
            HeaderError::ContentNamespace,
        ),
        // No content namespace.
        (
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='localhost' \
             version='1.0'>",
            HeaderError::ContentNamespace,
        ),
    ] {
        let mut client = Client::new();
        client.send(header);
        assert_eq!(
            client.header_then_stream_error(),
            "invalid-namespace",
            "{header}"
        );
        assert_eq!(client.closed_by, Some(Cause::Header(error)), "{header}");
    }
}

/// The stream namespace is right, but its schema has no `feed` root: RFC 6120 4.9.3.11.
#[test]
fn root_not_named_stream_is_invalid_xml() {
    let mut client = Client::new();
    client.send(
        "<stream:feed xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='localhost' version='1.0'>",
    );
    assert_eq!(client.header_then_stream_error(), "invalid-xml");
    assert_eq!(
        client.closed_by,
        Some(Cause::Header(HeaderError::NotStream))
    );
}

#[test]
fn tokenizer_errors_become_stream_errors() {
    for (input, condition) in [
        ("<!-- comment -->", "restricted-xml"),
        ("<iq type='get' id='1'></message>", "not-well-formed"),
    ] {
        let mut client = Client::new();
        client.open();
        client.send(input);
        assert_eq!(client.stream_error(), condition, "{input}");
    }
}

#[test]
fn bytes_after_starttls_are_refused() {
    let mut client = Client::new();
    client.open();
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><iq type='get' id='x'/>");
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(
        client.closed_by,
        Some(Cause::Violation(Violation::DataAfterStartTls))
    );
    assert!(!client.take_raw().contains("proceed"));
}

#[test]
fn bytes_before_tls_handshake_close_silently() {
    let mut client = Client::new();
    client.open();
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(client.element().name, "proceed");
    assert_eq!(client.event(), Some(Event::StartTls));
    client.take_raw();
    client.send(" ");
    assert_eq!(
        client.take_raw(),
        "",
        "nothing in plaintext once TLS is underway"
    );
    assert!(matches!(
        client.event(),
        Some(Event::Close(CloseReason::StreamError(Cause::Violation(
            Violation::DataBeforeTls
        ))))
    ));
    client.conn.tls_established(TLS13);
    client.send(&Client::header(DOMAIN));
    assert_eq!(client.take_raw(), "", "a closed connection stays closed");
}

#[test]
fn starttls_twice_is_refused() {
    let mut client = Client::new();
    client.open();
    client.starttls(TLS13);
    client.open();
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(
        client.closed_by,
        Some(Cause::Violation(Violation::StartTlsNotOffered))
    );
}

#[test]
fn closing_handshake() {
    let mut client = Client::new();
    client.login();
    client.take_raw();
    client.send("</stream:stream>");
    assert_eq!(client.take_raw(), "</stream:stream>");
    assert_eq!(
        client.event(),
        Some(Event::Close(CloseReason::ClientClosed))
    );
    assert_eq!(client.conn.poll_timeout(), None);
}

#[test]
fn peer_closed() {
    let mut client = Client::new();
    client.login();
    // A request and a half-close in one go: the answer is still there to write.
    client.send_unread("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>");
    client.conn.peer_closed();
    client.pump();
    assert_eq!(client.element().attr("type"), Some("result"));
    assert_eq!(
        client.event(),
        Some(Event::Close(CloseReason::ClientClosed))
    );
    client.send("<iq type='get' id='2'><ping xmlns='urn:xmpp:ping'/></iq>");
    assert!(client.no_items(), "nothing is read after the close");
    client.conn.peer_closed();
    client.pump();
    assert_eq!(client.event(), None, "closed once");
}

#[test]
fn replaced_sends_conflict() {
    let mut client = Client::new();
    client.login();
    client.conn.replaced();
    client.pump();
    assert_eq!(client.stream_error(), "conflict");
    assert_eq!(client.closed_by, Some(Cause::Replaced));
}

#[test]
fn shutdown_sends_system_shutdown() {
    let mut client = Client::new();
    client.login();
    client.conn.shutdown();
    client.pump();
    assert_eq!(client.stream_error(), "system-shutdown");
    assert_eq!(client.closed_by, Some(Cause::Shutdown));
}

#[test]
fn shutdown_before_header_opens_the_stream_first() {
    let mut client = Client::new();
    client.conn.shutdown();
    client.pump();
    assert_eq!(client.header_then_stream_error(), "system-shutdown");
}

#[test]
fn stanzas_before_auth_are_not_authorized() {
    for stanza in [
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<message to='bob@localhost'><body>hi</body></message>",
        "<presence/>",
    ] {
        let mut client = Client::new();
        client.open();
        client.send(stanza);
        assert_eq!(client.stream_error(), "not-authorized", "{stanza}");
        assert_eq!(client.closed_by, Some(Cause::NotAuthenticated), "{stanza}");
    }
}

#[test]
fn stanzas_before_bind_are_not_authorized() {
    let mut client = Client::new();
    client.open();
    client.starttls(TLS13);
    client.open();
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD)
        .expect("auth");
    client.open();
    client.send("<iq type='get' id='1'><ip xmlns='urn:xmpp:sic:0'/></iq>");
    assert_eq!(client.stream_error(), "not-authorized");
    assert_eq!(client.closed_by, Some(Cause::NotBound));
}

#[test]
fn unsupported_stanza_type() {
    let mut client = Client::new();
    client.login();
    client.send("<enable xmlns='urn:xmpp:sm:3'/>");
    assert_eq!(client.stream_error(), "unsupported-stanza-type");
    assert_eq!(client.closed_by, Some(Cause::UnsupportedStanza));
}

#[test]
fn whole_session_one_byte_at_a_time() {
    let mut client = Client::new();
    let header = Client::header(DOMAIN);
    for byte in header.bytes() {
        client.send_bytes(&[byte]);
    }
    let Item::Header(_) = client.item() else {
        panic!("no header")
    };
    client.element();
    for byte in b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" {
        client.send_bytes(&[*byte]);
    }
    assert_eq!(client.element().name, "proceed");
    assert_eq!(client.event(), Some(Event::StartTls));
    client.conn.tls_established(TLS13);
    client.open();
    client.auth_plain("alice", PASSWORD).expect("auth");
    client.open();
    client.bind(Some("r"));
    let request = "<iq type='get' id='sic'><address xmlns='urn:xmpp:sic:1'/></iq>";
    for byte in request.bytes() {
        client.send_bytes(&[byte]);
    }
    let reply = client.element();
    assert_eq!(
        reply.only_child().child("port").map(|p| p.text.as_str()),
        Some("40001")
    );
}

#[test]
fn new_header_pipelined_after_sasl_success() {
    let mut client = Client::new();
    client.open();
    client.starttls(TLS13);
    client.open();
    let plain = session::sasl::plain_client_response(None, "alice", PASSWORD);
    client.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>{}",
        session::sasl::encode_payload(&plain),
        Client::header(DOMAIN)
    ));
    assert_eq!(client.element().name, "success");
    let Item::Header(_) = client.item() else {
        panic!("no header after restart")
    };
    let features = client.element();
    assert!(features.child("bind").is_some());
    assert!(
        features
            .child("session")
            .and_then(|s| s.child("optional"))
            .is_some()
    );
}

#[test]
fn timeouts_are_reported_for_the_tls_phase_too() {
    let mut client = Client::new();
    client.open();
    client.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    client.element();
    client.event();
    client.take_raw();
    client.advance(Duration::from_secs(31));
    client.fire_timer();
    assert_eq!(client.take_raw(), "");
    assert!(matches!(
        client.event(),
        Some(Event::Close(CloseReason::StreamError(
            Cause::NegotiationTimeout
        )))
    ));
}

/// Randomness enters through the config: with a seeded source the stream ids and the
/// server-chosen resource repeat exactly, and another seed changes them.
#[test]
fn seeded_entropy_makes_the_session_reproducible() {
    let run = |seed| {
        let config = Config {
            entropy: std::sync::Arc::new(session::SeededEntropy::new(seed)),
            ..Config::default()
        };
        let mut client = Client::with(config, ListenerKind::DirectTls, Some(TLS13), v4_client());
        let (header, _) = client.open();
        client.auth_plain("alice", PASSWORD).expect("authenticated");
        let (restarted, _) = client.open();
        let jid = client.bind(None);
        (
            header.attr("id").map(str::to_owned),
            restarted.attr("id").map(str::to_owned),
            jid,
        )
    };
    let first = run(7);
    assert_eq!(first, run(7));
    assert_ne!(first.0, first.1, "each header gets a fresh id");
    let other = run(8);
    assert_ne!((&first.0, &first.2), (&other.0, &other.2));
}
