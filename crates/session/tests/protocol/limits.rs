//! Limits: timeouts, the rate budgets (throttling), stanza size, unsent output, and memory
//! held.

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
fn stanza_rate_throttles_instead_of_disconnecting() {
    let config = Config {
        stanza_rate: 1.0,
        stanza_burst: 20,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    // Login used 4 of the burst (starttls, auth, response, bind); 20 s refill it.
    client.advance(Duration::from_secs(20));
    client.conn.take_counts();
    for _ in 0..20 {
        client.send(SIC);
        assert_eq!(client.element().attr("type"), Some("result"));
    }
    let resume = client.conn.read_paused_until().expect("the burst is spent");
    assert!(resume > client.now && resume <= client.now + Duration::from_millis(1001));
    assert_eq!(client.conn.poll_timeout(), Some(resume));
    client.send(SIC);
    assert!(client.no_items(), "held until the bucket refills");
    assert_eq!(client.event(), None, "and not disconnected");
    client.advance(Duration::from_millis(999));
    client.fire_timer();
    assert!(client.no_items());
    client.advance(Duration::from_millis(2));
    client.fire_timer();
    assert_eq!(client.element().attr("type"), Some("result"));
    let counts = client.conn.take_counts();
    assert_eq!(counts.throttled(), 2, "paused after the 20th and the 21st");
    assert!(counts.throttled_for() >= Duration::from_secs(1));
}

/// A client that reconnects and flushes its queue: 2,000 pipelined requests in one go on
/// the default config get 2,000 answers, in order, no faster than the budget allows.
#[test]
fn a_pipelined_burst_is_answered_in_full_paced_by_the_budget() {
    let config = Config::default();
    let (rate, burst) = (config.stanza_rate, f64::from(config.stanza_burst));
    let mut client = Client::with_config(config);
    client.login();
    let start = client.now;
    let requests: String = (0..2000)
        .map(|i| format!("<iq type='get' id='r{i}'><ip xmlns='urn:xmpp:sic:0'/></iq>"))
        .collect();
    // Fed as an I/O layer would: 4 KiB reads, none while reading is paused.
    let mut unread = requests.as_bytes();
    let mut answered = 0;
    while answered < 2000 {
        if let Some(resume) = client.conn.read_paused_until() {
            client.now = client.now.max(resume);
            client.fire_timer();
        } else if !unread.is_empty() {
            let (read, rest) = unread.split_at(unread.len().min(4096));
            client.send_bytes(read);
            unread = rest;
        } else {
            panic!("stalled after {answered} answers");
        }
        while !client.no_items() {
            let reply = client.element();
            assert_eq!(reply.attr("type"), Some("result"));
            assert_eq!(reply.attr("id"), Some(format!("r{answered}").as_str()));
            answered += 1;
            let elapsed = (client.now - start).as_secs_f64();
            // Login took 4 of the burst.
            assert!(
                f64::from(answered) <= burst - 4.0 + rate * elapsed + 1.0,
                "{answered} answers after {elapsed} s"
            );
        }
    }
    assert_eq!(client.event(), None, "still connected");
    let took = (client.now - start).as_secs_f64();
    let expected = (2000.0 - (burst - 4.0)) / rate;
    assert!(
        (took - expected).abs() < 0.5,
        "took {took} s, expected {expected} s"
    );
}

#[test]
fn bytes_over_the_byte_budget_pause_reading() {
    let config = Config {
        byte_rate: 1000,
        byte_burst: 2000,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    let t0 = client.now;
    client.open();
    let before = client.conn.read_paused_until();
    assert_eq!(before, None);
    // The header used ~150 bytes; 3,000 spaces of keepalive overdraw the rest.
    client.send(&" ".repeat(3000));
    let resume = client.conn.read_paused_until().expect("overdrawn");
    assert!(
        resume - t0 > Duration::from_millis(1000),
        "{:?}",
        resume - t0
    );
    client.now = resume;
    client.fire_timer();
    assert_eq!(client.conn.read_paused_until(), None);
    assert_eq!(client.event(), None);
}

#[test]
fn input_fed_while_paused_past_a_stanza_ends_the_stream() {
    let config = Config {
        stanza_rate: 1.0,
        stanza_burst: 5,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    client.send(SIC);
    assert!(client.conn.read_paused_until().is_some());
    client.element();
    let limit = Config::default().stanza_limits.max_stanza_bytes;
    let mut fed = 0;
    while fed <= limit {
        assert!(
            client.conn.poll_event().is_none(),
            "closed after {fed} bytes"
        );
        client.send_unread(SIC);
        fed += SIC.len();
    }
    client.pump();
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(client.closed_by, Some(Cause::ThrottleOverrun));
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

/// Regression, found by the session fuzz target (`fuzz/regressions/session/slow-reader`:
/// the same `<auth>` sent 96 times, each challenge read back but for 3 bytes): the output
/// buffer kept every written byte until it drained completely, so a client that pipelines
/// requests and always leaves a few bytes of the answers unread grew it without bound,
/// while the unsent part stayed far under `max_unsent_output`.
#[test]
fn output_is_freed_as_it_is_written_even_when_never_fully_drained() {
    let config = Config {
        stanza_rate: 1e9,
        stanza_burst: 1_000_000,
        byte_rate: 1 << 40,
        byte_burst: 1 << 40,
        ..Config::default()
    };
    let mut client = Client::with_config(config);
    client.login();
    let ping = "<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>";
    let mut written = 0;
    for _ in 0..2_000 {
        client.send_unread(ping);
        let n = client.conn.pending_output().len() - 3;
        client.conn.output_written(n);
        written += n;
        assert!(
            client.conn.heap_bytes() < 4 * 1024,
            "heap_bytes {} after {written} bytes written with 3 left unread",
            client.conn.heap_bytes()
        );
    }
    assert!(written > 100_000, "{written}");
    assert_eq!(client.conn.pending_output().len(), 3);
}
