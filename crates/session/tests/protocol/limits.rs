//! Limits: timeouts, the stanza rate, stanza size, unsent output, and memory held.

use std::time::Duration;

use session::{Cause, CloseReason, Config, Connection, Event};

use crate::client::Client;

const SIC: &str = "<iq type='get' id='s'><ip xmlns='urn:xmpp:sic:0'/></iq>";

#[test]
fn negotiation_timeout() {
    let mut client = Client::new();
    client.open();
    let deadline = client.conn.poll_timeout().expect("a deadline");
    assert_eq!(deadline, client.now + Duration::from_secs(30));
    client.advance(Duration::from_secs(29));
    client.fire_timer();
    assert!(client.no_items());
    client.advance(Duration::from_secs(1));
    client.fire_timer();
    assert_eq!(client.stream_error(), "connection-timeout");
    assert_eq!(client.closed_by, Some(Cause::NegotiationTimeout));
}

#[test]
fn negotiation_timeout_before_any_header() {
    let mut client = Client::new();
    client.advance(Duration::from_secs(30));
    client.fire_timer();
    assert_eq!(client.header_then_stream_error(), "connection-timeout");
    assert_eq!(client.closed_by, Some(Cause::NegotiationTimeout));
}

#[test]
fn negotiation_deadline_ends_at_bind() {
    let config = Config {
        negotiation_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    assert_eq!(
        client.conn.poll_timeout(),
        Some(client.now + Duration::from_secs(60))
    );
}

#[test]
fn idle_timeout_and_whitespace_keepalive() {
    let config = Config {
        idle_timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    client.take_raw();
    client.advance(Duration::from_secs(59));
    client.send(" ");
    assert_eq!(client.take_raw(), "", "keepalives need no answer");
    assert_eq!(
        client.conn.poll_timeout(),
        Some(client.now + Duration::from_secs(60))
    );
    client.advance(Duration::from_secs(59));
    client.fire_timer();
    assert!(client.no_items(), "the keepalive reset the idle timer");
    client.advance(Duration::from_secs(1));
    client.fire_timer();
    assert_eq!(client.stream_error(), "connection-timeout");
    assert_eq!(client.closed_by, Some(Cause::IdleTimeout));
}

#[test]
fn stanza_rate() {
    let config = Config {
        stanza_rate: 1.0,
        stanza_burst: 20,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    // Login used 4 of the burst (starttls, auth, response, bind); 20 s refill it.
    client.advance(Duration::from_secs(20));
    for _ in 0..20 {
        client.send(SIC);
        assert_eq!(client.element().attr("type"), Some("result"));
    }
    client.send(SIC);
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(client.closed_by, Some(Cause::StanzaRate));
}

#[test]
fn stanza_rate_refills_over_time() {
    let config = Config {
        stanza_rate: 10.0,
        stanza_burst: 5,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    for _ in 0..50 {
        client.advance(Duration::from_millis(100));
        client.send(SIC);
        assert_eq!(client.element().attr("type"), Some("result"));
    }
}

#[test]
fn stanza_size_limit() {
    let mut config = Config::default();
    config.stanza_limits.max_stanza_bytes = 1024;
    let mut client = Client::with_config(config);
    client.login();
    let big = format!(
        "<iq type='get' id='{}'><ip xmlns='urn:xmpp:sic:0'/></iq>",
        "x".repeat(2000)
    );
    client.send(&big);
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(
        client.closed_by,
        Some(Cause::StanzaLimit(stanza::Error::StanzaTooLarge))
    );
}

#[test]
fn output_overflow_stops_output() {
    let config = Config {
        max_unsent_output: 1000,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    let mut unread = 0;
    let event = loop {
        client.send_unread(SIC);
        if let Some(event) = client.conn.poll_event() {
            break event;
        }
        assert!(client.conn.pending_output().len() > unread);
        unread = client.conn.pending_output().len();
    };
    assert!(unread > 800 && unread <= 1000, "{unread} bytes were held");
    assert_eq!(event, Event::Close(CloseReason::OutputOverflow));
    assert!(
        client.conn.pending_output().is_empty(),
        "the unread output was dropped"
    );
    client.send_unread(SIC);
    assert!(
        client.conn.pending_output().is_empty(),
        "nothing more is produced"
    );
    assert_eq!(client.conn.poll_event(), None);
}

#[test]
fn pipelined_requests_in_one_read() {
    let mut client = Client::new();
    client.login();
    let batch = SIC.repeat(10);
    client.send(&batch);
    for _ in 0..10 {
        assert_eq!(client.element().attr("type"), Some("result"));
    }
}

#[test]
fn buffers_are_released_between_stanzas() {
    let mut client = Client::new();
    client.login();
    let idle = client.conn.heap_bytes();
    // Half a stanza is held, the rest completes it, then everything is released again.
    let (head, tail) = SIC.split_at(20);
    client.send_unread(head);
    assert!(client.conn.heap_bytes() > idle);
    client.send_unread(tail);
    assert!(!client.conn.pending_output().is_empty());
    client.pump();
    assert_eq!(client.conn.heap_bytes(), idle);
    println!(
        "size_of::<Connection>() = {} bytes, heap when idle = {idle} bytes",
        std::mem::size_of::<Connection>()
    );
}

#[test]
fn a_big_stanza_does_not_pin_memory() {
    let mut client = Client::new();
    client.login();
    let idle = client.conn.heap_bytes();
    let big = format!(
        "<iq type='get' id='{}'><ip xmlns='urn:xmpp:sic:0'/></iq>",
        "x".repeat(30_000)
    );
    let (head, tail) = big.split_at(big.len() - 10);
    client.send(head);
    client.send(tail);
    assert_eq!(client.element().attr("type"), Some("result"));
    client.send(SIC);
    client.element();
    assert!(
        client.conn.heap_bytes() <= idle,
        "{} > {idle}",
        client.conn.heap_bytes()
    );
}
