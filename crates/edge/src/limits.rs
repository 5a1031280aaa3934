//! Admission limits: connections in total and per client address, and the file
//! descriptor budget they are derived from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::stats::Limit;

/// Descriptors kept free for listeners, the runtime, log files and the users file.
const FD_HEADROOM: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft limit now in
/// force: the old one when it cannot be raised, which the server still runs with.
pub fn raise_fd_limit() -> Option<u64> {
    host::raise_fd_limit().or_else(|_| host::fd_limit()).ok()
}

/// The connection limit to use: the configured one, or the descriptor limit minus
/// headroom when `configured` is 0.
pub fn max_connections(configured: u64, fd_limit: Option<u64>) -> u64 {
    if configured > 0 {
        return configured;
    }
    match fd_limit {
        Some(limit) => limit.saturating_sub(FD_HEADROOM).max(1),
        None => 1024 - FD_HEADROOM,
    }
}

/// Counts live connections, in total and per client address.
#[derive(Debug)]
pub struct ConnLimits {
    max_total: u64,
    max_per_ip: u32,
    total: AtomicU64,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
}

impl ConnLimits {
    pub fn new(max_total: u64, max_per_ip: u32) -> Self {
        Self {
            max_total,
            max_per_ip,
            total: AtomicU64::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more connection from `ip`, or says which limit refuses it. Every `Ok`
    /// must be matched by one [`ConnLimits::release`].
    pub fn admit(&self, ip: IpAddr) -> Result<(), Limit> {
        self.admit_total()?;
        self.admit_ip(ip).inspect_err(|_| self.release_total())
    }

    /// Forgets one connection from `ip`.
    pub fn release(&self, ip: IpAddr) {
        self.release_ip(ip);
        self.release_total();
    }

    /// The total half of [`ConnLimits::admit`], for PROXY listeners, whose client address
    /// is known only once the header is read. Matched by [`ConnLimits::release_total`].
    pub fn admit_total(&self) -> Result<(), Limit> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Limit::MaxConnections);
        }
        Ok(())
    }

    /// The per-address half of [`ConnLimits::admit`]. Matched by [`ConnLimits::release_ip`].
    pub fn admit_ip(&self, ip: IpAddr) -> Result<(), Limit> {
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_ip.entry(ip.to_canonical()).or_insert(0);
        if *count >= self.max_per_ip {
            return Err(Limit::MaxConnectionsPerIp);
        }
        *count += 1;
        Ok(())
    }

    pub fn release_total(&self) {
        self.total.fetch_sub(1, Ordering::AcqRel);
    }

    pub fn release_ip(&self, ip: IpAddr) {
        let ip = ip.to_canonical();
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_ip() {
        let limits = ConnLimits::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(limits.admit(a), Ok(()));
        assert_eq!(limits.admit(a), Ok(()));
        assert_eq!(limits.admit(a), Err(Limit::MaxConnectionsPerIp));
        assert_eq!(limits.admit(b), Ok(()));
        assert_eq!(
            limits.admit("10.0.0.2".parse().unwrap()),
            Err(Limit::MaxConnections)
        );
        limits.release(a);
        // The IPv4-mapped form counts as the same address.
        assert_eq!(limits.admit("10.0.0.2".parse().unwrap()), Ok(()));
        limits.release(a);
        assert_eq!(limits.admit(b), Err(Limit::MaxConnectionsPerIp));
        assert_eq!(limits.admit(a), Ok(()));
    }

    #[test]
    fn derived_maximum() {
        assert_eq!(max_connections(10, Some(100)), 10);
        assert_eq!(max_connections(0, Some(100_000)), 100_000 - FD_HEADROOM);
        assert_eq!(max_connections(0, Some(10)), 1);
    }
}
