//! Graceful shutdown: the termination signals and the draining of live connections.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;
use tracing::{info, warn};

use crate::config::ShutdownConfig;
use crate::registry::{Registry, Request};

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
pub async fn drain(registry: &Registry, config: &ShutdownConfig) {
    info!(connections = registry.len(), grace_period = ?config.grace_period, "draining");
    if wait_empty(registry, config.grace_period).await {
        return;
    }
    info!(
        connections = registry.len(),
        "grace period over: closing sessions with system-shutdown"
    );
    registry.broadcast(Request::Shutdown);
    if wait_empty(registry, config.force_after).await {
        return;
    }
    warn!(
        connections = registry.len(),
        "connections still open: closing them by force"
    );
    registry.broadcast(Request::Force);
    wait_empty(registry, FORCE_WAIT).await;
}

/// Whether the registry emptied within `within`.
async fn wait_empty(registry: &Registry, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if registry.is_empty() {
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
        let registry = std::sync::Arc::new(Registry::default());
        let (id, control) = registry.register();
        let config = ShutdownConfig {
            grace_period: Duration::from_secs(2),
            force_after: Duration::from_secs(1),
        };
        let worker = {
            let registry = std::sync::Arc::clone(&registry);
            tokio::spawn(async move {
                control.forced().await;
                assert!(control.take(Request::Shutdown));
                registry.remove(id, None);
            })
        };
        let started = Instant::now();
        drain(&registry, &config).await;
        assert!(started.elapsed() >= Duration::from_secs(3));
        worker.await.unwrap();
        assert!(registry.is_empty());
    }
}
