//! What the process asks of its host: its open-file limit raised (every connection is a
//! descriptor), and its own resident memory and CPU time, read when asked rather than
//! sampled. The server reports them as metrics, the load generator so a reader can tell
//! which side was the bottleneck. Linux only, like the rest of the workspace.

#![forbid(unsafe_code)]

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use nix::sys::time::TimeVal;
use nix::unistd::{SysconfVar, sysconf};

/// The page size should sysconf not say.
const DEFAULT_PAGE_SIZE: u64 = 4096;

/// Raises the soft RLIMIT_NOFILE to the hard limit (the usual soft default of 1024 is far
/// too low for many connections) and returns the new soft limit.
pub fn raise_fd_limit() -> Result<u64, Errno> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard)
}

/// The soft RLIMIT_NOFILE in force.
pub fn fd_limit() -> Result<u64, Errno> {
    getrlimit(Resource::RLIMIT_NOFILE).map(|(soft, _)| soft)
}

/// CPU time the process has used so far, all threads together, finished ones included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTime {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }
}

/// The process's CPU time, from getrusage: microseconds, where /proc counts clock ticks.
pub fn cpu_time() -> Option<CpuTime> {
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let duration = |tv: TimeVal| {
        Duration::new(
            tv.tv_sec().max(0) as u64,
            (tv.tv_usec().max(0) as u32) * 1000,
        )
    };
    Some(CpuTime {
        user: duration(usage.user_time()),
        system: duration(usage.system_time()),
    })
}

/// The process's memory, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size (`VmRSS`).
    pub resident: u64,
    /// Virtual memory size (`VmSize`).
    pub virtual_size: u64,
}

/// The process's memory, from /proc/self/statm; `None` where that cannot be read.
pub fn memory() -> Option<Memory> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let (size, resident) = memory_pages(&statm)?;
    let page_size = sysconf(SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|size| u64::try_from(size).ok())
        .filter(|&size| size > 0)
        .unwrap_or(DEFAULT_PAGE_SIZE);
    Some(Memory {
        resident: resident.saturating_mul(page_size),
        virtual_size: size.saturating_mul(page_size),
    })
}

/// Virtual and resident size in pages, from the text of /proc/self/statm.
fn memory_pages(statm: &str) -> Option<(u64, u64)> {
    let mut fields = statm.split_ascii_whitespace();
    let size = fields.next()?.parse().ok()?;
    let resident = fields.next()?.parse().ok()?;
    Some((size, resident))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm() {
        assert_eq!(memory_pages("2048 512 100 1 0 300 0\n"), Some((2048, 512)));
        assert_eq!(memory_pages(""), None);
    }

    #[test]
    fn fd_limit_is_raised_to_the_hard_limit() {
        let raised = raise_fd_limit().unwrap();
        assert!(raised > 0);
        assert_eq!(fd_limit(), Ok(raised));
        assert_eq!(raise_fd_limit(), Ok(raised));
    }

    #[test]
    fn memory_of_this_process() {
        let memory = memory().unwrap();
        assert!(memory.resident > 100_000);
        assert!(memory.virtual_size >= memory.resident);
    }

    #[test]
    fn cpu_time_counts_a_spin() {
        // Spins until the process's CPU time moves on by 10 ms; on a busy machine that
        // may take longer than 10 ms of wall time, so only a generous bound is set.
        let before = cpu_time().unwrap().total();
        let spin = std::time::Instant::now();
        let mut after = before;
        while after < before + Duration::from_millis(10) && spin.elapsed() < Duration::from_secs(20)
        {
            std::hint::black_box((0..10_000u64).sum::<u64>());
            after = cpu_time().unwrap().total();
        }
        assert!(
            after >= before + Duration::from_millis(10),
            "{before:?} -> {after:?}"
        );
    }
}
