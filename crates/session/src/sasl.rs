//! SASL: SCRAM (RFC 5802, RFC 7677, RFC 9266 channel binding) and PLAIN, server and client
//! sides (loadgen reuses the client), and the stored credential format.

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

/// What an account stores for one hash: never the password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}
