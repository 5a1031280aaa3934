//! The xmpp-edge server: tokio listeners and TLS around the sans-IO session core.
//!
//! [`run`] (or [`Server::bind`] then [`Server::serve`], to learn the bound addresses
//! first) serves until a shutdown future completes; [`cli`] is the `xmpp-edge` binary.
#![forbid(unsafe_code)]

mod admin;
pub mod cli;
pub mod config;
mod conn;
mod histogram;
mod limits;
mod listener;
mod process;
mod proxy_listener;
mod server;
mod sessions;
pub mod shutdown;
pub mod stats;
mod tls;
pub mod users;

pub use config::Config;
pub use server::{Error, Server, run};
pub use stats::{Snapshot, Stats};
