//! The connection's two deadlines: negotiation (connect to bound resource) and idle (no
//! bytes). Time is an input (`now`), so all of it is testable without sleeping.

use std::time::Instant;

use crate::Config;
use crate::event::Cause;

#[derive(Debug)]
pub(crate) struct Timers {
    /// Until a resource is bound; `None` afterwards.
    negotiation_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
}

impl Timers {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        Self {
            negotiation_deadline: now.checked_add(config.negotiation_timeout),
            idle_deadline: now.checked_add(config.idle_timeout),
        }
    }

    /// Bytes arrived: the idle timer starts over.
    pub(crate) fn activity(&mut self, config: &Config, now: Instant) {
        self.idle_deadline = now.checked_add(config.idle_timeout);
    }

    /// Negotiation finished (a resource is bound).
    pub(crate) fn negotiated(&mut self) {
        self.negotiation_deadline = None;
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        match (self.negotiation_deadline, self.idle_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The timer that has expired at `now`, as the cause the stream ends with.
    pub(crate) fn expired(&self, now: Instant) -> Option<Cause> {
        if self.negotiation_deadline.is_some_and(|d| now >= d) {
            Some(Cause::NegotiationTimeout)
        } else if self.idle_deadline.is_some_and(|d| now >= d) {
            Some(Cause::IdleTimeout)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines() {
        let config = Config {
            negotiation_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(4),
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut timers = Timers::new(&config, t0);
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(4)));
        timers.activity(&config, t0 + Duration::from_secs(8));
        assert_eq!(timers.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            timers.expired(t0 + Duration::from_secs(10)),
            Some(Cause::NegotiationTimeout)
        );
        timers.negotiated();
        assert_eq!(timers.expired(t0 + Duration::from_secs(11)), None);
        assert_eq!(
            timers.expired(t0 + Duration::from_secs(12)),
            Some(Cause::IdleTimeout)
        );
    }
}
