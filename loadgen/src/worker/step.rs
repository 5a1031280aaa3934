//! What the two ways of stepping TLS by hand share (rustls's unbuffered connection in
//! `conn.rs`, the compact record layer in `compact.rs`): where a step stopped, how a TLS
//! failure reads, and how the records it produced reach the socket.

use std::io::{self, Write as _};

use mio::net::TcpStream;

use crate::client::Failure;
use crate::histo::ErrorKind;

/// Where an unbuffered TLS connection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TlsEvent {
    /// It needs more ciphertext; all output is encrypted and with the socket (or `tx`).
    NeedInput,
    /// The handshake just finished.
    Established,
    /// Decrypted bytes were appended to the thread's scratch buffer; `full` when a record
    /// did not fit and waits for the buffer to be drained.
    Plaintext { full: bool },
    /// The server sent close_notify.
    PeerClosed,
}

/// Sends `data` after whatever `tx` still holds, keeping in `tx` what the socket refuses.
pub(super) fn write_wire(sock: &mut TcpStream, tx: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    if !tx.is_empty() {
        tx.extend_from_slice(data);
        return Ok(());
    }
    let mut written = 0;
    while written < data.len() {
        match sock.write(&data[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    tx.extend_from_slice(&data[written..]);
    Ok(())
}

pub(super) fn tls_failure(e: impl std::fmt::Display) -> Failure {
    Failure {
        kind: ErrorKind::Tls,
        detail: format!("TLS: {e}"),
    }
}
