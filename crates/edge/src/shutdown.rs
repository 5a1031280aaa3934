//! Graceful shutdown: the termination signals and the draining of live connections.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::ShutdownConfig;
use crate::sessions::{Request, SessionTable};

/// How often draining checks whether connections are gone.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// How long forced connections get to notice and drop their sockets.
const FORCE_WAIT: Duration = Duration::from_secs(1);

/// A future completing on SIGTERM or SIGINT. The handlers are installed now, so a signal
/// arriving before the future is polled is not lost.
pub fn termination() -> io::Result<impl Future<Output = ()>> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        info!(signal = name, "shutdown requested");
    })
}

/// Waits for the connections to end: on their own during the grace period, then after
/// `<system-shutdown/>`, then by force.
pub async fn drain(sessions: &SessionTable, config: &ShutdownConfig) {
    info!(connections = sessions.len(), grace_period = ?config.grace_period, "draining");
    if wait_empty(sessions, config.grace_period).await {
        return;
    }
    info!(
        connections = sessions.len(),
        "grace period over: closing sessions with system-shutdown"
    );
    sessions.broadcast(Request::Shutdown);
    if wait_empty(sessions, config.force_after).await {
        return;
    }
    warn!(
        connections = sessions.len(),
        "connections still open: closing them by force"
    );
    sessions.broadcast(Request::Force);
    wait_empty(sessions, FORCE_WAIT).await;
}

/// Whether the table emptied within `within`.
async fn wait_empty(sessions: &SessionTable, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if sessions.is_empty() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep_until((now + POLL_INTERVAL).min(deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_escalates_to_shutdown_then_force() {
        let sessions = std::sync::Arc::new(SessionTable::default());
        let (id, control) = sessions.register();
        let config = ShutdownConfig {
            grace_period: Duration::from_secs(2),
            force_after: Duration::from_secs(1),
        };
        let worker = {
            let sessions = std::sync::Arc::clone(&sessions);
            tokio::spawn(async move {
                control.forced().await;
                assert!(control.take(Request::Shutdown));
                sessions.remove(id, None);
            })
        };
        let started = Instant::now();
        drain(&sessions, &config).await;
        assert!(started.elapsed() >= Duration::from_secs(3));
        worker.await.unwrap();
        assert!(sessions.is_empty());
    }
}
