//! The in-process server over real sockets: full logins, SIC, disco, ping, direct TLS,
//! conflicts and the connection limits.

mod common;

use std::time::Duration;

use common::{Client, Fixture, PASSWORD, Running, eventually};
use edge::config::ListenerKind;
use session::sasl::ScramHash;

/// STARTTLS, SCRAM-SHA-256, bind, the three SIC forms, disco and ping, over IPv4 and IPv6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_login_sic_disco_ping() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    let connector = fixture.tls(false);
    for v6 in [false, true] {
        let mut client = Client::connect(server.addr(ListenerKind::Starttls, v6)).await;
        let features = client.starttls(&connector).await;
        assert!(
            features.texts("mechanism").contains(&"SCRAM-SHA-256"),
            "{features}"
        );
        let features = client
            .scram("alice", PASSWORD, ScramHash::Sha256, false)
            .await;
        assert!(
            features
                .child("bind")
                .is_some_and(|bind| bind.namespace == "urn:ietf:params:xml:ns:xmpp-bind"),
            "{features}"
        );
        let jid = client.bind("laptop").await;
        assert_eq!(jid, "alice@localhost/laptop");

        let ip = client.local.ip().to_string();
        let port = client.local.port().to_string();
        let answer = client
            .iq_get("sic0ip", "<ip xmlns='urn:xmpp:sic:0'/>")
            .await;
        assert_eq!(answer.texts("ip"), [ip.as_str()], "{answer}");
        let answer = client
            .iq_get("sic0addr", "<address xmlns='urn:xmpp:sic:0'/>")
            .await;
        assert_eq!(answer.texts("ip"), [ip.as_str()], "{answer}");
        let answer = client
            .iq_get("sic1", "<address xmlns='urn:xmpp:sic:1'/>")
            .await;
        assert_eq!(answer.texts("ip"), [ip.as_str()], "{answer}");
        assert_eq!(answer.texts("port"), [port.as_str()], "{answer}");

        let disco = client
            .iq_get(
                "disco",
                "<query xmlns='http://jabber.org/protocol/disco#info'/>",
            )
            .await;
        let features: Vec<&str> = disco
            .all("feature")
            .into_iter()
            .filter_map(|f| f.attr("var"))
            .collect();
        for feature in ["urn:xmpp:sic:1", "urn:xmpp:ping"] {
            assert!(features.contains(&feature), "{disco}");
        }
        client.ping("ping1").await;
        client.send("</stream:stream>").await;
        client.expect_closed(common::STEP_TIMEOUT).await;
    }
    eventually("connections to close", || server.connections_active() == 0).await;
    let scrape = server.scrape();
    assert_eq!(
        scrape.sum("xmpp_edge_sasl_total", &[("outcome", "success")]),
        2
    );
    assert_eq!(
        scrape.sum(
            "xmpp_edge_connections_closed_total",
            &[("reason", "client_closed")]
        ),
        2
    );
    server.stop().await;
}

/// Direct TLS (XEP-0368) with ALPN, SCRAM-SHA-1 and SCRAM-SHA-256-PLUS (tls-exporter).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_with_alpn_and_channel_binding() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    for v6 in [false, true] {
        let addr = server.addr(ListenerKind::DirectTls, v6);
        let mut client = Client::connect_tls(addr, &fixture.tls(true)).await;
        assert_eq!(client.alpn.as_deref(), Some(&b"xmpp-client"[..]));
        let features = client.open_stream().await;
        assert!(features.child("starttls").is_none(), "{features}");
        assert!(
            features.texts("mechanism").contains(&"SCRAM-SHA-256-PLUS"),
            "{features}"
        );
        client.scram("bob", PASSWORD, ScramHash::Sha256, true).await;
        assert_eq!(client.bind("phone").await, "bob@localhost/phone");
        let answer = client
            .iq_get("sic1", "<address xmlns='urn:xmpp:sic:1'/>")
            .await;
        assert_eq!(
            answer.texts("port"),
            [client.local.port().to_string().as_str()],
            "{answer}"
        );
    }
    // Clients that send no ALPN are served too.
    let mut client = Client::connect_tls(
        server.addr(ListenerKind::DirectTls, false),
        &fixture.tls(false),
    )
    .await;
    assert_eq!(client.alpn, None);
    client.open_stream().await;
    client
        .scram("alice", PASSWORD, ScramHash::Sha1, false)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    let mut client = Client::connect_tls(
        server.addr(ListenerKind::DirectTls, false),
        &fixture.tls(true),
    )
    .await;
    client.open_stream().await;
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            session::sasl::encode_payload(b"\0alice\0wrong")
        ))
        .await;
    let failure = client.expect("failure").await;
    assert_eq!(failure.condition(), Some("not-authorized"), "{failure}");
    server.stop().await;
}

/// Binding a full JID that another connection holds replaces the older session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebinding_a_resource_replaces_the_older_session() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    let addr = server.addr(ListenerKind::Starttls, false);
    let connector = fixture.tls(false);
    let mut first = Client::login(addr, &connector, "alice", "desk").await;
    let mut second = Client::login(addr, &connector, "alice", "desk").await;
    let closed = first.expect_closed(common::STEP_TIMEOUT).await;
    assert_eq!(closed.stream_error(), Some("conflict"), "{closed:?}");
    second.ping("still-there").await;
    assert_eq!(server.metric("xmpp_edge_sessions_replaced_total", &[]), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_connection_limit() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.max_connections_per_ip = 2;
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, false);
    let mut kept = Vec::new();
    for _ in 0..2 {
        let mut client = Client::connect(addr).await;
        client.open_stream().await;
        kept.push(client);
    }
    let mut refused = Client::connect(addr).await;
    let closed = refused.expect_closed(Duration::from_secs(5)).await;
    assert!(closed.is_silent(), "{closed:?}");
    assert_eq!(server.limit_triggers("max_connections_per_ip"), 1);
    // Another address (IPv6 loopback) is counted separately.
    let mut other = Client::connect(server.addr(ListenerKind::Starttls, true)).await;
    other.open_stream().await;
    // A freed slot can be used again.
    drop(kept.pop());
    eventually("slot to free", || server.connections_active() == 2).await;
    Client::connect(addr).await.open_stream().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn total_connection_limit() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.max_connections = 3;
    let server = Running::start(config);
    let mut kept = Vec::new();
    for v6 in [false, true, false] {
        let mut client = Client::connect(server.addr(ListenerKind::Starttls, v6)).await;
        client.open_stream().await;
        kept.push(client);
    }
    let mut refused = Client::connect(server.addr(ListenerKind::Starttls, true)).await;
    let closed = refused.expect_closed(Duration::from_secs(5)).await;
    assert!(closed.is_silent(), "{closed:?}");
    assert_eq!(server.limit_triggers("max_connections"), 1);
    server.stop().await;
}

/// A client that connects and sends nothing is dropped after the TLS handshake timeout,
/// on direct TLS and after `<proceed/>` on STARTTLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshake_timeout() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.tls_handshake_timeout = Duration::from_millis(300);
    let server = Running::start(config);
    let started = std::time::Instant::now();
    let mut silent = Client::connect(server.addr(ListenerKind::DirectTls, false)).await;
    silent.expect_closed(Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(250));

    let mut stalled = Client::connect(server.addr(ListenerKind::Starttls, true)).await;
    stalled.open_stream().await;
    stalled
        .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    stalled.expect("proceed").await;
    stalled.expect_closed(Duration::from_secs(5)).await;
    eventually("timeouts to be counted", || {
        server.limit_triggers("tls_handshake_timeout") == 2
    })
    .await;
    server.stop().await;
}

/// A client that sends requests but never reads is disconnected once its unsent output
/// passes the limit, while another client keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_disconnected() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.max_unsent_output = 16 * 1024;
    config.limits.stanza_rate = 1e9;
    config.limits.stanza_burst = 1_000_000_000;
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, false);
    let connector = fixture.tls(false);
    let mut hog = Client::login(addr, &connector, "alice", "hog").await;
    let mut good = Client::login(addr, &connector, "bob", "good").await;

    let request = "<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        .repeat(64);
    let flood = tokio::spawn(async move {
        // Bounded: far more output than any socket buffers hold.
        for _ in 0..4000 {
            if hog.try_send(&request).await.is_err() {
                return true;
            }
        }
        false
    });
    for n in 0..20 {
        good.ping(&format!("p{n}")).await;
    }
    eventually("the overflow to be detected", || {
        server.limit_triggers("output_overflow") == 1
    })
    .await;
    assert!(
        tokio::time::timeout(common::STEP_TIMEOUT, flood)
            .await
            .unwrap()
            .unwrap(),
        "hog still connected"
    );
    good.ping("after").await;
    server.stop().await;
}

/// The session's timers reach it through the edge (negotiation and idle timeouts), and a
/// too large stanza closes only its own stream; each is counted as a limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_timeouts_and_stanza_size_limit() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.negotiation_timeout = Duration::from_millis(400);
    let server = Running::start(config);
    let mut slow = Client::connect(server.addr(ListenerKind::Starttls, false)).await;
    slow.open_stream().await;
    let closed = slow.expect_closed(Duration::from_secs(5)).await;
    assert_eq!(
        closed.stream_error(),
        Some("connection-timeout"),
        "{closed:?}"
    );
    eventually("the negotiation timeout count", || {
        server.limit_triggers("negotiation_timeout") == 1
    })
    .await;
    server.stop().await;

    let mut config = fixture.config();
    config.limits.idle_timeout = Duration::from_millis(500);
    config.limits.max_stanza_bytes = 1024;
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, true);
    let connector = fixture.tls(false);
    let mut idle = Client::login(addr, &connector, "alice", "idle").await;
    let mut big = Client::login(addr, &connector, "bob", "big").await;
    big.send(&format!(
        "<message to='carol@localhost'><body>{}</body></message>",
        "a".repeat(2000)
    ))
    .await;
    let closed = big.expect_closed(Duration::from_secs(5)).await;
    assert_eq!(
        closed.stream_error(),
        Some("policy-violation"),
        "{closed:?}"
    );
    let closed = idle.expect_closed(Duration::from_secs(5)).await;
    assert_eq!(
        closed.stream_error(),
        Some("connection-timeout"),
        "{closed:?}"
    );
    eventually("the limit counts", || {
        server.limit_triggers("idle_timeout") == 1 && server.limit_triggers("stanza_policy") == 1
    })
    .await;
    server.stop().await;
}
