//! Time-based limits: the negotiation deadline, the idle timer and the stanza rate
//! bucket. Time is an input (`now`), so all of it is testable without sleeping.

use std::time::{Duration, Instant};

use crate::Config;

/// Which timer expired; both are sent as `connection-timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// Not bound within [`Config::negotiation_timeout`] of connecting.
    Negotiation,
    /// No bytes for [`Config::idle_timeout`].
    Idle,
}

impl Expired {
    pub(crate) fn detail(self) -> &'static str {
        match self {
            Self::Negotiation => "stream negotiation took too long",
            Self::Idle => "idle for too long",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Limits {
    /// Until a resource is bound; `None` afterwards.
    negotiation_deadline: Option<Instant>,
    idle_deadline: Option<Instant>,
    /// Token bucket: stanzas that may still be sent right now, refilled at
    /// [`Config::stanza_rate`] up to [`Config::stanza_burst`].
    tokens: f64,
    refilled: Instant,
}

impl Limits {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        Self {
            negotiation_deadline: now.checked_add(config.negotiation_timeout),
            idle_deadline: now.checked_add(config.idle_timeout),
            tokens: f64::from(config.stanza_burst),
            refilled: now,
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

    pub(crate) fn expired(&self, now: Instant) -> Option<Expired> {
        if self.negotiation_deadline.is_some_and(|d| now >= d) {
            Some(Expired::Negotiation)
        } else if self.idle_deadline.is_some_and(|d| now >= d) {
            Some(Expired::Idle)
        } else {
            None
        }
    }

    /// Takes one stanza from the bucket; `false` when the client is over its rate.
    pub(crate) fn take_stanza(&mut self, config: &Config, now: Instant) -> bool {
        let elapsed: Duration = now.saturating_duration_since(self.refilled);
        self.refilled = self.refilled.max(now);
        let burst = f64::from(config.stanza_burst);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * config.stanza_rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate() {
        let config = Config {
            stanza_rate: 2.0,
            stanza_burst: 3,
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut limits = Limits::new(&config, t0);
        assert!((0..3).all(|_| limits.take_stanza(&config, t0)));
        assert!(!limits.take_stanza(&config, t0));
        let t1 = t0 + Duration::from_millis(500);
        assert!(limits.take_stanza(&config, t1));
        assert!(!limits.take_stanza(&config, t1));
        let t2 = t1 + Duration::from_secs(60);
        assert!((0..3).all(|_| limits.take_stanza(&config, t2)));
        assert!(!limits.take_stanza(&config, t2));
    }

    #[test]
    fn deadlines() {
        let config = Config {
            negotiation_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(4),
            ..Config::default()
        };
        let t0 = Instant::now();
        let mut limits = Limits::new(&config, t0);
        assert_eq!(limits.next_deadline(), Some(t0 + Duration::from_secs(4)));
        limits.activity(&config, t0 + Duration::from_secs(8));
        assert_eq!(limits.next_deadline(), Some(t0 + Duration::from_secs(10)));
        assert_eq!(
            limits.expired(t0 + Duration::from_secs(10)),
            Some(Expired::Negotiation)
        );
        limits.negotiated();
        assert_eq!(limits.expired(t0 + Duration::from_secs(11)), None);
        assert_eq!(
            limits.expired(t0 + Duration::from_secs(12)),
            Some(Expired::Idle)
        );
    }
}
