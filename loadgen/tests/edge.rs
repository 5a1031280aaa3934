//! Loadgen against the real xmpp-edge on loopback: every request kind, STARTTLS and
//! direct TLS, SCRAM with and without channel binding, PLAIN, PROXY headers v1 and v2 on
//! PROXY-required listeners, TLS records split across many reads; zero errors expected.
//!
//! Needs `target/<profile>/xmpp-edge`, which `cargo build --workspace --bins` builds (the
//! test suite runs that first): a binary of another package cannot be a dependency here.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{KillOnDrop, Run, free_port, loadgen};

/// The edge binary next to loadgen's, in the same target directory and profile.
fn edge_binary() -> PathBuf {
    let loadgen = Path::new(env!("CARGO_BIN_EXE_loadgen"));
    let edge = loadgen.with_file_name(format!("xmpp-edge{}", std::env::consts::EXE_SUFFIX));
    assert!(
        edge.exists(),
        "{} is missing: build it first with `cargo build --workspace --bins` (loadgen's tests run the real edge)",
        edge.display()
    );
    edge
}

struct Edge {
    _process: KillOnDrop,
    starttls: u16,
    direct: u16,
    /// Listeners that require a PROXY header (loopback is a trusted balancer by default).
    proxy_starttls: u16,
    proxy_direct: u16,
    dir: tempfile::TempDir,
}

fn start_edge(accounts: u32) -> Edge {
    let binary = edge_binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let (starttls, direct) = (free_port(), free_port());
    let (proxy_starttls, proxy_direct) = (free_port(), free_port());
    let config = dir.path().join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "domains = [\"localhost\"]\nusers_file = \"users.toml\"\n\
             [[listeners]]\nkind = \"starttls\"\naddress = \"127.0.0.1:{starttls}\"\n\
             [[listeners]]\nkind = \"direct_tls\"\naddress = \"127.0.0.1:{direct}\"\n\
             [[listeners]]\nkind = \"starttls\"\naddress = \"127.0.0.1:{proxy_starttls}\"\n\
             proxy_protocol = \"required\"\n\
             [[listeners]]\nkind = \"direct_tls\"\naddress = \"127.0.0.1:{proxy_direct}\"\n\
             proxy_protocol = \"required\"\n\
             [admin]\nenabled = false\n\
             [limits]\nmax_connections_per_ip = 1000\nstanza_rate = 1000.0\nstanza_burst = 1000\n\
             [log]\nfilter = \"warn\"\n"
        ),
    )
    .expect("write config");
    let mut add = Command::new(&binary)
        .args([
            "--config",
            "edge.toml",
            "user",
            "add-range",
            "user%d@localhost",
            "--from",
            "1",
            "--password-stdin",
        ])
        .args(["--to", &accounts.to_string()])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .spawn()
        .expect("xmpp-edge user add-range starts");
    std::io::Write::write_all(&mut add.stdin.take().expect("stdin"), b"secret\n")
        .expect("password");
    assert!(
        add.wait().expect("add-range finishes").success(),
        "xmpp-edge user add-range failed"
    );
    let log = std::fs::File::create(dir.path().join("edge.log")).expect("log file");
    let process = Command::new(&binary)
        .args(["--config", "edge.toml"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("xmpp-edge starts");
    let process = KillOnDrop(process);
    let deadline = Instant::now() + Duration::from_secs(20);
    for port in [starttls, direct, proxy_starttls, proxy_direct] {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            let log = std::fs::read_to_string(dir.path().join("edge.log")).unwrap_or_default();
            assert!(
                Instant::now() < deadline,
                "xmpp-edge does not listen on {port}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    std::fs::write(dir.path().join("password"), "secret\n").expect("password file");
    Edge {
        _process: process,
        starttls,
        direct,
        proxy_starttls,
        proxy_direct,
        dir,
    }
}

impl Edge {
    fn loadgen(&self, args: &[&str]) -> Run {
        let mut all = vec![
            "--host",
            "127.0.0.1",
            "--insecure",
            "--password-file",
            "password",
            "--json",
            "--timeout",
            "10s",
        ];
        all.extend_from_slice(args);
        loadgen(&all, self.dir.path(), Duration::from_secs(120))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }
}

fn assert_clean(run: &Run, edge: &Edge, sessions: u64) -> serde_json::Value {
    assert_eq!(
        run.status.code(),
        Some(0),
        "loadgen failed:\n{}\nedge log:\n{}",
        run.stderr,
        edge.log()
    );
    let json = run.json();
    assert_eq!(json["pass"], true, "{json:#}");
    assert_eq!(json["errors"]["total"], 0, "{json:#}");
    assert_eq!(json["sessions"]["established"], sessions, "{json:#}");
    assert_eq!(json["requests"]["ok"], json["requests"]["due"], "{json:#}");
    json
}

#[test]
fn every_request_kind_over_starttls_and_direct_tls() {
    let edge = start_edge(8);
    let port = edge.starttls.to_string();
    let run = edge.loadgen(&[
        "--port",
        &port,
        "--sessions",
        "8",
        "--threads",
        "2",
        "--rate",
        "40",
        "--duration",
        "2s",
        "--hdr-log",
        "starttls.hlog",
    ]);
    let json = assert_clean(&run, &edge, 8);
    assert!(
        json["requests"]["ok"].as_u64().unwrap_or(0) >= 70,
        "{json:#}"
    );
    for metric in [
        "connect",
        "tls",
        "sasl",
        "bind",
        "login",
        "sic0-ip",
        "sic0-address",
        "sic1-address",
        "disco-info",
        "ping",
        "requests",
    ] {
        assert!(
            json["latency_us"][metric]["count"].as_u64().unwrap_or(0) > 0,
            "no {metric} in {json:#}"
        );
    }
    assert_eq!(json["target"]["sasl"], "SCRAM-SHA-256");
    // Every session went on with its TLS 1.3 keys alone, and closed cleanly that way.
    assert_eq!(json["sessions"]["tls_compacted"], 8, "{json:#}");

    // Direct TLS with tls-exporter channel binding, SCRAM-SHA-1 and two requests in flight.
    let port = edge.direct.to_string();
    let run = edge.loadgen(&[
        "--tls",
        "direct",
        "--port",
        &port,
        "--sasl",
        "scram-sha-1-plus",
        "--sessions",
        "4",
        "--pipeline",
        "2",
        "--rate",
        "40",
        "--duration",
        "1s",
        "--mix",
        "sic1-address=2,ping=1",
        "--hdr-log",
        "direct.hlog",
    ]);
    let json = assert_clean(&run, &edge, 4);
    assert_eq!(json["target"]["tls"], "direct");
    // -PLUS needs rustls's buffered connection, which keeps its state.
    assert_eq!(json["sessions"]["tls_compacted"], 0, "{json:#}");

    // The two logs merge into one report.
    let merged = loadgen(
        &[
            "merge",
            "--json",
            "starttls.hlog",
            "direct.hlog",
            "--output",
            "all.hlog",
        ],
        edge.dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(merged.status.code(), Some(0), "{}", merged.stderr);
    let requests = merged.json()["latency_us"]["requests"]["count"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        requests >= 70 + json["requests"]["ok"].as_u64().unwrap_or(0),
        "{}",
        merged.stdout
    );
    assert!(edge.dir.path().join("all.hlog").exists());
    let plot = loadgen(
        &["plot", "starttls.hlog", "direct.hlog", "-o", "compare.svg"],
        edge.dir.path(),
        Duration::from_secs(30),
    );
    assert_eq!(plot.status.code(), Some(0), "{}", plot.stderr);
    let svg = std::fs::read_to_string(edge.dir.path().join("compare.svg")).unwrap_or_default();
    assert!(svg.contains("starttls") && svg.contains("direct"), "{svg}");

    // PLAIN, and a run that only logs in and out (no requests).
    let run = edge.loadgen(&[
        "--port",
        &edge.starttls.to_string(),
        "--sessions",
        "2",
        "--rate",
        "0",
        "--sasl",
        "plain",
    ]);
    let json = assert_clean(&run, &edge, 2);
    assert_eq!(json["requests"]["due"], 0);
}

#[test]
fn proxy_headers_v1_and_v2_with_synthetic_sources() {
    let edge = start_edge(8);
    // v1 over STARTTLS, v2 before the direct TLS ClientHello; both address families.
    for (version, tls, port) in [
        ("v1", "starttls", edge.proxy_starttls),
        ("v2", "direct", edge.proxy_direct),
    ] {
        let port = port.to_string();
        let run = edge.loadgen(&[
            "--proxy",
            version,
            "--proxy-sources",
            "198.51.100.0/24,2001:db8::/64",
            "--proxy-ports",
            "20000-20002",
            "--tls",
            tls,
            "--port",
            &port,
            "--sessions",
            "8",
            "--threads",
            "2",
            "--rate",
            "60",
            "--duration",
            "1s",
            "--mix",
            "sic0-ip=1,sic0-address=1,sic1-address=1,ping=1",
        ]);
        // Zero errors: every SIC answer carried the header's address and port.
        let json = assert_clean(&run, &edge, 8);
        assert_eq!(json["latency_us"]["proxy"]["count"], 8, "{json:#}");
        let sic = ["sic0-ip", "sic0-address", "sic1-address"]
            .iter()
            .map(|m| json["latency_us"][m]["count"].as_u64().unwrap_or(0))
            .sum::<u64>();
        assert!(sic >= 40, "{json:#}");
        let described = json["target"]["proxy"].as_str().unwrap_or_default();
        assert!(described.starts_with(version), "{json:#}");
    }
    // Without --proxy, the PROXY listener closes the connection at loadgen's first byte.
    let run = edge.loadgen(&[
        "--port",
        &edge.proxy_starttls.to_string(),
        "--sessions",
        "1",
        "--rate",
        "0",
    ]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert_eq!(
        run.json()["errors"]["by_kind"]["stream"],
        1,
        "{}",
        run.stdout
    );
}

/// Forwards connections to `target`, passing the server's bytes on a few at a time with
/// pauses, so loadgen sees TLS records (and handshake messages) split across many reads.
fn dribbling_proxy(target: u16) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let (Ok(mut client_in), Ok(mut server_out)) = (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut client_in, &mut server_out);
            });
            std::thread::spawn(move || dribble(server, client));
        }
    });
    port
}

fn dribble(mut from: TcpStream, mut to: TcpStream) {
    use std::io::{Read as _, Write as _};
    let mut buffer = [0u8; 4096];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for piece in buffer[..n].chunks(7) {
            if to.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[test]
fn tls_records_split_across_many_reads() {
    let edge = start_edge(4);
    // Behind PROXY listeners, so SIC answers name loadgen's synthetic sources, not the
    // relay's address.
    for (tls, port, proxy) in [
        ("starttls", edge.proxy_starttls, "v1"),
        ("direct", edge.proxy_direct, "v2"),
    ] {
        let port = dribbling_proxy(port).to_string();
        let run = edge.loadgen(&[
            "--tls",
            tls,
            "--port",
            &port,
            "--proxy",
            proxy,
            "--sessions",
            "4",
            "--rate",
            "20",
            "--duration",
            "1s",
            "--sasl",
            "plain",
        ]);
        let json = assert_clean(&run, &edge, 4);
        assert!(
            json["requests"]["ok"].as_u64().unwrap_or(0) >= 15,
            "{json:#}"
        );
        // Once logged in, the dribbled records went through loadgen's own record layer.
        assert_eq!(json["sessions"]["tls_compacted"], 4, "{json:#}");
    }
}
