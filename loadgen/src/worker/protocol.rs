//! The messages between the coordinator and a worker while the run goes on.

use crate::histo::Sample;
use crate::schedule::Nanos;

/// The phase number of samples taken while no phase runs (hold, closing).
pub const IDLE_PHASE: u32 = u32::MAX;

/// From the coordinator.
#[derive(Debug, Clone, Copy)]
pub enum Command {
    /// Log this thread's sessions in, starting at `start`.
    Ramp { start: Nanos, phase: u32 },
    /// Send requests at `rate` per second (all threads together) from `start` for `length`.
    Requests {
        start: Nanos,
        length: Nanos,
        rate: f64,
        phase: u32,
    },
    /// Close every session and stop.
    Close,
}

/// To the coordinator.
#[derive(Debug)]
pub enum Report {
    Started,
    /// Measurements of interval `interval`; `boundary` when the interval is over for this
    /// thread (otherwise a phase ended inside it and more may follow).
    Sample {
        interval: u64,
        boundary: bool,
        phase: u32,
        sample: Box<Sample>,
    },
    PhaseDone {
        phase: u32,
    },
    Closed,
    Fatal {
        thread: usize,
        error: String,
    },
}
