//! SASL: SCRAM (RFC 5802, RFC 7677, RFC 9266 channel binding) and PLAIN, server and client
//! sides (loadgen reuses the client), and the stored credential format.
//!
//! Payloads here are the raw SASL bytes; XMPP carries them base64-encoded in element text
//! ([`decode_payload`], [`encode_payload`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

mod client;
mod scram;
mod server;
#[cfg(test)]
mod tests;

pub use client::{
    ChannelBinding, ClientError, SaltedPasswordCache, ScramClient, plain_client_response,
};
pub use server::{PasswordCheck, PasswordVerdict, ServerContext, ServerExchange};

/// PBKDF2 iteration count for new credentials: the RFC 7677 minimum, which keeps logins cheap.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Largest SASL message (decoded) accepted from a peer; real ones are a few hundred bytes.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The RFC 9266 exporter label for `tls-exporter` channel binding data (32 bytes, no
/// context), which both TLS ends export for [`crate::TlsInfo::exporter`] and
/// [`ChannelBinding::TlsExporter`]: one spelling, so server and client bind to the same.
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// Salt length for new credentials (RFC 5802 leaves it open; 16 bytes is customary).
const SALT_LEN: usize = 16;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

/// What an account stores for one hash: never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// Sent to the client in server-first so it can salt the password the same way.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations, also sent in server-first.
    pub iterations: u32,
    /// H(ClientKey): checks a client proof without being usable as one.
    pub stored_key: Vec<u8>,
    /// Signs server-final, proving to the client that the server knows the credentials.
    pub server_key: Vec<u8>,
}

/// Why a password cannot become credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// SASLprep (RFC 4013) rejects it, or it is empty after preparation.
    #[error("password is empty or contains characters SASLprep prohibits")]
    InvalidPassword,
    /// PBKDF2 needs at least one iteration.
    #[error("iteration count must be at least 1")]
    ZeroIterations,
}

impl ScramCredentials {
    /// Derives the stored form of `password` (after SASLprep) for `hash`.
    pub fn derive(
        password: &str,
        hash: ScramHash,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        if iterations == 0 {
            return Err(CredentialError::ZeroIterations);
        }
        let password = scram::prepare_password(password).ok_or(CredentialError::InvalidPassword)?;
        let salted = hash.salted_password(&password, salt, iterations);
        let keys = scram::Keys::from_salted_password(hash, &salted);
        Ok(ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: keys.stored_key,
            server_key: keys.server_key,
        })
    }

    /// [`derive`](Self::derive) with a fresh random 16-byte salt.
    pub fn generate(
        password: &str,
        hash: ScramHash,
        iterations: u32,
    ) -> Result<Self, CredentialError> {
        let mut salt = [0u8; SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        Self::derive(password, hash, &salt, iterations)
    }

    /// Checks a cleartext password (PLAIN) against the stored keys: PBKDF2 with the stored
    /// salt and iterations, then a constant-time comparison of StoredKey.
    pub fn verify_password(&self, password: &str, hash: ScramHash) -> bool {
        let Some(password) = scram::prepare_password(password) else {
            return false;
        };
        let salted = hash.salted_password(&password, &self.salt, self.iterations);
        let keys = scram::Keys::from_salted_password(hash, &salted);
        keys.stored_key.ct_eq(&self.stored_key).into()
    }
}

/// A SASL mechanism the edge knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    ScramSha1,
    ScramSha1Plus,
    ScramSha256,
    ScramSha256Plus,
    Plain,
}

impl Mechanism {
    /// Every mechanism, strongest first (the order to advertise them in).
    pub const ALL: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Parses a mechanism name (exact, as SASL names are upper case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash, or `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha1 | Mechanism::ScramSha1Plus => Some(ScramHash::Sha1),
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => Some(ScramHash::Sha256),
            Mechanism::Plain => None,
        }
    }

    /// Whether it binds to the TLS channel (offer it only when tls-exporter data exists).
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha1Plus | Mechanism::ScramSha256Plus)
    }
}

/// RFC 6120 section 6.5 SASL failure conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    Aborted,
    AccountDisabled,
    CredentialsExpired,
    EncryptionRequired,
    IncorrectEncoding,
    InvalidAuthzid,
    InvalidMechanism,
    MalformedRequest,
    MechanismTooWeak,
    NotAuthorized,
    TemporaryAuthFailure,
}

impl Failure {
    /// The element name inside `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>`.
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Aborted => "aborted",
            Failure::AccountDisabled => "account-disabled",
            Failure::CredentialsExpired => "credentials-expired",
            Failure::EncryptionRequired => "encryption-required",
            Failure::IncorrectEncoding => "incorrect-encoding",
            Failure::InvalidAuthzid => "invalid-authzid",
            Failure::InvalidMechanism => "invalid-mechanism",
            Failure::MalformedRequest => "malformed-request",
            Failure::MechanismTooWeak => "mechanism-too-weak",
            Failure::NotAuthorized => "not-authorized",
            Failure::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the server sends next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `<challenge>` with these bytes; feed the client's `<response>` to
    /// [`ServerExchange::step`].
    Challenge(Vec<u8>),
    /// `<success>` carrying `additional_data` (SCRAM's server-final message, empty for
    /// PLAIN); `username` is the authenticated local part.
    Success {
        username: String,
        additional_data: Vec<u8>,
    },
    /// `<failure>` with this condition; the exchange is over.
    Failure(Failure),
    /// A PLAIN password must be checked: [`PasswordCheck::run`] (PBKDF2, milliseconds of
    /// CPU) gives the step that follows. Kept out of the exchange so the I/O layer can run
    /// it off its event loop, on a bounded pool.
    CheckPassword(PasswordCheck),
}

/// Decodes the base64 text of `<auth>`/`<response>`: `=` is an empty payload (RFC 6120
/// 6.4.2), bad base64 is `incorrect-encoding`, oversize is `malformed-request`.
///
/// Empty text also decodes to an empty payload; telling an `<auth>` without initial
/// response apart is the caller's business. Surrounding whitespace is tolerated.
pub fn decode_payload(text: &[u8]) -> Result<Vec<u8>, Failure> {
    let text = text.trim_ascii();
    if text.len() > MAX_MESSAGE_LEN.div_ceil(3) * 4 {
        return Err(Failure::MalformedRequest);
    }
    if text == b"=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(text)
        .map_err(|_| Failure::IncorrectEncoding)
}

/// Encodes a payload for `<challenge>`/`<success>`/`<auth>`/`<response>` text (`=` when
/// empty, as RFC 6120 6.4.2 requires).
pub fn encode_payload(payload: &[u8]) -> String {
    if payload.is_empty() {
        "=".to_owned()
    } else {
        STANDARD.encode(payload)
    }
}
