//! One session: its socket, its TLS connection in one of three modes (rustls buffered,
//! rustls unbuffered, compact) and its protocol state, driven by socket events.

use std::io::{self, Read as _, Write as _};
use std::net::SocketAddr;
use std::ops::ControlFlow;

use mio::net::TcpStream;
use rustls::client::UnbufferedClientConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{ClientConnection, ProtocolVersion};

use super::compact::CompactStep;
use super::plan::{Clock, Plan};
use super::shared::Shared;
use super::step::{TlsEvent, tls_failure, write_wire};
use crate::client::{Action, Client, Failure, State};
use crate::histo::ErrorKind;
use crate::net;
use crate::records::Records;
use crate::schedule::Nanos;
use crate::tls;

/// Whether a session is still open after I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Open,
    /// The stream was closed in an orderly way at the end of the run.
    Closed,
}

/// A session's TLS connection.
enum Tls {
    /// rustls's buffered connection, which keeps a 4 KB receive buffer (and more) for its
    /// whole life; only for the -PLUS mechanisms, because rustls 0.23 offers the TLS
    /// exporter they bind to on buffered connections only.
    Buffered(Box<ClientConnection>),
    /// rustls's unbuffered API on the thread's buffers: an idle session keeps only keys and
    /// protocol state, no buffers (a third of the memory of a buffered one).
    Unbuffered(Box<UnbufferedClientConnection>),
    /// A logged-in TLS 1.3 session's traffic keys, taken over from rustls: an idle session
    /// keeps about 100 bytes of TLS state instead of rustls's 3.8 KB.
    Compact(Box<Records>),
}

/// One session's socket, TLS state and protocol state. While idle it holds no buffers.
pub(super) struct Conn {
    pub(super) sock: TcpStream,
    tls: Option<Tls>,
    handshaking: bool,
    pub(super) client: Client,
    /// The start of a stanza that has not fully arrived.
    rx: Vec<u8>,
    /// The start of a TLS record that has not fully arrived (unbuffered TLS only), exactly
    /// as rustls left it: it may have decrypted parts of it in place.
    rx_tls: Vec<u8>,
    /// Bytes the socket did not take yet: plaintext without TLS or a PROXY header before
    /// it, TLS records with unbuffered TLS (the buffered connection keeps its own).
    tx: Vec<u8>,
    /// Deadline of this session's entry in the timer wheel; 0 when it has none.
    pub(super) timer_at: Nanos,
    /// In the queue of sessions that can take a request.
    pub(super) queued: bool,
}

impl Conn {
    /// A session whose connect is under way, with no TLS, buffers or timer yet.
    pub(super) fn new(sock: TcpStream, client: Client) -> Self {
        Self {
            sock,
            tls: None,
            handshaking: false,
            client,
            rx: Vec::new(),
            rx_tls: Vec::new(),
            tx: Vec::new(),
            timer_at: 0,
            queued: false,
        }
    }

    pub(super) fn on_event(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        readable: bool,
        writable: bool,
    ) -> Result<Outcome, Failure> {
        if self.client.state() == State::Connecting {
            let local = match net::connect_result(&self.sock) {
                Ok(Some(local)) => local,
                Ok(None) => return Ok(Outcome::Open),
                Err(e) => return Err(connect_failure(plan.server, &e)),
            };
            let (mut ctx, _) = sh.split(plan, clock.now());
            let mut action = self.client.connected(&mut ctx, local);
            self.send_out(sh)?;
            if self.client.state() == State::Proxy {
                let (mut ctx, _) = sh.split(plan, clock.now());
                action = self.client.proxy_sent(&mut ctx);
                self.send_out(sh)?;
            }
            if action == Action::StartTls {
                self.start_tls(plan, sh)?;
            }
        }
        if writable {
            self.flush()?;
        }
        if readable {
            self.read(plan, sh, clock)
        } else {
            Ok(Outcome::Open)
        }
    }

    fn start_tls(&mut self, plan: &Plan, sh: &mut Shared) -> Result<(), Failure> {
        let setup = plan.tls.as_ref().ok_or_else(|| Failure {
            kind: ErrorKind::Tls,
            detail: "TLS is off (--tls none) but was needed".into(),
        })?;
        self.handshaking = true;
        if plan.profile.mechanism.is_plus() {
            let tls = setup.connect().map_err(tls_failure)?;
            self.tls = Some(Tls::Buffered(Box::new(tls)));
            self.flush()
        } else {
            let tls = setup.connect_unbuffered().map_err(tls_failure)?;
            self.tls = Some(Tls::Unbuffered(Box::new(tls)));
            // The ClientHello.
            self.send_out(sh)
        }
    }

    /// Reads everything available and feeds it to the client.
    fn read(&mut self, plan: &Plan, sh: &mut Shared, clock: Clock) -> Result<Outcome, Failure> {
        let mut filled = self.rx.len();
        sh.scratch[..filled].copy_from_slice(&self.rx);
        let result = self.read_into(plan, sh, clock, &mut filled);
        keep_unprocessed(&mut self.rx, &sh.scratch[..filled]);
        result
    }

    fn read_into(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
    ) -> Result<Outcome, Failure> {
        loop {
            match self.tls {
                Some(Tls::Buffered(_)) => return self.read_tls(plan, sh, clock, filled),
                Some(Tls::Unbuffered(_) | Tls::Compact(_)) => {
                    return self.read_unbuffered(plan, sh, clock, filled);
                }
                None => {}
            }
            let space = sh.scratch.len() - *filled;
            if space == 0 {
                return Err(Failure {
                    kind: ErrorKind::Protocol,
                    detail: "oversized element from the server".into(),
                });
            }
            let n = match self.recv(&mut sh.scratch[*filled..]) {
                ControlFlow::Continue(n) => n,
                ControlFlow::Break(done) => return done,
            };
            *filled += n;
            if self.deliver(plan, sh, clock, filled)? == Outcome::Closed {
                return Ok(Outcome::Closed);
            }
            // A short read drained the socket; new data brings a new edge.
            if n < space && self.tls.is_none() {
                return Ok(Outcome::Open);
            }
        }
    }

    /// Reads ciphertext into the thread's buffer and feeds it to rustls; a short read
    /// means the socket is drained, which saves the read that would return EAGAIN.
    fn read_tls(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
    ) -> Result<Outcome, Failure> {
        loop {
            let n = match self.recv(&mut sh.cipher) {
                ControlFlow::Continue(n) => n,
                ControlFlow::Break(done) => return done,
            };
            let mut offset = 0;
            while offset < n {
                let Some(Tls::Buffered(tls)) = self.tls.as_mut() else {
                    return Ok(Outcome::Open);
                };
                let mut input = &sh.cipher[offset..n];
                offset += tls.read_tls(&mut input).map_err(tls_failure)?;
                let state = match tls.process_new_packets() {
                    Ok(state) => state,
                    Err(e) => {
                        // Tell the server why (the alert is queued), then give up.
                        let _ = tls.write_tls(&mut self.sock);
                        return Err(tls_failure(e));
                    }
                };
                let plaintext = state.plaintext_bytes_to_read();
                let peer_closed = state.peer_has_closed();
                if self.handshaking && !tls.is_handshaking() {
                    self.handshaking = false;
                    let exporter = if plan.profile.mechanism.is_plus() {
                        tls::exporter(tls)
                    } else {
                        None
                    };
                    let (mut ctx, _) = sh.split(plan, clock.now());
                    self.client.tls_established(&mut ctx, exporter);
                    self.send_out(sh)?;
                }
                if plaintext > 0
                    && self.deliver_tls(plan, sh, clock, filled, plaintext)? == Outcome::Closed
                {
                    return Ok(Outcome::Closed);
                }
                self.flush()?;
                if peer_closed {
                    return self.eof("closed by the server");
                }
            }
            if n < sh.cipher.len() {
                return Ok(Outcome::Open);
            }
        }
    }

    /// Reads ciphertext after what is left of the last read into the thread's buffer, runs
    /// rustls over it and feeds the plaintext to the client. What rustls could not use yet
    /// (the start of a record) goes back to `rx_tls`; a short read means the socket is
    /// drained. A logged-in session is compacted here (see [`Conn::compact_tls`]).
    fn read_unbuffered(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
    ) -> Result<Outcome, Failure> {
        let mut used = self.rx_tls.len();
        sh.cipher[..used].copy_from_slice(&self.rx_tls);
        // Emptied while the records are processed: `send_unbuffered` must not replay it.
        self.rx_tls.clear();
        let result = self.read_records(plan, sh, clock, filled, &mut used);
        // Output left over belongs to a session that ended (or could not send it).
        sh.out.clear();
        keep_unprocessed(&mut self.rx_tls, &sh.cipher[..used]);
        match result {
            // A logged-in session trades rustls for its keys once nothing is pending.
            Ok(Outcome::Open) if self.client.state() == State::Ready => {
                if self.compact_tls()? {
                    sh.rec.counters().tls_compacted += 1;
                }
                Ok(Outcome::Open)
            }
            other => other,
        }
    }

    /// The loop of [`Conn::read_unbuffered`]; `cipher[..used]` is the unprocessed input.
    fn read_records(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
        used: &mut usize,
    ) -> Result<Outcome, Failure> {
        loop {
            let space = sh.cipher.len() - *used;
            if space == 0 {
                return Err(tls_failure("TLS message larger than the receive buffer"));
            }
            let n = match self.recv(&mut sh.cipher[*used..]) {
                ControlFlow::Continue(n) => n,
                ControlFlow::Break(done) => return done,
            };
            *used += n;
            let mut offset = 0;
            let result = self.run_records(plan, sh, clock, filled, &mut offset, *used);
            sh.cipher.copy_within(offset..*used, 0);
            *used -= offset;
            if result? == Outcome::Closed {
                return Ok(Outcome::Closed);
            }
            if n < space {
                return Ok(Outcome::Open);
            }
        }
    }

    /// Runs rustls over `cipher[*offset..used]` until it needs more input, handing the
    /// handshake's end and the plaintext to the client; `offset` advances past the bytes
    /// rustls is done with.
    fn run_records(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
        offset: &mut usize,
        used: usize,
    ) -> Result<Outcome, Failure> {
        loop {
            let start = *filled;
            match self.tls_step(sh, offset, used, filled, false)? {
                TlsEvent::NeedInput => return Ok(Outcome::Open),
                TlsEvent::Established => {
                    let (mut ctx, _) = sh.split(plan, clock.now());
                    // Its stream header is encrypted by the next step.
                    self.client.tls_established(&mut ctx, None);
                }
                TlsEvent::Plaintext { full } => {
                    // What the client left of the last delivery and the next record do
                    // not fit together.
                    if full && *filled == start {
                        return Err(Failure {
                            kind: ErrorKind::Protocol,
                            detail: "oversized element from the server".into(),
                        });
                    }
                    if *filled > start && self.deliver(plan, sh, clock, filled)? == Outcome::Closed
                    {
                        return Ok(Outcome::Closed);
                    }
                }
                TlsEvent::PeerClosed => return self.eof("closed by the server"),
            }
        }
    }

    /// Drives the unbuffered connection over `cipher[*offset..used]` until something needs
    /// the caller: encodes and sends handshake records, encrypts and sends the client's
    /// output (`sh.out`) and, with `close_notify`, a close_notify once application data may
    /// flow. Decrypted records go to `scratch[filled..]`.
    fn tls_step(
        &mut self,
        sh: &mut Shared,
        offset: &mut usize,
        used: usize,
        filled: &mut usize,
        close_notify: bool,
    ) -> Result<TlsEvent, Failure> {
        loop {
            let tls = match self.tls.as_mut() {
                Some(Tls::Unbuffered(tls)) => tls,
                Some(Tls::Compact(records)) => {
                    let step = CompactStep {
                        records,
                        sock: &mut self.sock,
                        tx: &mut self.tx,
                        client: &self.client,
                    };
                    return step.run(sh, offset, used, filled, close_notify);
                }
                _ => return Ok(TlsEvent::NeedInput),
            };
            if self.handshaking && !tls.is_handshaking() {
                self.handshaking = false;
                return Ok(TlsEvent::Established);
            }
            let status = tls.process_tls_records(&mut sh.cipher[*offset..used]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    *offset += discard;
                    // Tell the server why (rustls queued an alert), then give up.
                    self.send_alert(sh, *offset, used);
                    return Err(tls_failure(e));
                }
            };
            let event = match state {
                ConnectionState::ReadTraffic(mut records) => {
                    let end = &mut *filled;
                    let mut full = false;
                    while let Some(len) = records.peek_len() {
                        let len = len.get();
                        if len > sh.scratch.len() - *end {
                            full = true;
                            break;
                        }
                        match records.next_record() {
                            Some(Ok(record)) => {
                                sh.scratch[*end..*end + len].copy_from_slice(record.payload);
                                *end += len;
                                discard += record.discard;
                            }
                            Some(Err(e)) => return Err(tls_failure(e)),
                            None => break,
                        }
                    }
                    Some(TlsEvent::Plaintext { full })
                }
                ConnectionState::EncodeTlsData(mut encoder) => {
                    append_records(&mut sh.tls_out, 4096, |buf| match encoder.encode(buf) {
                        Ok(n) => Ok(n),
                        Err(EncodeError::InsufficientSize(e)) => Err(Some(e.required_size)),
                        Err(EncodeError::AlreadyEncoded) => Err(None),
                    })
                    .map_err(|()| tls_failure("cannot encode a handshake record"))?;
                    None
                }
                ConnectionState::TransmitTlsData(transmit) => {
                    let sent = write_wire(&mut self.sock, &mut self.tx, &sh.tls_out);
                    sh.tls_out.clear();
                    transmit.done();
                    sent.map_err(|e| self.client.peer_closed(&format!("failed ({e})")))?;
                    None
                }
                ConnectionState::WriteTraffic(mut traffic) => {
                    if !sh.out.is_empty() {
                        // Headroom for the record framing of each 16 KB fragment.
                        let hint = sh.out.len() + (sh.out.len() / 16384 + 1) * 64;
                        append_records(&mut sh.tls_out, hint, |buf| {
                            match traffic.encrypt(&sh.out, buf) {
                                Ok(n) => Ok(n),
                                Err(EncryptError::InsufficientSize(e)) => {
                                    Err(Some(e.required_size))
                                }
                                Err(_) => Err(None),
                            }
                        })
                        .map_err(|()| tls_failure("cannot encrypt"))?;
                        sh.out.clear();
                    }
                    if close_notify {
                        append_records(&mut sh.tls_out, 64, |buf| {
                            match traffic.queue_close_notify(buf) {
                                Ok(n) => Ok(n),
                                Err(EncryptError::InsufficientSize(e)) => {
                                    Err(Some(e.required_size))
                                }
                                Err(_) => Err(None),
                            }
                        })
                        .map_err(|()| tls_failure("cannot encrypt close_notify"))?;
                    }
                    let sent = write_wire(&mut self.sock, &mut self.tx, &sh.tls_out);
                    sh.tls_out.clear();
                    sent.map_err(|e| self.client.peer_closed(&format!("failed ({e})")))?;
                    Some(TlsEvent::NeedInput)
                }
                ConnectionState::BlockedHandshake => Some(TlsEvent::NeedInput),
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(TlsEvent::PeerClosed),
                // Early data is for servers; nothing else exists in rustls 0.23.
                _ => Some(TlsEvent::NeedInput),
            };
            *offset += discard;
            if let Some(event) = event {
                return Ok(event);
            }
        }
    }

    /// Sends the alert rustls queued when it failed, as far as the socket takes it. rustls
    /// hands it over first thing; it is sent without asking rustls again, which would
    /// process the failed input once more.
    fn send_alert(&mut self, sh: &mut Shared, offset: usize, used: usize) {
        let Some(Tls::Unbuffered(tls)) = self.tls.as_mut() else {
            return;
        };
        let status = tls.process_tls_records(&mut sh.cipher[offset..used]);
        if let Ok(ConnectionState::EncodeTlsData(mut encoder)) = status.state {
            sh.tls_out.clear();
            if append_records(&mut sh.tls_out, 64, |buf| {
                encoder.encode(buf).map_err(|_| None)
            })
            .is_ok()
            {
                let _ = write_wire(&mut self.sock, &mut self.tx, &sh.tls_out);
            }
            sh.tls_out.clear();
        }
    }

    /// Moves `plaintext` decrypted bytes into the receive buffer and on to the client.
    fn deliver_tls(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
        mut plaintext: usize,
    ) -> Result<Outcome, Failure> {
        while plaintext > 0 {
            let Some(Tls::Buffered(tls)) = self.tls.as_mut() else {
                break;
            };
            let n = match tls.reader().read(&mut sh.scratch[*filled..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(tls_failure(e)),
            };
            if n == 0 {
                break;
            }
            plaintext = plaintext.saturating_sub(n);
            *filled += n;
            if self.deliver(plan, sh, clock, filled)? == Outcome::Closed {
                return Ok(Outcome::Closed);
            }
        }
        Ok(Outcome::Open)
    }

    /// Feeds `scratch[..filled]` to the client and keeps what it did not consume.
    fn deliver(
        &mut self,
        plan: &Plan,
        sh: &mut Shared,
        clock: Clock,
        filled: &mut usize,
    ) -> Result<Outcome, Failure> {
        let (mut ctx, scratch) = sh.split(plan, clock.now());
        let (consumed, action) = self.client.receive(&mut ctx, &scratch[..*filled])?;
        scratch.copy_within(consumed..*filled, 0);
        *filled -= consumed;
        // Unbuffered TLS encrypts the output once rustls is done with the records at hand
        // (in the step that gave these bytes); it cannot start another step in between.
        if !matches!(self.tls, Some(Tls::Unbuffered(_) | Tls::Compact(_))) {
            self.send_out(sh)?;
        }
        match action {
            Action::Continue => Ok(Outcome::Open),
            Action::StartTls => {
                *filled = 0;
                self.start_tls(plan, sh)?;
                Ok(Outcome::Open)
            }
            Action::Close => Ok(Outcome::Closed),
        }
    }

    /// One read from the socket into `buf` (retried when interrupted): `Continue` with
    /// the bytes read, or `Break` with what the caller returns: open when the socket has
    /// nothing more now, the end of the stream, or a failure.
    fn recv(&mut self, buf: &mut [u8]) -> ControlFlow<Result<Outcome, Failure>, usize> {
        let done = loop {
            match self.sock.read(buf) {
                Ok(0) => break self.eof("closed by the server"),
                Ok(n) => return ControlFlow::Continue(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(Outcome::Open),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(self.client.peer_closed(&format!("failed ({e})"))),
            }
        };
        ControlFlow::Break(done)
    }

    fn eof(&self, why: &str) -> Result<Outcome, Failure> {
        if self.client.state() == State::Closing {
            Ok(Outcome::Closed)
        } else {
            Err(self.client.peer_closed(why))
        }
    }

    /// Sends what the client wrote into the shared output buffer.
    pub(super) fn send_out(&mut self, sh: &mut Shared) -> Result<(), Failure> {
        if matches!(self.tls, Some(Tls::Unbuffered(_) | Tls::Compact(_))) {
            return self.send_unbuffered(sh, false);
        }
        if sh.out.is_empty() {
            return Ok(());
        }
        let result = match self.tls.as_mut() {
            Some(Tls::Buffered(tls)) => match tls.writer().write_all(&sh.out) {
                Ok(()) => self.flush(),
                Err(e) => Err(tls_failure(e)),
            },
            Some(Tls::Unbuffered(_) | Tls::Compact(_)) => Ok(()),
            None if self.tx.is_empty() => {
                let written = self.write_plain(&sh.out)?;
                self.tx.extend_from_slice(&sh.out[written..]);
                Ok(())
            }
            None => {
                self.tx.extend_from_slice(&sh.out);
                self.flush()
            }
        };
        sh.out.clear();
        result
    }

    /// Between reads: runs the unbuffered connection over what is left of the last read
    /// (the start of a record at most, so no plaintext comes out), which encodes pending
    /// handshake records, or encrypts `sh.out` (and a close_notify with `close_notify`)
    /// once the handshake is done. Only a close produces output during a handshake, and it
    /// is dropped: the server could not read it before the handshake anyway.
    fn send_unbuffered(&mut self, sh: &mut Shared, close_notify: bool) -> Result<(), Failure> {
        let used = self.rx_tls.len();
        sh.cipher[..used].copy_from_slice(&self.rx_tls);
        let mut offset = 0;
        let mut filled = 0;
        let result = self.tls_step(sh, &mut offset, used, &mut filled, close_notify);
        sh.out.clear();
        // rustls may have changed the bytes it keeps (decrypting in place): keep them as
        // they are now.
        if used > 0 {
            self.rx_tls.clear();
            self.rx_tls.extend_from_slice(&sh.cipher[offset..used]);
        }
        match result? {
            TlsEvent::NeedInput => Ok(()),
            TlsEvent::PeerClosed => Err(self.client.peer_closed("closed TLS")),
            event => Err(tls_failure(format!("unexpected {event:?} between reads"))),
        }
    }

    /// Ends TLS after the stream: close_notify behind the client's last output.
    pub(super) fn send_closing(&mut self, sh: &mut Shared) -> Result<(), Failure> {
        match self.tls.as_mut() {
            Some(Tls::Unbuffered(_) | Tls::Compact(_)) => self.send_unbuffered(sh, true),
            Some(Tls::Buffered(_)) => {
                let sent = self.send_out(sh);
                if let Some(Tls::Buffered(tls)) = self.tls.as_mut() {
                    tls.send_close_notify();
                }
                sent.and_then(|()| self.flush())
            }
            None => self.send_out(sh).and_then(|()| self.flush()),
        }
    }

    /// Trades a logged-in session's rustls connection for its TLS 1.3 traffic keys, once
    /// nothing is half-received or unsent (rustls has handled every record the session
    /// read); returns whether it did. TLS 1.2 and the buffered connection of -PLUS stay
    /// with rustls.
    fn compact_tls(&mut self) -> Result<bool, Failure> {
        let ready = self.rx_tls.is_empty() && self.tx.is_empty();
        let Some(Tls::Unbuffered(tls)) = self.tls.as_ref() else {
            return Ok(false);
        };
        if !ready || tls.protocol_version() != Some(ProtocolVersion::TLSv1_3) {
            return Ok(false);
        }
        let Some(Tls::Unbuffered(tls)) = self.tls.take() else {
            return Ok(false);
        };
        // Deprecated because it leaves tickets and key updates to the caller: `Records`
        // skips tickets and fails clearly on a KeyUpdate. The replacement keeps rustls's
        // key schedule alive, the memory this saves.
        #[allow(deprecated)]
        let secrets = tls.dangerous_extract_secrets().map_err(tls_failure)?;
        let records = Records::new(&secrets).map_err(tls_failure)?;
        self.tls = Some(Tls::Compact(Box::new(records)));
        Ok(true)
    }

    /// Writes as much of `data` as the socket takes.
    fn write_plain(&mut self, data: &[u8]) -> Result<usize, Failure> {
        let mut written = 0;
        while written < data.len() {
            match self.sock.write(&data[written..]) {
                Ok(0) => return Err(self.client.peer_closed("refused more data")),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.client.peer_closed(&format!("failed ({e})"))),
            }
        }
        Ok(written)
    }

    /// Writes buffered output: plaintext the socket refused earlier (which may be a PROXY
    /// header that must precede the TLS records), then TLS records.
    fn flush(&mut self) -> Result<(), Failure> {
        if !self.tx.is_empty() {
            let tx = std::mem::take(&mut self.tx);
            let written = self.write_plain(&tx)?;
            if written < tx.len() {
                self.tx = tx;
                self.tx.drain(..written);
                return Ok(());
            }
        }
        if let Some(Tls::Buffered(tls)) = self.tls.as_mut() {
            while tls.wants_write() {
                match tls.write_tls(&mut self.sock) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(self.client.peer_closed(&format!("failed ({e})"))),
                }
            }
        }
        Ok(())
    }
}

/// Appends what `encode` writes to `out`, growing the room it gets from `hint` to what it
/// says it needs (`Err(Some(size))`); `Err(None)` is a failure.
fn append_records(
    out: &mut Vec<u8>,
    hint: usize,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Option<usize>>,
) -> Result<(), ()> {
    let start = out.len();
    let mut room = hint;
    loop {
        out.resize(start + room, 0);
        match encode(&mut out[start..]) {
            Ok(n) => {
                out.truncate(start + n);
                return Ok(());
            }
            Err(Some(needed)) if needed > room => room = needed,
            Err(_) => {
                out.truncate(start);
                return Err(());
            }
        }
    }
}

pub(super) fn connect_failure(server: SocketAddr, e: &io::Error) -> Failure {
    let hint = match e.kind() {
        io::ErrorKind::AddrNotAvailable => {
            " (out of local ports: spread connections with --local-ips)"
        }
        _ if e.raw_os_error() == Some(nix::errno::Errno::EMFILE as i32) => {
            " (too many open files: raise the hard limit, ulimit -Hn)"
        }
        _ => "",
    };
    Failure {
        kind: ErrorKind::Connect,
        detail: format!("connect to {server}: {e}{hint}"),
    }
}

/// Moves the bytes a read left unprocessed from a per-thread buffer into the session's
/// own `stash`, which holds no memory at all when nothing is left: idle sessions must
/// stay small.
fn keep_unprocessed(stash: &mut Vec<u8>, rest: &[u8]) {
    stash.clear();
    if rest.is_empty() {
        if stash.capacity() > 0 {
            *stash = Vec::new();
        }
    } else {
        stash.extend_from_slice(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An idle plaintext session costs its `Conn` plus a few small allocations; keep it
    /// well under the 3 KB budget.
    #[test]
    fn idle_session_state_is_small() {
        assert!(
            std::mem::size_of::<Conn>() <= 1024,
            "{}",
            std::mem::size_of::<Conn>()
        );
    }
}
