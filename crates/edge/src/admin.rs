//! The admin HTTP endpoint, apart from the XMPP listeners: `/metrics`, `/healthz` and
//! `/readyz`.
//!
//! A deliberately tiny HTTP/1.1 server: one GET or HEAD per connection, answered with
//! `Connection: close`. Strangers may reach the port, so a request must fit in
//! [`MAX_REQUEST_BYTES`], the whole exchange in [`EXCHANGE_TIMEOUT`], and at most
//! [`MAX_CONNECTIONS`] are served at once (more are closed unanswered).
//!
//! `/readyz` and the `xmpp_edge_ready` gauge are one [`Readiness`], which the server sets.
//!
//! `/metrics` is OpenMetrics text when the client asks for it (Prometheus does), else the
//! Prometheus text format 0.0.4, as the official Go client does: older tools such as
//! `promtool check metrics` only read the latter.

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::metrics;

/// Largest request (request line and headers) read.
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// Bytes of an oversized request read and dropped after answering it.
const MAX_DISCARD_BYTES: u64 = 64 * 1024;
/// Time for reading a request and writing its response.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Pause after a failed accept (e.g. out of descriptors) so the loop cannot spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

/// Whether the node takes new clients: all listeners accepting, not draining.
#[derive(Debug, Clone)]
pub struct Readiness(Gauge);

impl Readiness {
    pub fn register(registry: &mut Registry) -> Self {
        Self(metrics::gauge(
            registry,
            "xmpp_edge_ready",
            "1 while all listeners accept and the node is not draining, else 0 (as /readyz)",
        ))
    }

    pub fn set(&self, ready: bool) {
        self.0.set(i64::from(ready));
    }

    pub fn is_ready(&self) -> bool {
        self.0.get() == 1
    }
}

/// Binds the admin listener (non-blocking, ready for tokio); strangers get at most
/// [`MAX_CONNECTIONS`] at once, so a short backlog is enough.
pub fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    crate::socket::bind(address, 64, false)
}

/// Serves until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    readiness: Readiness,
    mut stop: watch::Receiver<bool>,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut exchanges = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            accepted = listener.accept() => accepted,
        };
        while exchanges.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                warn!(%error, "admin endpoint: accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            debug!("admin endpoint: too many connections, closing a new one");
            continue;
        };
        let registry = Arc::clone(&registry);
        let readiness = readiness.clone();
        exchanges.spawn(async move {
            let exchange = exchange(stream, &registry, &readiness);
            if let Ok(Err(error)) = tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
                debug!(%error, "admin endpoint: connection failed");
            }
            drop(permit);
        });
    }
}

/// Reads one request and writes its response.
async fn exchange(
    mut stream: TcpStream,
    registry: &Registry,
    readiness: &Readiness,
) -> io::Result<()> {
    let mut buf = vec![0u8; MAX_REQUEST_BYTES];
    let mut filled = 0;
    let head_end = loop {
        if let Some(end) = find_head_end(&buf[..filled]) {
            break end;
        }
        if filled == buf.len() {
            let response = Response::text(
                431,
                "Request Header Fields Too Large",
                "request too large\n",
            );
            response.write(&mut stream, false).await?;
            // Closing with unread input would reset the connection and could destroy
            // the response before the client reads it: read on (boundedly) until it
            // stops sending.
            let mut sink = tokio::io::sink();
            tokio::io::copy(&mut (&mut stream).take(MAX_DISCARD_BYTES), &mut sink).await?;
            return Ok(());
        }
        let n = stream.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(());
        }
        filled += n;
    };
    let head = String::from_utf8_lossy(&buf[..head_end]);
    let (response, head_only) = match Request::parse(&head) {
        Some(request) => (
            respond(&request, registry, readiness),
            request.method == "HEAD",
        ),
        None => (Response::text(400, "Bad Request", "bad request\n"), false),
    };
    response.write(&mut stream, head_only).await
}

/// Where the request head ends (after the blank line), if it is complete.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The parts of a request the endpoint looks at.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The path without the query string.
    path: &'a str,
    /// The client accepts OpenMetrics.
    openmetrics: bool,
}

impl<'a> Request<'a> {
    fn parse(head: &'a str) -> Option<Self> {
        let mut lines = head.split("\r\n");
        let mut parts = lines.next()?.split(' ');
        let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || !version.starts_with("HTTP/1.") || !target.starts_with('/') {
            return None;
        }
        let path = target.split_once('?').map_or(target, |(path, _)| path);
        let openmetrics = lines
            .filter_map(|line| line.split_once(':'))
            .any(|(name, value)| {
                name.trim().eq_ignore_ascii_case("accept")
                    && value.contains("application/openmetrics-text")
            });
        Some(Self {
            method,
            path,
            openmetrics,
        })
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    reason: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: u16, reason: &'static str, body: &str) -> Self {
        Self {
            status,
            reason,
            content_type: PLAIN,
            body: body.to_owned(),
        }
    }

    async fn write(&self, stream: &mut TcpStream, head_only: bool) -> io::Result<()> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        if self.status == 405 {
            out.push_str("Allow: GET, HEAD\r\n");
        }
        out.push_str("\r\n");
        if !head_only {
            out.push_str(&self.body);
        }
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    }
}

fn respond(request: &Request<'_>, registry: &Registry, readiness: &Readiness) -> Response {
    if !matches!(request.method, "GET" | "HEAD") {
        return Response::text(405, "Method Not Allowed", "only GET and HEAD\n");
    }
    match request.path {
        "/metrics" => metrics(registry, request.openmetrics),
        "/healthz" => Response::text(200, "OK", "ok\n"),
        "/readyz" if readiness.is_ready() => Response::text(200, "OK", "ready\n"),
        "/readyz" => Response::text(503, "Service Unavailable", "not ready\n"),
        _ => Response::text(
            404,
            "Not Found",
            "not found: try /metrics, /healthz or /readyz\n",
        ),
    }
}

fn metrics(registry: &Registry, openmetrics: bool) -> Response {
    let mut body = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut body, registry) {
        warn!(%error, "cannot encode metrics");
        return Response::text(500, "Internal Server Error", "cannot encode metrics\n");
    }
    if openmetrics {
        Response {
            status: 200,
            reason: "OK",
            content_type: OPENMETRICS,
            body,
        }
    } else {
        Response {
            status: 200,
            reason: "OK",
            content_type: PROMETHEUS_TEXT,
            body: prometheus_text(&body),
        }
    }
}

/// OpenMetrics text as the Prometheus text format 0.0.4: counters are named with their
/// `_total` suffix in HELP and TYPE, and the `# UNIT` and `# EOF` lines go.
fn prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (suffix, kind) = match kind {
                "counter" => ("_total", kind),
                "unknown" => ("", "untyped"),
                _ => ("", kind),
            };
            if let Some((_, text)) = help.take().and_then(|h| h.split_once(' ')) {
                let _ = writeln!(out, "# HELP {name}{suffix} {text}");
            }
            let _ = writeln!(out, "# TYPE {name}{suffix} {kind}");
            continue;
        }
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request_heads() {
        let request = Request::parse(
            "GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\nACCEPT: application/openmetrics-text;version=1.0.0,*/*\r\n\r\n",
        )
        .unwrap();
        assert_eq!(
            request,
            Request {
                method: "GET",
                path: "/metrics",
                openmetrics: true
            }
        );
        let plain = Request::parse("HEAD /readyz HTTP/1.0\r\nAccept: */*\r\n\r\n").unwrap();
        assert!(!plain.openmetrics);
        assert_eq!(Request::parse("GET /x\r\n\r\n"), None);
        assert_eq!(Request::parse("GET x HTTP/1.1\r\n\r\n"), None);
        assert_eq!(Request::parse("GET /x SPDY/3\r\n\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    }

    #[test]
    fn converts_openmetrics_to_prometheus_text() {
        let openmetrics = "# HELP a_bytes Bytes read.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\n\
                           a_bytes_total{k=\"v\"} 3\n# HELP g Live.\n# TYPE g gauge\ng 1\n\
                           # HELP u Odd.\n# TYPE u unknown\nu 2\n# EOF\n";
        assert_eq!(
            prometheus_text(openmetrics),
            "# HELP a_bytes_total Bytes read.\n# TYPE a_bytes_total counter\n\
             a_bytes_total{k=\"v\"} 3\n# HELP g Live.\n# TYPE g gauge\ng 1\n\
             # HELP u Odd.\n# TYPE u untyped\nu 2\n"
        );
    }
}
