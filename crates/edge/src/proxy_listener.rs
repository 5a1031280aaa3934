//! PROXY protocol (v1 and v2) on listeners configured with `proxy_protocol = "required"`:
//! behind a load balancer the socket's peer is the balancer, and the client's address
//! arrives in a header sent before the client's first byte.
//!
//! The trust check runs at accept (it needs no I/O). The header is read in the
//! connection's own task under `proxy_header_timeout`, so silent peers never hold up the
//! accept loop. A read may bring bytes past the header: on STARTTLS listeners they go to
//! the session, on direct-TLS listeners [`Rewind`] replays them to the TLS acceptor.
//!
//! Every header's fate is counted in `xmpp_edge_proxy_headers_total{version,command,outcome}`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use proxy_protocol::{
    CidrError, Command, HeaderParser, Progress, ProxyError, ProxyHeader, TrustedSources, Version,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::config::{ListenerConfig, ListenerKind, ProxyProtocol};
use crate::metrics::{self, Label as _, label_enum};

/// Bytes read per attempt while waiting for the header; a v2 header is capped at
/// [`proxy_protocol::DEFAULT_MAX_LEN`], so a few reads at most.
const READ_CHUNK: usize = 2048;

label_enum! {
    /// The PROXY protocol version a header used.
    ProxyVersion {
        V1 => "v1",
        V2 => "v2",
        /// Not known: the header was rejected before its signature was complete (timeout,
        /// untrusted source, garbage).
        Unknown => "unknown",
    }
}

label_enum! {
    /// What a PROXY header said about the connection.
    ProxyCommand {
        /// A relayed client connection (every v1 header but `UNKNOWN`).
        Proxy => "proxy",
        /// The balancer's own connection, such as a health check (v2 LOCAL, v1 UNKNOWN).
        Local => "local",
        /// Not known because the header was rejected first.
        Unknown => "unknown",
    }
}

label_enum! {
    /// What became of a PROXY header.
    ProxyOutcome {
        /// Accepted.
        Ok => "ok",
        /// The socket's peer is not a trusted balancer; the connection was closed.
        UntrustedSource => "untrusted_source",
        /// Not a valid header.
        Malformed => "malformed",
        /// The header did not arrive in time.
        Timeout => "timeout",
        /// A v2 header whose CRC32C TLV does not match.
        BadCrc => "bad_crc",
        /// The peer closed (or reset) the connection before the header ended; plain TCP
        /// health checks and port probes do this.
        Closed => "closed",
    }
}

/// `xmpp_edge_proxy_headers_total`, shared by every PROXY listener.
#[derive(Debug)]
pub struct HeaderMetrics {
    /// By version, command and outcome index.
    counters: Vec<Vec<Vec<Counter>>>,
}

impl HeaderMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let labels = ProxyVersion::ALL.iter().flat_map(|v| {
            ProxyCommand::ALL.iter().flat_map(move |c| {
                ProxyOutcome::ALL.iter().map(move |o| {
                    [
                        ("version", v.as_str()),
                        ("command", c.as_str()),
                        ("outcome", o.as_str()),
                    ]
                })
            })
        });
        let flat = metrics::counters(
            registry,
            "xmpp_edge_proxy_headers",
            "PROXY protocol headers, by version, command and outcome",
            labels,
        );
        let counters = flat
            .chunks(ProxyCommand::ALL.len() * ProxyOutcome::ALL.len())
            .map(|by_version| {
                by_version
                    .chunks(ProxyOutcome::ALL.len())
                    .map(<[Counter]>::to_vec)
                    .collect()
            })
            .collect();
        Self { counters }
    }

    /// A header was read, rejected or timed out. `version` and `command` are
    /// [`ProxyVersion::Unknown`] and [`ProxyCommand::Unknown`] when the header was rejected
    /// before they were known.
    fn record(&self, version: ProxyVersion, command: ProxyCommand, outcome: ProxyOutcome) {
        self.counters[version.index()][command.index()][outcome.index()].inc();
    }
}

/// A PROXY listener's settings.
#[derive(Debug)]
pub struct ProxyListener {
    trusted: TrustedSources,
    header_timeout: Duration,
    metrics: Arc<HeaderMetrics>,
}

impl ProxyListener {
    /// The settings of `config`, or `None` when it does not use the PROXY protocol;
    /// headers are counted in `metrics`.
    pub fn from_config(
        config: &ListenerConfig,
        metrics: &Arc<HeaderMetrics>,
    ) -> Result<Option<Self>, CidrError> {
        Ok(match config.proxy_protocol {
            ProxyProtocol::Off => None,
            ProxyProtocol::Required => Some(Self {
                trusted: config.trusted_sources()?,
                header_timeout: config.proxy_header_timeout,
                metrics: Arc::clone(metrics),
            }),
        })
    }

    /// Whether `peer` may send a header; an untrusted peer is counted and logged, and the
    /// caller closes it without reading or writing a byte.
    pub fn admits(&self, peer: SocketAddr, kind: ListenerKind) -> bool {
        if self.trusted.contains(peer.ip()) {
            return true;
        }
        self.metrics.record(
            ProxyVersion::Unknown,
            ProxyCommand::Unknown,
            ProxyOutcome::UntrustedSource,
        );
        warn!(
            peer = %peer, listener = %kind,
            "PROXY listener: peer is not in proxy_trusted, connection refused"
        );
        false
    }

    /// Reads the header from `stream` within the header timeout, counting and logging the
    /// outcome.
    pub async fn receive(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Result<Accepted, Failure> {
        let mut seen = Seen::default();
        let timed = tokio::time::timeout(self.header_timeout, read_header(stream, &mut seen));
        let result = match timed.await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout {
                after: self.header_timeout,
                received: seen.received,
            }),
        };
        match &result {
            Ok(accepted) => {
                let header = &accepted.header;
                let (version, command) = labels(header);
                self.metrics.record(version, command, ProxyOutcome::Ok);
                debug!(
                    peer = %peer, client = %header.client_address(peer),
                    version = version.as_str(), command = command.as_str(),
                    crc_verified = header.crc_verified, authority = ?header.authority,
                    "PROXY header accepted"
                );
            }
            Err(failure) => {
                self.metrics
                    .record(seen.version(), ProxyCommand::Unknown, failure.outcome());
                if failure.is_suspicious() {
                    warn!(peer = %peer, reason = %failure, "PROXY header rejected: connection closed");
                } else {
                    debug!(peer = %peer, reason = %failure, "PROXY connection closed before its header");
                }
            }
        }
        result
    }
}

/// The metric labels of an accepted header. `local` covers every header that leaves the
/// socket's own addresses in force: v2 LOCAL, v1 `UNKNOWN` and v2 PROXY over UNSPEC.
fn labels(header: &ProxyHeader) -> (ProxyVersion, ProxyCommand) {
    let version = match header.version {
        Version::V1 => ProxyVersion::V1,
        Version::V2 => ProxyVersion::V2,
    };
    let command = match (header.command, header.addresses) {
        (Command::Proxy, Some(_)) => ProxyCommand::Proxy,
        (Command::Local, _) | (Command::Proxy, None) => ProxyCommand::Local,
    };
    (version, command)
}

/// A complete header and the client's bytes that came with it.
#[derive(Debug)]
pub struct Accepted {
    pub header: ProxyHeader,
    pub leftover: Vec<u8>,
}

/// Why no header was accepted; the connection is closed.
#[derive(Debug)]
pub enum Failure {
    Malformed(ProxyError),
    Timeout {
        after: Duration,
        received: usize,
    },
    /// EOF before the header ended.
    Closed {
        received: usize,
    },
    Io(io::Error),
}

impl Failure {
    /// The `outcome` metric label.
    fn outcome(&self) -> ProxyOutcome {
        match self {
            Self::Malformed(ProxyError::BadCrc { .. }) => ProxyOutcome::BadCrc,
            Self::Malformed(_) => ProxyOutcome::Malformed,
            Self::Timeout { .. } => ProxyOutcome::Timeout,
            Self::Closed { .. } | Self::Io(_) => ProxyOutcome::Closed,
        }
    }

    /// Worth a warning: a bad or stalled header. A connection closed before sending
    /// anything is what plain TCP health checks and port probes do.
    fn is_suspicious(&self) -> bool {
        match self {
            Self::Malformed(_) | Self::Timeout { .. } => true,
            Self::Closed { received } => *received > 0,
            Self::Io(_) => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(error) => {
                write!(f, "malformed PROXY header ({}): {error}", error.label())
            }
            Self::Timeout { after, received } => write!(
                f,
                "no complete PROXY header within {after:?} ({received} bytes received)"
            ),
            Self::Closed { received } => write!(
                f,
                "closed before the PROXY header ended ({received} bytes received)"
            ),
            Self::Io(error) => write!(f, "socket error while reading the PROXY header: {error}"),
        }
    }
}

/// What arrived so far, for the labels and log of a header that never completed.
#[derive(Debug, Default)]
struct Seen {
    first: Option<u8>,
    received: usize,
}

impl Seen {
    /// The version the first byte announces.
    fn version(&self) -> ProxyVersion {
        match self.first {
            Some(b'P') => ProxyVersion::V1,
            Some(b'\r') => ProxyVersion::V2,
            _ => ProxyVersion::Unknown,
        }
    }
}

async fn read_header(stream: &mut TcpStream, seen: &mut Seen) -> Result<Accepted, Failure> {
    let mut parser = HeaderParser::default();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = stream.read(&mut chunk).await.map_err(Failure::Io)?;
        let data = chunk.get(..n).unwrap_or_default();
        if data.is_empty() {
            return Err(Failure::Closed {
                received: seen.received,
            });
        }
        seen.first = seen.first.or(data.first().copied());
        seen.received += n;
        match parser.feed(data).map_err(Failure::Malformed)? {
            Progress::NeedMore => {}
            Progress::Done { header, consumed } => {
                let leftover = data.get(consumed..).unwrap_or_default().to_vec();
                return Ok(Accepted { header, leftover });
            }
        }
    }
}

/// A stream that first yields bytes already read from it: the client's bytes that arrived
/// with the PROXY header, which belong to the TLS handshake on direct-TLS listeners.
#[derive(Debug)]
pub struct Rewind<S> {
    /// Boxed and dropped once replayed, so a connection keeps one pointer for it.
    pending: Option<Box<Pending>>,
    inner: S,
}

#[derive(Debug)]
struct Pending {
    bytes: Vec<u8>,
    at: usize,
}

impl<S> Rewind<S> {
    pub fn new(inner: S, bytes: Vec<u8>) -> Self {
        let pending = (!bytes.is_empty()).then(|| Box::new(Pending { bytes, at: 0 }));
        Self { pending, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(pending) = &mut self.pending {
            let rest = pending.bytes.get(pending.at..).unwrap_or_default();
            let n = rest.len().min(buf.remaining());
            buf.put_slice(rest.get(..n).unwrap_or_default());
            pending.at += n;
            if pending.at >= pending.bytes.len() {
                self.pending = None;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::Scrape;
    use tokio::io::AsyncWriteExt as _;

    #[tokio::test]
    async fn rewind_replays_then_reads_through() {
        let (mut near, far) = tokio::io::duplex(64);
        let mut rewind = Rewind::new(far, b"abcdef".to_vec());
        near.write_all(b"ghi").await.unwrap();
        let mut small = [0u8; 4];
        rewind.read_exact(&mut small).await.unwrap();
        assert_eq!(&small, b"abcd");
        let mut rest = [0u8; 5];
        rewind.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"efghi");
        assert!(rewind.pending.is_none());
        rewind.write_all(b"out").await.unwrap();
        let mut echoed = [0u8; 3];
        near.read_exact(&mut echoed).await.unwrap();
        assert_eq!(&echoed, b"out");
    }

    #[test]
    fn headers_land_in_their_series() {
        let mut registry = Registry::default();
        let metrics = HeaderMetrics::register(&mut registry);
        metrics.record(ProxyVersion::V2, ProxyCommand::Local, ProxyOutcome::BadCrc);
        let scrape = Scrape::of(&registry);
        let name = "xmpp_edge_proxy_headers_total";
        let labels = |version, command, outcome| {
            [
                ("version", version),
                ("command", command),
                ("outcome", outcome),
            ]
        };
        assert_eq!(scrape.get(name, &labels("v2", "local", "bad_crc")), Some(1));
        // Every label set is exposed from the start.
        assert_eq!(
            scrape.get(name, &labels("unknown", "unknown", "timeout")),
            Some(0)
        );
    }

    #[test]
    fn outcomes_and_levels() {
        let crc = Failure::Malformed(ProxyError::BadCrc {
            expected: 1,
            computed: 2,
        });
        assert_eq!(crc.outcome(), ProxyOutcome::BadCrc);
        let garbage = Failure::Malformed(ProxyError::BadSignature {
            offset: 0,
            byte: b'G',
        });
        assert_eq!(garbage.outcome(), ProxyOutcome::Malformed);
        assert!(garbage.to_string().contains("bad_signature"), "{garbage}");
        assert!(!Failure::Closed { received: 0 }.is_suspicious());
        assert!(Failure::Closed { received: 3 }.is_suspicious());
        let seen = Seen {
            first: Some(b'\r'),
            received: 1,
        };
        assert_eq!(seen.version(), ProxyVersion::V2);
    }
}
