//! Loadgen against servers that misbehave: every failure is counted, explained and turned
//! into a non-zero exit, never a hang.

mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use proxy_protocol::{HeaderParser, Progress};
use support::{free_port, loadgen};

/// How the fake server misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// None: a correct server.
    Nothing,
    /// Logs everyone in but reports a wrong address in every SIC answer.
    WrongAddress,
    /// Refuses every password.
    WrongPassword,
    /// Accepts connections and never says anything.
    Silent,
    /// Takes a PROXY header first, but answers SIC with the socket's peer address, as a
    /// server that ignores the header would.
    IgnoresProxy,
}

/// A tiny XMPP server without TLS, speaking just enough for loadgen's PLAIN login and
/// requests; runs until the test process exits.
fn fake_server(fault: Fault) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, fault));
        }
    });
    port
}

fn serve(mut stream: TcpStream, fault: Fault) {
    let Ok(peer) = stream.peer_addr() else { return };
    let address = match fault {
        Fault::Nothing | Fault::IgnoresProxy => (peer.ip().to_string(), peer.port()),
        _ => ("192.0.2.1".to_owned(), 1),
    };
    let mut buffer = String::new();
    let mut authenticated = false;
    let mut chunk = [0u8; 4096];
    if fault == Fault::IgnoresProxy {
        let mut parser = HeaderParser::default();
        loop {
            let n = match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            match parser.feed(&chunk[..n]) {
                Ok(Progress::NeedMore) => {}
                Ok(Progress::Done { consumed, .. }) => {
                    buffer.push_str(&String::from_utf8_lossy(&chunk[consumed..n]));
                    break;
                }
                Err(_) => return,
            }
        }
    }
    loop {
        while let Some((reply, used)) = answer(&buffer, &mut authenticated, fault, &address) {
            buffer.drain(..used);
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if fault == Fault::Silent {
            continue;
        }
        buffer.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
}

/// The reply to the first complete element in `buffer`, and how many bytes it used.
fn answer(
    buffer: &str,
    authenticated: &mut bool,
    fault: Fault,
    (ip, port): &(String, u16),
) -> Option<(String, usize)> {
    if buffer.starts_with("<?xml") {
        let end = buffer.find("<stream:stream")?
            + buffer[buffer.find("<stream:stream")?..].find('>')?
            + 1;
        let features = if *authenticated {
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        } else {
            "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms>"
        };
        let reply = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
             id='x' from='localhost' version='1.0'><stream:features>{features}</stream:features>"
        );
        return Some((reply, end));
    }
    if buffer.starts_with("<auth") {
        let end = buffer.find("</auth>")? + "</auth>".len();
        if fault == Fault::WrongPassword {
            return Some((
                "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>"
                    .into(),
                end,
            ));
        }
        *authenticated = true;
        return Some((
            "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".into(),
            end,
        ));
    }
    if buffer.starts_with("<iq") {
        let end = buffer.find("</iq>")? + "</iq>".len();
        let iq = &buffer[..end];
        let id_start = iq.find("id='")? + 4;
        let id = &iq[id_start..id_start + iq[id_start..].find('\'')?];
        let payload = if iq.contains("xmpp-bind") {
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><jid>u@localhost/r</jid></bind>"
                .to_owned()
        } else if iq.contains("urn:xmpp:sic:0'/>") && iq.contains("<ip ") {
            format!("<ip xmlns='urn:xmpp:sic:0'>{ip}</ip>")
        } else if let Some(ns) = ["urn:xmpp:sic:0", "urn:xmpp:sic:1"]
            .iter()
            .find(|ns| iq.contains(*ns))
        {
            format!("<address xmlns='{ns}'><ip>{ip}</ip><port>{port}</port></address>")
        } else if iq.contains("disco#info") {
            "<query xmlns='http://jabber.org/protocol/disco#info'/>".to_owned()
        } else {
            String::new()
        };
        return Some((format!("<iq type='result' id='{id}'>{payload}</iq>"), end));
    }
    if buffer.starts_with("</stream:stream>") {
        return Some(("</stream:stream>".into(), "</stream:stream>".len()));
    }
    None
}

/// Options for a small PLAIN run without TLS against `port`, without rate and duration.
fn base_args(port: u16, timeout: &str) -> Vec<String> {
    [
        "--host",
        "127.0.0.1",
        "--tls",
        "none",
        "--sasl",
        "plain",
        "--password",
        "pw",
        "--sessions",
        "3",
        "--threads",
        "1",
        "--json",
        "--timeout",
        timeout,
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--port".to_owned(), port.to_string()])
    .collect()
}

fn plain_args(port: u16, timeout: &str) -> Vec<String> {
    let mut args = base_args(port, timeout);
    args.extend(["--rate", "30", "--duration", "1s"].map(String::from));
    args
}

fn run(args: &[String]) -> support::Run {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let dir = std::env::temp_dir();
    loadgen(&args, &dir, Duration::from_secs(60))
}

#[test]
fn wrong_sic_answers_are_counted_and_fail_the_run() {
    let port = fake_server(Fault::WrongAddress);
    let result = run(&plain_args(port, "2s"));
    assert_eq!(result.status.code(), Some(1), "stderr:\n{}", result.stderr);
    let json = result.json();
    assert_eq!(json["pass"], false);
    assert_eq!(json["sessions"]["established"], 3);
    let wrong = json["errors"]["by_kind"]["wrong-reply"]
        .as_u64()
        .unwrap_or(0);
    // sic0-ip, sic0-address and sic1-address are wrong: 3 of every 5 requests.
    assert!(wrong >= 15, "{json:#}");
    let ok = json["requests"]["ok"].as_u64().unwrap_or(0);
    assert_eq!(
        wrong + ok,
        json["requests"]["due"].as_u64().unwrap_or(0),
        "{json:#}"
    );
    let example = json["errors"]["examples"]["wrong-reply"]
        .as_str()
        .unwrap_or_default();
    assert!(example.contains("192.0.2.1"), "{example}");
    assert!(
        result.stderr.contains("FAIL: error ratio"),
        "{}",
        result.stderr
    );
}

#[test]
fn a_server_that_reports_the_socket_instead_of_the_proxy_source_fails() {
    let port = fake_server(Fault::IgnoresProxy);
    for version in ["v1", "v2"] {
        let mut args = plain_args(port, "2s");
        args.extend(
            [
                "--proxy",
                version,
                "--proxy-sources",
                "203.0.113.0/24",
                "--mix",
                "sic1-address=1,ping=1",
            ]
            .map(String::from),
        );
        let result = run(&args);
        assert_eq!(result.status.code(), Some(1), "stderr:\n{}", result.stderr);
        let json = result.json();
        assert_eq!(json["sessions"]["established"], 3, "{json:#}");
        assert_eq!(json["latency_us"]["proxy"]["count"], 3, "{json:#}");
        // Every SIC answer names 127.0.0.1: wrong. Pings pass.
        let wrong = json["errors"]["by_kind"]["wrong-reply"]
            .as_u64()
            .unwrap_or(0);
        let due = json["requests"]["due"].as_u64().unwrap_or(0);
        assert_eq!(wrong, due / 2, "{json:#}");
        assert_eq!(
            json["requests"]["ok"].as_u64(),
            Some(due - wrong),
            "{json:#}"
        );
        let example = json["errors"]["examples"]["wrong-reply"]
            .as_str()
            .unwrap_or_default();
        assert!(
            example.contains("reported IP 127.0.0.1, but ours is 203.0.113."),
            "{example}"
        );
    }
}

#[test]
fn an_error_threshold_lets_a_partly_wrong_run_pass() {
    let port = fake_server(Fault::WrongAddress);
    let mut args = plain_args(port, "2s");
    args.extend([
        "--mix".into(),
        "ping=9,sic1-address=1".into(),
        "--max-error-ratio".into(),
        "0.5".into(),
    ]);
    let result = run(&args);
    assert_eq!(result.status.code(), Some(0), "stderr:\n{}", result.stderr);
    assert!(result.json()["errors"]["ratio"].as_f64().unwrap_or(1.0) <= 0.5);
}

#[test]
fn a_wrong_password_is_reported_clearly() {
    let port = fake_server(Fault::WrongPassword);
    let result = run(&plain_args(port, "2s"));
    assert_eq!(result.status.code(), Some(1), "stderr:\n{}", result.stderr);
    let json = result.json();
    assert_eq!(json["sessions"]["established"], 0);
    assert_eq!(json["errors"]["by_kind"]["auth"], 3);
    // Whichever of the three sessions failed first names its account.
    let failure = json["failure"].as_str().unwrap_or_default();
    assert!(
        (1..=3).any(|n| failure.contains(&format!(
            "authentication failed for user{n}@localhost with PLAIN: not-authorized"
        ))),
        "{failure}"
    );
}

#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    let port = fake_server(Fault::Silent);
    let result = run(&plain_args(port, "500ms"));
    assert_eq!(result.status.code(), Some(1), "stderr:\n{}", result.stderr);
    let json = result.json();
    assert_eq!(json["errors"]["by_kind"]["login-timeout"], 3);
    assert!(
        json["failure"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer within 500ms while waiting for the server's stream header")
    );
    assert!(
        result.elapsed < Duration::from_secs(20),
        "took {:?}",
        result.elapsed
    );
}

#[test]
fn an_unreachable_server_is_a_connect_error() {
    let result = run(&plain_args(free_port(), "2s"));
    assert_eq!(result.status.code(), Some(1), "stderr:\n{}", result.stderr);
    let json = result.json();
    assert_eq!(json["errors"]["by_kind"]["connect"], 3);
    assert!(
        json["failure"]
            .as_str()
            .unwrap_or_default()
            .contains("refused"),
        "{json:#}"
    );
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let dir = std::env::temp_dir();
    let result = loadgen(
        &["--tls", "none", "--sessions", "1"],
        &dir,
        Duration::from_secs(30),
    );
    assert_eq!(result.status.code(), Some(2));
    assert!(
        result.stderr.contains("need a password"),
        "{}",
        result.stderr
    );
    let result = loadgen(
        &["--password", "x", "--mix", "sic2"],
        &dir,
        Duration::from_secs(30),
    );
    assert_eq!(result.status.code(), Some(2));
    assert!(
        result.stderr.contains("unknown request kind"),
        "{}",
        result.stderr
    );
}

#[test]
fn saturation_search_steps_up_to_the_highest_passing_rate() {
    let port = fake_server(Fault::Nothing);
    let mut args = base_args(port, "2s");
    args.extend(
        [
            "--saturate",
            "--rate",
            "50",
            "--step-factor",
            "2",
            "--max-rate",
            "200",
            "--duration",
            "500ms",
            "--slo-p99",
            "5s",
        ]
        .map(String::from),
    );
    let result = run(&args);
    assert_eq!(result.status.code(), Some(0), "stderr:\n{}", result.stderr);
    let json = result.json();
    let steps = json["saturation"]["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rates: Vec<f64> = steps.iter().filter_map(|s| s["rate"].as_f64()).collect();
    assert_eq!(rates, [50.0, 100.0, 200.0], "{json:#}");
    assert!(steps.iter().all(|s| s["pass"] == true), "{json:#}");
    assert_eq!(json["saturation"]["max_rate"], 200.0);
    assert_eq!(json["errors"]["total"], 0, "{json:#}");
    assert!(
        result.stderr.contains("highest rate within bound: 200/s"),
        "{}",
        result.stderr
    );
}
