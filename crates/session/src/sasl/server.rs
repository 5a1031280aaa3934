//! The server side of one SASL exchange.

use std::sync::OnceLock;

use rand::RngCore as _;
use subtle::{Choice, ConstantTimeEq as _};

use super::scram;
use super::{
    DEFAULT_ITERATIONS, Failure, MAX_MESSAGE_LEN, Mechanism, SALT_LEN, ScramCredentials, ScramHash,
    Step,
};
use crate::Accounts;
use crate::entropy::Entropy;

/// The only channel binding type supported: RFC 9266, for TLS 1.3.
const CB_NAME: &str = "tls-exporter";

/// What the server side needs to know about the connection and the host.
#[derive(Debug, Clone, Copy)]
pub struct ServerContext<'a> {
    /// Where credentials come from.
    pub accounts: &'a dyn Accounts,
    /// The host's domain: an authzid may be the user's bare JID `user@domain`.
    pub domain: &'a str,
    /// RFC 9266 tls-exporter data when the connection is TLS 1.3; the PLUS mechanisms
    /// require it.
    pub tls_exporter: Option<&'a [u8; 32]>,
    /// Whether PLUS mechanisms were offered on this connection: then a client saying
    /// "y" (it binds, but thinks we do not) is under a downgrade attack.
    pub plus_advertised: bool,
    /// Where the server nonce comes from.
    pub entropy: &'a dyn Entropy,
}

/// Server side of one authentication exchange.
pub struct ServerExchange {
    mechanism: Mechanism,
    state: State,
}

enum State {
    /// An empty challenge went out; the PLAIN message comes next.
    AwaitPlain,
    /// An empty challenge went out; the client-first message comes next.
    AwaitClientFirst { server_nonce: String },
    /// Server-first went out; the client-final message comes next.
    AwaitClientFinal(Box<PendingFinal>),
    /// Success or failure was sent.
    Done,
}

/// What the client-final message is checked against.
struct PendingFinal {
    hash: ScramHash,
    username: String,
    credentials: ScramCredentials,
    /// False for an unknown user, whose exchange runs on fake credentials to its end.
    known: Choice,
    /// The expected decoded `c=`: GS2 header plus channel binding data.
    cbind_input: Vec<u8>,
    /// Client nonce followed by server nonce.
    nonce: String,
    /// client-first-message-bare "," server-first-message ",".
    auth_message_prefix: String,
}

impl std::fmt::Debug for ServerExchange {
    /// Shows no keys: StoredKey would allow an offline dictionary attack.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::AwaitPlain => "await-plain",
            State::AwaitClientFirst { .. } => "await-client-first",
            State::AwaitClientFinal(_) => "await-client-final",
            State::Done => "done",
        };
        f.debug_struct("ServerExchange")
            .field("mechanism", &self.mechanism)
            .field("state", &state)
            .finish()
    }
}

impl ServerExchange {
    /// Starts on `<auth mechanism=...>`; `initial_response` is `None` when the element had
    /// no text (the server then answers with an empty challenge).
    pub fn start(
        mechanism: Mechanism,
        initial_response: Option<&[u8]>,
        ctx: &ServerContext<'_>,
    ) -> (Self, Step) {
        let server_nonce = if mechanism == Mechanism::Plain {
            String::new()
        } else {
            scram::nonce_from(ctx.entropy)
        };
        Self::start_with_nonce(mechanism, initial_response, ctx, server_nonce)
    }

    /// [`start`](Self::start) with a given server nonce (tests use the RFC vectors' nonces).
    pub(super) fn start_with_nonce(
        mechanism: Mechanism,
        initial_response: Option<&[u8]>,
        ctx: &ServerContext<'_>,
        server_nonce: String,
    ) -> (Self, Step) {
        let mut exchange = ServerExchange {
            mechanism,
            state: State::Done,
        };
        if mechanism.is_plus() && ctx.tls_exporter.is_none() {
            return (exchange, Step::Failure(Failure::InvalidMechanism));
        }
        exchange.state = match mechanism {
            Mechanism::Plain => State::AwaitPlain,
            _ => State::AwaitClientFirst { server_nonce },
        };
        let step = match initial_response {
            Some(response) => exchange.step(response, ctx),
            None => Step::Challenge(Vec::new()),
        };
        (exchange, step)
    }

    /// Handles a `<response>` payload.
    pub fn step(&mut self, response: &[u8], ctx: &ServerContext<'_>) -> Step {
        let state = std::mem::replace(&mut self.state, State::Done);
        let outcome = if response.len() > MAX_MESSAGE_LEN {
            Err(Failure::MalformedRequest)
        } else {
            match state {
                State::AwaitPlain => plain(response, ctx),
                State::AwaitClientFirst { server_nonce } => {
                    self.client_first(response, ctx, &server_nonce)
                }
                State::AwaitClientFinal(pending) => client_final(&pending, response),
                State::Done => Err(Failure::MalformedRequest),
            }
        };
        outcome.unwrap_or_else(Step::Failure)
    }

    /// Checks client-first, looks the user up and answers with server-first.
    fn client_first(
        &mut self,
        message: &[u8],
        ctx: &ServerContext<'_>,
        server_nonce: &str,
    ) -> Result<Step, Failure> {
        let hash = self
            .mechanism
            .scram_hash()
            .ok_or(Failure::InvalidMechanism)?;
        let message = std::str::from_utf8(message).map_err(|_| Failure::IncorrectEncoding)?;
        let (flag, rest) = message.split_once(',').ok_or(Failure::MalformedRequest)?;
        let (authzid, bare) = rest.split_once(',').ok_or(Failure::MalformedRequest)?;
        let gs2_header = &message[..flag.len() + authzid.len() + 2];

        let cb_data: &[u8] = match (flag, scram::attribute(flag, b'p')) {
            ("n", _) if !self.mechanism.is_plus() => &[],
            // The client binds but saw no PLUS: someone stripped it from our features.
            ("y", _) if !self.mechanism.is_plus() => {
                if ctx.plus_advertised {
                    return Err(Failure::NotAuthorized);
                }
                &[]
            }
            (_, Some(CB_NAME)) if self.mechanism.is_plus() => {
                ctx.tls_exporter.ok_or(Failure::InvalidMechanism)?
            }
            _ => return Err(Failure::MalformedRequest),
        };
        let authzid = match authzid {
            "" => None,
            _ => {
                let name = scram::attribute(authzid, b'a').ok_or(Failure::MalformedRequest)?;
                Some(scram::decode_saslname(name).ok_or(Failure::MalformedRequest)?)
            }
        };

        let mut attrs = bare.split(',');
        // A mandatory extension ("m=") is one we cannot know, so it must fail.
        let username = attrs
            .next()
            .and_then(|attr| scram::attribute(attr, b'n'))
            .and_then(scram::decode_saslname)
            .ok_or(Failure::MalformedRequest)?;
        let client_nonce = attrs
            .next()
            .and_then(|attr| scram::attribute(attr, b'r'))
            .filter(|nonce| scram::is_valid_nonce(nonce))
            .ok_or(Failure::MalformedRequest)?;
        if !attrs.all(scram::is_extension) {
            return Err(Failure::MalformedRequest);
        }
        if let Some(authzid) = authzid {
            check_authzid(&authzid, &username, ctx.domain)?;
        }

        let (credentials, known) = lookup(ctx.accounts, &username, ctx.domain, hash);
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            scram::b64_encode(&credentials.salt),
            credentials.iterations
        );
        let mut cbind_input = gs2_header.as_bytes().to_vec();
        cbind_input.extend_from_slice(cb_data);
        let challenge = server_first.as_bytes().to_vec();
        self.state = State::AwaitClientFinal(Box::new(PendingFinal {
            hash,
            username,
            credentials,
            known,
            cbind_input,
            nonce,
            auth_message_prefix: format!("{bare},{server_first},"),
        }));
        Ok(Step::Challenge(challenge))
    }
}

/// Checks client-final: channel binding, nonce, then the proof.
fn client_final(pending: &PendingFinal, message: &[u8]) -> Result<Step, Failure> {
    let message = std::str::from_utf8(message).map_err(|_| Failure::IncorrectEncoding)?;
    let at = message.rfind(",p=").ok_or(Failure::MalformedRequest)?;
    let (without_proof, proof) = (&message[..at], &message[at + 3..]);
    let mut attrs = without_proof.split(',');
    let cbind = attrs
        .next()
        .and_then(|attr| scram::attribute(attr, b'c'))
        .ok_or(Failure::MalformedRequest)?;
    let nonce = attrs
        .next()
        .and_then(|attr| scram::attribute(attr, b'r'))
        .ok_or(Failure::MalformedRequest)?;
    if !attrs.all(scram::is_extension) {
        return Err(Failure::MalformedRequest);
    }
    let cbind = scram::b64_decode(cbind).ok_or(Failure::IncorrectEncoding)?;
    let proof = scram::b64_decode(proof).ok_or(Failure::IncorrectEncoding)?;
    let hash = pending.hash;
    if proof.len() != hash.output_len() {
        return Err(Failure::MalformedRequest);
    }
    if !bool::from(cbind.ct_eq(&pending.cbind_input)) || nonce != pending.nonce {
        return Err(Failure::NotAuthorized);
    }

    let auth_message = format!("{}{without_proof}", pending.auth_message_prefix);
    let credentials = &pending.credentials;
    let signature = hash.hmac(&credentials.stored_key, &[auth_message.as_bytes()]);
    let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
    let valid = hash.digest(&client_key).ct_eq(&credentials.stored_key) & pending.known;
    if !bool::from(valid) {
        return Err(Failure::NotAuthorized);
    }
    let server_signature = hash.hmac(&credentials.server_key, &[auth_message.as_bytes()]);
    Ok(Step::Success {
        username: pending.username.clone(),
        additional_data: format!("v={}", scram::b64_encode(&server_signature)).into_bytes(),
    })
}

/// PLAIN (RFC 4616), checked against the stored SCRAM credentials.
fn plain(message: &[u8], ctx: &ServerContext<'_>) -> Result<Step, Failure> {
    let message = std::str::from_utf8(message).map_err(|_| Failure::IncorrectEncoding)?;
    let mut parts = message.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::MalformedRequest);
    };
    if username.is_empty() || password.is_empty() {
        return Err(Failure::MalformedRequest);
    }
    if !authzid.is_empty() {
        check_authzid(authzid, username, ctx.domain)?;
    }
    let stored = [ScramHash::Sha256, ScramHash::Sha1]
        .into_iter()
        .find_map(|hash| {
            Some((
                ctx.accounts.scram_credentials(username, ctx.domain, hash)?,
                hash,
            ))
        });
    // An unknown user costs the same PBKDF2 run as a known one.
    let (credentials, hash, known) = match stored {
        Some((credentials, hash)) => (credentials, hash, true),
        None => (
            fake_credentials(username, ScramHash::Sha256),
            ScramHash::Sha256,
            false,
        ),
    };
    Ok(Step::CheckPassword(PasswordCheck {
        username: username.to_owned(),
        password: password.to_owned(),
        credentials,
        hash,
        known,
    }))
}

/// A PLAIN password to check against stored (or, for an unknown user, fake)
/// credentials. `Send + 'static`, so it can be run on another thread.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordCheck {
    username: String,
    password: String,
    credentials: ScramCredentials,
    hash: ScramHash,
    /// False for an unknown user: the check runs all the same, then fails.
    known: bool,
}

impl std::fmt::Debug for PasswordCheck {
    /// Shows neither the password nor the keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordCheck")
            .field("username", &self.username)
            .field("hash", &self.hash)
            .finish_non_exhaustive()
    }
}

impl PasswordCheck {
    /// Derives the salted password (the costly part) and compares it.
    pub fn run(self) -> PasswordVerdict {
        let matches = self.credentials.verify_password(&self.password, self.hash);
        PasswordVerdict {
            username: (matches && self.known).then_some(self.username),
        }
    }
}

/// The result of a [`PasswordCheck`], to hand back to the exchange's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordVerdict {
    /// The authenticated user, when the password matched a known account.
    username: Option<String>,
}

impl PasswordVerdict {
    /// The step that ends the exchange.
    pub fn into_step(self) -> Step {
        match self.username {
            Some(username) => Step::Success {
                username,
                additional_data: Vec::new(),
            },
            None => Step::Failure(Failure::NotAuthorized),
        }
    }
}

/// The only identity a user may act as is its own: the bare name or `name@domain`.
fn check_authzid(authzid: &str, username: &str, domain: &str) -> Result<(), Failure> {
    let own = match authzid.split_once('@') {
        Some((local, host)) => local == username && host.eq_ignore_ascii_case(domain),
        None => authzid == username,
    };
    if own {
        Ok(())
    } else {
        Err(Failure::InvalidAuthzid)
    }
}

/// The user's credentials, or convincing fake ones so an unknown name is not revealed by
/// the shape of server-first.
fn lookup(
    accounts: &dyn Accounts,
    username: &str,
    domain: &str,
    hash: ScramHash,
) -> (ScramCredentials, Choice) {
    match accounts.scram_credentials(username, domain, hash) {
        Some(credentials) => (credentials, Choice::from(1)),
        None => (fake_credentials(username, hash), Choice::from(0)),
    }
}

/// Credentials for a user that does not exist: the salt is stable per name (a repeated
/// attempt sees the same one, as for a real account) but unpredictable, keyed by a secret
/// drawn once per process.
fn fake_credentials(username: &str, hash: ScramHash) -> ScramCredentials {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        secret
    });
    let derive = |purpose: &[u8]| {
        hash.hmac(
            secret,
            &[purpose, hash.label().as_bytes(), b"\0", username.as_bytes()],
        )
    };
    let mut salt = derive(b"salt\0");
    salt.truncate(SALT_LEN);
    ScramCredentials {
        salt,
        iterations: DEFAULT_ITERATIONS,
        stored_key: derive(b"stored-key\0"),
        server_key: derive(b"server-key\0"),
    }
}
