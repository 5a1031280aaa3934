//! PROXY protocol headers (HAProxy's proxy-protocol.txt, versions 1 and 2): behind HAProxy
//! or a cloud TCP load balancer the socket's peer is the balancer, and the address SIC must
//! report arrives in a header the balancer sends before the client's first byte.
//!
//! Sans-IO: bytes go in, headers come out; no sockets. For a listener configured for PROXY,
//! the edge checks the socket's peer against [`TrustedSources`] (a header from anyone else
//! would let any client choose the address SIC reports), then feeds every read to a
//! [`HeaderParser`] until it reports [`Progress::Done`], and gives the rest of that read to
//! the session's `Connection`, built with [`ProxyHeader::client_address`] as the client.
//! The load generator writes headers with [`write_v1`] and [`write_v2`].
//!
//! A crate of its own because it needs nothing from the c2s core and both the edge and
//! the load generator use it.
//!
//! # Why not the `ppp` crate
//! `ppp` 2.3 parses only a complete buffer: a header split across reads comes back as
//! "incomplete" and the caller must keep every byte and parse them all again on the next
//! read. It does not verify the CRC32C TLV, tells a partial v1 line from a bad one by
//! looking at how the text ends, and pulls in a second major version of `thiserror`. The
//! parser here is small, keeps only the header's own bytes, looks at each byte once and
//! rejects a header at the first byte that proves it bad.
//!
//! # Decisions
//! - Versions are told apart by their signatures alone (`PROXY ` or the 12-byte v2
//!   signature); a first byte other than `P` or CR is an error at once.
//! - v1: the spec's 107-byte limit including CRLF, exactly one space between fields, CRLF
//!   and nothing else as the end, addresses in the family the protocol word names (IPv4
//!   without leading zeros), ports in decimal 0-65535 without leading zeros. `UNKNOWN`
//!   (with or without the rest of the line, which the spec says to ignore) means "use the
//!   socket's addresses".
//! - v2: the version nibble must be 2 and the command LOCAL or PROXY; the family and
//!   transport byte must be one of the seven the spec defines, for LOCAL too (the spec
//!   says receivers must reject the others). LOCAL, the balancer's own health check, is
//!   accepted with any of them and its addresses ignored. PROXY over UNSPEC is accepted
//!   without addresses, which the spec allows. PROXY over UDP or UNIX is rejected: neither
//!   can be what arrives on this TCP connection, neither carries an IP address to report,
//!   and falling back to the socket's addresses would report the balancer as the client.
//! - v2 TLVs follow the family's address block, each inside the header's length, the last
//!   one ending exactly at the end. CRC32C (type 0x03) is verified, AUTHORITY (0x02) and the
//!   AWS VPC endpoint ID (0xEA, subtype 0x01) are kept, the rest skipped. A malformed or
//!   repeated one of these three is an error.
//! - v2 length: a configurable cap on the whole header, [`DEFAULT_MAX_LEN`] (4096 bytes) by
//!   default: HAProxy's headers stay under 300 bytes and AWS NLB's TLVs add a few dozen,
//!   while the field itself allows 64 KiB per connection before the client says anything.

#![forbid(unsafe_code)]

mod error;
mod parser;
mod trust;
mod writer;

use std::net::SocketAddr;

pub use error::ProxyError;
pub use parser::{DEFAULT_MAX_LEN, HeaderParser, Progress};
pub use trust::{Cidr, CidrError, TrustedSources};
pub use writer::{BlockTooLong, write_v1, write_v2};

/// Which PROXY protocol version the header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

/// What the balancer says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// A relayed client connection (every v1 header).
    Proxy,
    /// A connection the balancer made itself, such as a health check: the socket's own
    /// addresses apply.
    Local,
}

/// The connection's endpoints as the balancer saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyAddresses {
    /// The client. An IPv4-mapped IPv6 address is kept as sent; SIC answers normalize it.
    pub source: SocketAddr,
    /// The address the client connected to.
    pub destination: SocketAddr,
}

/// A parsed header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    pub version: Version,
    pub command: Command,
    /// `None` for LOCAL, v1 `UNKNOWN` and v2 UNSPEC: use the socket's own addresses.
    pub addresses: Option<ProxyAddresses>,
    /// A CRC32C TLV was present and matched; v2 only, for the log line.
    pub crc_verified: bool,
    /// The AUTHORITY TLV (0x02): the host name the client asked for, e.g. via TLS SNI.
    pub authority: Option<String>,
    /// The AWS VPC endpoint ID TLV (0xEA, subtype 0x01) from a PrivateLink NLB.
    pub aws_vpce_id: Option<String>,
}

impl ProxyHeader {
    /// The client's address: the header's source, or `peer` (the socket's peer) when the
    /// header carries no addresses.
    pub fn client_address(&self, peer: SocketAddr) -> SocketAddr {
        self.addresses.map_or(peer, |addresses| addresses.source)
    }
}
