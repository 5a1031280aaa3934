//! Pieces both SCRAM sides share: the RFC 5802 key schedule, SASLprep, base64, saslname
//! escaping and attribute syntax.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::RngCore as _;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::ScramHash;
use crate::entropy::Entropy;

/// Random bytes in a nonce: 24 give 32 base64 characters, above RFC 5802's advice.
const NONCE_BYTES: usize = 24;

impl ScramHash {
    /// Length of the hash output, which is also the length of keys and proofs.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// The hash's name inside a mechanism name.
    pub(super) fn label(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
        }
    }

    /// HMAC(key, concatenation of `parts`).
    pub(super) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
            let mut mac =
                <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length");
            for part in parts {
                mac.update(part);
            }
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(key, parts),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, parts),
        }
    }

    /// H(data).
    pub(super) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    /// Hi(password, salt, i) of RFC 5802: PBKDF2 with this hash's HMAC.
    pub(super) fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0; self.output_len()];
        match self {
            ScramHash::Sha1 => {
                pbkdf2::pbkdf2_hmac::<Sha1>(password.as_bytes(), salt, iterations, &mut out);
            }
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut out);
            }
        }
        out
    }
}

/// The keys RFC 5802 derives from a salted password.
pub(super) struct Keys {
    pub client_key: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl Keys {
    pub(super) fn from_salted_password(hash: ScramHash, salted_password: &[u8]) -> Self {
        let client_key = hash.hmac(salted_password, &[b"Client Key"]);
        let stored_key = hash.digest(&client_key);
        let server_key = hash.hmac(salted_password, &[b"Server Key"]);
        Keys {
            client_key,
            stored_key,
            server_key,
        }
    }
}

/// SASLprep (RFC 4013, stored-strings profile) of a password; `None` when prohibited
/// characters make it unusable or nothing is left of it.
pub(super) fn prepare_password(password: &str) -> Option<String> {
    stringprep::saslprep(password)
        .ok()
        .filter(|prepared| !prepared.is_empty())
        .map(|prepared| prepared.into_owned())
}

pub(super) fn b64_encode(data: &[u8]) -> String {
    STANDARD.encode(data)
}

pub(super) fn b64_decode(text: &str) -> Option<Vec<u8>> {
    STANDARD.decode(text).ok()
}

/// A fresh random nonce of printable characters (base64 never contains ',').
pub(super) fn random_nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    b64_encode(&bytes)
}

/// [`random_nonce`] from the given source (the server's comes through the config).
pub(super) fn nonce_from(entropy: &dyn Entropy) -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    entropy.fill(&mut bytes);
    b64_encode(&bytes)
}

/// RFC 5802 `printable`: a nonce's characters, any visible ASCII except ','.
pub(super) fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| matches!(b, 0x21..=0x2B | 0x2D..=0x7E))
}

/// Escapes a user name as a saslname: ',' and '=' become "=2C" and "=3D".
pub(super) fn encode_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            _ => out.push(c),
        }
    }
    out
}

/// Undoes [`encode_saslname`]; `None` for any '=' not starting "=2C"/"=3D", for NUL, and
/// for an empty name.
pub(super) fn decode_saslname(text: &str) -> Option<String> {
    if text.is_empty() || text.contains('\0') {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        match escape {
            "=2C" => out.push(','),
            "=3D" => out.push('='),
            _ => return None,
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// The value of attribute `name` (one letter) in `attr` ("x=value").
pub(super) fn attribute(attr: &str, name: u8) -> Option<&str> {
    let bytes = attr.as_bytes();
    (bytes.len() >= 2 && bytes[0] == name && bytes[1] == b'=').then(|| &attr[2..])
}

/// Whether `attr` is a well-formed extension attribute (`ALPHA "=" value`), which SCRAM
/// lets a peer ignore.
pub(super) fn is_extension(attr: &str) -> bool {
    let bytes = attr.as_bytes();
    bytes.len() >= 3 && bytes[0].is_ascii_alphabetic() && bytes[1] == b'='
}
