//! PROXY protocol listeners over real sockets: the test plays the load balancer, writing
//! v1 and v2 headers with synthetic client addresses that SIC must report.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, Fixture, PASSWORD, Running, eventually};
use edge::Config;
use edge::config::{ListenerConfig, ListenerKind, ProxyProtocol};
use proxy_protocol::{Command, ProxyAddresses, write_v1, write_v2};
use session::sasl::ScramHash;
use tokio::net::TcpStream;

const SOURCE_V4: &str = "203.0.113.7:40001";
const SOURCE_V6: &str = "[2001:db8::7]:40002";
const DESTINATION_V4: &str = "198.51.100.1:5222";
const DESTINATION_V6: &str = "[2001:db8::1]:5222";

/// A STARTTLS and a direct-TLS listener on 127.0.0.1, both requiring a PROXY header.
fn proxy_config(fixture: &Fixture) -> Config {
    let mut config = fixture.config();
    config.listeners = [ListenerKind::Starttls, ListenerKind::DirectTls]
        .into_iter()
        .map(|kind| {
            let mut listener = ListenerConfig::new(kind, "127.0.0.1:0".parse().unwrap());
            listener.proxy_protocol = ProxyProtocol::Required;
            listener
        })
        .collect();
    config
}

fn addresses(source: &str) -> ProxyAddresses {
    let source: SocketAddr = source.parse().unwrap();
    let destination = if source.is_ipv4() {
        DESTINATION_V4
    } else {
        DESTINATION_V6
    };
    ProxyAddresses {
        source,
        destination: destination.parse().unwrap(),
    }
}

fn v1(source: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_v1(Some(addresses(source)), &mut out);
    out
}

fn v2(command: Command, source: Option<&str>, crc: bool) -> Vec<u8> {
    let mut out = Vec::new();
    write_v2(command, source.map(addresses), &[], crc, &mut out).unwrap();
    out
}

/// `xmpp_edge_proxy_headers_total` for the labels named.
fn proxy_count(server: &Running, version: &str, command: &str, outcome: &str) -> u64 {
    let labels = [
        ("version", version),
        ("command", command),
        ("outcome", outcome),
    ];
    server
        .scrape()
        .get("xmpp_edge_proxy_headers_total", &labels)
        .unwrap_or_else(|| panic!("no xmpp_edge_proxy_headers_total{labels:?}"))
}

/// Connects to `addr` and sends `header` the way a balancer would.
async fn proxied(addr: SocketAddr, header: &[u8]) -> Client {
    let mut client = Client::connect(addr).await;
    client.send_bytes(header).await;
    client
}

/// STARTTLS, SCRAM-SHA-256 and bind on a connection whose header was sent.
async fn login(client: &mut Client, fixture: &Fixture, user: &str) {
    client.starttls(&fixture.tls(false)).await;
    client.scram(user, PASSWORD, ScramHash::Sha256, false).await;
    client.bind("proxied").await;
}

/// Every SIC form answers `expected`.
async fn assert_sic(client: &mut Client, expected: SocketAddr) {
    let ip = expected.ip().to_string();
    let port = expected.port().to_string();
    let answer = client.iq_get("s0ip", "<ip xmlns='urn:xmpp:sic:0'/>").await;
    assert_eq!(answer.texts("ip"), [ip.as_str()], "{answer}");
    let answer = client
        .iq_get("s0addr", "<address xmlns='urn:xmpp:sic:0'/>")
        .await;
    assert_eq!(answer.texts("ip"), [ip.as_str()], "{answer}");
    let answer = client
        .iq_get("s1", "<address xmlns='urn:xmpp:sic:1'/>")
        .await;
    assert_eq!(answer.texts("ip"), [ip.as_str()], "{answer}");
    assert_eq!(answer.texts("port"), [port.as_str()], "{answer}");
}

/// v1 and v2 headers with IPv4 and IPv6 sources: SIC reports the source in every form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sic_answers_the_header_source() {
    let fixture = Fixture::new();
    let server = Running::start(proxy_config(&fixture));
    let addr = server.addr(ListenerKind::Starttls, false);
    for source in [SOURCE_V4, SOURCE_V6] {
        for header in [v1(source), v2(Command::Proxy, Some(source), false)] {
            let mut client = proxied(addr, &header).await;
            login(&mut client, &fixture, "alice").await;
            assert_sic(&mut client, source.parse().unwrap()).await;
        }
    }
    assert_eq!(proxy_count(&server, "v1", "proxy", "ok"), 2);
    assert_eq!(proxy_count(&server, "v2", "proxy", "ok"), 2);
    server.stop().await;
}

/// A header trickling in over several writes, and one arriving in the same write as the
/// client's stream header, which the session must still get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_and_coalesced_headers() {
    let fixture = Fixture::new();
    let server = Running::start(proxy_config(&fixture));
    let addr = server.addr(ListenerKind::Starttls, false);
    for header in [v1(SOURCE_V4), v2(Command::Proxy, Some(SOURCE_V6), true)] {
        let mut client = Client::connect(addr).await;
        for piece in [&header[..1], &header[1..13], &header[13..]] {
            client.send_bytes(piece).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        login(&mut client, &fixture, "bob").await;
        let source = if header.starts_with(b"PROXY") {
            SOURCE_V4
        } else {
            SOURCE_V6
        };
        assert_sic(&mut client, source.parse().unwrap()).await;
    }

    let mut coalesced = v2(Command::Proxy, Some(SOURCE_V4), true);
    coalesced.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' \
          xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    let mut client = proxied(addr, &coalesced).await;
    let features = client.expect("stream:features").await;
    assert!(features.child("starttls").is_some(), "{features}");
    assert_eq!(proxy_count(&server, "v2", "proxy", "ok"), 2);
    assert_eq!(proxy_count(&server, "v1", "proxy", "ok"), 1);
    server.stop().await;
}

/// Health checks: v2 LOCAL and v1 UNKNOWN keep the socket's own addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_unknown_use_the_socket_address() {
    let fixture = Fixture::new();
    let server = Running::start(proxy_config(&fixture));
    let addr = server.addr(ListenerKind::Starttls, false);
    let mut unknown = Vec::new();
    write_v1(None, &mut unknown);
    // LOCAL carries the balancer's own addresses, which must be ignored.
    for header in [v2(Command::Local, Some(SOURCE_V4), true), unknown] {
        let mut client = proxied(addr, &header).await;
        login(&mut client, &fixture, "alice").await;
        let own = client.local;
        assert_sic(&mut client, own).await;
    }
    assert_eq!(proxy_count(&server, "v2", "local", "ok"), 1);
    assert_eq!(proxy_count(&server, "v1", "local", "ok"), 1);
    server.stop().await;
}

/// Bad CRC, garbage, a truncated header and silence: each closes its connection without
/// a byte sent, and is counted under its own outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_headers_are_closed_and_counted() {
    let fixture = Fixture::new();
    let mut config = proxy_config(&fixture);
    for listener in &mut config.listeners {
        listener.proxy_header_timeout = Duration::from_millis(300);
    }
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, false);
    let within = Duration::from_secs(5);

    let mut bad_crc = v2(Command::Proxy, Some(SOURCE_V4), true);
    // The source port's low byte: still a well-formed header, with a stale checksum.
    bad_crc[16 + 8 + 1] ^= 1;
    let mut client = proxied(addr, &bad_crc).await;
    assert!(client.expect_closed(within).await.is_silent());

    let mut client = proxied(addr, b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(client.expect_closed(within).await.is_silent());

    let mut client = proxied(addr, b"PROXY TCP4 203.0.113.7 198.51.100.1 40001 5222\r\r").await;
    assert!(client.expect_closed(within).await.is_silent());

    let started = Instant::now();
    let mut silent = Client::connect(addr).await;
    assert!(silent.expect_closed(within).await.is_silent());
    assert!(started.elapsed() >= Duration::from_millis(250));
    let mut partial = proxied(addr, b"PROXY TCP4 ").await;
    assert!(partial.expect_closed(within).await.is_silent());

    // Closing before sending anything (a TCP port check) is counted, not an error.
    drop(Client::connect(addr).await);

    eventually("the outcomes to be counted", || {
        proxy_count(&server, "unknown", "unknown", "closed") == 1
            && proxy_count(&server, "unknown", "unknown", "timeout") == 1
    })
    .await;
    assert_eq!(proxy_count(&server, "v2", "unknown", "bad_crc"), 1);
    assert_eq!(proxy_count(&server, "unknown", "unknown", "malformed"), 1);
    assert_eq!(proxy_count(&server, "v1", "unknown", "malformed"), 1);
    assert_eq!(proxy_count(&server, "v1", "unknown", "timeout"), 1);
    assert_eq!(server.authenticated(), 0);
    server.stop().await;
}

/// A peer outside `proxy_trusted` is closed at accept: nothing is read or sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_peer_is_refused_at_accept() {
    let fixture = Fixture::new();
    let mut config = proxy_config(&fixture);
    for listener in &mut config.listeners {
        listener.proxy_trusted = vec!["10.0.0.0/8".to_owned()];
    }
    let server = Running::start(config);
    for kind in [ListenerKind::Starttls, ListenerKind::DirectTls] {
        let mut client = Client::connect(server.addr(kind, false)).await;
        // Sending may already fail once the edge has closed; what matters is silence.
        let _ = client.try_send("PROXY UNKNOWN\r\n<stream:stream>").await;
        assert!(
            client
                .expect_closed(Duration::from_secs(5))
                .await
                .is_silent()
        );
    }
    assert_eq!(
        proxy_count(&server, "unknown", "unknown", "untrusted_source"),
        2
    );
    assert_eq!(server.connections_active(), 0);
    server.stop().await;
}

/// Direct TLS behind a v2 header, sent on its own and corked into the same segment as
/// the ClientHello (whose bytes then reach the TLS acceptor through the replay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_behind_a_v2_header() {
    let fixture = Fixture::new();
    let server = Running::start(proxy_config(&fixture));
    let addr = server.addr(ListenerKind::DirectTls, false);
    for (source, cork) in [(SOURCE_V4, false), (SOURCE_V6, true)] {
        let tcp = TcpStream::connect(addr).await.unwrap();
        // Linux holds corked data (up to 200 ms) until the ClientHello joins the header.
        socket2::SockRef::from(&tcp).set_tcp_cork(cork).unwrap();
        let mut client = Client::from_tcp(tcp);
        client
            .send_bytes(&v2(Command::Proxy, Some(source), true))
            .await;
        client.handshake(&fixture.tls(true)).await;
        assert_eq!(client.alpn.as_deref(), Some(&b"xmpp-client"[..]));
        client.open_stream().await;
        client.scram("bob", PASSWORD, ScramHash::Sha256, true).await;
        client.bind("tls").await;
        assert_sic(&mut client, source.parse().unwrap()).await;
    }
    assert_eq!(proxy_count(&server, "v2", "proxy", "ok"), 2);
    server.stop().await;
}

/// `max_connections_per_ip` counts the header's source, not the balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_counts_the_proxy_source() {
    let fixture = Fixture::new();
    let mut config = proxy_config(&fixture);
    config.limits.max_connections_per_ip = 1;
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, false);
    let mut kept = Vec::new();
    for source in [SOURCE_V4, SOURCE_V6] {
        let mut client = proxied(addr, &v1(source)).await;
        client.open_stream().await;
        kept.push(client);
    }
    let mut again = proxied(addr, &v2(Command::Proxy, Some(SOURCE_V4), false)).await;
    assert!(
        again
            .expect_closed(Duration::from_secs(5))
            .await
            .is_silent()
    );
    eventually("the refusal to be counted", || {
        server.limit_triggers("max_connections_per_ip") == 1
    })
    .await;
    // Once the first client leaves, its source may connect again.
    drop(kept.remove(0));
    eventually("the slot to free", || server.connections_active() == 1).await;
    let mut back = proxied(addr, &v1(SOURCE_V4)).await;
    back.open_stream().await;
    server.stop().await;
}

/// A thousand peers that connect and send nothing delay neither the accept loop nor a
/// real client's login; their header timeouts close them afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_peers_do_not_stall_accepting() {
    const SILENT: u64 = 1000;
    // Each silent connection takes two descriptors here (client and server side).
    let (soft, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let needed = 2 * SILENT + 256;
    assert!(
        hard >= needed,
        "RLIMIT_NOFILE hard limit {hard} is below the {needed} this test needs"
    );
    if soft < needed {
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard)
            .unwrap();
    }
    let fixture = Fixture::new();
    let mut config = proxy_config(&fixture);
    let header_timeout = Duration::from_secs(5);
    for listener in &mut config.listeners {
        listener.proxy_header_timeout = header_timeout;
    }
    let server = Running::start(config);
    let addr = server.addr(ListenerKind::Starttls, false);

    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..SILENT {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    eventually("every silent peer to be accepted", || {
        server.metric("xmpp_edge_connections_accepted_total", &[]) == SILENT
    })
    .await;

    let mut client = proxied(addr, &v2(Command::Proxy, Some(SOURCE_V6), true)).await;
    login(&mut client, &fixture, "alice").await;
    assert_sic(&mut client, SOURCE_V6.parse().unwrap()).await;
    assert!(
        opened.elapsed() < header_timeout,
        "the silent peers were open for only part of the login"
    );
    assert_eq!(proxy_count(&server, "unknown", "unknown", "timeout"), 0);
    assert_eq!(server.connections_active(), SILENT + 1);

    eventually("the silent peers to time out", || {
        proxy_count(&server, "unknown", "unknown", "timeout") == SILENT
    })
    .await;
    eventually("the silent peers to be closed", || {
        server.connections_active() == 1
    })
    .await;
    client.ping("still-served").await;
    drop(silent);
    server.stop().await;
}
