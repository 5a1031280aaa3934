//! One task per admitted connection: the PROXY header, TLS, then shuttling bytes between
//! the socket and the sans-IO [`session::Connection`], obeying its timer and outside
//! requests.
//!
//! Reads go through a small stack buffer that exists only while a read is being polled,
//! so an idle connection holds no read buffer of its own; writes go straight from the
//! session's pending output, so the edge never queues more than the session allows.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use session::{Addresses, CloseReason, Connection, Counts, Event, SaslOutcome};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::time::Sleep;
use tracing::{debug, info, warn};

use crate::admission::{LimitTrigger, SessionState, Ticket};
use crate::close::{End, Ended, limit_of};
use crate::config::ListenerKind;
use crate::metrics::ByLabel;
use crate::proxy_listener::{ProxyListener, Rewind};
use crate::sessions::{Control, Request};
use crate::state::Shared;
use crate::tls::{self, TlsOutcome};

mod metrics;

pub use metrics::SessionMetrics;

/// Bytes read per `receive` call; small, and only on the stack while reading.
const READ_CHUNK: usize = 4096;
/// How long closing (final output, TLS close_notify, FIN) may take before the socket is
/// simply dropped: a client that stopped reading must not hold the task.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the connections accepted on one listening socket share: the listener's settings,
/// the server's state and the counters, resolved for the socket's address.
#[derive(Debug)]
pub struct Endpoint {
    pub kind: ListenerKind,
    /// Set when connections start with a PROXY header.
    pub proxy: Option<Arc<ProxyListener>>,
    pub shared: Arc<Shared>,
    pub metrics: Arc<SessionMetrics>,
    /// This address's `xmpp_edge_tls_handshakes_total`.
    pub handshakes: ByLabel<TlsOutcome>,
    /// This address's `xmpp_edge_connections_closed_total`.
    pub closed: ByLabel<Ended>,
}

/// Serves one admitted connection until it ends, then counts and logs the end.
pub async fn serve(
    mut stream: TcpStream,
    endpoint: Arc<Endpoint>,
    mut ticket: Ticket,
    control: Arc<Control>,
) {
    let started = Instant::now();
    let peer = ticket.client();
    // On PROXY listeners logs name the balancer beside the client.
    let balancer = endpoint.proxy.is_some().then_some(peer);
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            debug!(client = %peer, %error, "connection lost before it started");
            count_closed(ticket, &endpoint, Ended::Io);
            return;
        }
    };
    let (client, leftover) = match &endpoint.proxy {
        None => (peer, Vec::new()),
        Some(proxy) => {
            match Box::pin(proxy_header(&mut stream, proxy, &mut ticket, &control)).await {
                Ok(received) => received,
                Err(end) => return closed(ticket, &endpoint, &end, started, balancer),
            }
        }
    };
    let kind = endpoint.kind;
    info!(
        %client, balancer = balancer.map(tracing::field::display), %local, listener = %kind,
        "connection opened"
    );
    let addresses = Addresses {
        client,
        peer,
        local,
    };
    let mut task = Task {
        endpoint: &endpoint,
        ticket: &mut ticket,
        control: &control,
    };
    let end = match kind {
        ListenerKind::Starttls => starttls(stream, addresses, &leftover, &mut task).await,
        ListenerKind::DirectTls => direct_tls(stream, addresses, leftover, &mut task).await,
    };
    closed(ticket, &endpoint, &end, started, balancer);
}

/// What the steps of a connection task work with.
struct Task<'a> {
    endpoint: &'a Endpoint,
    ticket: &'a mut Ticket,
    control: &'a Control,
}

impl Task<'_> {
    /// Counts a finished TLS handshake; a successful one leaves the pre-TLS state.
    fn tls(&mut self, outcome: TlsOutcome) {
        self.endpoint.handshakes.inc(outcome);
        if outcome == TlsOutcome::Ok {
            self.ticket.moved(SessionState::PreAuth);
        }
    }
}

/// Counts and logs the end of a connection task.
fn closed(
    ticket: Ticket,
    endpoint: &Endpoint,
    end: &End,
    started: Instant,
    balancer: Option<SocketAddr>,
) {
    let client = ticket.client();
    count_closed(ticket, endpoint, end.counted());
    info!(
        %client, balancer = balancer.map(tracing::field::display), duration = ?started.elapsed(), reason = %end,
        "connection closed"
    );
}

/// Gives back the ticket, then counts the close (see [`Ticket::close`]).
fn count_closed(ticket: Ticket, endpoint: &Endpoint, how: Ended) {
    ticket.close(|| endpoint.closed.inc(how));
}

/// Reads the PROXY header and admits the client it names against the per-address limit;
/// returns that client and the bytes that followed the header.
async fn proxy_header(
    stream: &mut TcpStream,
    proxy: &ProxyListener,
    ticket: &mut Ticket,
    control: &Control,
) -> Result<(SocketAddr, Vec<u8>), End> {
    let peer = ticket.client();
    let accepted = tokio::select! {
        accepted = proxy.receive(stream, peer) => accepted.map_err(End::Proxy)?,
        () = control.forced() => return Err(End::Forced),
    };
    let client = accepted.header.client_address(peer);
    if let Err(limit) = ticket.admit_client(client) {
        warn!(%client, balancer = %peer, ?limit, "limit triggered: connection refused");
        return Err(End::Refused(limit));
    }
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
    task: &mut Task<'_>,
) -> End {
    let endpoint = task.endpoint;
    let shared = &endpoint.shared;
    let mut conn = new_session(shared, addresses, ListenerKind::Starttls, None);
    if !early.is_empty() {
        endpoint.metrics.received(early.len());
        conn.receive(early, Instant::now());
    }
    match drive(&mut tcp, &mut conn, task).await {
        Stop::StartTls => {}
        Stop::End(end) => return end,
    }
    // `<proceed/>` must reach the client before the handshake; both share the deadline.
    let upgrade = async {
        write_pending(&mut tcp, &mut conn, &endpoint.metrics).await?;
        shared.tls.starttls.accept(tcp).await
    };
    let mut stream = match Box::pin(handshake(upgrade, task)).await {
        Ok(stream) => stream,
        Err(end) => return end,
    };
    conn.tls_established(tls::info(stream.get_mut().1));
    match drive(&mut stream, &mut conn, task).await {
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
    task: &mut Task<'_>,
) -> End {
    let shared = &task.endpoint.shared;
    let accept = shared.tls.direct.accept(Rewind::new(tcp, early));
    let mut stream = match Box::pin(handshake(accept, task)).await {
        Ok(stream) => stream,
        Err(end) => return end,
    };
    let info = tls::info(stream.get_mut().1);
    let mut conn = new_session(shared, addresses, ListenerKind::DirectTls, Some(info));
    match drive(&mut stream, &mut conn, task).await {
        Stop::StartTls => End::UnexpectedStartTls,
        Stop::End(end) => end,
    }
}

/// Runs a TLS handshake under the handshake timeout, abandoning it on forced shutdown.
async fn handshake<T>(
    handshake: impl Future<Output = io::Result<T>>,
    task: &mut Task<'_>,
) -> Result<T, End> {
    let timeout = task.endpoint.shared.tls_handshake_timeout;
    tokio::select! {
        result = tokio::time::timeout(timeout, handshake) => match result {
            Ok(Ok(stream)) => {
                task.tls(TlsOutcome::Ok);
                Ok(stream)
            }
            Ok(Err(error)) => {
                task.tls(TlsOutcome::of_error(&error));
                Err(End::TlsFailed(error))
            }
            Err(_) => {
                task.tls(TlsOutcome::Timeout);
                task.ticket.limit(LimitTrigger::TlsHandshakeTimeout, "TLS handshake not finished in time");
                Err(End::TlsTimeout)
            }
        },
        () = task.control.forced() => Err(End::Forced),
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
    metrics: &'a SessionMetrics,
    /// When the read completing the oldest unwritten answer returned.
    since: Option<Instant>,
    pending: u32,
    /// Failed SASL attempts answered since the last look, for the per-address delay.
    failed_logins: u32,
}

impl Replies<'_> {
    /// `bytes` were read at `at` and the session reported `counts` for them.
    fn received(&mut self, bytes: usize, counts: &Counts, at: Instant) {
        self.metrics.received(bytes);
        if counts.is_empty() {
            return;
        }
        self.metrics.record(counts);
        self.failed_logins += counts
            .sasl()
            .filter(|&(_, outcome, _)| outcome == SaslOutcome::NotAuthorized)
            .map(|(_, _, n)| n)
            .sum::<u32>();
        let answered = counts.answered();
        if answered > 0 {
            self.pending = self.pending.saturating_add(answered);
            self.since.get_or_insert(at);
        }
    }

    fn sent(&self, bytes: usize) {
        self.metrics.sent(bytes);
    }

    /// All output reached the socket: the pending answers are written.
    fn flushed(&mut self) {
        if let Some(since) = self.since.take() {
            self.metrics.answered(since.elapsed(), self.pending);
            self.pending = 0;
        }
    }
}

/// Runs the session over `io` until it closes or asks for STARTTLS.
async fn drive<S>(io: &mut S, conn: &mut Connection, task: &mut Task<'_>) -> Stop
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let metrics = &*task.endpoint.metrics;
    let control = task.control;
    let mut replies = Replies {
        metrics,
        since: None,
        pending: 0,
        failed_logins: 0,
    };
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut eof = false;
    loop {
        while let Some(event) = conn.poll_event() {
            let ticket = &mut *task.ticket;
            match event {
                Event::StartTls => return Stop::StartTls,
                Event::Authenticated { bare_jid } => {
                    ticket.moved(SessionState::Authenticated);
                    debug!(client = %ticket.client(), jid = %bare_jid, "authenticated");
                }
                Event::Bound { full_jid } => {
                    debug!(client = %ticket.client(), jid = %full_jid, "resource bound");
                    ticket.bind(full_jid);
                }
                Event::CheckPassword(check) => {
                    metrics.password_checked();
                    // Boxed, as closing is: a check's state need not live in every idle
                    // connection's task.
                    if let Err(end) = Box::pin(check_password(conn, check, task)).await {
                        return Stop::End(end);
                    }
                    let now = Instant::now();
                    replies.received(0, &conn.take_counts(), now);
                }
                Event::Close(reason) => {
                    if let CloseReason::StreamError(cause) = reason {
                        metrics.stream_error(cause.condition());
                    }
                    if let Some(limit) = limit_of(&reason) {
                        ticket.limit(limit, &End::Session(reason).to_string());
                    }
                    // Boxed: closing happens once, so its state need not live in every
                    // idle connection's task.
                    Box::pin(finish(io, conn, &reason, metrics)).await;
                    return Stop::End(End::Session(reason));
                }
            }
        }
        if std::mem::take(&mut replies.failed_logins) > 0
            && let Err(end) = Box::pin(delay_failure(task, metrics)).await
        {
            return Stop::End(end);
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

/// Runs a PLAIN password check on the pool and hands the verdict to the session.
async fn check_password(
    conn: &mut Connection,
    check: Box<session::sasl::PasswordCheck>,
    task: &Task<'_>,
) -> Result<(), End> {
    let verdict = tokio::select! {
        verdict = task.endpoint.shared.passwords.run(*check) => verdict,
        () = task.control.forced() => return Err(End::Forced),
    };
    let verdict = verdict.ok_or_else(|| End::Io(io::Error::other("password check panicked")))?;
    conn.password_checked(verdict, Instant::now());
    Ok(())
}

/// Holds a failed login's answer for the delay its address has earned.
async fn delay_failure(task: &Task<'_>, metrics: &SessionMetrics) -> Result<(), End> {
    let client = task.ticket.client().ip();
    let delay = task
        .endpoint
        .shared
        .auth_failures
        .failed(client, Instant::now());
    if delay.is_zero() {
        return Ok(());
    }
    metrics.auth_delayed(delay);
    debug!(%client, ?delay, "failed login: answer delayed");
    tokio::select! {
        () = tokio::time::sleep(delay) => Ok(()),
        () = task.control.forced() => Err(End::Forced),
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
    // client that sends without reading (OutputOverflow) instead of stalling. Only a
    // session whose rate budget is spent is not read (the timer ends the pause), so
    // TCP pushes back on the client.
    if conn.read_paused_until().is_none() {
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
    }
    if timer_armed && timer.poll(cx).is_ready() {
        let now = Instant::now();
        conn.handle_timeout(now);
        // A pause that ended takes in held input: its answers count like a read's.
        replies.received(0, &conn.take_counts(), now);
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
    metrics: &SessionMetrics,
) -> io::Result<()> {
    while !conn.pending_output().is_empty() {
        let n = io.write(conn.pending_output()).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        conn.output_written(n);
        metrics.sent(n);
    }
    io.flush().await
}

/// Sends the session's last words and closes the socket, within [`CLOSE_TIMEOUT`]. A client
/// that overflowed its output gets nothing more: the socket is just dropped.
async fn finish<S: AsyncWrite + Unpin>(
    io: &mut S,
    conn: &mut Connection,
    reason: &CloseReason,
    metrics: &SessionMetrics,
) {
    if *reason == CloseReason::OutputOverflow {
        return;
    }
    let close = async {
        write_pending(io, conn, metrics).await?;
        io.shutdown().await
    };
    if let Ok(Err(error)) = tokio::time::timeout(CLOSE_TIMEOUT, close).await {
        debug!(%error, "error while closing");
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::registry::Registry;

    use super::*;
    use crate::admission::Admission;
    use crate::listener;
    use crate::users::UserStore;

    /// Idle sessions must stay cheap: the task's own state beyond the session and the TLS
    /// stream it must hold is kept small (transient futures are boxed).
    #[tokio::test]
    async fn connection_task_overhead_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let domains = vec!["localhost".to_owned()];
        let (accounts, _) = UserStore::open(&dir.path().join("users.toml"), &domains).unwrap();
        let mut registry = Registry::default();
        let metrics = listener::Metrics::register(&mut registry);
        let shared = Arc::new(Shared {
            session_config: Arc::new(session::Config::default()),
            accounts: Arc::new(accounts),
            tls: tls::acceptors(&crate::config::TlsConfig::default(), &domains).unwrap(),
            admission: Arc::new(Admission::new(10, 10, &mut registry)),
            tls_handshake_timeout: Duration::from_secs(1),
            auth_failures: crate::auth_failures::AuthFailures::new(
                crate::config::LimitsConfig::default().auth_failure_policy(),
            ),
            passwords: crate::password_pool::PasswordPool::new(1),
        });
        let config = crate::config::ListenerConfig::new(
            ListenerKind::Starttls,
            "127.0.0.1:0".parse().unwrap(),
        );
        let bound = listener::bind(&config, None).unwrap().remove(0);
        let address = bound.listener.local_addr().unwrap();
        let serving = listener::Listener::new(bound, address, &metrics, &shared);
        let socket = tokio::net::TcpListener::from_std(serving.socket).unwrap();
        let _client = TcpStream::connect(address).await.unwrap();
        let (stream, peer) = socket.accept().await.unwrap();
        let (ticket, control) = shared.admission.admit(peer, true).unwrap();
        let task = serve(stream, serving.endpoint, ticket, control);
        let needed =
            size_of::<Connection>() + size_of::<tokio_rustls::server::TlsStream<TcpStream>>();
        let overhead = size_of_val(&task) - needed;
        assert!(
            overhead <= 1200,
            "connection task overhead {overhead} bytes"
        );
    }
}
