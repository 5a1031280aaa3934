//! The open-loop (constant-rate) schedule that requests and logins follow.
//!
//! Every job has an intended start time fixed in advance, independent of how fast the
//! server answers. Latency is measured from that intended time, so a stalled server (or a
//! stalled sender) shows up as the queueing delay a real client population would see,
//! instead of silently slowing the load down ("coordinated omission", as corrected by wrk2).

/// Nanoseconds since the run's common epoch, the time unit of the whole load generator.
pub type Nanos = u64;

/// The jobs `0..total` of one thread, job `j` intended at `start + offset + j * period`.
///
/// Threads share one global constant-rate sequence by interleaving: thread `t` of `T` runs
/// every `T`-th global job, so its `offset` is `t` global periods and its `period` is `T`.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Nanos,
    offset: f64,
    period: f64,
    total: u64,
    /// Jobs handed out so far by [`Schedule::take`].
    taken: u64,
}

impl Schedule {
    /// Thread `thread` of `threads` sharing `rate` jobs per second, for the jobs intended
    /// within `[start, start + length)`.
    pub fn interleaved(
        start: Nanos,
        length: Nanos,
        rate: f64,
        thread: usize,
        threads: usize,
    ) -> Self {
        let global_period = 1e9 / rate;
        let offset = thread as f64 * global_period;
        let period = threads as f64 * global_period;
        let total = if offset >= length as f64 {
            0
        } else {
            ((length as f64 - offset) / period).ceil() as u64
        };
        Self {
            start,
            offset,
            period,
            total,
            taken: 0,
        }
    }

    /// Exactly `total` jobs (a login ramp of a known number of sessions).
    pub fn counted(start: Nanos, rate: f64, thread: usize, threads: usize, total: u64) -> Self {
        let global_period = 1e9 / rate;
        Self {
            start,
            offset: thread as f64 * global_period,
            period: threads as f64 * global_period,
            total,
            taken: 0,
        }
    }

    /// When job `j` is meant to start.
    pub fn intended(&self, job: u64) -> Nanos {
        self.start + (self.offset + job as f64 * self.period) as Nanos
    }

    /// How many jobs exist in total.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// How many jobs have been handed out.
    pub fn taken(&self) -> u64 {
        self.taken
    }

    /// Hands out the next job if it is due, with its intended time.
    pub fn take(&mut self, now: Nanos) -> Option<(u64, Nanos)> {
        if self.taken >= self.total {
            return None;
        }
        let intended = self.intended(self.taken);
        if intended > now {
            return None;
        }
        let job = self.taken;
        self.taken += 1;
        Some((job, intended))
    }

    /// When the next job not yet handed out is due; `None` once all are handed out.
    pub fn next_time(&self) -> Option<Nanos> {
        (self.taken < self.total).then(|| self.intended(self.taken))
    }

    /// All jobs handed out.
    pub fn finished(&self) -> bool {
        self.taken >= self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    #[test]
    fn intended_times_are_evenly_spaced() {
        // 1000/s on one thread: one job per millisecond for 10 ms.
        let s = Schedule::interleaved(5 * MS, 10 * MS, 1000.0, 0, 1);
        assert_eq!(s.total(), 10);
        let times: Vec<Nanos> = (0..10).map(|j| s.intended(j)).collect();
        assert_eq!(times, (0..10).map(|j| 5 * MS + j * MS).collect::<Vec<_>>());
    }

    #[test]
    fn threads_interleave_into_one_global_sequence() {
        let threads = 3;
        let mut all: Vec<Nanos> = (0..threads)
            .flat_map(|t| {
                let s = Schedule::interleaved(0, 12 * MS, 1000.0, t, threads);
                (0..s.total()).map(move |j| s.intended(j))
            })
            .collect();
        all.sort_unstable();
        assert_eq!(all, (0..12).map(|k| k * MS).collect::<Vec<_>>());
    }

    #[test]
    fn jobs_are_only_handed_out_when_due() {
        let mut s = Schedule::interleaved(0, 10 * MS, 1000.0, 0, 1);
        assert_eq!(s.take(0), Some((0, 0)));
        assert_eq!(s.take(0), None);
        assert_eq!(s.next_time(), Some(MS));
        assert_eq!(s.take(MS - 1), None);
        assert_eq!(s.take(MS), Some((1, MS)));
    }

    /// The sender stalls for 50 ms: the jobs due meanwhile keep their intended times, so
    /// their latency includes the stall (coordinated omission correction) instead of the
    /// stall silently thinning the load.
    #[test]
    fn stalled_sender_latency_counts_from_intended_time() {
        let mut s = Schedule::interleaved(0, 100 * MS, 1000.0, 0, 1);
        let service = 100_000; // each reply comes 0.1 ms after its actual send
        let mut latencies = Vec::new();
        let mut now = 0;
        while !s.finished() {
            if now == 20 * MS {
                now += 50 * MS; // the stall
            }
            while let Some((_, intended)) = s.take(now) {
                latencies.push(now + service - intended);
            }
            now = s.next_time().map_or(now, |next| next.max(now));
        }
        assert_eq!(latencies.len(), 100);
        // Jobs 20..=70 were due during the stall and sent at 70 ms.
        assert_eq!(latencies[20], 50 * MS + service);
        assert_eq!(latencies[45], 25 * MS + service);
        assert_eq!(latencies[70], service);
        let late = latencies.iter().filter(|&&l| l > service).count();
        assert_eq!(late, 50);
        // An uncorrected (closed-loop) measurement would have seen one slow reply at most.
    }

    #[test]
    fn counted_schedule_has_exactly_that_many_jobs() {
        let mut s = Schedule::counted(0, 100.0, 1, 2, 3);
        assert_eq!(s.intended(0), 10 * MS);
        assert_eq!(s.intended(2), 50 * MS);
        assert_eq!(s.take(u64::MAX / 2).map(|j| j.0), Some(0));
        s.take(u64::MAX / 2);
        s.take(u64::MAX / 2);
        assert!(s.finished());
        assert_eq!(s.next_time(), None);
    }
}
