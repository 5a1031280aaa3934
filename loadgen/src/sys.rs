//! Per-thread tuning the host offers loadgen; its descriptor limit, CPU time and memory
//! come from the `host` crate.

/// Lets this thread's timers fire within 1 µs of their deadline instead of the default
/// 50 µs slack, so scheduled sends leave on time.
pub fn tighten_timer_slack() {
    // Best effort: without it sends are merely a little later, and that lag is measured.
    let _ = nix::sys::prctl::set_timerslack(1000);
}
