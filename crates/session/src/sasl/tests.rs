use std::collections::HashMap;
use std::sync::OnceLock;

use super::*;
use crate::Accounts;

const DOMAIN: &str = "example.com";
const EXPORTER: [u8; 32] = [7; 32];

/// "user"/"pencil" with the RFC 5802 and RFC 7677 salts, plus "sha1only" with only
/// SHA-1 credentials (for the PLAIN fallback).
#[derive(Debug)]
struct TestAccounts(HashMap<(&'static str, ScramHash), ScramCredentials>);

impl Accounts for TestAccounts {
    fn scram_credentials(
        &self,
        user: &str,
        domain: &str,
        hash: ScramHash,
    ) -> Option<ScramCredentials> {
        if domain != DOMAIN {
            return None;
        }
        self.0
            .iter()
            .find(|((name, h), _)| *name == user && *h == hash)
            .map(|(_, c)| c.clone())
    }
}

fn accounts() -> &'static TestAccounts {
    static ACCOUNTS: OnceLock<TestAccounts> = OnceLock::new();
    ACCOUNTS.get_or_init(|| {
        let sha1_salt = scram::b64_decode("QSXCR+Q6sek8bf92").unwrap();
        let sha256_salt = scram::b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let sha1 = ScramCredentials::derive("pencil", ScramHash::Sha1, &sha1_salt, 4096).unwrap();
        let sha256 =
            ScramCredentials::derive("pencil", ScramHash::Sha256, &sha256_salt, 4096).unwrap();
        TestAccounts(HashMap::from([
            (("user", ScramHash::Sha1), sha1.clone()),
            (("user", ScramHash::Sha256), sha256),
            (("sha1only", ScramHash::Sha1), sha1),
        ]))
    })
}

fn ctx(tls_exporter: Option<&[u8; 32]>, plus_advertised: bool) -> ServerContext<'_> {
    ServerContext {
        accounts: accounts(),
        domain: DOMAIN,
        tls_exporter,
        plus_advertised,
        entropy: &crate::SystemEntropy,
    }
}

/// Starts a PLAIN exchange and runs its password check, as the I/O layer does.
fn plain_start(initial: Option<&[u8]>, ctx: &ServerContext<'_>) -> (ServerExchange, Step) {
    let (exchange, step) = ServerExchange::start(Mechanism::Plain, initial, ctx);
    (exchange, settle(step))
}

/// The step after a password check, if the step asked for one.
fn settle(step: Step) -> Step {
    match step {
        Step::CheckPassword(check) => check.run().into_step(),
        step => step,
    }
}

fn plain_ctx() -> ServerContext<'static> {
    ctx(None, false)
}

fn tls_ctx() -> ServerContext<'static> {
    ctx(Some(&EXPORTER), true)
}

fn fail(failure: Failure) -> Step {
    Step::Failure(failure)
}

/// Runs a whole exchange with [`ScramClient`]; returns the server's last step.
fn scram_login(
    hash: ScramHash,
    user: &str,
    password: &str,
    binding: ChannelBinding,
    ctx: &ServerContext<'_>,
    cache: &mut SaltedPasswordCache,
) -> Step {
    let mut client = ScramClient::new(hash, user, password, binding);
    let (mut server, step) =
        ServerExchange::start(client.mechanism(), Some(&client.client_first()), ctx);
    let Step::Challenge(server_first) = step else {
        return step;
    };
    let client_final = client.handle_server_first(&server_first, cache).unwrap();
    let step = server.step(&client_final, ctx);
    if let Step::Success {
        additional_data, ..
    } = &step
    {
        client.verify_server_final(additional_data).unwrap();
    }
    step
}

/// Sends a raw client-first for SCRAM-SHA-1; returns the server-first text.
fn raw_first(message: &str) -> (ServerExchange, Step) {
    ServerExchange::start_with_nonce(
        Mechanism::ScramSha1,
        Some(message.as_bytes()),
        &plain_ctx(),
        "3rfcNHYJY1ZVvWVs7j".to_owned(),
    )
}

fn success(username: &str, additional_data: &str) -> Step {
    Step::Success {
        username: username.to_owned(),
        additional_data: additional_data.as_bytes().to_vec(),
    }
}

const RFC5802_FINAL: &str =
    "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";

#[test]
fn rfc5802_vector_server() {
    let (mut server, step) = raw_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    assert_eq!(
        step,
        Step::Challenge(
            b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096".to_vec()
        )
    );
    assert_eq!(
        server.step(RFC5802_FINAL.as_bytes(), &plain_ctx()),
        success("user", "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
    );
    assert_eq!(
        server.step(b"", &plain_ctx()),
        fail(Failure::MalformedRequest)
    );
}

#[test]
fn rfc5802_vector_client() {
    let mut client = ScramClient::with_nonce(
        ScramHash::Sha1,
        "user",
        "pencil",
        ChannelBinding::Unsupported,
        "fyko+d2lbbFgONRv9qkxdawL".to_owned(),
    );
    assert_eq!(client.mechanism(), Mechanism::ScramSha1);
    assert_eq!(
        client.client_first(),
        b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
    );
    let server_first = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    let mut cache = SaltedPasswordCache::default();
    let client_final = client
        .handle_server_first(server_first, &mut cache)
        .unwrap();
    assert_eq!(client_final, RFC5802_FINAL.as_bytes());
    client
        .verify_server_final(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ=")
        .unwrap();
    assert_eq!(
        client.verify_server_final(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        Err(ClientError::ServerSignature)
    );
    assert_eq!(
        client.verify_server_final(b"e=invalid-proof"),
        Err(ClientError::Server("invalid-proof".to_owned()))
    );
    assert_eq!(
        client.handle_server_first(server_first, &mut cache),
        Err(ClientError::OutOfOrder)
    );
}

#[test]
fn rfc7677_vector_both_sides() {
    let client_nonce = "rOprNGfwEbeRWgbNEkqO";
    let server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    let mut client = ScramClient::with_nonce(
        ScramHash::Sha256,
        "user",
        "pencil",
        ChannelBinding::Unsupported,
        client_nonce.to_owned(),
    );
    let (mut server, step) = ServerExchange::start_with_nonce(
        Mechanism::ScramSha256,
        Some(&client.client_first()),
        &plain_ctx(),
        server_nonce.to_owned(),
    );
    assert_eq!(step, Step::Challenge(server_first.as_bytes().to_vec()));
    let mut cache = SaltedPasswordCache::default();
    let answer = client
        .handle_server_first(server_first.as_bytes(), &mut cache)
        .unwrap();
    assert_eq!(answer, client_final.as_bytes());
    assert_eq!(
        server.step(&answer, &plain_ctx()),
        success("user", server_final)
    );
    client.verify_server_final(server_final.as_bytes()).unwrap();
}

#[test]
fn round_trips_for_every_mechanism() {
    let mut cache = SaltedPasswordCache::default();
    for (hash, binding, ctx) in [
        (ScramHash::Sha1, ChannelBinding::Unsupported, plain_ctx()),
        (ScramHash::Sha256, ChannelBinding::Unsupported, plain_ctx()),
        (ScramHash::Sha256, ChannelBinding::Unsupported, tls_ctx()),
        (
            ScramHash::Sha1,
            ChannelBinding::TlsExporter(EXPORTER),
            tls_ctx(),
        ),
        (
            ScramHash::Sha256,
            ChannelBinding::TlsExporter(EXPORTER),
            tls_ctx(),
        ),
    ] {
        let step = scram_login(hash, "user", "pencil", binding, &ctx, &mut cache);
        assert!(matches!(step, Step::Success { ref username, .. } if username == "user"));
    }

    let message = plain_client_response(None, "user", "pencil");
    let (_, step) = plain_start(Some(&message), &plain_ctx());
    assert_eq!(step, success("user", ""));
}

#[test]
fn missing_initial_response_gets_an_empty_challenge() {
    let client = ScramClient::new(
        ScramHash::Sha256,
        "user",
        "pencil",
        ChannelBinding::Unsupported,
    );
    let (mut server, step) = ServerExchange::start(Mechanism::ScramSha256, None, &plain_ctx());
    assert_eq!(step, Step::Challenge(Vec::new()));
    assert!(
        matches!(server.step(&client.client_first(), &plain_ctx()), Step::Challenge(c) if c.starts_with(b"r="))
    );

    let (mut server, step) = plain_start(None, &plain_ctx());
    assert_eq!(step, Step::Challenge(Vec::new()));
    let message = plain_client_response(Some("user@EXAMPLE.com"), "user", "pencil");
    assert_eq!(
        settle(server.step(&message, &plain_ctx())),
        success("user", "")
    );
}

#[test]
fn plus_with_other_exporter_data_is_not_authorized() {
    let mut cache = SaltedPasswordCache::default();
    let step = scram_login(
        ScramHash::Sha256,
        "user",
        "pencil",
        ChannelBinding::TlsExporter([8; 32]),
        &tls_ctx(),
        &mut cache,
    );
    assert_eq!(step, fail(Failure::NotAuthorized));
}

#[test]
fn plus_needs_exporter_data_on_the_server() {
    let client = ScramClient::new(
        ScramHash::Sha256,
        "user",
        "pencil",
        ChannelBinding::TlsExporter(EXPORTER),
    );
    let (_, step) = ServerExchange::start(
        Mechanism::ScramSha256Plus,
        Some(&client.client_first()),
        &plain_ctx(),
    );
    assert_eq!(step, fail(Failure::InvalidMechanism));
}

#[test]
fn y_flag_is_a_downgrade_only_when_plus_was_advertised() {
    let mut cache = SaltedPasswordCache::default();
    let login = |ctx: &ServerContext<'_>, cache: &mut SaltedPasswordCache| {
        let binding = ChannelBinding::NotAdvertised;
        scram_login(ScramHash::Sha256, "user", "pencil", binding, ctx, cache)
    };
    assert_eq!(login(&tls_ctx(), &mut cache), fail(Failure::NotAuthorized));
    assert!(matches!(
        login(&ctx(Some(&EXPORTER), false), &mut cache),
        Step::Success { .. }
    ));
}

#[test]
fn gs2_flag_must_fit_the_mechanism() {
    for (mechanism, message) in [
        (Mechanism::ScramSha256Plus, "n,,n=user,r=abc"),
        (Mechanism::ScramSha256Plus, "y,,n=user,r=abc"),
        (Mechanism::ScramSha256Plus, "p=tls-unique,,n=user,r=abc"),
        (Mechanism::ScramSha256, "p=tls-exporter,,n=user,r=abc"),
        (Mechanism::ScramSha256, "x,,n=user,r=abc"),
        (Mechanism::ScramSha256, "n,n=user,r=abc"),
        (Mechanism::ScramSha256, "n"),
        (Mechanism::ScramSha256, "n,b=x,n=user,r=abc"),
    ] {
        let (_, step) = ServerExchange::start(mechanism, Some(message.as_bytes()), &tls_ctx());
        assert_eq!(
            step,
            fail(Failure::MalformedRequest),
            "{mechanism:?} {message}"
        );
    }
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let mut cache = SaltedPasswordCache::default();
    let binding = ChannelBinding::Unsupported;
    for (user, password) in [("user", "wrong"), ("nobody", "pencil")] {
        let step = scram_login(
            ScramHash::Sha256,
            user,
            password,
            binding,
            &plain_ctx(),
            &mut cache,
        );
        assert_eq!(step, fail(Failure::NotAuthorized));
        let message = plain_client_response(None, user, password);
        let (_, step) = plain_start(Some(&message), &plain_ctx());
        assert_eq!(step, fail(Failure::NotAuthorized));
    }
}

#[test]
fn accounts_are_those_of_the_streams_domain() {
    let mut cache = SaltedPasswordCache::default();
    let mut other = plain_ctx();
    other.domain = "other.example";
    for ctx in [&plain_ctx(), &other] {
        let expected = |step: &Step| match ctx.domain {
            DOMAIN => matches!(step, Step::Success { .. }),
            _ => *step == fail(Failure::NotAuthorized),
        };
        let binding = ChannelBinding::Unsupported;
        let step = scram_login(
            ScramHash::Sha256,
            "user",
            "pencil",
            binding,
            ctx,
            &mut cache,
        );
        assert!(expected(&step), "{} {step:?}", ctx.domain);
        let message = plain_client_response(None, "user", "pencil");
        let (_, step) = plain_start(Some(&message), ctx);
        assert!(expected(&step), "{} {step:?}", ctx.domain);
    }
}

#[test]
fn unknown_user_gets_a_stable_plausible_server_first() {
    let server_first = |user: &str| {
        let message = format!("n,,n={user},r=abc");
        let (_, step) = raw_first(&message);
        let Step::Challenge(challenge) = step else {
            panic!("{step:?}")
        };
        String::from_utf8(challenge).unwrap()
    };
    let unknown = server_first("nobody");
    assert_eq!(unknown, server_first("nobody"));
    assert_ne!(unknown, server_first("other"));
    // Like credentials from `ScramCredentials::generate`: 16 bytes of salt.
    let salt = unknown
        .strip_prefix("r=abc3rfcNHYJY1ZVvWVs7j,s=")
        .and_then(|rest| rest.strip_suffix(",i=4096"))
        .and_then(scram::b64_decode)
        .unwrap();
    assert_eq!(salt.len(), 16);
}

#[test]
fn bad_base64_is_incorrect_encoding() {
    let (mut server, _) = raw_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    let bad_proof = RFC5802_FINAL.replace("p=v0X8", "p=*0X8");
    assert_eq!(
        server.step(bad_proof.as_bytes(), &plain_ctx()),
        fail(Failure::IncorrectEncoding)
    );
    let (mut server, _) = raw_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    let bad_cbind = RFC5802_FINAL.replace("c=biws", "c=biw");
    assert_eq!(
        server.step(bad_cbind.as_bytes(), &plain_ctx()),
        fail(Failure::IncorrectEncoding)
    );
    assert_eq!(decode_payload(b"bi*s"), Err(Failure::IncorrectEncoding));
    assert_eq!(decode_payload(b"biws"), Ok(b"n,,".to_vec()));
    assert_eq!(decode_payload(b" =\n"), Ok(Vec::new()));
    assert_eq!(encode_payload(b""), "=");
    assert_eq!(encode_payload(b"n,,"), "biws");
}

#[test]
fn invalid_utf8_is_incorrect_encoding() {
    let (_, step) =
        ServerExchange::start(Mechanism::ScramSha1, Some(b"n,,n=\xff,r=a"), &plain_ctx());
    assert_eq!(step, fail(Failure::IncorrectEncoding));
    let (_, step) = plain_start(Some(b"\0user\0\xff"), &plain_ctx());
    assert_eq!(step, fail(Failure::IncorrectEncoding));
}

#[test]
fn saslname_escapes() {
    assert_eq!(scram::encode_saslname("a,b=c"), "a=2Cb=3Dc");
    assert_eq!(
        scram::decode_saslname("a=2Cb=3Dc").as_deref(),
        Some("a,b=c")
    );
    for bad in ["us=2cer", "user=", "us=3", "us=41er", "", "u\0"] {
        assert_eq!(scram::decode_saslname(bad), None, "{bad}");
    }
    let (_, step) = raw_first("n,,n=us=2Der,r=abc");
    assert_eq!(step, fail(Failure::MalformedRequest));
    let (_, step) = raw_first("n,a=us=er,n=user,r=abc");
    assert_eq!(step, fail(Failure::MalformedRequest));
}

#[test]
fn client_first_attributes_are_checked() {
    for message in [
        "n,,m=ext,n=user,r=abc",
        "n,,n=user",
        "n,,n=user,r=",
        "n,,r=abc,n=user",
        "n,,n=user,r=abc,junk",
        "n,,n=,r=abc",
    ] {
        let (_, step) = raw_first(message);
        assert_eq!(step, fail(Failure::MalformedRequest), "{message}");
    }
    let (_, step) = raw_first("n,,n=user,r=abc,x=ignored");
    assert!(matches!(step, Step::Challenge(_)));
}

#[test]
fn nonce_mismatch_is_not_authorized() {
    let (mut server, _) = raw_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    let other_nonce = RFC5802_FINAL.replace("VvWVs7j", "VvWVs7k");
    assert_eq!(
        server.step(other_nonce.as_bytes(), &plain_ctx()),
        fail(Failure::NotAuthorized)
    );
}

#[test]
fn client_final_shape_is_checked() {
    for message in [
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,c=biws,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=dG9vIHNob3J0",
    ] {
        let (mut server, _) = raw_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(
            server.step(message.as_bytes(), &plain_ctx()),
            fail(Failure::MalformedRequest),
            "{message}"
        );
    }
    // A GS2 header other than the one client-first used.
    let (mut server, _) = raw_first("n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
    let other_cbind = RFC5802_FINAL.replace("c=biws", "c=eSws");
    assert_eq!(
        server.step(other_cbind.as_bytes(), &plain_ctx()),
        fail(Failure::NotAuthorized)
    );
}

#[test]
fn authzid_must_be_the_user() {
    let (_, step) = raw_first("n,a=admin,n=user,r=abc");
    assert_eq!(step, fail(Failure::InvalidAuthzid));
    let (_, step) = raw_first("n,a=user@other.org,n=user,r=abc");
    assert_eq!(step, fail(Failure::InvalidAuthzid));

    let client_first = "n,a=user@example.com,n=user,r=fyko+d2lbbFgONRv9qkxdawL";
    let (mut server, step) = raw_first(client_first);
    let Step::Challenge(server_first) = step else {
        panic!("{step:?}")
    };
    let server_first = String::from_utf8(server_first).unwrap();
    let without_proof = format!(
        "c={},r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j",
        scram::b64_encode(b"n,a=user@example.com,")
    );
    let auth_message = format!("{},{server_first},{without_proof}", &client_first[21..]);
    let salt = scram::b64_decode("QSXCR+Q6sek8bf92").unwrap();
    let hash = ScramHash::Sha1;
    let keys =
        scram::Keys::from_salted_password(hash, &hash.salted_password("pencil", &salt, 4096));
    let signature = hash.hmac(&keys.stored_key, &[auth_message.as_bytes()]);
    let proof: Vec<u8> = keys
        .client_key
        .iter()
        .zip(&signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let message = format!("{without_proof},p={}", scram::b64_encode(&proof));
    assert!(matches!(
        server.step(message.as_bytes(), &plain_ctx()),
        Step::Success { ref username, .. } if username == "user"
    ));

    let message = plain_client_response(Some("admin"), "user", "pencil");
    let (_, step) = plain_start(Some(&message), &plain_ctx());
    assert_eq!(step, fail(Failure::InvalidAuthzid));
}

#[test]
fn oversize_messages_are_malformed() {
    let big = format!("n,,n=user,r={}", "a".repeat(MAX_MESSAGE_LEN));
    let (_, step) = raw_first(&big);
    assert_eq!(step, fail(Failure::MalformedRequest));
    let encoded = encode_payload(big.as_bytes());
    assert_eq!(
        decode_payload(encoded.as_bytes()),
        Err(Failure::MalformedRequest)
    );
    let (_, step) = plain_start(Some(big.as_bytes()), &plain_ctx());
    assert_eq!(step, fail(Failure::MalformedRequest));
}

#[test]
fn plain_messages_are_checked() {
    for message in [
        &b"user\0pencil"[..],
        b"\0user\0pencil\0",
        b"\0\0pencil",
        b"\0user\0",
    ] {
        let (_, step) = plain_start(Some(message), &plain_ctx());
        assert_eq!(step, fail(Failure::MalformedRequest));
    }
    let message = plain_client_response(None, "sha1only", "pencil");
    let (_, step) = plain_start(Some(&message), &plain_ctx());
    assert_eq!(step, success("sha1only", ""));
}

#[test]
fn cache_hit_skips_pbkdf2() {
    let mut cache = SaltedPasswordCache::default();
    let binding = ChannelBinding::Unsupported;
    for _ in 0..2 {
        let step = scram_login(
            ScramHash::Sha1,
            "user",
            "pencil",
            binding,
            &plain_ctx(),
            &mut cache,
        );
        assert!(matches!(step, Step::Success { .. }));
    }
    assert_eq!(cache.derivations(), 1);
}

#[test]
fn cache_stays_bounded() {
    let mut cache = SaltedPasswordCache::with_capacity(1);
    let binding = ChannelBinding::Unsupported;
    let server_first = |salt: &str| format!("r=abcdef,s={salt},i=1");
    for salt in ["c2FsdA==", "cGVwcGVy", "c2FsdA=="] {
        let mut client =
            ScramClient::with_nonce(ScramHash::Sha1, "u", "p", binding, "abc".to_owned());
        client
            .handle_server_first(server_first(salt).as_bytes(), &mut cache)
            .unwrap();
    }
    assert_eq!(cache.derivations(), 3);
    assert_eq!(cache.entries.len(), 1);
}

#[test]
fn client_checks_server_first() {
    let binding = ChannelBinding::Unsupported;
    let mut cache = SaltedPasswordCache::default();
    for (server_first, error) in [
        ("r=xyz123,s=c2FsdA==,i=4096", ClientError::NonceMismatch),
        ("r=abc,s=c2FsdA==,i=4096", ClientError::NonceMismatch),
        ("r=abcdef,s=c2FsdA==,i=0", ClientError::Iterations(0)),
        (
            "r=abcdef,s=c2FsdA==,i=4294967295",
            ClientError::Iterations(u32::MAX),
        ),
        ("m=x,r=abcdef,s=c2FsdA==,i=4096", ClientError::Malformed),
        ("r=abcdef,s=*,i=4096", ClientError::Malformed),
        ("r=abcdef,s=c2FsdA==,i=many", ClientError::Malformed),
    ] {
        let mut client =
            ScramClient::with_nonce(ScramHash::Sha1, "u", "p", binding, "abc".to_owned());
        assert_eq!(
            client.handle_server_first(server_first.as_bytes(), &mut cache),
            Err(error),
            "{server_first}"
        );
    }
    let client = ScramClient::new(ScramHash::Sha1, "u", "p", binding);
    assert_eq!(
        client.verify_server_final(b"v=AAAA"),
        Err(ClientError::OutOfOrder)
    );
    let mut client = ScramClient::new(ScramHash::Sha1, "u", "\u{7}", binding);
    let nonce = String::from_utf8(client.client_first()).unwrap();
    let nonce = nonce.rsplit_once("r=").unwrap().1;
    let server_first = format!("r={nonce}x,s=c2FsdA==,i=1");
    assert_eq!(
        client.handle_server_first(server_first.as_bytes(), &mut cache),
        Err(ClientError::InvalidPassword)
    );
}

#[test]
fn credentials_use_saslprep() {
    let salt = b"salt";
    let derive = |password: &str| ScramCredentials::derive(password, ScramHash::Sha256, salt, 1);
    // Non-ASCII spaces map to a space; soft hyphens map to nothing; NFKC applies.
    assert_eq!(derive("pen\u{A0}cil"), derive("pen cil"));
    assert_eq!(derive("pen\u{AD}cil"), derive("pencil"));
    assert_eq!(derive("\u{2168}"), derive("IX"));
    assert_eq!(derive("bell\u{7}"), Err(CredentialError::InvalidPassword));
    assert_eq!(derive(""), Err(CredentialError::InvalidPassword));
    assert_eq!(derive("\u{AD}"), Err(CredentialError::InvalidPassword));
    assert_eq!(
        ScramCredentials::derive("pencil", ScramHash::Sha1, salt, 0),
        Err(CredentialError::ZeroIterations)
    );

    let generated = ScramCredentials::generate("pen\u{A0}cil", ScramHash::Sha1, 2).unwrap();
    assert_eq!(generated.salt.len(), 16);
    assert_eq!(generated.iterations, 2);
    assert_eq!(generated.stored_key.len(), 20);
    assert!(generated.verify_password("pen cil", ScramHash::Sha1));
    assert!(!generated.verify_password("pencil", ScramHash::Sha1));
    assert!(!generated.verify_password("\u{7}", ScramHash::Sha1));
}

#[test]
fn names() {
    for mechanism in Mechanism::ALL {
        assert_eq!(Mechanism::from_name(mechanism.name()), Some(mechanism));
    }
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(
        Mechanism::from_name("SCRAM-SHA-256-PLUS"),
        Some(Mechanism::ScramSha256Plus)
    );
    assert_eq!(Failure::NotAuthorized.as_str(), "not-authorized");
    assert_eq!(Failure::IncorrectEncoding.to_string(), "incorrect-encoding");
}
