//! One task per connection: admission, TLS, then shuttling bytes between the socket and the
//! sans-IO [`session::Connection`], obeying its timer and outside requests.
//!
//! Reads go through a small stack buffer that exists only while a read is being polled,
//! so an idle connection holds no read buffer of its own; writes go straight from the
//! session's pending output, so the edge never queues more than the session allows.

use std::fmt;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use session::{Addresses, CloseReason, Connection, Counts, Event};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::time::Sleep;
use tracing::{debug, info, warn};

use crate::config::ListenerKind;
use crate::proxy_listener::{self, ProxyListener, Rewind};
use crate::server::Shared;
use crate::sessions::{Control, Request};
use crate::stats::{Ended, Limit, ListenerStats, SessionState, Stats, TlsOutcome, limit_of};
use crate::tls;

/// Bytes read per `receive` call; small, and only on the stack while reading.
const READ_CHUNK: usize = 4096;
/// How long closing (final output, TLS close_notify, FIN) may take before the socket is
/// simply dropped: a client that stopped reading must not hold the task.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Admits an accepted connection against the limits and starts its task; refused
/// connections are closed at once. On a PROXY listener the peer must be a trusted
/// balancer, and the per-address limit waits for the client address in the header.
pub fn admit(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    proxy: Option<&Arc<ProxyListener>>,
    counters: &Arc<ListenerStats>,
) {
    counters.accepted();
    if let Some(proxy) = proxy
        && !proxy.admits(peer, kind, &shared.stats)
    {
        counters.closed(Ended::ProxyHeader);
        return;
    }
    let admitted = match proxy {
        None => shared.limits.admit(peer.ip()),
        Some(_) => shared.limits.admit_total(),
    };
    if let Err(limit) = admitted {
        shared.stats.limit(limit);
        counters.closed(Ended::Refused);
        warn!(client = %peer, listener = %kind, ?limit, "limit triggered: connection refused");
        return;
    }
    if let Err(error) = stream.set_nodelay(true) {
        debug!(client = %peer, %error, "cannot set TCP_NODELAY");
    }
    let (id, control) = shared.sessions.register();
    shared.stats.session_opened();
    let ticket = Ticket {
        shared: Arc::clone(shared),
        counters: Arc::clone(counters),
        id,
        client: peer,
        per_ip: proxy.is_none(),
        state: SessionState::PreTls,
        bound: None,
    };
    tokio::spawn(serve(stream, kind, proxy.cloned(), ticket, control));
}

/// A connection's place in the limits and the session table, given back on drop whatever way
/// the task ends.
struct Ticket {
    shared: Arc<Shared>,
    /// The counters of the listener that accepted the connection.
    counters: Arc<ListenerStats>,
    id: u64,
    /// The socket's peer, or on a PROXY listener the client the header names once read.
    client: SocketAddr,
    /// The client's address is counted in the per-address limit.
    per_ip: bool,
    /// Where the session is, as counted in `xmpp_edge_sessions`.
    state: SessionState,
    bound: Option<String>,
}

impl Ticket {
    /// The session moved on in its negotiation.
    fn moved(&mut self, to: SessionState) {
        self.shared.stats.session_moved(self.state, to);
        self.state = to;
    }

    /// Counts a finished TLS handshake; a successful one leaves the pre-TLS state.
    fn tls(&mut self, outcome: TlsOutcome) {
        self.counters.tls(outcome);
        if outcome == TlsOutcome::Ok {
            self.moved(SessionState::PreAuth);
        }
    }

    /// Counts and logs a limit that ended this connection.
    fn limit(&self, limit: Limit, detail: &str) {
        self.shared.stats.limit(limit);
        warn!(client = %self.client, ?limit, detail, "limit triggered");
    }

    /// Records the bound full JID and replaces the connection that held it before.
    fn bind(&mut self, full_jid: String) {
        if let Some(old) = self.bound.take() {
            self.shared.sessions.unbind(self.id, &old);
        }
        if let Some(previous) = self.shared.sessions.bind(self.id, &full_jid) {
            previous.request(Request::Replaced);
            self.shared.stats.replaced();
            info!(client = %self.client, jid = %full_jid, "resource bound again: replacing the older session");
        }
        self.bound = Some(full_jid);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.sessions.remove(self.id, self.bound.as_deref());
        if self.per_ip {
            self.shared.limits.release(self.client.ip());
        } else {
            self.shared.limits.release_total();
        }
    }
}

/// Why a connection ended, for the close log line and the counters.
#[derive(Debug)]
enum End {
    /// The session closed the stream.
    Session(CloseReason),
    /// The socket reached EOF and the session had nothing more to say.
    PeerClosed,
    Io(io::Error),
    TlsTimeout,
    TlsFailed(io::Error),
    /// No acceptable PROXY header.
    Proxy(proxy_listener::Failure),
    /// The client address in the PROXY header is over its limit.
    Refused(Limit),
    /// The session asked for STARTTLS on an encrypted stream.
    UnexpectedStartTls,
    /// Shutdown ran out of time.
    Forced,
}

impl End {
    fn counted(&self) -> Ended {
        match self {
            Self::Session(CloseReason::ClientClosed) | Self::PeerClosed => Ended::Client,
            Self::Session(CloseReason::OutputOverflow) => Ended::OutputOverflow,
            Self::Session(CloseReason::StreamError { .. }) | Self::UnexpectedStartTls => {
                Ended::StreamError
            }
            Self::Io(_) => Ended::Io,
            Self::TlsTimeout => Ended::TlsTimeout,
            Self::TlsFailed(_) => Ended::TlsFailed,
            Self::Proxy(_) => Ended::ProxyHeader,
            Self::Refused(_) => Ended::Refused,
            Self::Forced => Ended::Forced,
        }
    }
}

impl fmt::Display for End {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(CloseReason::ClientClosed) | Self::PeerClosed => {
                f.write_str("client closed")
            }
            Self::Session(CloseReason::StreamError { condition, detail }) if detail.is_empty() => {
                write!(f, "stream error {condition}")
            }
            Self::Session(CloseReason::StreamError { condition, detail }) => {
                write!(f, "stream error {condition} ({detail})")
            }
            Self::Session(CloseReason::OutputOverflow) => {
                f.write_str("client not reading (unsent output limit)")
            }
            Self::Io(error) => write!(f, "socket error: {error}"),
            Self::TlsTimeout => f.write_str("TLS handshake timeout"),
            Self::TlsFailed(error) => write!(f, "TLS handshake failed: {error}"),
            Self::Proxy(failure) => failure.fmt(f),
            Self::Refused(limit) => write!(f, "refused after the PROXY header: {limit:?}"),
            Self::UnexpectedStartTls => f.write_str("STARTTLS requested on an encrypted stream"),
            Self::Forced => f.write_str("closed by force at shutdown"),
        }
    }
}

async fn serve(
    mut stream: TcpStream,
    kind: ListenerKind,
    proxy: Option<Arc<ProxyListener>>,
    mut ticket: Ticket,
    control: Arc<Control>,
) {
    let started = Instant::now();
    let peer = ticket.client;
    // On PROXY listeners logs name the balancer beside the client.
    let balancer = proxy.is_some().then_some(peer);
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            debug!(client = %peer, %error, "connection lost before it started");
            count_closed(ticket, Ended::Io);
            return;
        }
    };
    let (client, leftover) = match proxy {
        None => (peer, Vec::new()),
        Some(proxy) => {
            match Box::pin(proxy_header(&mut stream, &proxy, &mut ticket, &control)).await {
                Ok(received) => received,
                Err(end) => return closed(ticket, &end, started, balancer),
            }
        }
    };
    info!(
        %client, balancer = balancer.map(tracing::field::display), %local, listener = %kind,
        "connection opened"
    );
    let addresses = Addresses {
        client,
        peer,
        local,
    };
    let end = match kind {
        ListenerKind::Starttls => {
            starttls(stream, addresses, &leftover, &mut ticket, &control).await
        }
        ListenerKind::DirectTls => {
            direct_tls(stream, addresses, leftover, &mut ticket, &control).await
        }
    };
    closed(ticket, &end, started, balancer);
}

/// Counts and logs the end of a connection task.
fn closed(ticket: Ticket, end: &End, started: Instant, balancer: Option<SocketAddr>) {
    let client = ticket.client;
    count_closed(ticket, end.counted());
    info!(
        %client, balancer = balancer.map(tracing::field::display), duration = ?started.elapsed(), reason = %end,
        "connection closed"
    );
}

/// Gives back the ticket, then counts the close. Releasing the limits first means anyone
/// who sees the connection gone from the counters also finds its slot free.
fn count_closed(ticket: Ticket, how: Ended) {
    let stats = Arc::clone(&ticket.shared.stats);
    let counters = Arc::clone(&ticket.counters);
    let state = ticket.state;
    drop(ticket);
    counters.closed(how);
    stats.session_closed(state);
}

/// Reads the PROXY header and admits the client it names against the per-address limit;
/// returns that client and the bytes that followed the header.
async fn proxy_header(
    stream: &mut TcpStream,
    proxy: &ProxyListener,
    ticket: &mut Ticket,
    control: &Control,
) -> Result<(SocketAddr, Vec<u8>), End> {
    let peer = ticket.client;
    let accepted = tokio::select! {
        accepted = proxy.receive(stream, peer, &ticket.shared.stats) => accepted.map_err(End::Proxy)?,
        () = control.forced() => return Err(End::Forced),
    };
    let client = accepted.header.client_address(peer);
    if let Err(limit) = ticket.shared.limits.admit_ip(client.ip()) {
        ticket.shared.stats.limit(limit);
        warn!(%client, balancer = %peer, ?limit, "limit triggered: connection refused");
        return Err(End::Refused(limit));
    }
    ticket.client = client;
    ticket.per_ip = true;
    Ok((client, accepted.leftover))
}

fn new_session(
    shared: &Shared,
    addresses: Addresses,
    kind: ListenerKind,
    tls: Option<session::TlsInfo>,
) -> Connection {
    Connection::new(
        Arc::clone(&shared.session_config),
        Arc::clone(&shared.accounts) as Arc<dyn session::Accounts>,
        addresses,
        kind.into(),
        tls,
        Instant::now(),
    )
}

/// `early` holds client bytes that came with a PROXY header.
async fn starttls(
    mut tcp: TcpStream,
    addresses: Addresses,
    early: &[u8],
    ticket: &mut Ticket,
    control: &Control,
) -> End {
    let shared = Arc::clone(&ticket.shared);
    let mut conn = new_session(&shared, addresses, ListenerKind::Starttls, None);
    if !early.is_empty() {
        shared.stats.received(early.len());
        conn.receive(early, Instant::now());
    }
    match drive(&mut tcp, &mut conn, ticket, control).await {
        Stop::StartTls => {}
        Stop::End(end) => return end,
    }
    // `<proceed/>` must reach the client before the handshake; both share the deadline.
    let upgrade = async {
        write_pending(&mut tcp, &mut conn, &shared.stats).await?;
        shared.tls.starttls.accept(tcp).await
    };
    let mut stream = match Box::pin(handshake(upgrade, ticket, control)).await {
        Ok(stream) => stream,
        Err(end) => return end,
    };
    conn.tls_established(tls::info(stream.get_mut().1));
    match drive(&mut stream, &mut conn, ticket, control).await {
        Stop::StartTls => End::UnexpectedStartTls,
        Stop::End(end) => end,
    }
}

/// `early` holds client bytes (the start of the TLS handshake) that came with a PROXY
/// header; the acceptor reads them first.
async fn direct_tls(
    tcp: TcpStream,
    addresses: Addresses,
    early: Vec<u8>,
    ticket: &mut Ticket,
    control: &Control,
) -> End {
    let shared = Arc::clone(&ticket.shared);
    let accept = shared.tls.direct.accept(Rewind::new(tcp, early));
    let mut stream = match Box::pin(handshake(accept, ticket, control)).await {
        Ok(stream) => stream,
        Err(end) => return end,
    };
    let info = tls::info(stream.get_mut().1);
    let mut conn = new_session(&shared, addresses, ListenerKind::DirectTls, Some(info));
    match drive(&mut stream, &mut conn, ticket, control).await {
        Stop::StartTls => End::UnexpectedStartTls,
        Stop::End(end) => end,
    }
}

/// Runs a TLS handshake under the handshake timeout, abandoning it on forced shutdown.
async fn handshake<T>(
    handshake: impl Future<Output = io::Result<T>>,
    ticket: &mut Ticket,
    control: &Control,
) -> Result<T, End> {
    let timeout = ticket.shared.tls_handshake_timeout;
    tokio::select! {
        result = tokio::time::timeout(timeout, handshake) => match result {
            Ok(Ok(stream)) => {
                ticket.tls(TlsOutcome::Ok);
                Ok(stream)
            }
            Ok(Err(error)) => {
                ticket.tls(TlsOutcome::of_error(&error));
                Err(End::TlsFailed(error))
            }
            Err(_) => {
                ticket.tls(TlsOutcome::Timeout);
                ticket.limit(Limit::TlsHandshakeTimeout, "TLS handshake not finished in time");
                Err(End::TlsTimeout)
            }
        },
        () = control.forced() => Err(End::Forced),
    }
}

/// Why [`drive`] returned.
enum Stop {
    /// The session asked for the TLS upgrade; its pending output ends with `<proceed/>`.
    StartTls,
    End(End),
}

/// What one wake-up of the connection did.
enum Step {
    /// Bytes moved, the timer fired or a request came in: look at the session again.
    Progress,
    Eof,
    Error(io::Error),
}

/// IQ answers not yet written, for the latency histogram, and the byte counts.
struct Replies<'a> {
    stats: &'a Stats,
    /// When the read completing the oldest unwritten answer returned.
    since: Option<Instant>,
    pending: u32,
}

impl Replies<'_> {
    /// `bytes` were read at `at` and the session reported `counts` for them.
    fn received(&mut self, bytes: usize, counts: &Counts, at: Instant) {
        self.stats.received(bytes);
        if counts.is_empty() {
            return;
        }
        self.stats.record(counts);
        let answered = counts.answered();
        if answered > 0 {
            self.pending = self.pending.saturating_add(answered);
            self.since.get_or_insert(at);
        }
    }

    fn sent(&self, bytes: usize) {
        self.stats.sent(bytes);
    }

    /// All output reached the socket: the pending answers are written.
    fn flushed(&mut self) {
        if let Some(since) = self.since.take() {
            self.stats.answered(since.elapsed(), self.pending);
            self.pending = 0;
        }
    }
}

/// Runs the session over `io` until it closes or asks for STARTTLS.
async fn drive<S>(io: &mut S, conn: &mut Connection, ticket: &mut Ticket, control: &Control) -> Stop
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Arc::clone(&ticket.shared);
    let mut replies = Replies {
        stats: &shared.stats,
        since: None,
        pending: 0,
    };
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut eof = false;
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::StartTls => return Stop::StartTls,
                Event::Authenticated { bare_jid } => {
                    ticket.moved(SessionState::Authenticated);
                    debug!(client = %ticket.client, jid = %bare_jid, "authenticated");
                }
                Event::Bound { full_jid } => {
                    debug!(client = %ticket.client, jid = %full_jid, "resource bound");
                    ticket.bind(full_jid);
                }
                Event::Close(reason) => {
                    if let CloseReason::StreamError { condition, .. } = &reason {
                        ticket.shared.stats.stream_error(condition);
                    }
                    if let Some(limit) = limit_of(&reason, ticket.bound.is_some()) {
                        ticket.limit(limit, &End::Session(reason.clone()).to_string());
                    }
                    // Boxed: closing happens once, so its state need not live in every
                    // idle connection's task.
                    Box::pin(finish(io, conn, &reason, &shared.stats)).await;
                    return Stop::End(End::Session(reason));
                }
            }
        }
        if eof {
            return Stop::End(End::PeerClosed);
        }
        if control.is_set(Request::Force) {
            return Stop::End(End::Forced);
        }
        if control.take(Request::Replaced) {
            conn.replaced();
            continue;
        }
        if control.take(Request::Shutdown) {
            conn.shutdown();
            continue;
        }
        let deadline = conn.poll_timeout();
        if let Some(deadline) = deadline
            && armed != Some(deadline)
        {
            // Re-registering the timer only when the deadline moves keeps busy
            // connections off the timer wheel's locks.
            timer
                .as_mut()
                .reset(tokio::time::Instant::from_std(deadline));
            armed = Some(deadline);
        }
        let requested = control.requested();
        tokio::pin!(requested);
        let step = poll_fn(|cx| {
            poll_step(
                cx,
                &mut *io,
                &mut *conn,
                timer.as_mut(),
                deadline.is_some(),
                requested.as_mut(),
                &mut replies,
            )
        })
        .await;
        match step {
            Step::Progress => {}
            Step::Eof => {
                conn.peer_closed();
                eof = true;
            }
            Step::Error(error) => {
                conn.peer_closed();
                return Stop::End(End::Io(error));
            }
        }
    }
}

/// Polls everything a connection waits on at once: requests, writing, reading, the timer.
fn poll_step<S>(
    cx: &mut Context<'_>,
    io: &mut S,
    conn: &mut Connection,
    timer: Pin<&mut Sleep>,
    timer_armed: bool,
    requested: Pin<&mut Notified<'_>>,
    replies: &mut Replies<'_>,
) -> Poll<Step>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if requested.poll(cx).is_ready() {
        return Poll::Ready(Step::Progress);
    }
    // Write first so output keeps draining even while the client keeps sending.
    let mut wrote = false;
    while !conn.pending_output().is_empty() {
        match Pin::new(&mut *io).poll_write(cx, conn.pending_output()) {
            Poll::Ready(Ok(0)) => return Poll::Ready(Step::Error(io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => {
                conn.output_written(n);
                replies.sent(n);
                wrote = true;
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Step::Error(error)),
            Poll::Pending => break,
        }
    }
    match Pin::new(&mut *io).poll_flush(cx) {
        Poll::Ready(Err(error)) => return Poll::Ready(Step::Error(error)),
        Poll::Ready(Ok(())) if conn.pending_output().is_empty() => replies.flushed(),
        Poll::Ready(Ok(())) | Poll::Pending => {}
    }
    // Keep reading even when output is stuck: the session needs the input to notice a
    // client that sends without reading (OutputOverflow) instead of stalling.
    let mut chunk = [0u8; READ_CHUNK];
    let mut buf = ReadBuf::new(&mut chunk);
    match Pin::new(&mut *io).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Step::Eof),
        Poll::Ready(Ok(())) => {
            let now = Instant::now();
            conn.receive(buf.filled(), now);
            replies.received(buf.filled().len(), &conn.take_counts(), now);
            return Poll::Ready(Step::Progress);
        }
        Poll::Ready(Err(error)) => return Poll::Ready(Step::Error(error)),
        Poll::Pending => {}
    }
    if timer_armed && timer.poll(cx).is_ready() {
        conn.handle_timeout(Instant::now());
        return Poll::Ready(Step::Progress);
    }
    if wrote {
        Poll::Ready(Step::Progress)
    } else {
        Poll::Pending
    }
}

/// Writes all of the session's pending output.
async fn write_pending<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &mut Connection,
    stats: &Stats,
) -> io::Result<()> {
    while !conn.pending_output().is_empty() {
        let n = io.write(conn.pending_output()).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        conn.output_written(n);
        stats.sent(n);
    }
    io.flush().await
}

/// Sends the session's last words and closes the socket, within [`CLOSE_TIMEOUT`]. A client
/// that overflowed its output gets nothing more: the socket is just dropped.
async fn finish<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &mut Connection,
    reason: &CloseReason,
    stats: &Stats,
) {
    if *reason == CloseReason::OutputOverflow {
        return;
    }
    let close = async {
        write_pending(io, conn, stats).await?;
        io.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        debug!(%error, "error while closing");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::ConnLimits;
    use crate::sessions::SessionTable;
    use crate::users::UserStore;

    /// Idle sessions must stay cheap: the task's own state beyond the session and the TLS
    /// stream it must hold is kept small (transient futures are boxed).
    #[tokio::test]
    async fn connection_task_overhead_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let domains = vec!["localhost".to_owned()];
        let (accounts, _) = UserStore::open(&dir.path().join("users.toml"), &domains).unwrap();
        let shared = Arc::new(Shared {
            session_config: Arc::new(session::Config::default()),
            accounts: Arc::new(accounts),
            tls: tls::acceptors(&crate::config::TlsConfig::default(), &domains).unwrap(),
            limits: ConnLimits::new(10, 10),
            sessions: SessionTable::default(),
            stats: Arc::new(Stats::register(
                &mut prometheus_client::registry::Registry::default(),
            )),
            tls_handshake_timeout: Duration::from_secs(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (id, control) = shared.sessions.register();
        let ticket = Ticket {
            counters: shared.stats.listener(ListenerKind::Starttls, peer),
            shared: Arc::clone(&shared),
            id,
            client: peer,
            per_ip: true,
            state: SessionState::PreTls,
            bound: None,
        };
        let task = serve(stream, ListenerKind::Starttls, None, ticket, control);
        let needed =
            size_of::<Connection>() + size_of::<tokio_rustls::server::TlsStream<TcpStream>>();
        let overhead = size_of_val(&task) - needed;
        assert!(
            overhead <= 1200,
            "connection task overhead {overhead} bytes"
        );
    }
}
