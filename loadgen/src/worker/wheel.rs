//! The timer wheel for session timeouts.

use crate::schedule::Nanos;

/// Timeout resolution: timeouts are seconds long, so 10 ms late is immaterial.
const WHEEL_TICK: Nanos = 10_000_000;

/// Timeouts by 10 ms tick in a ring covering the longest timeout. Entries may be stale
/// (the session moved on); firing one only makes the session check its deadlines. The
/// loop wakes for the earliest tick that has entries, not for every tick.
pub(super) struct Wheel {
    slots: Vec<Vec<(u32, u32)>>,
    /// Every tick before this one has fired; no entry is earlier.
    cursor: u64,
    /// The earliest tick with entries, when there are any.
    next: u64,
    len: usize,
}

impl Wheel {
    pub(super) fn new(span: Nanos, now: Nanos) -> Self {
        let count = (span / WHEEL_TICK + 3) as usize;
        Self {
            slots: vec![Vec::new(); count],
            cursor: now / WHEEL_TICK,
            next: 0,
            len: 0,
        }
    }

    pub(super) fn push(&mut self, at: Nanos, index: usize, generation: u32) {
        // Round up so an entry never fires before its deadline.
        let tick = at.div_ceil(WHEEL_TICK).max(self.cursor);
        let count = self.slots.len() as u64;
        self.slots[(tick % count) as usize].push((index as u32, generation));
        if self.len == 0 || tick < self.next {
            self.next = tick;
        }
        self.len += 1;
    }

    /// Moves every entry due by `now` into `out`.
    pub(super) fn expire(&mut self, now: Nanos, out: &mut Vec<(u32, u32)>) {
        let count = self.slots.len() as u64;
        let now_tick = now / WHEEL_TICK;
        while self.len > 0 && self.next <= now_tick {
            let slot = &mut self.slots[(self.next % count) as usize];
            self.len -= slot.len();
            out.append(slot);
            self.cursor = self.next + 1;
            // Entries span less than the ring, so the first non-empty slot is the next.
            if self.len > 0 {
                self.next = (self.cursor..self.cursor + count)
                    .find(|tick| !self.slots[(tick % count) as usize].is_empty())
                    .expect("entries are left, so a slot has some");
            }
        }
        // Empty ticks up to now count as fired: later entries stay within the ring.
        let limit = if self.len > 0 { self.next } else { now_tick };
        self.cursor = self.cursor.max(now_tick.min(limit));
    }

    pub(super) fn next_time(&self) -> Option<Nanos> {
        (self.len > 0).then_some(self.next * WHEEL_TICK)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wheel_fires_entries_once_and_never_early() {
        let mut wheel = Wheel::new(1_000_000_000, 0);
        let mut out = Vec::new();
        wheel.push(25_000_000, 1, 7);
        wheel.push(31_000_000, 2, 7);
        wheel.expire(24_999_999, &mut out);
        assert!(out.is_empty());
        // Deadlines round up to the 10 ms tick: 25 ms fires at 30 ms.
        assert_eq!(wheel.next_time(), Some(30_000_000));
        wheel.expire(30_000_000, &mut out);
        assert_eq!(out, [(1, 7)]);
        out.clear();
        wheel.expire(40_000_000, &mut out);
        assert_eq!(out, [(2, 7)]);
        assert_eq!(wheel.next_time(), None);
        // An entry already due fires at the next tick not yet expired.
        wheel.push(1, 3, 0);
        assert_eq!(wheel.next_time(), Some(50_000_000));
        out.clear();
        wheel.expire(50_000_000, &mut out);
        assert_eq!(out, [(3, 0)]);

        // With nothing due for a while, the next wake is the first tick with entries.
        out.clear();
        wheel.push(900_000_000, 4, 0);
        wheel.push(700_000_000, 5, 0);
        assert_eq!(wheel.next_time(), Some(700_000_000));
        wheel.expire(600_000_000, &mut out);
        assert!(out.is_empty());
        assert_eq!(wheel.next_time(), Some(700_000_000));
        wheel.expire(700_000_000, &mut out);
        assert_eq!(out, [(5, 0)]);
        assert_eq!(wheel.next_time(), Some(900_000_000));
        // The ring wraps: an entry a whole span later lands in a reused slot.
        wheel.push(1_600_000_000, 6, 0);
        out.clear();
        wheel.expire(1_000_000_000, &mut out);
        assert_eq!(out, [(4, 0)]);
        assert_eq!(wheel.next_time(), Some(1_600_000_000));
        out.clear();
        wheel.expire(1_600_000_000, &mut out);
        assert_eq!(out, [(6, 0)]);
        assert_eq!(wheel.next_time(), None);
    }
}
