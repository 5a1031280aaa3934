//! What the coordinator hands every worker before the run: the plan they share and the
//! clock that makes their time stamps comparable.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use crate::accounts::Accounts;
use crate::client::{Mix, Profile};
use crate::schedule::Nanos;
use crate::tls::TlsSetup;

/// Everything a worker needs to know about the run, shared by all workers.
#[derive(Debug)]
pub struct Plan {
    pub profile: Profile,
    pub accounts: Accounts,
    pub server: SocketAddr,
    /// Source addresses, used round robin; empty means the kernel's choice.
    pub local_ips: Vec<IpAddr>,
    pub tls: Option<TlsSetup>,
    pub sessions: u64,
    /// Logins started per second, all threads together.
    pub setup_rate: f64,
    /// Most logins in progress at once, all threads together.
    pub concurrency: usize,
    pub mix: Mix,
    /// Length of one measurement interval.
    pub interval: Nanos,
    pub threads: usize,
}

/// The run's clock: nanoseconds since a common epoch, so all threads share time stamps.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    pub fn new() -> Self {
        Self {
            epoch: Instant::now(),
        }
    }

    pub fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }
}
