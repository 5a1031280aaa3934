//! The real `xmpp-edge` binary as a child process: signals and descriptor exhaustion.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Fixture, PASSWORD, Process, binary, write_config};
use edge::users::{StoredUser, UsersFile};
use nix::sys::signal::Signal;
use session::sasl::ScramHash;

fn addr_of(listening: &[(String, std::net::SocketAddr)], kind: &str) -> std::net::SocketAddr {
    listening.iter().find(|(k, _)| k == kind).unwrap().1
}

/// An account added while the server runs can log in after SIGHUP; a broken users file
/// on reload keeps the accounts in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_users() {
    let fixture = Fixture::new();
    let config = write_config(&fixture, "", "", true);
    let mut server = Process::run(&config);
    let addr = addr_of(&server.listening(2).await, "direct_tls");
    let connector = fixture.tls(true);

    let mut file = UsersFile::load(&fixture.users).unwrap().unwrap();
    file.users.insert(
        "carol@localhost".into(),
        StoredUser::from_password(PASSWORD, common::ITERATIONS).unwrap(),
    );
    file.save(&fixture.users).unwrap();
    server.signal(Signal::SIGHUP);
    common::eventually("the reload", || {
        server.log_contains("origin=\"reloaded\" accounts=3")
    })
    .await;
    let mut carol = Client::connect_tls(addr, &connector).await;
    carol.open_stream().await;
    carol
        .scram("carol", PASSWORD, ScramHash::Sha256, false)
        .await;

    std::fs::write(&fixture.users, "not toml [").unwrap();
    server.signal(Signal::SIGHUP);
    common::eventually("the failed reload", || {
        server.log_contains("users file not reloaded")
    })
    .await;
    let mut alice = Client::connect_tls(addr, &connector).await;
    alice.open_stream().await;
    alice
        .scram("alice", PASSWORD, ScramHash::Sha256, false)
        .await;
    assert!(server.child.try_wait().unwrap().is_none());
}

/// SIGTERM: listeners close at once and /readyz turns 503, a connected client gets
/// `<system-shutdown/>` after the grace period, and the process exits 0. Also covers the
/// self-signed default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_down_gracefully() {
    let fixture = Fixture::new();
    let config = write_config(
        &fixture,
        "",
        "grace_period = \"1s\"\nforce_after = \"3s\"",
        false,
    );
    let mut server = Process::run(&config);
    let listening = server.listening(2).await;
    assert!(server.log_contains("SELF-SIGNED"), "{}", server.log_text());
    let addr = addr_of(&listening, "starttls");
    let admin = server.admin_addr().await;
    assert_eq!(common::http_get(admin, "/readyz", "*/*").await.status, 200);

    let mut client = Client::connect(addr).await;
    client.open_stream().await;
    let signalled = Instant::now();
    server.signal(Signal::SIGTERM);
    common::eventually("draining", || server.log_contains("draining")).await;
    assert_eq!(common::http_get(admin, "/readyz", "*/*").await.status, 503);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    let closed = client.expect_closed(Duration::from_secs(10)).await;
    assert_eq!(closed.stream_error(), Some("system-shutdown"), "{closed:?}");
    assert!(
        signalled.elapsed() >= Duration::from_millis(900),
        "closed before the grace period"
    );
    let status = server.wait(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}\n{}", server.log_text());
    assert!(server.log_contains("shutdown complete"));
}

/// With a tiny descriptor limit, accepts fail with EMFILE: the server logs it, keeps
/// serving its existing connections, and serves new clients once descriptors free up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_running_out_of_file_descriptors() {
    let fixture = Fixture::new();
    let limits = "max_connections = 100000\nmax_connections_per_ip = 100000\ntls_handshake_timeout = \"30s\"";
    let config = write_config(&fixture, limits, "", true);
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --config \"$1\"")
        .arg(binary())
        .arg(&config);
    let mut server = Process::spawn(command);
    let addr = addr_of(&server.listening(2).await, "starttls");

    let mut early = Client::connect(addr).await;
    early.open_stream().await;
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    common::eventually("accept failures", || server.log_contains("cannot accept")).await;
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "xmpp-edge died:\n{}",
        server.log_text()
    );

    // An existing connection is still served.
    early
        .send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await;
    early.expect("proceed").await;

    drop(flood);
    drop(early);
    let mut late = Client::connect(addr).await;
    late.starttls(&fixture.tls(false)).await;
    late.scram("alice", PASSWORD, ScramHash::Sha256, false)
        .await;
    assert!(server.child.try_wait().unwrap().is_none());
}
