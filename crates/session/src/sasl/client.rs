//! The client side: SCRAM with a salted-password cache, and PLAIN.

use std::collections::HashMap;

use subtle::ConstantTimeEq as _;

use super::scram::{self, Keys};
use super::{Mechanism, ScramHash};

/// Highest iteration count the client accepts, so a hostile server cannot make it spin.
const MAX_ITERATIONS: u32 = 10_000_000;

/// How the client uses channel binding, which decides the GS2 flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelBinding {
    /// The client cannot bind ("n").
    Unsupported,
    /// The client could bind but the server offered no PLUS mechanism ("y").
    NotAdvertised,
    /// Bind with RFC 9266 tls-exporter data ("p=tls-exporter", a PLUS mechanism).
    TlsExporter([u8; 32]),
}

/// Why the client side failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// SASLprep rejects the password.
    #[error("password is empty or contains characters SASLprep prohibits")]
    InvalidPassword,
    /// The server's message does not follow RFC 5802.
    #[error("malformed server message")]
    Malformed,
    /// The server-first nonce does not extend ours.
    #[error("server nonce does not extend the client nonce")]
    NonceMismatch,
    /// The iteration count is 0 or absurdly high.
    #[error("unacceptable iteration count {0}")]
    Iterations(u32),
    /// The server answered with `e=`.
    #[error("server error: {0}")]
    Server(String),
    /// The server could not prove it knows the credentials.
    #[error("server signature mismatch")]
    ServerSignature,
    /// Called out of order.
    #[error("SCRAM client step out of order")]
    OutOfOrder,
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct CacheKey {
    hash: ScramHash,
    password: String,
    salt: Vec<u8>,
    iterations: u32,
}

/// Salted passwords by (hash, password, salt, iterations), so PBKDF2 runs once for many
/// logins of the same account; bounded so it cannot grow without limit.
pub struct SaltedPasswordCache {
    pub(super) entries: HashMap<CacheKey, Vec<u8>>,
    capacity: usize,
    derivations: u64,
}

impl Default for SaltedPasswordCache {
    /// Room for a load test's worth of accounts.
    fn default() -> Self {
        Self::with_capacity(4096)
    }
}

impl std::fmt::Debug for SaltedPasswordCache {
    /// Shows no passwords.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaltedPasswordCache")
            .field("entries", &self.entries.len())
            .field("capacity", &self.capacity)
            .field("derivations", &self.derivations)
            .finish()
    }
}

impl SaltedPasswordCache {
    /// A cache holding at most `capacity` (at least 1) salted passwords.
    pub fn with_capacity(capacity: usize) -> Self {
        SaltedPasswordCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            derivations: 0,
        }
    }

    /// How many PBKDF2 derivations cache misses have cost so far.
    pub fn derivations(&self) -> u64 {
        self.derivations
    }

    fn salted_password(&mut self, key: CacheKey) -> Vec<u8> {
        if let Some(salted) = self.entries.get(&key) {
            return salted.clone();
        }
        self.derivations += 1;
        let salted = key
            .hash
            .salted_password(&key.password, &key.salt, key.iterations);
        if self.entries.len() >= self.capacity {
            // Any victim will do: a miss only costs one more PBKDF2 run.
            let victim = self.entries.keys().next().cloned();
            if let Some(victim) = victim {
                self.entries.remove(&victim);
            }
        }
        self.entries.insert(key, salted.clone());
        salted
    }
}

/// Client side of one SCRAM exchange.
pub struct ScramClient {
    hash: ScramHash,
    binding: ChannelBinding,
    password: String,
    client_nonce: String,
    gs2_header: String,
    client_first_bare: String,
    /// Set once client-final is computed: what server-final must carry.
    server_signature: Option<Vec<u8>>,
}

impl std::fmt::Debug for ScramClient {
    /// Shows no password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism())
            .field("client_first_bare", &self.client_first_bare)
            .finish_non_exhaustive()
    }
}

impl ScramClient {
    /// A client for `username` (the local part) and `password`.
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: &str,
        channel_binding: ChannelBinding,
    ) -> Self {
        Self::with_nonce(
            hash,
            username,
            password,
            channel_binding,
            scram::random_nonce(),
        )
    }

    /// [`new`](Self::new) with a given client nonce (tests use the RFC vectors' nonces).
    pub(super) fn with_nonce(
        hash: ScramHash,
        username: &str,
        password: &str,
        channel_binding: ChannelBinding,
        client_nonce: String,
    ) -> Self {
        let gs2_header = match channel_binding {
            ChannelBinding::Unsupported => "n,,",
            ChannelBinding::NotAdvertised => "y,,",
            ChannelBinding::TlsExporter(_) => "p=tls-exporter,,",
        };
        let client_first_bare = format!("n={},r={client_nonce}", scram::encode_saslname(username));
        ScramClient {
            hash,
            binding: channel_binding,
            password: password.to_owned(),
            client_nonce,
            gs2_header: gs2_header.to_owned(),
            client_first_bare,
            server_signature: None,
        }
    }

    /// The mechanism to name in `<auth>`.
    pub fn mechanism(&self) -> Mechanism {
        let plus = matches!(self.binding, ChannelBinding::TlsExporter(_));
        match (self.hash, plus) {
            (ScramHash::Sha1, false) => Mechanism::ScramSha1,
            (ScramHash::Sha1, true) => Mechanism::ScramSha1Plus,
            (ScramHash::Sha256, false) => Mechanism::ScramSha256,
            (ScramHash::Sha256, true) => Mechanism::ScramSha256Plus,
        }
    }

    /// The client-first message (the `<auth>` initial response).
    pub fn client_first(&self) -> Vec<u8> {
        format!("{}{}", self.gs2_header, self.client_first_bare).into_bytes()
    }

    /// Answers the server-first challenge with the client-final message.
    pub fn handle_server_first(
        &mut self,
        msg: &[u8],
        cache: &mut SaltedPasswordCache,
    ) -> Result<Vec<u8>, ClientError> {
        if self.server_signature.is_some() {
            return Err(ClientError::OutOfOrder);
        }
        let server_first = std::str::from_utf8(msg).map_err(|_| ClientError::Malformed)?;
        let mut attrs = server_first.split(',');
        // A mandatory extension ("m=") in first place fails the nonce parse.
        let nonce = attrs
            .next()
            .and_then(|attr| scram::attribute(attr, b'r'))
            .ok_or(ClientError::Malformed)?;
        let salt = attrs
            .next()
            .and_then(|attr| scram::attribute(attr, b's'))
            .and_then(scram::b64_decode)
            .ok_or(ClientError::Malformed)?;
        let iterations: u32 = attrs
            .next()
            .and_then(|attr| scram::attribute(attr, b'i'))
            .and_then(|i| i.parse().ok())
            .ok_or(ClientError::Malformed)?;
        if !attrs.all(scram::is_extension) {
            return Err(ClientError::Malformed);
        }
        if !scram::is_valid_nonce(nonce)
            || nonce.len() <= self.client_nonce.len()
            || !nonce.starts_with(&self.client_nonce)
        {
            return Err(ClientError::NonceMismatch);
        }
        if !(1..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ClientError::Iterations(iterations));
        }
        let password =
            scram::prepare_password(&self.password).ok_or(ClientError::InvalidPassword)?;

        let salted = cache.salted_password(CacheKey {
            hash: self.hash,
            password,
            salt,
            iterations,
        });
        let keys = Keys::from_salted_password(self.hash, &salted);
        let mut cbind_input = self.gs2_header.as_bytes().to_vec();
        if let ChannelBinding::TlsExporter(data) = &self.binding {
            cbind_input.extend_from_slice(data);
        }
        let without_proof = format!("c={},r={nonce}", scram::b64_encode(&cbind_input));
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = self.hash.hmac(&keys.stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = keys
            .client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        self.server_signature = Some(self.hash.hmac(&keys.server_key, &[auth_message.as_bytes()]));
        Ok(format!("{without_proof},p={}", scram::b64_encode(&proof)).into_bytes())
    }

    /// Checks the server-final message (the `<success>` additional data).
    pub fn verify_server_final(&self, msg: &[u8]) -> Result<(), ClientError> {
        let expected = self
            .server_signature
            .as_ref()
            .ok_or(ClientError::OutOfOrder)?;
        let server_final = std::str::from_utf8(msg).map_err(|_| ClientError::Malformed)?;
        let first = server_final.split(',').next().unwrap_or_default();
        if let Some(error) = scram::attribute(first, b'e') {
            return Err(ClientError::Server(error.to_owned()));
        }
        let signature = scram::attribute(first, b'v')
            .and_then(scram::b64_decode)
            .ok_or(ClientError::Malformed)?;
        if bool::from(signature.ct_eq(expected)) {
            Ok(())
        } else {
            Err(ClientError::ServerSignature)
        }
    }
}

/// The PLAIN (RFC 4616) message `authzid NUL authcid NUL passwd`.
pub fn plain_client_response(authzid: Option<&str>, username: &str, password: &str) -> Vec<u8> {
    format!("{}\0{username}\0{password}", authzid.unwrap_or_default()).into_bytes()
}
