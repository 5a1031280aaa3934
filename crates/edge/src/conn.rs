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

use session::{Addresses, CloseReason, Connection, Event};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::time::Sleep;
use tracing::{debug, info, warn};

use crate::config::ListenerKind;
use crate::registry::{Control, Request};
use crate::server::Shared;
use crate::stats::{Ended, Limit, limit_of};
use crate::tls;

/// Bytes read per `receive` call; small, and only on the stack while reading.
const READ_CHUNK: usize = 4096;
/// How long closing (final output, TLS close_notify, FIN) may take before the socket is
/// simply dropped: a client that stopped reading must not hold the task.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Admits an accepted connection against the limits and starts its task; refused
/// connections are closed at once.
pub fn admit(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr, kind: ListenerKind) {
    if let Err(limit) = shared.limits.admit(peer.ip()) {
        shared.stats.limit(limit);
        warn!(client = %peer, listener = %kind, ?limit, "limit triggered: connection refused");
        return;
    }
    if let Err(error) = stream.set_nodelay(true) {
        debug!(client = %peer, %error, "cannot set TCP_NODELAY");
    }
    let (id, control) = shared.registry.register();
    shared.stats.connection_opened();
    let ticket = Ticket {
        shared: Arc::clone(shared),
        id,
        peer,
        bound: None,
    };
    tokio::spawn(serve(stream, kind, ticket, control));
}

/// A connection's place in the limits and the registry, given back on drop whatever way
/// the task ends.
struct Ticket {
    shared: Arc<Shared>,
    id: u64,
    peer: SocketAddr,
    bound: Option<String>,
}

impl Ticket {
    /// Counts and logs a limit that ended this connection.
    fn limit(&self, limit: Limit, detail: &str) {
        self.shared.stats.limit(limit);
        warn!(client = %self.peer, ?limit, detail, "limit triggered");
    }

    /// Records the bound full JID and replaces the connection that held it before.
    fn bind(&mut self, full_jid: String) {
        if let Some(old) = self.bound.take() {
            self.shared.registry.unbind(self.id, &old);
        }
        if let Some(previous) = self.shared.registry.bind(self.id, &full_jid) {
            previous.request(Request::Replaced);
            self.shared.stats.replaced();
            info!(client = %self.peer, jid = %full_jid, "resource bound again: replacing the older session");
        }
        self.bound = Some(full_jid);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.registry.remove(self.id, self.bound.as_deref());
        self.shared.limits.release(self.peer.ip());
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
    /// The session asked for STARTTLS on an encrypted stream.
    UnexpectedStartTls,
    /// Shutdown ran out of time.
    Forced,
}

impl End {
    fn counted(&self) -> Ended {
        match self {
            Self::Session(CloseReason::ClientClosed) | Self::PeerClosed => Ended::Client,
            Self::Session(_) | Self::UnexpectedStartTls => Ended::StreamError,
            Self::Io(_) | Self::TlsTimeout | Self::TlsFailed(_) => Ended::Io,
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
            Self::UnexpectedStartTls => f.write_str("STARTTLS requested on an encrypted stream"),
            Self::Forced => f.write_str("closed by force at shutdown"),
        }
    }
}

async fn serve(stream: TcpStream, kind: ListenerKind, mut ticket: Ticket, control: Arc<Control>) {
    let started = Instant::now();
    let peer = ticket.peer;
    let local = match stream.local_addr() {
        Ok(local) => local,
        Err(error) => {
            debug!(client = %peer, %error, "connection lost before it started");
            let stats = Arc::clone(&ticket.shared.stats);
            drop(ticket);
            stats.connection_closed(Ended::Io);
            return;
        }
    };
    info!(client = %peer, %local, listener = %kind, "connection opened");
    let addresses = Addresses {
        client: peer,
        peer,
        local,
    };
    let end = match kind {
        ListenerKind::Starttls => starttls(stream, addresses, &mut ticket, &control).await,
        ListenerKind::DirectTls => direct_tls(stream, addresses, &mut ticket, &control).await,
    };
    // Release the limits before counting the close, so anyone who sees the connection
    // gone from the counters also finds its slot free.
    let stats = Arc::clone(&ticket.shared.stats);
    drop(ticket);
    stats.connection_closed(end.counted());
    info!(client = %peer, duration = ?started.elapsed(), reason = %end, "connection closed");
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

async fn starttls(
    mut tcp: TcpStream,
    addresses: Addresses,
    ticket: &mut Ticket,
    control: &Control,
) -> End {
    let shared = Arc::clone(&ticket.shared);
    let mut conn = new_session(&shared, addresses, ListenerKind::Starttls, None);
    match drive(&mut tcp, &mut conn, ticket, control).await {
        Stop::StartTls => {}
        Stop::End(end) => return end,
    }
    // `<proceed/>` must reach the client before the handshake; both share the deadline.
    let upgrade = async {
        write_pending(&mut tcp, &mut conn).await?;
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

async fn direct_tls(
    tcp: TcpStream,
    addresses: Addresses,
    ticket: &mut Ticket,
    control: &Control,
) -> End {
    let shared = Arc::clone(&ticket.shared);
    let mut stream = match Box::pin(handshake(shared.tls.direct.accept(tcp), ticket, control)).await
    {
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
    ticket: &Ticket,
    control: &Control,
) -> Result<T, End> {
    let timeout = ticket.shared.tls_handshake_timeout;
    tokio::select! {
        result = tokio::time::timeout(timeout, handshake) => match result {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => {
                ticket.shared.stats.tls_handshake_failed();
                Err(End::TlsFailed(error))
            }
            Err(_) => {
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

/// Runs the session over `io` until it closes or asks for STARTTLS.
async fn drive<S>(io: &mut S, conn: &mut Connection, ticket: &mut Ticket, control: &Control) -> Stop
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    let mut eof = false;
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                Event::StartTls => return Stop::StartTls,
                Event::Authenticated { bare_jid } => {
                    ticket.shared.stats.authenticated();
                    debug!(client = %ticket.peer, jid = %bare_jid, "authenticated");
                }
                Event::Bound { full_jid } => {
                    debug!(client = %ticket.peer, jid = %full_jid, "resource bound");
                    ticket.bind(full_jid);
                }
                Event::Close(reason) => {
                    if let Some(limit) = limit_of(&reason, ticket.bound.is_some()) {
                        ticket.limit(limit, &End::Session(reason.clone()).to_string());
                    }
                    // Boxed: closing happens once, so its state need not live in every
                    // idle connection's task.
                    Box::pin(finish(io, conn, &reason)).await;
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
                wrote = true;
            }
            Poll::Ready(Err(error)) => return Poll::Ready(Step::Error(error)),
            Poll::Pending => break,
        }
    }
    if let Poll::Ready(Err(error)) = Pin::new(&mut *io).poll_flush(cx) {
        return Poll::Ready(Step::Error(error));
    }
    // Keep reading even when output is stuck: the session needs the input to notice a
    // client that sends without reading (OutputOverflow) instead of stalling.
    let mut chunk = [0u8; READ_CHUNK];
    let mut buf = ReadBuf::new(&mut chunk);
    match Pin::new(&mut *io).poll_read(cx, &mut buf) {
        Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Step::Eof),
        Poll::Ready(Ok(())) => {
            conn.receive(buf.filled(), Instant::now());
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
async fn write_pending<S: AsyncWrite + Unpin>(io: &mut S, conn: &mut Connection) -> io::Result<()> {
    while !conn.pending_output().is_empty() {
        let n = io.write(conn.pending_output()).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        conn.output_written(n);
    }
    io.flush().await
}

/// Sends the session's last words and closes the socket, within [`CLOSE_TIMEOUT`]. A client
/// that overflowed its output gets nothing more: the socket is just dropped.
async fn finish<S: AsyncWrite + Unpin>(io: &mut S, conn: &mut Connection, reason: &CloseReason) {
    if *reason == CloseReason::OutputOverflow {
        return;
    }
    let close = async {
        write_pending(io, conn).await?;
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
    use crate::registry::Registry;
    use crate::stats::Stats;
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
            registry: Registry::default(),
            stats: Arc::new(Stats::default()),
            tls_handshake_timeout: Duration::from_secs(1),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let (id, control) = shared.registry.register();
        let ticket = Ticket {
            shared: Arc::clone(&shared),
            id,
            peer,
            bound: None,
        };
        let task = serve(stream, ListenerKind::Starttls, ticket, control);
        let needed =
            size_of::<Connection>() + size_of::<tokio_rustls::server::TlsStream<TcpStream>>();
        let overhead = size_of_val(&task) - needed;
        assert!(
            overhead <= 1200,
            "connection task overhead {overhead} bytes"
        );
    }
}
