//! What the I/O layer tells the core about the connection it carries: its addresses and
//! the result of its TLS handshake.

use std::net::SocketAddr;

/// The addresses of one connection, as plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The client as the edge reports it in SIC answers: the socket peer, or the source
    /// a trusted load balancer gave in a PROXY header.
    pub client: SocketAddr,
    /// The socket's peer (the balancer, when there is one).
    pub peer: SocketAddr,
    /// The socket's local address.
    pub local: SocketAddr,
}

/// What the I/O layer reports once a TLS handshake has completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsInfo {
    /// TLS 1.3 was negotiated (SCRAM-*-PLUS with tls-exporter is offered only then).
    pub tls13: bool,
    /// RFC 9266 tls-exporter channel binding data (label "EXPORTER-Channel-Binding",
    /// no context, 32 bytes), when TLS 1.3 was negotiated.
    pub exporter: Option<[u8; 32]>,
}
