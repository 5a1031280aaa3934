//! The per-connection state machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::{Accounts, Config, ListenerKind};

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

/// Why a connection ended; the edge logs it and (later) counts it by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its stream (`</stream:stream>`) or the socket.
    ClientClosed,
    /// The edge sent a stream error with this RFC 6120 condition.
    StreamError { condition: &'static str, detail: String },
    /// Unsent output exceeded [`Config::max_unsent_output`]; nothing more was written.
    OutputOverflow,
}

/// Requests to the I/O layer and notable happenings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Write all pending output (ending with `<proceed/>`), then run the TLS handshake as
    /// server and report it with [`Connection::tls_established`].
    StartTls,
    /// SASL succeeded for this bare JID.
    Authenticated { bare_jid: String },
    /// A resource was bound. The edge must replace any other connection bound to the same
    /// full JID ([`Connection::replaced`]).
    Bound { full_jid: String },
    /// Write all pending output, then close the socket.
    Close(CloseReason),
}

/// One client connection's protocol state.
#[derive(Debug)]
pub struct Connection {
    config: Arc<Config>,
    accounts: Arc<dyn Accounts>,
    addresses: Addresses,
    kind: ListenerKind,
}

impl Connection {
    /// A new connection. For [`ListenerKind::DirectTls`], `tls` carries the handshake result.
    pub fn new(
        config: Arc<Config>,
        accounts: Arc<dyn Accounts>,
        addresses: Addresses,
        kind: ListenerKind,
        tls: Option<TlsInfo>,
        now: Instant,
    ) -> Self {
        let _ = (tls, now);
        Self { config, accounts, addresses, kind }
    }

    /// Bytes read from the client.
    pub fn receive(&mut self, data: &[u8], now: Instant) {
        let _ = (data, now, &self.config, &self.accounts, &self.addresses, self.kind);
        unimplemented!()
    }

    /// The deadline from [`Connection::poll_timeout`] has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        unimplemented!()
    }

    /// The STARTTLS handshake completed; the stream restarts.
    pub fn tls_established(&mut self, info: TlsInfo) {
        let _ = info;
        unimplemented!()
    }

    /// The socket reached EOF or failed.
    pub fn peer_closed(&mut self) {
        unimplemented!()
    }

    /// Another connection bound the same full JID: send `<conflict/>` and close.
    pub fn replaced(&mut self) {
        unimplemented!()
    }

    /// The edge is shutting down: send `<system-shutdown/>` and close.
    pub fn shutdown(&mut self) {
        unimplemented!()
    }

    /// Bytes waiting to be written to the socket.
    pub fn pending_output(&self) -> &[u8] {
        unimplemented!()
    }

    /// `n` bytes of [`Connection::pending_output`] were written.
    pub fn output_written(&mut self, n: usize) {
        let _ = n;
        unimplemented!()
    }

    /// The next request or event, in order.
    pub fn poll_event(&mut self) -> Option<Event> {
        unimplemented!()
    }

    /// When [`Connection::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        unimplemented!()
    }

    /// The connection's addresses.
    pub fn addresses(&self) -> &Addresses {
        &self.addresses
    }
}
