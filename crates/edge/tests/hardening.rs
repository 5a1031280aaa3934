//! Over real sockets: a client over its rate budget is throttled, not disconnected, and
//! failed logins from one address are answered ever later.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Fixture, Running};
use edge::config::ListenerKind;

/// 2,000 pipelined SIC requests in one write get 2,000 answers, in order, on a session
/// that stays up, no faster than the stanza budget allows: the edge stops reading while
/// the budget is spent and TCP holds the rest. (The default budget, 50/s, would make
/// this take 38 s; the core's own test runs the default config on simulated time.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_burst_is_throttled_not_disconnected() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.stanza_rate = 1000.0;
    config.limits.stanza_burst = 100;
    let (rate, burst) = (config.limits.stanza_rate, config.limits.stanza_burst);
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, false);
    let mut client = Client::login(addr, &fixture.tls(false), "alice", "burst").await;
    let requests: String = (0..2000)
        .map(|i| format!("<iq type='get' id='r{i}'><address xmlns='urn:xmpp:sic:1'/></iq>"))
        .collect();
    let started = Instant::now();
    client.send(&requests).await;
    for i in 0..2000 {
        let iq = client.expect("iq").await;
        assert_eq!(iq.attr("id"), Some(format!("r{i}").as_str()), "{iq}");
        assert_eq!(iq.attr("type"), Some("result"), "{iq}");
    }
    let took = started.elapsed().as_secs_f64();
    // Login spent 4 of the burst; the rest of the requests wait for the refill.
    let paced = (2000.0 - f64::from(burst)) / rate;
    assert!(
        took >= paced * 0.9,
        "2,000 answers in {took} s, budget allows {paced} s"
    );
    client.ping("still-up").await;
    assert!(server.metric("xmpp_edge_throttled_total", &[]) > 0);
    assert_eq!(
        server.metric(
            "xmpp_edge_limit_triggers_total",
            &[("limit", "stanza_policy")]
        ),
        0
    );
    server.stop().await;
}

/// Past the free failures of its address, each failed login is answered later than the
/// last, and PLAIN's checks ran on the password pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_from_one_address_are_answered_ever_later() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.limits.auth_failures_free = 1;
    config.limits.auth_failure_delay = Duration::from_millis(300);
    config.limits.max_auth_failures = 10;
    let server = Running::start(config);
    let mut client = Client::connect_tls(
        server.addr(ListenerKind::DirectTls, false),
        &fixture.tls(true),
    )
    .await;
    client.open_stream().await;
    let wrong = format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
        session::sasl::encode_payload(b"\0alice\0wrong")
    );
    let mut waits = Vec::new();
    for _ in 0..3 {
        let sent = Instant::now();
        client.send(&wrong).await;
        let failure = client.expect("failure").await;
        assert_eq!(failure.condition(), Some("not-authorized"), "{failure}");
        waits.push(sent.elapsed());
    }
    assert!(waits[0] < Duration::from_millis(250), "{waits:?}");
    assert!(waits[1] >= Duration::from_millis(300), "{waits:?}");
    assert!(waits[2] >= Duration::from_millis(600), "{waits:?}");
    assert_eq!(server.metric("xmpp_edge_password_checks_total", &[]), 3);
    assert_eq!(server.metric("xmpp_edge_auth_failure_delays_total", &[]), 2);
    server.stop().await;
}
