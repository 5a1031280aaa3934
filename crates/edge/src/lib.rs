//! The xmpp-edge server: tokio listeners and TLS around the sans-IO session core.
//!
//! [`run`] (or [`Server::bind`] then [`Server::serve`], to learn the bound addresses
//! first) serves until a shutdown future completes; [`cli`] is the `xmpp-edge` binary.
//!
//! Modules import one way: `server` -> `listener` -> `conn` -> (`state`, `close`,
//! `admission`, `tls`, `proxy_listener`) -> (`sessions`, `metrics`, `config`, ...).
//! Each module registers and counts its own metrics (see [`metrics`]).
#![forbid(unsafe_code)]

mod admin;
mod admission;
mod auth_failures;
pub mod cli;
mod close;
pub mod config;
mod conn;
mod histogram;
mod limits;
mod listener;
mod metrics;
mod password_pool;
mod process;
mod proxy_listener;
mod server;
mod sessions;
pub mod shutdown;
mod socket;
mod state;
mod tls;
pub mod users;

/// The integration tests' registry scraper, shared with the unit tests.
#[cfg(test)]
#[path = "../tests/common/scrape.rs"]
mod scrape;

pub use config::Config;
pub use server::{Error, Server, run};
