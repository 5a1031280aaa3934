//! Sans-IO c2s protocol core (in the style of quinn-proto and rustls): bytes and the
//! current time go in; bytes to write, requests to the I/O layer and events come out.
//! No sockets, no clocks, no async runtime.
//!
//! The I/O layer (crates/edge) per connection:
//! 1. creates a [`Connection`] with the shared [`Config`], the [`Accounts`] and the
//!    connection's [`Addresses`];
//! 2. on every read calls [`Connection::receive`]; when a timer fires,
//!    [`Connection::handle_timeout`];
//! 3. then drains [`Connection::pending_output`] to the socket (reporting progress with
//!    [`Connection::output_written`]), acts on every [`Connection::poll_event`] and
//!    re-arms its timer from [`Connection::poll_timeout`];
//! 4. for metrics, adds [`Connection::take_counts`] to its counters after each call.

#![forbid(unsafe_code)]

mod auth;
mod bind;
mod budget;
pub mod config;
mod connection;
mod counts;
mod disco;
mod element;
pub mod entropy;
mod error;
mod event;
mod features;
mod identity;
mod iq;
pub mod jid;
mod link;
mod machine;
mod message;
pub mod ns;
pub mod sasl;
mod sic;
mod stream;
mod timers;
mod writer;

pub use config::{Config, ListenerKind};
pub use connection::Connection;
pub use counts::{AnswerKind, Counts, SaslOutcome, StanzaKind};
pub use entropy::{Entropy, SeededEntropy, SystemEntropy};
pub use error::StreamCondition;
pub use event::{Cause, CloseReason, Event, Violation};
pub use link::{Addresses, TlsInfo};
pub use stream::HeaderError;

/// Where credentials come from; the edge implements it over its users file.
pub trait Accounts: Send + Sync + std::fmt::Debug {
    /// The stored SCRAM credentials of the account `user@domain` (the local part a client
    /// authenticates as, on the served domain its stream names) for `hash`, if it exists.
    fn scram_credentials(
        &self,
        user: &str,
        domain: &str,
        hash: sasl::ScramHash,
    ) -> Option<sasl::ScramCredentials>;
}
