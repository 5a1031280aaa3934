//! The stanza rate budget: a token bucket refilled at [`Config::stanza_rate`] up to
//! [`Config::stanza_burst`]. Time is an input (`now`).

use std::time::{Duration, Instant};

use crate::Config;

#[derive(Debug)]
pub(crate) struct StanzaBudget {
    /// Stanzas that may still be sent right now.
    tokens: f64,
    refilled: Instant,
}

impl StanzaBudget {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        Self {
            tokens: f64::from(config.stanza_burst),
            refilled: now,
        }
    }

    /// Takes one stanza from the bucket; `false` when the client is over its rate.
    pub(crate) fn take(&mut self, config: &Config, now: Instant) -> bool {
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
        let mut budget = StanzaBudget::new(&config, t0);
        assert!((0..3).all(|_| budget.take(&config, t0)));
        assert!(!budget.take(&config, t0));
        let t1 = t0 + Duration::from_millis(500);
        assert!(budget.take(&config, t1));
        assert!(!budget.take(&config, t1));
        let t2 = t1 + Duration::from_secs(60);
        assert!((0..3).all(|_| budget.take(&config, t2)));
        assert!(!budget.take(&config, t2));
    }
}
