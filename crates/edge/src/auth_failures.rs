//! Failed logins per client address, and the delay each new failure earns before it is
//! answered: a few failures a window are free, then every one waits twice as long as the
//! last, up to a ceiling. Guessing passwords from one address (or one IPv6 /64, which a
//! single host usually owns) gets slow; everyone else is not affected.
//!
//! The table is bounded: when it is full, addresses whose failures have leaked away are
//! dropped, and if none have, a new address is treated as having used up its free
//! failures (a flood from many addresses is delayed rather than let through).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The settings of [`AuthFailures`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthFailurePolicy {
    /// Failures per `window` answered without delay.
    pub free: u32,
    /// How fast failures are forgotten: `free` of them per window.
    pub window: Duration,
    /// The delay of the first failure past the free ones; each further one doubles it.
    pub delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Addresses tracked at most.
    pub max_addresses: usize,
}

/// What one address (or /64) has failed lately.
#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Failures not yet forgotten; leaks at `free` per `window`.
    count: f64,
    updated: Instant,
}

impl Failures {
    fn leaked(self, policy: &AuthFailurePolicy, now: Instant) -> f64 {
        let windows = now.saturating_duration_since(self.updated).as_secs_f64()
            / policy.window.as_secs_f64().max(f64::MIN_POSITIVE);
        (self.count - windows * f64::from(policy.free)).max(0.0)
    }
}

/// The per-address failure table; one per server, shared by every connection.
#[derive(Debug)]
pub struct AuthFailures {
    policy: AuthFailurePolicy,
    table: Mutex<HashMap<IpAddr, Failures>>,
}

impl AuthFailures {
    pub fn new(policy: AuthFailurePolicy) -> Self {
        Self {
            policy,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failed attempt from `ip` at `now` and returns how long to wait before
    /// answering it.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let key = key_of(ip);
        let mut table = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if !table.contains_key(&key) && table.len() >= self.policy.max_addresses {
            table.retain(|_, failures| failures.leaked(&self.policy, now) > 0.0);
        }
        let room = table.len() < self.policy.max_addresses;
        let count = match table.get_mut(&key) {
            Some(failures) => {
                failures.count = failures.leaked(&self.policy, now) + 1.0;
                failures.updated = now;
                failures.count
            }
            None if room => {
                table.insert(
                    key,
                    Failures {
                        count: 1.0,
                        updated: now,
                    },
                );
                1.0
            }
            // Full of addresses that are all failing: no free attempts for a new one.
            None => f64::from(self.policy.free) + 1.0,
        };
        self.delay_for(count)
    }

    /// Addresses tracked now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.table.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn delay_for(&self, count: f64) -> Duration {
        // Failures leak continuously, so a count just above the free ones is a failure
        // past them; tiny leaks are rounding, not forgiveness.
        let over = count - f64::from(self.policy.free);
        if over <= 1e-6 {
            return Duration::ZERO;
        }
        // The first delayed failure waits `delay`; each further one doubles it.
        let doublings = (over.ceil() - 1.0).min(32.0);
        let delay = self.policy.delay.as_secs_f64() * 2f64.powf(doublings);
        Duration::try_from_secs_f64(delay)
            .unwrap_or(self.policy.max_delay)
            .min(self.policy.max_delay)
    }
}

/// IPv4 addresses count alone (an IPv4-mapped IPv6 address as its IPv4 address); IPv6
/// addresses by their /64, the block one host or site usually gets.
fn key_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AuthFailurePolicy {
        AuthFailurePolicy {
            free: 3,
            window: Duration::from_secs(60),
            delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(2),
            max_addresses: 4,
        }
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn free_failures_then_doubling_delays_up_to_the_ceiling() {
        let failures = AuthFailures::new(policy());
        let now = Instant::now();
        let delays: Vec<_> = (0..8)
            .map(|_| failures.failed(ip("192.0.2.1"), now).as_millis())
            .collect();
        assert_eq!(delays, [0, 0, 0, 250, 500, 1000, 2000, 2000]);
        assert_eq!(failures.failed(ip("192.0.2.2"), now), Duration::ZERO);
    }

    #[test]
    fn failures_are_forgotten_at_the_free_rate() {
        let failures = AuthFailures::new(policy());
        let t0 = Instant::now();
        for _ in 0..4 {
            failures.failed(ip("192.0.2.1"), t0);
        }
        // A window later three of the four are forgotten: this one is the second.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(failures.failed(ip("192.0.2.1"), later), Duration::ZERO);
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let failures = AuthFailures::new(policy());
        let now = Instant::now();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9"] {
            assert_eq!(failures.failed(ip(host), now), Duration::ZERO);
        }
        assert_eq!(
            failures.failed(ip("2001:db8:1:2::77"), now),
            Duration::from_millis(250)
        );
        assert_eq!(failures.failed(ip("2001:db8:1:3::1"), now), Duration::ZERO);
        for _ in 0..3 {
            failures.failed(ip("198.51.100.4"), now);
        }
        assert_eq!(
            failures.failed(ip("::ffff:198.51.100.4"), now),
            Duration::from_millis(250)
        );
    }

    #[test]
    fn a_full_table_forgets_quiet_addresses_and_gives_new_ones_no_free_failures() {
        let failures = AuthFailures::new(policy());
        let t0 = Instant::now();
        for n in 1..=4 {
            failures.failed(ip(&format!("192.0.2.{n}")), t0);
        }
        assert_eq!(failures.tracked(), 4);
        assert_eq!(
            failures.failed(ip("203.0.113.1"), t0),
            Duration::from_millis(250),
            "no room: treated as out of free failures"
        );
        assert_eq!(failures.tracked(), 4);
        // Once the old entries have leaked away there is room again.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(failures.failed(ip("203.0.113.1"), later), Duration::ZERO);
        assert_eq!(failures.tracked(), 1);
    }
}
