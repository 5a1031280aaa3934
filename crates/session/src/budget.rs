//! Rate budgets: stanzas and bytes per second, each a token bucket. A client over its
//! budget is not disconnected: the core stops taking its input until the bucket has
//! refilled, and asks the I/O layer to stop reading until then
//! ([`crate::Connection::read_paused_until`]), so TCP flow control pushes back on the
//! client (as ejabberd's shapers and Prosody's mod_limits do). Time is an input (`now`).

use std::time::{Duration, Instant};

use crate::Config;

/// Added to a computed resume time, so that the bucket is surely refilled by then despite
/// floating-point rounding.
const RESUME_MARGIN: Duration = Duration::from_micros(1);

/// Tokens refilled at `rate` per second up to `burst`; spending may overdraw it.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl Bucket {
    fn new(burst: f64, now: Instant) -> Self {
        Self {
            tokens: burst,
            refilled: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.refilled = self.refilled.max(now);
        self.tokens = (self.tokens + elapsed.as_secs_f64() * rate).min(burst);
    }

    /// When the bucket holds `need` tokens again; `None` if it does now. A bucket that
    /// never refills (a rate of zero) is never ready: the caller's timers end the wait.
    fn ready_at(&self, need: f64, rate: f64) -> Option<Instant> {
        let missing = need - self.tokens;
        if missing <= 0.0 {
            return None;
        }
        let wait = Duration::try_from_secs_f64(missing / rate).unwrap_or(Duration::MAX);
        Some(
            self.refilled
                .checked_add(wait.saturating_add(RESUME_MARGIN))
                .unwrap_or(self.refilled + Duration::from_secs(86_400 * 365)),
        )
    }
}

/// The connection's stanza and byte budgets, and the pause they impose.
#[derive(Debug)]
pub(crate) struct Budget {
    stanzas: Bucket,
    bytes: Bucket,
    /// Input is neither taken nor read until then.
    resume_at: Option<Instant>,
    /// When the current pause began.
    paused_since: Option<Instant>,
}

impl Budget {
    pub(crate) fn new(config: &Config, now: Instant) -> Self {
        Self {
            stanzas: Bucket::new(f64::from(config.stanza_burst), now),
            bytes: Bucket::new(config.byte_burst as f64, now),
            resume_at: None,
            paused_since: None,
        }
    }

    /// A stanza was taken in; the next one needs a whole token.
    pub(crate) fn stanza(&mut self, config: &Config, now: Instant) {
        let (rate, burst) = (config.stanza_rate, f64::from(config.stanza_burst));
        self.stanzas.refill(rate, burst, now);
        self.stanzas.tokens -= 1.0;
        self.pause_until(self.stanzas.ready_at(1.0, rate), now);
    }

    /// `n` bytes were read; reading goes on once they are paid for.
    pub(crate) fn bytes(&mut self, config: &Config, n: usize, now: Instant) {
        let (rate, burst) = (config.byte_rate as f64, config.byte_burst as f64);
        self.bytes.refill(rate, burst, now);
        self.bytes.tokens -= n as f64;
        self.pause_until(self.bytes.ready_at(0.0, rate), now);
    }

    fn pause_until(&mut self, ready: Option<Instant>, now: Instant) {
        if let Some(ready) = ready {
            self.resume_at = Some(self.resume_at.map_or(ready, |at| at.max(ready)));
            self.paused_since.get_or_insert(now);
        }
    }

    pub(crate) fn paused(&self) -> bool {
        self.resume_at.is_some()
    }

    pub(crate) fn resume_at(&self) -> Option<Instant> {
        self.resume_at
    }

    /// Ends the pause if its time has come; returns how long it lasted.
    pub(crate) fn resume(&mut self, now: Instant) -> Option<Duration> {
        if self.resume_at.is_none_or(|at| now < at) {
            return None;
        }
        self.resume_at = None;
        let since = self.paused_since.take()?;
        Some(now.saturating_duration_since(since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(stanza_rate: f64, stanza_burst: u32, byte_rate: u64, byte_burst: u64) -> Config {
        Config {
            stanza_rate,
            stanza_burst,
            byte_rate,
            byte_burst,
            ..Config::default()
        }
    }

    #[test]
    fn stanzas_pause_when_the_burst_is_spent_and_resume_at_the_rate() {
        let config = config(2.0, 3, 1 << 20, 1 << 20);
        let t0 = Instant::now();
        let mut budget = Budget::new(&config, t0);
        budget.stanza(&config, t0);
        budget.stanza(&config, t0);
        assert!(!budget.paused(), "a token is left for the next stanza");
        budget.stanza(&config, t0);
        let resume = budget.resume_at().expect("paused");
        let wait = resume - t0;
        assert!(wait >= Duration::from_millis(500) && wait < Duration::from_millis(501));
        assert_eq!(budget.resume(resume - Duration::from_micros(2)), None);
        assert_eq!(budget.resume(resume), Some(wait));
        assert!(!budget.paused());
        budget.stanza(&config, resume);
        assert!(budget.paused(), "the refilled token was the only one");
    }

    #[test]
    fn bytes_overdrawn_are_paid_off_before_reading_on() {
        let config = config(100.0, 100, 1000, 4000);
        let t0 = Instant::now();
        let mut budget = Budget::new(&config, t0);
        budget.bytes(&config, 4000, t0);
        assert!(!budget.paused(), "the burst covers it exactly");
        budget.bytes(&config, 500, t0);
        let wait = budget.resume_at().expect("paused") - t0;
        assert!(wait >= Duration::from_millis(500) && wait < Duration::from_millis(501));
    }

    #[test]
    fn the_later_of_two_pauses_wins() {
        let config = config(1.0, 1, 1000, 1000);
        let t0 = Instant::now();
        let mut budget = Budget::new(&config, t0);
        budget.bytes(&config, 3000, t0);
        budget.stanza(&config, t0);
        let wait = budget.resume_at().expect("paused") - t0;
        assert!(wait >= Duration::from_secs(2), "{wait:?}");
    }
}
