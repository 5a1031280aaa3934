//! TLS 1.3 records after login, without rustls: once a session is logged in and idle, its
//! rustls connection (about 3.8 KB of handshake and key-schedule state) is traded for its
//! two traffic keys (about 100 bytes), and records are sealed and opened here with ring's
//! AEADs. Expanded keys are built per record instead of kept: a few hundred nanoseconds of
//! CPU per request buy the memory that lets one process hold many idle sessions.
//!
//! What a server may still send: application data, close_notify, other alerts (a
//! failure), and post-handshake messages. NewSessionTicket is ignored (loadgen resumes
//! nothing once compacted); KeyUpdate is a clear failure, since the next traffic secret
//! cannot be derived from the keys alone (servers send it only after hundreds of GB or
//! when asked, and loadgen never asks).

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets};

/// The largest plaintext a record carries (RFC 8446 section 5.1).
const MAX_FRAGMENT: usize = 16_384;
/// The largest ciphertext a record may carry: plaintext, content type, padding and tag.
const MAX_CIPHERTEXT: usize = MAX_FRAGMENT + 256;
const HEADER: usize = 5;
const TAG: usize = 16;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

const NEW_SESSION_TICKET: u8 = 4;
const KEY_UPDATE: u8 = 24;
const CLOSE_NOTIFY: u8 = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Suite {
    fn algorithm(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128Gcm => &aead::AES_128_GCM,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// One direction's traffic key, static IV and record sequence number.
struct Direction {
    key: [u8; 32],
    iv: [u8; 12],
    seq: u64,
}

impl Direction {
    fn new(suite: Suite, seq: u64, key: &[u8], iv: &[u8]) -> Result<Self, String> {
        if key.len() != suite.algorithm().key_len() || iv.len() != 12 {
            return Err("inconsistent traffic secrets".into());
        }
        let mut direction = Self {
            key: [0; 32],
            iv: [0; 12],
            seq,
        };
        direction.key[..key.len()].copy_from_slice(key);
        direction.iv.copy_from_slice(iv);
        Ok(direction)
    }

    /// The expanded key and the nonce of the next record (RFC 8446 section 5.3), which
    /// uses up its sequence number.
    fn next(&mut self, suite: Suite) -> (LessSafeKey, Nonce) {
        let algorithm = suite.algorithm();
        let key = UnboundKey::new(algorithm, &self.key[..algorithm.key_len()])
            .expect("key length checked when the keys were taken over");
        let mut nonce = self.iv;
        for (byte, seq) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *byte ^= seq;
        }
        self.seq += 1;
        (LessSafeKey::new(key), Nonce::assume_unique_for_key(nonce))
    }
}

/// What the server's records said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// Every complete record was opened; the rest is the start of a record.
    NeedInput,
    /// The next record may not fit in the space left for plaintext.
    Full,
    /// close_notify.
    PeerClosed,
}

/// A session's TLS 1.3 traffic keys in both directions.
pub struct Records {
    suite: Suite,
    tx: Direction,
    rx: Direction,
    /// close_notify was opened: nothing after it counts.
    closed: bool,
    /// Bytes still to come of a post-handshake message (a ticket) that a record split.
    handshake_rest: u32,
}

impl Records {
    /// Takes over from rustls; only TLS 1.3 secrets are accepted (the caller checks the
    /// version first: TLS 1.2 records are framed differently).
    pub fn new(secrets: &ExtractedSecrets) -> Result<Self, String> {
        let (suite, tx_key, tx_iv) = parts(&secrets.tx.1)?;
        let (rx_suite, rx_key, rx_iv) = parts(&secrets.rx.1)?;
        if rx_suite != suite {
            return Err("inconsistent traffic secrets".into());
        }
        Ok(Self {
            suite,
            tx: Direction::new(suite, secrets.tx.0, tx_key, tx_iv)?,
            rx: Direction::new(suite, secrets.rx.0, rx_key, rx_iv)?,
            closed: false,
            handshake_rest: 0,
        })
    }

    /// Appends `data` to `out` as application-data records.
    pub fn seal(&mut self, data: &[u8], out: &mut Vec<u8>) {
        for fragment in data.chunks(MAX_FRAGMENT) {
            self.seal_record(APPLICATION_DATA, fragment, out);
        }
    }

    /// Appends a close_notify alert to `out`.
    pub fn seal_close_notify(&mut self, out: &mut Vec<u8>) {
        self.seal_record(ALERT, &[1, CLOSE_NOTIFY], out);
    }

    fn seal_record(&mut self, content_type: u8, fragment: &[u8], out: &mut Vec<u8>) {
        let length = fragment.len() + 1 + TAG;
        let header = [APPLICATION_DATA, 3, 3, (length >> 8) as u8, length as u8];
        out.extend_from_slice(&header);
        let start = out.len();
        out.extend_from_slice(fragment);
        out.push(content_type);
        let (key, nonce) = self.tx.next(self.suite);
        let tag = key
            .seal_in_place_separate_tag(nonce, Aad::from(header), &mut out[start..])
            .expect("a record's plaintext is far below the AEAD limit");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens the complete records at the start of `input` (decrypting in place) and
    /// appends their application data to `plaintext[*filled..]`, as long as it surely
    /// fits. `*consumed` advances past each record handled, so what stays is ciphertext
    /// untouched.
    pub fn open(
        &mut self,
        input: &mut [u8],
        consumed: &mut usize,
        plaintext: &mut [u8],
        filled: &mut usize,
    ) -> Result<Opened, String> {
        loop {
            if self.closed {
                return Ok(Opened::PeerClosed);
            }
            let rest = &mut input[*consumed..];
            if rest.len() < HEADER {
                return Ok(Opened::NeedInput);
            }
            let header: [u8; HEADER] = rest[..HEADER].try_into().expect("length checked");
            let length = usize::from(u16::from_be_bytes([header[3], header[4]]));
            if length > MAX_CIPHERTEXT {
                return Err(format!("record of {length} bytes from the server"));
            }
            if header[0] != APPLICATION_DATA {
                return Err(match header[0] {
                    CHANGE_CIPHER_SPEC | ALERT | HANDSHAKE => {
                        format!(
                            "unencrypted record of type {} after the handshake",
                            header[0]
                        )
                    }
                    other => format!("record of unknown type {other}"),
                });
            }
            if rest.len() < HEADER + length {
                return Ok(Opened::NeedInput);
            }
            if length < 1 + TAG {
                return Err("record too short to be encrypted".into());
            }
            if length - TAG > plaintext.len() - *filled {
                return Ok(Opened::Full);
            }
            let (key, nonce) = self.rx.next(self.suite);
            let opened = key
                .open_in_place(nonce, Aad::from(header), &mut rest[HEADER..HEADER + length])
                .map_err(|_| "a record failed to decrypt (bad_record_mac)".to_owned())?;
            *consumed += HEADER + length;
            // The content type is the last non-zero byte; zeros after it are padding.
            let Some(end) = opened.iter().rposition(|&b| b != 0) else {
                return Err("record without a content type".into());
            };
            let (content, content_type) = (&opened[..end], opened[end]);
            match content_type {
                APPLICATION_DATA => {
                    plaintext[*filled..*filled + content.len()].copy_from_slice(content);
                    *filled += content.len();
                }
                HANDSHAKE => self.post_handshake(content)?,
                ALERT => match content {
                    [_, CLOSE_NOTIFY] => self.closed = true,
                    [_, description] => return Err(format!("TLS alert {description}")),
                    _ => return Err("malformed TLS alert".into()),
                },
                other => return Err(format!("encrypted record of unknown type {other}")),
            }
        }
    }
}

impl Records {
    /// Checks the handshake messages a server sends after the handshake, which may span
    /// records: tickets are skipped, a KeyUpdate is refused.
    fn post_handshake(&mut self, content: &[u8]) -> Result<(), String> {
        let skip = content.len().min(self.handshake_rest as usize);
        self.handshake_rest -= skip as u32;
        let mut messages = &content[skip..];
        while !messages.is_empty() {
            let [kind, l0, l1, l2, rest @ ..] = messages else {
                return Err("a TLS handshake message header split across records".into());
            };
            match *kind {
                NEW_SESSION_TICKET => {}
                KEY_UPDATE => {
                    return Err(
                        "the server sent a TLS KeyUpdate, which loadgen cannot follow once a \
                         session is compacted"
                            .into(),
                    );
                }
                other => return Err(format!("unexpected handshake message {other}")),
            }
            let length = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
            if length > rest.len() {
                self.handshake_rest = (length - rest.len()) as u32;
                return Ok(());
            }
            messages = &rest[length..];
        }
        Ok(())
    }
}

fn parts(secrets: &ConnectionTrafficSecrets) -> Result<(Suite, &[u8], &[u8]), String> {
    Ok(match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
            (Suite::Aes128Gcm, key.as_ref(), iv.as_ref())
        }
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
            (Suite::Aes256Gcm, key.as_ref(), iv.as_ref())
        }
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (Suite::Chacha20Poly1305, key.as_ref(), iv.as_ref())
        }
        _ => return Err("unsupported cipher suite".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::cipher::{AeadKey, Iv};

    fn direction(suite: Suite, seq: u64, byte: u8) -> Direction {
        let key = [byte; 32];
        Direction::new(
            suite,
            seq,
            &key[..suite.algorithm().key_len()],
            &[byte ^ 0x5a; 12],
        )
        .unwrap()
    }

    /// A client and the server it talks to: the server's tx keys are the client's rx keys.
    fn pair(suite: Suite) -> (Records, Records) {
        let client = Records {
            suite,
            tx: direction(suite, 0, 1),
            rx: direction(suite, 3, 2),
            closed: false,
            handshake_rest: 0,
        };
        let server = Records {
            suite,
            tx: direction(suite, 3, 2),
            rx: direction(suite, 0, 1),
            closed: false,
            handshake_rest: 0,
        };
        (client, server)
    }

    #[test]
    fn keys_are_taken_from_rustls_secrets() {
        let secrets = |byte| ConnectionTrafficSecrets::Chacha20Poly1305 {
            key: AeadKey::from([byte; 32]),
            iv: Iv::from([byte ^ 0x5a; 12]),
        };
        let mut client = Records::new(&ExtractedSecrets {
            tx: (0, secrets(1)),
            rx: (3, secrets(2)),
        })
        .unwrap();
        let (_, mut server) = pair(Suite::Chacha20Poly1305);
        let mut wire = Vec::new();
        server.seal(b"<iq/>", &mut wire);
        assert_eq!(
            open_all(&mut client, &mut wire),
            (Ok(Opened::NeedInput), b"<iq/>".to_vec())
        );

        let mixed = ExtractedSecrets {
            tx: (0, secrets(1)),
            rx: (
                0,
                ConnectionTrafficSecrets::Aes256Gcm {
                    key: AeadKey::from([2; 32]),
                    iv: Iv::from([0; 12]),
                },
            ),
        };
        assert!(Records::new(&mixed).is_err());
    }

    fn open_all(records: &mut Records, wire: &mut [u8]) -> (Result<Opened, String>, Vec<u8>) {
        let mut plaintext = vec![0; 40_000];
        let (mut consumed, mut filled) = (0, 0);
        let result = records.open(wire, &mut consumed, &mut plaintext, &mut filled);
        plaintext.truncate(filled);
        (result, plaintext)
    }

    #[test]
    fn records_round_trip_in_every_suite_and_split_large_data() {
        for suite in [Suite::Aes128Gcm, Suite::Aes256Gcm, Suite::Chacha20Poly1305] {
            let (mut client, mut server) = pair(suite);
            let data: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
            let mut wire = Vec::new();
            server.seal(b"<iq/>", &mut wire);
            server.seal(&data, &mut wire);
            assert_eq!(wire.len(), 3 * (HEADER + 1 + TAG) + 5 + data.len());
            let (result, plaintext) = open_all(&mut client, &mut wire);
            assert_eq!(result, Ok(Opened::NeedInput));
            assert_eq!(&plaintext[..5], b"<iq/>");
            assert_eq!(&plaintext[5..], &data[..]);
            assert_eq!(client.rx.seq, 6);
        }
    }

    #[test]
    fn a_partial_record_stays_untouched_until_it_is_complete() {
        let (mut client, mut server) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        server.seal(b"one", &mut wire);
        server.seal(b"two", &mut wire);
        let original = wire.clone();
        let cut = wire.len() - 4;
        let mut plaintext = [0; 64];
        let (mut consumed, mut filled) = (0, 0);
        let result = client.open(&mut wire[..cut], &mut consumed, &mut plaintext, &mut filled);
        assert_eq!(result, Ok(Opened::NeedInput));
        assert_eq!(&plaintext[..filled], b"one");
        assert_eq!(wire[consumed..cut], original[consumed..cut]);
        let result = client.open(&mut wire, &mut consumed, &mut plaintext, &mut filled);
        assert_eq!(result, Ok(Opened::NeedInput));
        assert_eq!(&plaintext[..filled], b"onetwo");
    }

    #[test]
    fn a_record_that_may_not_fit_waits_for_room() {
        let (mut client, mut server) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        server.seal(&[b'x'; 100], &mut wire);
        let mut plaintext = [0; 120];
        let (mut consumed, mut filled) = (0, 50);
        let result = client.open(&mut wire, &mut consumed, &mut plaintext, &mut filled);
        assert_eq!((result, consumed, filled), (Ok(Opened::Full), 0, 50));
    }

    #[test]
    fn tickets_are_skipped_close_notify_ends_and_key_update_fails() {
        let (mut client, mut server) = pair(Suite::Chacha20Poly1305);
        let mut wire = Vec::new();
        server.seal_record(HANDSHAKE, &[NEW_SESSION_TICKET, 0, 0, 2, 9, 9], &mut wire);
        server.seal(b"hi", &mut wire);
        server.seal_close_notify(&mut wire);
        server.seal(b"after", &mut wire);
        let (result, plaintext) = open_all(&mut client, &mut wire);
        assert_eq!(
            (result, &plaintext[..]),
            (Ok(Opened::PeerClosed), &b"hi"[..])
        );

        let (mut client, mut server) = pair(Suite::Aes256Gcm);
        let mut wire = Vec::new();
        server.seal_record(HANDSHAKE, &[KEY_UPDATE, 0, 0, 1, 0], &mut wire);
        let (result, _) = open_all(&mut client, &mut wire);
        assert!(result.unwrap_err().contains("KeyUpdate"));
    }

    #[test]
    fn a_ticket_split_over_records_is_skipped_whole() {
        let (mut client, mut server) = pair(Suite::Aes128Gcm);
        let ticket = [NEW_SESSION_TICKET, 0, 0, 6, 24, 24, 24, 24, 24, 24];
        let mut wire = Vec::new();
        server.seal_record(HANDSHAKE, &ticket[..6], &mut wire);
        // The tail starts with the KeyUpdate type byte: it must not be read as a header.
        server.seal_record(HANDSHAKE, &ticket[6..], &mut wire);
        server.seal(b"ok", &mut wire);
        assert_eq!(
            open_all(&mut client, &mut wire),
            (Ok(Opened::NeedInput), b"ok".to_vec())
        );

        let (mut client, mut server) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        server.seal_record(HANDSHAKE, &ticket[..2], &mut wire);
        assert!(
            open_all(&mut client, &mut wire)
                .0
                .unwrap_err()
                .contains("split")
        );
    }

    #[test]
    fn tampering_wrong_keys_and_alerts_are_errors() {
        let (mut client, mut server) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        server.seal(b"secret", &mut wire);
        wire[HEADER + 2] ^= 1;
        let (result, plaintext) = open_all(&mut client, &mut wire);
        assert!(result.unwrap_err().contains("bad_record_mac"));
        assert!(plaintext.is_empty());

        // The client's own records cannot be opened with its receive keys.
        let (mut client, _) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        client.seal(b"mine", &mut wire);
        assert_eq!(
            open_all(&mut client, &mut wire).0,
            Err("a record failed to decrypt (bad_record_mac)".into())
        );

        let (mut client, mut server) = pair(Suite::Aes128Gcm);
        let mut wire = Vec::new();
        server.seal_record(ALERT, &[2, 40], &mut wire);
        assert_eq!(
            open_all(&mut client, &mut wire).0,
            Err("TLS alert 40".into())
        );

        let (mut client, _) = pair(Suite::Aes128Gcm);
        let mut plain_alert = vec![ALERT, 3, 3, 0, 2, 2, 40];
        assert_eq!(
            open_all(&mut client, &mut plain_alert).0,
            Err("unencrypted record of type 21 after the handshake".into())
        );
        let mut huge = vec![APPLICATION_DATA, 3, 3, 0xff, 0xff];
        assert_eq!(
            open_all(&mut client, &mut huge).0,
            Err("record of 65535 bytes from the server".into())
        );
    }

    #[test]
    fn malformed_records_and_contents_are_named() {
        let opened = |build: &dyn Fn(&mut Records, &mut Vec<u8>)| {
            let (mut client, mut server) = pair(Suite::Aes256Gcm);
            let mut wire = Vec::new();
            build(&mut server, &mut wire);
            open_all(&mut client, &mut wire).0
        };
        let error = |text: &str| Err(text.to_owned());
        assert_eq!(
            opened(&|_, wire| wire.extend_from_slice(&[99, 3, 3, 0, 17])),
            error("record of unknown type 99")
        );
        assert_eq!(
            opened(&|_, wire| {
                wire.extend_from_slice(&[APPLICATION_DATA, 3, 3, 0, 16]);
                wire.extend_from_slice(&[0; 16]);
            }),
            error("record too short to be encrypted")
        );
        assert_eq!(
            opened(&|server, wire| server.seal_record(0, &[], wire)),
            error("record without a content type")
        );
        assert_eq!(
            opened(&|server, wire| server.seal_record(42, b"x", wire)),
            error("encrypted record of unknown type 42")
        );
        assert_eq!(
            opened(&|server, wire| server.seal_record(ALERT, &[2], wire)),
            error("malformed TLS alert")
        );
        assert_eq!(
            opened(&|server, wire| server.seal_record(HANDSHAKE, &[2, 0, 0, 0], wire)),
            error("unexpected handshake message 2")
        );
    }
}
