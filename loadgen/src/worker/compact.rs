//! The TLS mode of a logged-in session that traded rustls for its traffic keys: one step
//! over `Records` (the record layer itself is `crate::records`).

use mio::net::TcpStream;

use super::shared::Shared;
use super::step::{TlsEvent, tls_failure, write_wire};
use crate::client::{Client, Failure};
use crate::records::{Opened, Records};

/// One step of a compacted TLS session, the counterpart of `Conn::tls_step`: opens the
/// complete records in `cipher[*offset..used]` into `scratch[*filled..]`, and once there
/// are none, seals the client's output (and a close_notify) and sends it.
pub(super) struct CompactStep<'a> {
    pub(super) records: &'a mut Records,
    pub(super) sock: &'a mut TcpStream,
    pub(super) tx: &'a mut Vec<u8>,
    pub(super) client: &'a Client,
}

impl CompactStep<'_> {
    pub(super) fn run(
        self,
        sh: &mut Shared,
        offset: &mut usize,
        used: usize,
        filled: &mut usize,
        close_notify: bool,
    ) -> Result<TlsEvent, Failure> {
        let before = *filled;
        let opened = self
            .records
            .open(&mut sh.cipher[..used], offset, &mut sh.scratch, filled)
            .map_err(tls_failure)?;
        match opened {
            Opened::Full => return Ok(TlsEvent::Plaintext { full: true }),
            // Data before close_notify is delivered first; the next step reports the close.
            _ if *filled > before => return Ok(TlsEvent::Plaintext { full: false }),
            Opened::PeerClosed => return Ok(TlsEvent::PeerClosed),
            Opened::NeedInput => {}
        }
        if !sh.out.is_empty() {
            self.records.seal(&sh.out, &mut sh.tls_out);
            sh.out.clear();
        }
        if close_notify {
            self.records.seal_close_notify(&mut sh.tls_out);
        }
        let sent = write_wire(self.sock, self.tx, &sh.tls_out);
        sh.tls_out.clear();
        sent.map_err(|e| self.client.peer_closed(&format!("failed ({e})")))?;
        Ok(TlsEvent::NeedInput)
    }
}
