//! SASL on the stream: every mechanism, the offers by transport, failures and the limit.

use session::sasl::{self, Mechanism};
use session::{Cause, Config, Event, ListenerKind, Violation};

use crate::client::{Client, PASSWORD, SASL_NS, TLS12, TLS13, v4_client};

/// A client past STARTTLS with `info`, at the SASL stage.
fn at_sasl(info: session::TlsInfo) -> Client {
    let mut client = Client::new();
    client.open();
    client.starttls(info);
    client.open();
    client
}

#[test]
fn scram_sha1() {
    let mut client = at_sasl(TLS13);
    client
        .auth_scram(Mechanism::ScramSha1, "alice", PASSWORD)
        .expect("auth");
}

#[test]
fn scram_sha256() {
    let mut client = at_sasl(TLS13);
    client
        .auth_scram(Mechanism::ScramSha256, "bob", PASSWORD)
        .expect("auth");
}

#[test]
fn scram_sha256_plus_binds_to_tls_exporter() {
    let mut client = at_sasl(TLS13);
    client
        .auth_scram(Mechanism::ScramSha256Plus, "alice", PASSWORD)
        .expect("auth");
}

#[test]
fn scram_sha1_plus() {
    let mut client = at_sasl(TLS13);
    client
        .auth_scram(Mechanism::ScramSha1Plus, "alice", PASSWORD)
        .expect("auth");
}

#[test]
fn plus_refused_without_tls13_exporter() {
    let mut client = at_sasl(TLS12);
    let refused = client.auth_scram(Mechanism::ScramSha256Plus, "alice", PASSWORD);
    assert_eq!(refused, Err("invalid-mechanism".to_owned()));
}

#[test]
fn plain_over_tls() {
    let mut client = at_sasl(TLS12);
    client.auth_plain("alice", PASSWORD).expect("auth");
}

#[test]
fn plain_wrong_password() {
    let mut client = at_sasl(TLS13);
    assert_eq!(
        client.auth_plain("alice", "wrong"),
        Err("not-authorized".to_owned())
    );
}

#[test]
fn scram_wrong_password_and_unknown_user() {
    let mut client = at_sasl(TLS13);
    let wrong = client.auth_scram(Mechanism::ScramSha256, "alice", "wrong");
    assert_eq!(wrong, Err("not-authorized".to_owned()));
    let unknown = client.auth_scram(Mechanism::ScramSha256, "mallory", PASSWORD);
    assert_eq!(unknown, Err("not-authorized".to_owned()));
    // A third, correct attempt is still allowed (the limit is 3 failures).
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD)
        .expect("auth");
}

#[test]
fn plain_is_not_offered_in_plaintext() {
    let mut client = Client::with_config(Config {
        require_tls: false,
        ..Config::default()
    });
    client.open();
    assert_eq!(
        client.auth_plain("alice", PASSWORD),
        Err("encryption-required".to_owned())
    );
    // SCRAM is fine without TLS when TLS is optional.
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD)
        .expect("auth");
}

#[test]
fn no_sasl_before_required_tls() {
    let mut client = Client::new();
    client.open();
    let refused = client.auth_scram(Mechanism::ScramSha256, "alice", PASSWORD);
    assert_eq!(refused, Err("encryption-required".to_owned()));
}

#[test]
fn unknown_mechanism() {
    let mut client = at_sasl(TLS13);
    client.send(&format!("<auth xmlns='{SASL_NS}' mechanism='DIGEST-MD5'/>"));
    assert_eq!(client.sasl_reply(), Err("invalid-mechanism".to_owned()));
}

#[test]
fn bad_base64_is_incorrect_encoding() {
    let mut client = at_sasl(TLS13);
    client.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>!!not base64!!</auth>"
    ));
    assert_eq!(client.sasl_reply(), Err("incorrect-encoding".to_owned()));
}

#[test]
fn auth_without_initial_response_gets_empty_challenge() {
    let mut client = at_sasl(TLS13);
    client.send(&format!("<auth xmlns='{SASL_NS}' mechanism='PLAIN'/>"));
    let challenge = client.sasl_reply().expect("challenge");
    assert_eq!(
        (challenge.name.as_str(), challenge.text.as_str()),
        ("challenge", "")
    );
    let plain = sasl::plain_client_response(None, "alice", PASSWORD);
    client.send(&format!(
        "<response xmlns='{SASL_NS}'>{}</response>",
        sasl::encode_payload(&plain)
    ));
    assert_eq!(client.sasl_reply().expect("success").name, "success");
    assert_eq!(
        client.event(),
        Some(Event::Authenticated {
            bare_jid: "alice@localhost".to_owned()
        })
    );
}

#[test]
fn abort_then_retry() {
    let mut client = at_sasl(TLS13);
    client.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='SCRAM-SHA-256'/>"
    ));
    assert_eq!(client.sasl_reply().expect("challenge").name, "challenge");
    client.send(&format!("<abort xmlns='{SASL_NS}'/>"));
    assert_eq!(client.sasl_reply(), Err("aborted".to_owned()));
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD)
        .expect("auth");
}

#[test]
fn response_without_exchange() {
    let mut client = at_sasl(TLS13);
    client.send(&format!("<response xmlns='{SASL_NS}'>=</response>"));
    assert_eq!(client.sasl_reply(), Err("malformed-request".to_owned()));
}

#[test]
fn failure_limit_closes_with_policy_violation() {
    let mut client = at_sasl(TLS13);
    for _ in 0..2 {
        assert!(client.auth_plain("alice", "wrong").is_err());
    }
    assert_eq!(
        client.auth_plain("alice", "wrong"),
        Err("not-authorized".to_owned())
    );
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(client.closed_by, Some(Cause::AuthFailures));
}

#[test]
fn failure_limit_is_configurable() {
    let config = Config {
        max_auth_failures: 1,
        ..Config::default()
    };
    let mut client = Client::with(config, ListenerKind::DirectTls, Some(TLS13), v4_client());
    client.open();
    assert!(
        client
            .auth_scram(Mechanism::ScramSha1, "alice", "wrong")
            .is_err()
    );
    assert_eq!(client.stream_error(), "policy-violation");
}

#[test]
fn restart_after_success_offers_bind() {
    let mut client = at_sasl(TLS13);
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD)
        .expect("auth");
    let (_, features) = client.open();
    let names: Vec<_> = features.children.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bind", "session"]);
}

#[test]
fn auth_after_success_is_refused() {
    let mut client = at_sasl(TLS13);
    client
        .auth_scram(Mechanism::ScramSha256, "alice", PASSWORD)
        .expect("auth");
    client.open();
    client.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>=</auth>"
    ));
    assert_eq!(client.stream_error(), "policy-violation");
    assert_eq!(
        client.closed_by,
        Some(Cause::Violation(Violation::AlreadyAuthenticated))
    );
}

/// PLAIN's PBKDF2 runs outside the core: the connection asks for it with an event and
/// holds everything the client sends meanwhile, then takes it in after the verdict.
#[test]
fn plain_password_check_is_handed_out_and_input_waits_for_it() {
    let mut client = at_sasl(TLS13);
    client.check_passwords = false;
    let auth = format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{}</auth>",
        sasl::encode_payload(&sasl::plain_client_response(None, "alice", PASSWORD))
    );
    // The client pipelines the restarted stream's header behind its credentials.
    client.send(&(auth + &Client::header(crate::client::DOMAIN)));
    assert!(client.no_items(), "nothing is answered before the verdict");
    let check = match client.event() {
        Some(Event::CheckPassword(check)) => check,
        other => panic!("expected a password check, got {other:?}"),
    };
    assert!(
        !format!("{check:?}").contains(PASSWORD),
        "Debug hides the password"
    );
    client.conn.password_checked(check.run(), client.now);
    client.pump();
    assert_eq!(client.sasl_reply().expect("success").name, "success");
    assert!(matches!(client.event(), Some(Event::Authenticated { .. })));
    match client.item() {
        crate::client::Item::Header(header) => assert_eq!(header.name, "stream"),
        other => panic!("the held header opens the new stream, got {other:?}"),
    }
}

#[test]
fn a_wrong_plain_password_fails_after_its_check() {
    let mut client = at_sasl(TLS13);
    client.check_passwords = false;
    client.send(&format!(
        "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{}</auth>",
        sasl::encode_payload(&sasl::plain_client_response(None, "alice", "wrong"))
    ));
    let Some(Event::CheckPassword(check)) = client.event() else {
        panic!("expected a password check");
    };
    client.conn.password_checked(check.run(), client.now);
    client.pump();
    assert_eq!(client.sasl_reply(), Err("not-authorized".to_owned()));
}
