//! The file descriptor budget the connection limit is derived from.

/// Descriptors kept free for listeners, the runtime, log files and the users file.
const FD_HEADROOM: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft limit now in
/// force: the old one when it cannot be raised, which the server still runs with.
pub fn raise_fd_limit() -> Option<u64> {
    host::raise_fd_limit().or_else(|_| host::fd_limit()).ok()
}

/// The connection limit to use: the configured one, or the descriptor limit minus
/// headroom when `configured` is 0.
pub fn max_connections(configured: u64, fd_limit: Option<u64>) -> u64 {
    if configured > 0 {
        return configured;
    }
    match fd_limit {
        Some(limit) => limit.saturating_sub(FD_HEADROOM).max(1),
        None => 1024 - FD_HEADROOM,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_maximum() {
        assert_eq!(max_connections(10, Some(100)), 10);
        assert_eq!(max_connections(0, Some(100_000)), 100_000 - FD_HEADROOM);
        assert_eq!(max_connections(0, Some(10)), 1);
    }
}
