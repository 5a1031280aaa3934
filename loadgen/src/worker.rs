//! One event-loop thread: a mio poll, a slab of sessions, a timer wheel for timeouts and a
//! timerfd for precise send times. It runs the phases the coordinator commands (login
//! ramp, request phases, close) for its share of the sessions and the request rate, and
//! sends a measurement sample every interval.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use rustls::client::UnbufferedClientConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::{ClientConnection, ProtocolVersion};
use session::sasl::SaltedPasswordCache;

use crate::accounts::Accounts;
use crate::client::{Action, Client, Ctx, Failure, Mix, Profile, State};
use crate::histo::{ErrorKind, Recorder, Sample};
use crate::net;
use crate::records::{Opened, Records};
use crate::schedule::{Nanos, Schedule};
use crate::sys;
use crate::tls::{self, TlsSetup};

const WAKER: Token = Token(usize::MAX);
const TIMER: Token = Token(usize::MAX - 1);
/// Per-thread receive buffer; larger than any stanza the tokenizer accepts.
const SCRATCH_BYTES: usize = 128 * 1024;
/// Per-thread TLS read buffer. rustls's unbuffered API needs a whole handshake message in
/// one buffer, and rustls accepts handshake messages up to 64 KB: that, plus the record
/// framing of the 5 records it can span.
const CIPHER_BYTES: usize = 64 * 1024 + 5 * 512;
/// Initial size of the per-thread TLS output buffer: the client's largest flight.
const TLS_OUT_BYTES: usize = 16 * 1024;
/// Timeout resolution: timeouts are seconds long, so 10 ms late is immaterial.
const WHEEL_TICK: Nanos = 10_000_000;
/// The phase number of samples taken while no phase runs (hold, closing).
pub const IDLE_PHASE: u32 = u32::MAX;
/// Longest wait for servers to close streams at the end.
const MAX_CLOSE_WAIT: Nanos = 5_000_000_000;

/// Everything a worker needs to know about the run, shared by all workers.
#[derive(Debug)]
pub struct Plan {
    pub profile: Profile,
    pub accounts: Accounts,
    pub server: SocketAddr,
    /// Source addresses, used round robin; empty means the kernel's choice.
    pub local_ips: Vec<IpAddr>,
    pub tls: Option<TlsSetup>,
    pub sessions: u64,
    /// Logins started per second, all threads together.
    pub setup_rate: f64,
    /// Most logins in progress at once, all threads together.
    pub concurrency: usize,
    pub mix: Mix,
    /// Length of one measurement interval.
    pub interval: Nanos,
    pub threads: usize,
}

/// The run's clock: nanoseconds since a common epoch, so all threads share time stamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    pub fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }
}

/// From the coordinator.
#[derive(Debug, Clone, Copy)]
pub enum Command {
    /// Log this thread's sessions in, starting at `start`.
    Ramp { start: Nanos, phase: u32 },
    /// Send requests at `rate` per second (all threads together) from `start` for `length`.
    Requests {
        start: Nanos,
        length: Nanos,
        rate: f64,
        phase: u32,
    },
    /// Close every session and stop.
    Close,
}

/// To the coordinator.
#[derive(Debug)]
pub enum Report {
    Started,
    /// Measurements of interval `interval`; `boundary` when the interval is over for this
    /// thread (otherwise a phase ended inside it and more may follow).
    Sample {
        interval: u64,
        boundary: bool,
        phase: u32,
        sample: Box<Sample>,
    },
    PhaseDone {
        phase: u32,
    },
    Closed,
    Fatal {
        thread: usize,
        error: String,
    },
}

/// The per-thread buffers and state that sessions borrow while they run.
struct Shared {
    rec: Recorder,
    cache: SaltedPasswordCache,
    out: Vec<u8>,
    /// Plaintext from the server: the unfinished stanza of a session, then new bytes.
    scratch: Box<[u8]>,
    /// Ciphertext just read, on its way into rustls.
    cipher: Box<[u8]>,
    /// TLS records rustls's unbuffered API encoded, on their way to the socket.
    tls_out: Vec<u8>,
}

impl Shared {
    fn split<'a>(&'a mut self, plan: &'a Plan, now: Nanos) -> (Ctx<'a>, &'a mut [u8]) {
        let ctx = Ctx {
            now,
            profile: &plan.profile,
            accounts: &plan.accounts,
            cache: &mut self.cache,
            rec: &mut self.rec,
            out: &mut self.out,
        };
        (ctx, &mut self.scratch)
    }
}

/// Whether a session is still open after I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
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

/// Where an unbuffered TLS connection stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsEvent {
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

/// One session's socket, TLS state and protocol state. While idle it holds no buffers.
struct Conn {
    sock: TcpStream,
    tls: Option<Tls>,
    handshaking: bool,
    client: Client,
    /// The start of a stanza that has not fully arrived.
    rx: Vec<u8>,
    /// The start of a TLS record that has not fully arrived (unbuffered TLS only), exactly
    /// as rustls left it: it may have decrypted parts of it in place.
    rx_tls: Vec<u8>,
    /// Bytes the socket did not take yet: plaintext without TLS or a PROXY header before
    /// it, TLS records with unbuffered TLS (the buffered connection keeps its own).
    tx: Vec<u8>,
    /// Deadline of this session's entry in the timer wheel; 0 when it has none.
    timer_at: Nanos,
    /// In the queue of sessions that can take a request.
    queued: bool,
}

impl Conn {
    fn on_event(
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
    fn send_out(&mut self, sh: &mut Shared) -> Result<(), Failure> {
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
    fn send_closing(&mut self, sh: &mut Shared) -> Result<(), Failure> {
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

/// One step of a compacted TLS session, the counterpart of [`Conn::tls_step`]: opens the
/// complete records in `cipher[*offset..used]` into `scratch[*filled..]`, and once there
/// are none, seals the client's output (and a close_notify) and sends it.
struct CompactStep<'a> {
    records: &'a mut Records,
    sock: &'a mut TcpStream,
    tx: &'a mut Vec<u8>,
    client: &'a Client,
}

impl CompactStep<'_> {
    fn run(
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

/// Sends `data` after whatever `tx` still holds, keeping in `tx` what the socket refuses.
fn write_wire(sock: &mut TcpStream, tx: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
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

fn tls_failure(e: impl std::fmt::Display) -> Failure {
    Failure {
        kind: ErrorKind::Tls,
        detail: format!("TLS: {e}"),
    }
}

fn connect_failure(server: SocketAddr, e: &io::Error) -> Failure {
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

/// Sessions by token: a vector of slots and a free list; the generation tells a reused
/// slot from the session a stale timer or queue entry meant.
#[derive(Default)]
struct Slab {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    /// Picks a free slot: its index and generation.
    fn vacant(&mut self) -> (usize, u32) {
        match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.0 = slot.0.wrapping_add(1);
                (index as usize, slot.0)
            }
            None => {
                self.slots.push((0, None));
                (self.slots.len() - 1, 0)
            }
        }
    }

    fn fill(&mut self, index: usize, conn: Conn) {
        self.slots[index].1 = Some(conn);
        self.len += 1;
    }

    /// Returns a slot from [`Slab::vacant`] that was not filled.
    fn release(&mut self, index: usize) {
        self.free.push(index as u32);
    }

    fn get(&mut self, index: usize, generation: u32) -> Option<&mut Conn> {
        match self.slots.get_mut(index) {
            Some((g, Some(conn))) if *g == generation => Some(conn),
            _ => None,
        }
    }

    fn get_any(&mut self, index: usize) -> Option<(u32, &mut Conn)> {
        match self.slots.get_mut(index) {
            Some((g, Some(conn))) => Some((*g, conn)),
            _ => None,
        }
    }

    fn remove(&mut self, index: usize) -> Option<Conn> {
        let conn = self.slots.get_mut(index)?.1.take()?;
        self.free.push(index as u32);
        self.len -= 1;
        Some(conn)
    }
}

/// Timeouts by 10 ms tick in a ring covering the longest timeout. Entries may be stale
/// (the session moved on); firing one only makes the session check its deadlines. The
/// loop wakes for the earliest tick that has entries, not for every tick.
struct Wheel {
    slots: Vec<Vec<(u32, u32)>>,
    /// Every tick before this one has fired; no entry is earlier.
    cursor: u64,
    /// The earliest tick with entries, when there are any.
    next: u64,
    len: usize,
}

impl Wheel {
    fn new(span: Nanos, now: Nanos) -> Self {
        let count = (span / WHEEL_TICK + 3) as usize;
        Self {
            slots: vec![Vec::new(); count],
            cursor: now / WHEEL_TICK,
            next: 0,
            len: 0,
        }
    }

    fn push(&mut self, at: Nanos, index: usize, generation: u32) {
        // Round up so an entry never fires before its deadline.
        let tick = at.div_ceil(WHEEL_TICK).max(self.cursor);
        let count = self.slots.len() as u64;
        self.slots[(tick % count) as usize].push((index as u32, generation));
        if self.len == 0 || tick < self.next {
            self.next = tick;
        }
        self.len += 1;
    }

    /// Moves every entry due by `now` into `out`.
    fn expire(&mut self, now: Nanos, out: &mut Vec<(u32, u32)>) {
        let count = self.slots.len() as u64;
        let now_tick = now / WHEEL_TICK;
        while self.len > 0 && self.next <= now_tick {
            let slot = &mut self.slots[(self.next % count) as usize];
            self.len -= slot.len();
            out.append(slot);
            self.cursor = self.next + 1;
            // Entries span less than the ring, so the first non-empty slot is the next.
            if self.len > 0 {
                self.next = (self.cursor..self.cursor + count)
                    .find(|tick| !self.slots[(tick % count) as usize].is_empty())
                    .expect("entries are left, so a slot has some");
            }
        }
        // Empty ticks up to now count as fired: later entries stay within the ring.
        let limit = if self.len > 0 { self.next } else { now_tick };
        self.cursor = self.cursor.max(now_tick.min(limit));
    }

    fn next_time(&self) -> Option<Nanos> {
        (self.len > 0).then_some(self.next * WHEEL_TICK)
    }
}

struct Ramp {
    schedule: Schedule,
    /// Most logins in progress at once on this thread.
    limit: usize,
    in_progress: usize,
    finished: u64,
}

struct Requests {
    schedule: Schedule,
    /// When the schedule ends.
    end: Nanos,
    /// When to stop waiting for the last replies.
    hard_end: Nanos,
}

pub struct Worker {
    thread: usize,
    plan: Arc<Plan>,
    clock: Clock,
    poll: Poll,
    events: Events,
    timer: TimerFd,
    /// The deadline the timerfd is set to.
    armed: Option<Nanos>,
    commands: Receiver<Command>,
    reports: Sender<Report>,
    conns: Slab,
    sh: Shared,
    wheel: Wheel,
    expired: Vec<(u32, u32)>,
    /// Sessions that can take a request, round robin.
    queue: VecDeque<(u32, u32)>,
    phase: u32,
    ramp: Option<Ramp>,
    requests: Option<Requests>,
    /// Deadline for the servers to close our streams, once closing.
    closing: Option<Nanos>,
    /// Requests sent and not answered, over all sessions.
    outstanding: u64,
    /// The current measurement interval.
    interval: u64,
}

impl Worker {
    /// Sets up the poll, the waker the coordinator uses to interrupt it, and the timer.
    pub fn new(
        thread: usize,
        plan: Arc<Plan>,
        clock: Clock,
        commands: Receiver<Command>,
        reports: Sender<Report>,
    ) -> io::Result<(Self, Waker)> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        poll.registry().register(
            &mut SourceFd(&timer.as_fd().as_raw_fd()),
            TIMER,
            Interest::READABLE,
        )?;
        let per_thread_accounts = plan
            .accounts
            .count()
            .min(plan.sessions)
            .div_ceil(plan.threads as u64);
        let now = clock.now();
        let worker = Self {
            thread,
            clock,
            poll,
            events: Events::with_capacity(1024),
            timer,
            armed: None,
            commands,
            reports,
            conns: Slab::default(),
            sh: Shared {
                rec: Recorder::default(),
                cache: SaltedPasswordCache::with_capacity(per_thread_accounts.max(1) as usize),
                out: Vec::with_capacity(4096),
                scratch: vec![0; SCRATCH_BYTES].into_boxed_slice(),
                cipher: vec![0; CIPHER_BYTES].into_boxed_slice(),
                tls_out: Vec::with_capacity(TLS_OUT_BYTES),
            },
            wheel: Wheel::new(plan.profile.timeout, now),
            expired: Vec::new(),
            queue: VecDeque::new(),
            phase: IDLE_PHASE,
            ramp: None,
            requests: None,
            closing: None,
            outstanding: 0,
            interval: now / plan.interval,
            plan,
        };
        Ok((worker, waker))
    }

    /// Runs until told to close (or the coordinator goes away).
    pub fn run(mut self) {
        sys::tighten_timer_slack();
        let _ = self.reports.send(Report::Started);
        if let Err(e) = self.event_loop() {
            let _ = self.reports.send(Report::Fatal {
                thread: self.thread,
                error: e.to_string(),
            });
        }
    }

    fn event_loop(&mut self) -> io::Result<()> {
        loop {
            if !self.commands() {
                return Ok(());
            }
            let now = self.clock.now();
            self.expire_timeouts(now);
            self.advance(now);
            if self
                .closing
                .is_some_and(|deadline| self.conns.len == 0 || now >= deadline)
            {
                self.finish_close();
                return Ok(());
            }
            let timeout = self.arm(now)?;
            match self.poll.poll(&mut self.events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // Take the events out so sessions can borrow the worker while they are walked.
            let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
            for event in &events {
                let token = event.token();
                if token == WAKER || token == TIMER {
                    continue;
                }
                let readable = event.is_readable() || event.is_read_closed() || event.is_error();
                self.conn_event(token.0, readable, event.is_writable());
            }
            self.events = events;
            if self.armed.is_some_and(|at| self.clock.now() >= at) {
                self.armed = None;
            }
        }
    }

    /// Applies coordinator commands; `false` once the coordinator is gone.
    fn commands(&mut self) -> bool {
        loop {
            match self.commands.try_recv() {
                Ok(Command::Ramp { start, phase }) => {
                    self.flush_sample(false);
                    self.phase = phase;
                    let plan = &self.plan;
                    let share = (plan.sessions + (plan.threads - 1 - self.thread) as u64)
                        / plan.threads as u64;
                    self.ramp = Some(Ramp {
                        schedule: Schedule::counted(
                            start,
                            plan.setup_rate,
                            self.thread,
                            plan.threads,
                            share,
                        ),
                        limit: plan.concurrency.div_ceil(plan.threads).max(1),
                        in_progress: 0,
                        finished: 0,
                    });
                }
                Ok(Command::Requests {
                    start,
                    length,
                    rate,
                    phase,
                }) => {
                    self.flush_sample(false);
                    self.phase = phase;
                    let end = start + length;
                    self.requests = Some(Requests {
                        schedule: Schedule::interleaved(
                            start,
                            length,
                            rate,
                            self.thread,
                            self.plan.threads,
                        ),
                        end,
                        hard_end: end + 2 * self.plan.profile.timeout,
                    });
                }
                Ok(Command::Close) => self.begin_close(),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Sets the timerfd for the next thing due and returns the poll timeout.
    fn arm(&mut self, now: Nanos) -> io::Result<Duration> {
        const FALLBACK: Duration = Duration::from_secs(1);
        let wake = self.next_wake();
        if wake <= now {
            return Ok(Duration::ZERO);
        }
        // An earlier wake still pending is fine: the next one is computed then.
        if self.armed.is_none_or(|at| at > wake || at <= now) {
            let delay = TimeSpec::from_duration(Duration::from_nanos(wake - now));
            self.timer
                .set(Expiration::OneShot(delay), TimerSetTimeFlags::empty())
                .map_err(io::Error::from)?;
            self.armed = Some(wake);
        }
        Ok(FALLBACK)
    }

    fn next_wake(&self) -> Nanos {
        let mut wake = (self.interval + 1) * self.plan.interval;
        if let Some(ramp) = &self.ramp
            && ramp.in_progress < ramp.limit
        {
            wake = ramp.schedule.next_time().map_or(wake, |t| t.min(wake));
        }
        if let Some(requests) = &self.requests {
            if !self.queue.is_empty() {
                wake = requests.schedule.next_time().map_or(wake, |t| t.min(wake));
            }
            wake = wake.min(if requests.schedule.finished() {
                requests.hard_end
            } else {
                requests.end
            });
        }
        if let Some(t) = self.wheel.next_time() {
            wake = wake.min(t);
        }
        if let Some(deadline) = self.closing {
            wake = wake.min(deadline);
        }
        wake
    }

    fn ctx(&mut self, now: Nanos) -> Ctx<'_> {
        self.sh.split(&self.plan, now).0
    }

    /// Runs the time-driven work: logins and requests due, phase ends, samples.
    fn advance(&mut self, now: Nanos) {
        self.start_logins(now);
        self.send_requests();
        self.check_phase_end(now);
        while now >= (self.interval + 1) * self.plan.interval {
            self.flush_sample(true);
            self.interval += 1;
        }
    }

    fn start_logins(&mut self, now: Nanos) {
        loop {
            let Some(ramp) = self.ramp.as_mut() else {
                return;
            };
            if ramp.in_progress >= ramp.limit {
                return;
            }
            let Some((job, _)) = ramp.schedule.take(now) else {
                return;
            };
            ramp.in_progress += 1;
            let session = job * self.plan.threads as u64 + self.thread as u64;
            self.open(session);
        }
    }

    fn open(&mut self, session: u64) {
        let plan = self.plan.clone();
        let local = (!plan.local_ips.is_empty())
            .then(|| plan.local_ips[(session % plan.local_ips.len() as u64) as usize]);
        let now = self.clock.now();
        let registered = net::connect(plan.server, local).and_then(|mut sock| {
            let (index, generation) = self.conns.vacant();
            match self.poll.registry().register(
                &mut sock,
                Token(index),
                Interest::READABLE | Interest::WRITABLE,
            ) {
                Ok(()) => Ok((sock, index, generation)),
                Err(e) => {
                    self.conns.release(index);
                    Err(e)
                }
            }
        });
        let (sock, index, generation) = match registered {
            Ok(registered) => registered,
            Err(e) => {
                let failure = connect_failure(plan.server, &e);
                let rec = &mut self.sh.rec;
                rec.counters().logins_started += 1;
                rec.error(failure.kind, || failure.detail);
                self.login_finished();
                return;
            }
        };
        let client = Client::new(session, &mut self.ctx(now));
        let conn = Conn {
            sock,
            tls: None,
            handshaking: false,
            client,
            rx: Vec::new(),
            rx_tls: Vec::new(),
            tx: Vec::new(),
            timer_at: 0,
            queued: false,
        };
        self.conns.fill(index, conn);
        self.after(index, generation, State::Connecting, 0, Ok(Outcome::Open));
    }

    fn login_finished(&mut self) {
        if let Some(ramp) = self.ramp.as_mut() {
            ramp.in_progress = ramp.in_progress.saturating_sub(1);
            ramp.finished += 1;
        }
    }

    fn conn_event(&mut self, index: usize, readable: bool, writable: bool) {
        let plan = self.plan.clone();
        let clock = self.clock;
        let Some((generation, conn)) = self.conns.get_any(index) else {
            return;
        };
        let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
        let result = conn.on_event(&plan, &mut self.sh, clock, readable, writable);
        self.after(index, generation, state, outstanding, result);
    }

    /// Bookkeeping after a session ran: drop it on failure or close, note a finished
    /// login, requeue it for requests, and keep a timeout entry for it.
    fn after(
        &mut self,
        index: usize,
        generation: u32,
        before: State,
        before_outstanding: usize,
        result: Result<Outcome, Failure>,
    ) {
        if result != Ok(Outcome::Open) {
            // The session ends here: whatever it had outstanding is settled by dropping
            // it, and a login still in progress is finished (unsuccessfully).
            self.outstanding = self.outstanding.saturating_sub(before_outstanding as u64);
            if !matches!(before, State::Ready | State::Closing) {
                self.login_finished();
            }
            self.drop_conn(index, result.err());
            return;
        }
        let timeout = self.plan.profile.timeout;
        let pipeline = &self.plan.profile;
        let Some(conn) = self.conns.get(index, generation) else {
            return;
        };
        let state = conn.client.state();
        let outstanding = conn.client.outstanding();
        let free = conn.client.free_slots(pipeline) > 0;
        let mut push_timer = None;
        if conn.timer_at == 0
            && let Some(at) = conn.client.next_deadline(timeout)
        {
            conn.timer_at = at;
            push_timer = Some(at);
        }
        let enqueue = free && !conn.queued;
        if enqueue {
            conn.queued = true;
        }
        self.outstanding =
            (self.outstanding + outstanding as u64).saturating_sub(before_outstanding as u64);
        if let Some(at) = push_timer {
            self.wheel.push(at, index, generation);
        }
        if enqueue {
            self.queue.push_back((index as u32, generation));
        }
        if before != State::Ready && state == State::Ready {
            self.login_finished();
        }
    }

    /// Removes a session; a failure counts as an error, and so does each request the
    /// session still had outstanding.
    fn drop_conn(&mut self, index: usize, failure: Option<Failure>) {
        let Some(mut conn) = self.conns.remove(index) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.sock);
        let Some(failure) = failure else { return };
        if conn.client.state() != State::Closing {
            let now = self.clock.now();
            let mut ctx = self.ctx(now);
            ctx.rec.error(failure.kind, || failure.detail);
            conn.client.abandon(&mut ctx);
        }
    }

    fn expire_timeouts(&mut self, now: Nanos) {
        self.wheel.expire(now, &mut self.expired);
        let expired = std::mem::take(&mut self.expired);
        for &(index, generation) in &expired {
            let plan = self.plan.clone();
            let Some(conn) = self.conns.get(index as usize, generation) else {
                continue;
            };
            conn.timer_at = 0;
            let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
            let (mut ctx, _) = self.sh.split(&plan, now);
            let result = conn.client.check_timeouts(&mut ctx).map(|_| Outcome::Open);
            self.after(index as usize, generation, state, outstanding, result);
        }
        self.expired = expired;
        self.expired.clear();
    }

    /// Hands due requests to sessions with a free pipeline slot, round robin.
    fn send_requests(&mut self) {
        let Some(mut requests) = self.requests.take() else {
            return;
        };
        let plan = self.plan.clone();
        let clock = self.clock;
        while requests
            .schedule
            .next_time()
            .is_some_and(|t| t <= clock.now())
        {
            let Some((index, generation)) = self.queue.pop_front() else {
                break;
            };
            let Some(conn) = self.conns.get(index as usize, generation) else {
                continue;
            };
            conn.queued = false;
            if conn.client.free_slots(&plan.profile) == 0 {
                continue;
            }
            let now = clock.now();
            let Some((job, intended)) = requests.schedule.take(now) else {
                break;
            };
            let kind = plan
                .mix
                .kind(job * plan.threads as u64 + self.thread as u64);
            let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
            let (mut ctx, _) = self.sh.split(&plan, now);
            conn.client.send_request(&mut ctx, kind, intended);
            let result = conn.send_out(&mut self.sh).map(|()| Outcome::Open);
            self.after(index as usize, generation, state, outstanding, result);
        }
        self.requests = Some(requests);
    }

    fn check_phase_end(&mut self, now: Nanos) {
        if self
            .ramp
            .as_ref()
            .is_some_and(|r| r.schedule.finished() && r.finished >= r.schedule.total())
        {
            self.ramp = None;
            self.end_phase();
        }
        let Some(requests) = &self.requests else {
            return;
        };
        let drained = requests.schedule.finished() && self.outstanding == 0;
        if !(drained || (now >= requests.end && self.conns.len == 0) || now >= requests.hard_end) {
            return;
        }
        let unsent = requests.schedule.total() - requests.schedule.taken();
        let total = requests.schedule.total();
        self.requests = None;
        let plan = self.plan.clone();
        for index in 0..self.conns.slots.len() {
            let Some((_, conn)) = self.conns.get_any(index) else {
                continue;
            };
            let (mut ctx, _) = self.sh.split(&plan, now);
            conn.client.expire_all(&mut ctx);
        }
        self.outstanding = 0;
        let rec = &mut self.sh.rec;
        rec.counters().requests_due += total;
        rec.errors(ErrorKind::Unsent, unsent, || {
            "no session was free to send the request before the phase ended".to_owned()
        });
        self.end_phase();
    }

    fn end_phase(&mut self) {
        self.flush_sample(false);
        let _ = self.reports.send(Report::PhaseDone { phase: self.phase });
        self.phase = IDLE_PHASE;
    }

    fn flush_sample(&mut self, boundary: bool) {
        let sample = Box::new(self.sh.rec.take_sample());
        let _ = self.reports.send(Report::Sample {
            interval: self.interval,
            boundary,
            phase: self.phase,
            sample,
        });
    }

    fn begin_close(&mut self) {
        let plan = self.plan.clone();
        let now = self.clock.now();
        self.ramp = None;
        self.requests = None;
        self.queue.clear();
        for index in 0..self.conns.slots.len() {
            let Some((generation, conn)) = self.conns.get_any(index) else {
                continue;
            };
            let (state, outstanding) = (conn.client.state(), conn.client.outstanding());
            let (mut ctx, _) = self.sh.split(&plan, now);
            conn.client.close(&mut ctx);
            // The stream close goes first, TLS close_notify behind it.
            let result = conn.send_closing(&mut self.sh).map(|()| Outcome::Open);
            self.after(index, generation, state, outstanding, result);
        }
        self.closing = Some(now + plan.profile.timeout.min(MAX_CLOSE_WAIT));
    }

    fn finish_close(&mut self) {
        for index in 0..self.conns.slots.len() {
            self.conns.remove(index);
        }
        self.flush_sample(false);
        let _ = self.reports.send(Report::Closed);
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

    #[test]
    fn wheel_fires_entries_once_and_never_early() {
        let mut wheel = Wheel::new(1_000_000_000, 0);
        let mut out = Vec::new();
        wheel.push(25_000_000, 1, 7);
        wheel.push(31_000_000, 2, 7);
        wheel.expire(24_999_999, &mut out);
        assert!(out.is_empty());
        // Deadlines round up to the 10 ms tick: 25 ms fires at 30 ms.
        assert_eq!(wheel.next_time(), Some(30_000_000));
        wheel.expire(30_000_000, &mut out);
        assert_eq!(out, [(1, 7)]);
        out.clear();
        wheel.expire(40_000_000, &mut out);
        assert_eq!(out, [(2, 7)]);
        assert_eq!(wheel.next_time(), None);
        // An entry already due fires at the next tick not yet expired.
        wheel.push(1, 3, 0);
        assert_eq!(wheel.next_time(), Some(50_000_000));
        out.clear();
        wheel.expire(50_000_000, &mut out);
        assert_eq!(out, [(3, 0)]);

        // With nothing due for a while, the next wake is the first tick with entries.
        out.clear();
        wheel.push(900_000_000, 4, 0);
        wheel.push(700_000_000, 5, 0);
        assert_eq!(wheel.next_time(), Some(700_000_000));
        wheel.expire(600_000_000, &mut out);
        assert!(out.is_empty());
        assert_eq!(wheel.next_time(), Some(700_000_000));
        wheel.expire(700_000_000, &mut out);
        assert_eq!(out, [(5, 0)]);
        assert_eq!(wheel.next_time(), Some(900_000_000));
        // The ring wraps: an entry a whole span later lands in a reused slot.
        wheel.push(1_600_000_000, 6, 0);
        out.clear();
        wheel.expire(1_000_000_000, &mut out);
        assert_eq!(out, [(4, 0)]);
        assert_eq!(wheel.next_time(), Some(1_600_000_000));
        out.clear();
        wheel.expire(1_600_000_000, &mut out);
        assert_eq!(out, [(6, 0)]);
        assert_eq!(wheel.next_time(), None);
    }

    #[test]
    fn slab_generations_tell_reused_slots_apart() {
        let mut slab = Slab::default();
        let (index, first) = slab.vacant();
        slab.release(index);
        let (again, second) = slab.vacant();
        assert_eq!(index, again);
        assert_ne!(first, second);
        assert!(slab.get(again, second).is_none());
        assert!(slab.remove(again).is_none());
    }
}
