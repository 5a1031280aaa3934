//! The admin endpoint of an in-process server: /metrics after real logins and SIC
//! requests, /healthz, /readyz before and while draining, and the endpoint's limits.

mod common;

use std::time::{Duration, Instant};

use common::{Client, Fixture, HttpResponse, Running, STEP_TIMEOUT, http_get, http_raw, http_try};
use edge::config::ListenerKind;
use tokio::io::AsyncReadExt as _;

const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";

/// The value of the sample `series` (name and labels exactly as exposed).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

/// Scrapes until `series` has a value satisfying `wanted`; returns the last scrape.
async fn scrape_until(
    admin: std::net::SocketAddr,
    series: &str,
    wanted: impl Fn(f64) -> bool,
) -> String {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let body = http_get(admin, "/metrics", OPENMETRICS).await.body;
        if value(&body, series).is_some_and(&wanted) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never as wanted; last scrape:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn until_status(admin: std::net::SocketAddr, path: &str, status: u16) -> HttpResponse {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        // Unanswered (all connection slots taken) counts as not yet.
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
        let response = http_try(admin, &request).await;
        match response {
            Some(response) if response.status == status => return response,
            other => assert!(
                Instant::now() < deadline,
                "{path} never {status}: {:?}",
                other.map(|r| (r.status, r.body))
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_session() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    let admin = server.admin.expect("admin endpoint enabled");
    let healthz = http_get(admin, "/healthz", "*/*").await;
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));
    until_status(admin, "/readyz", 200).await;

    let addr = server.addr(ListenerKind::Starttls, false);
    let mut client = Client::login(addr, &fixture.tls(false), "alice", "metrics").await;
    for (id, payload) in [
        ("a", "<ip xmlns='urn:xmpp:sic:0'/>"),
        ("b", "<address xmlns='urn:xmpp:sic:0'/>"),
        ("c", "<address xmlns='urn:xmpp:sic:1'/>"),
        ("d", "<address xmlns='urn:xmpp:sic:1'/>"),
        (
            "e",
            "<query xmlns='http://jabber.org/protocol/disco#info'/>",
        ),
    ] {
        client.iq_get(id, payload).await;
    }
    client.ping("f").await;
    client
        .send("<iq type='get' id='g' to='bob@localhost'><ip xmlns='urn:xmpp:sic:0'/></iq>")
        .await;
    client.expect("iq").await;

    // Bind, five SIC-or-disco requests, the forbidden SIC and the ping were timed.
    let body = scrape_until(admin, "xmpp_edge_request_duration_seconds_count", |n| {
        n >= 8.0
    })
    .await;
    let listener = format!("listener=\"starttls\",address=\"{addr}\"");
    for (series, expected) in [
        ("xmpp_edge_sic_answers_total{form=\"sic0_ip\"}", 1.0),
        ("xmpp_edge_sic_answers_total{form=\"sic0_address\"}", 1.0),
        ("xmpp_edge_sic_answers_total{form=\"sic1_address\"}", 2.0),
        ("xmpp_edge_sic_forbidden_total", 1.0),
        ("xmpp_edge_iq_answers_total{kind=\"disco_info\"}", 1.0),
        ("xmpp_edge_iq_answers_total{kind=\"ping\"}", 1.0),
        ("xmpp_edge_iq_answers_total{kind=\"bind\"}", 1.0),
        ("xmpp_edge_stanzas_received_total{kind=\"iq\"}", 8.0),
        ("xmpp_edge_stanzas_received_total{kind=\"starttls\"}", 1.0),
        (
            "xmpp_edge_sasl_total{mechanism=\"SCRAM-SHA-256\",outcome=\"success\"}",
            1.0,
        ),
        ("xmpp_edge_sessions{state=\"authenticated\"}", 1.0),
        ("xmpp_edge_sessions{state=\"pre_tls\"}", 0.0),
        (
            &format!("xmpp_edge_connections_accepted_total{{{listener}}}"),
            1.0,
        ),
        (
            &format!("xmpp_edge_tls_handshakes_total{{{listener},outcome=\"ok\"}}"),
            1.0,
        ),
        ("xmpp_edge_ready", 1.0),
    ] {
        assert_eq!(value(&body, series), Some(expected), "{series} in\n{body}");
    }
    for series in [
        "xmpp_edge_received_bytes_total",
        "xmpp_edge_sent_bytes_total",
        "xmpp_edge_connections_limit",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_cpu_seconds_total",
    ] {
        assert!(
            value(&body, series).unwrap_or(0.0) > 0.0,
            "{series} in\n{body}"
        );
    }
    for family in [
        "xmpp_edge_proxy_headers",
        "xmpp_edge_stream_errors",
        "xmpp_edge_limit_triggers",
        "xmpp_edge_connections_closed",
    ] {
        assert!(
            body.contains(&format!("# TYPE {family} counter")),
            "{family} in\n{body}"
        );
    }
    assert!(body.ends_with("# EOF\n"));

    client.send("</stream:stream>").await;
    client.expect_closed(STEP_TIMEOUT).await;
    let body = scrape_until(
        admin,
        &format!("xmpp_edge_connections_closed_total{{{listener},reason=\"client_closed\"}}"),
        |n| n == 1.0,
    )
    .await;
    assert_eq!(
        value(&body, "xmpp_edge_sessions{state=\"authenticated\"}"),
        Some(0.0)
    );
    server.stop().await;
}

/// Prometheus gets OpenMetrics; other clients get the 0.0.4 text format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_content_negotiation() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    let admin = server.admin.unwrap();
    let openmetrics = http_get(admin, "/metrics", OPENMETRICS).await;
    assert_eq!(openmetrics.status, 200);
    assert_eq!(
        openmetrics.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(openmetrics.body.contains("# TYPE xmpp_edge_sasl counter\n"));

    let text = http_get(admin, "/metrics", "*/*").await;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(text.body.contains("# TYPE xmpp_edge_sasl_total counter\n"));
    assert!(
        text.body
            .contains("# TYPE xmpp_edge_request_duration_seconds histogram\n")
    );
    assert!(!text.body.contains("# EOF"));
    assert_eq!(
        text.header("content-length"),
        Some(text.body.len().to_string().as_str())
    );

    let head = http_raw(admin, "HEAD /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_ne!(head.header("content-length"), Some("0"));
    server.stop().await;
}

/// Strangers get short answers: unknown paths, other methods, garbage and oversized
/// requests; connections beyond the limit are closed unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_limits() {
    let fixture = Fixture::new();
    let server = Running::start(fixture.config());
    let admin = server.admin.unwrap();
    assert_eq!(http_get(admin, "/secret", "*/*").await.status, 404);
    let post = http_raw(
        admin,
        "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    assert_eq!(http_raw(admin, "HELLO\r\n\r\n").await.status, 400);
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(16 * 1024)
    );
    assert_eq!(http_raw(admin, &huge).await.status, 431);

    // Idle connections hold every slot: one more is closed without an answer.
    let mut idle = Vec::new();
    for _ in 0..16 {
        idle.push(tokio::net::TcpStream::connect(admin).await.unwrap());
    }
    let mut extra = tokio::net::TcpStream::connect(admin).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(STEP_TIMEOUT, extra.read_to_end(&mut got))
        .await
        .expect("closed at once")
        .unwrap();
    assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
    drop(idle);
    until_status(admin, "/healthz", 200).await;
    server.stop().await;
}

/// While draining after shutdown starts, /readyz is 503 and /healthz still 200, until
/// the sessions are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_draining() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.shutdown.grace_period = Duration::from_secs(2);
    let mut server = Running::start(config);
    let admin = server.admin.unwrap();
    let ready = until_status(admin, "/readyz", 200).await;
    assert_eq!(ready.body, "ready\n");
    // A connected client keeps the edge draining for the grace period.
    let mut client = Client::connect(server.addr(ListenerKind::Starttls, false)).await;
    client.open_stream().await;

    server.begin_stop();
    let draining = until_status(admin, "/readyz", 503).await;
    assert_eq!(draining.body, "not ready\n");
    assert_eq!(http_get(admin, "/healthz", "*/*").await.status, 200);
    let body = http_get(admin, "/metrics", OPENMETRICS).await.body;
    assert_eq!(value(&body, "xmpp_edge_ready"), Some(0.0));
    assert_eq!(
        value(&body, "xmpp_edge_sessions{state=\"pre_tls\"}"),
        Some(1.0)
    );
    let closed = client.expect_closed(STEP_TIMEOUT).await;
    assert_eq!(closed.stream_error(), Some("system-shutdown"), "{closed:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_can_be_disabled() {
    let fixture = Fixture::new();
    let mut config = fixture.config();
    config.admin.enabled = false;
    let server = Running::start(config);
    assert_eq!(server.admin, None);
    server.stop().await;
}
