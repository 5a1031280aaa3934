//! Process resources: the open-file limit, and loadgen's own CPU time and memory, reported
//! so a reader can tell whether loadgen or the server was the bottleneck.

use std::time::Duration;

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};

/// Raises the soft RLIMIT_NOFILE to the hard limit (each session is one socket) and returns
/// the new soft limit.
pub fn raise_nofile_limit() -> nix::Result<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// CPU time (user, system) this process has used so far, all threads together.
pub fn cpu_time() -> (Duration, Duration) {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let to_duration = |tv: nix::sys::time::TimeVal| {
                Duration::new(
                    tv.tv_sec().max(0) as u64,
                    (tv.tv_usec().max(0) as u32) * 1000,
                )
            };
            (
                to_duration(usage.user_time()),
                to_duration(usage.system_time()),
            )
        }
        Err(_) => (Duration::ZERO, Duration::ZERO),
    }
}

/// Current resident set size in bytes (`VmRSS` of /proc/self/status); 0 where unavailable.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Lets this thread's timers fire within 1 µs of their deadline instead of the default
/// 50 µs slack, so scheduled sends leave on time.
pub fn tighten_timer_slack() {
    // Best effort: without it sends are merely a little later, and that lag is measured.
    let _ = nix::sys::prctl::set_timerslack(1000);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_readable() {
        assert!(raise_nofile_limit().unwrap() > 0);
        assert!(rss_bytes() > 0);
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(20) {
            std::hint::black_box(0);
        }
        let (user, sys) = cpu_time();
        assert!(user + sys >= Duration::from_millis(10));
    }
}
