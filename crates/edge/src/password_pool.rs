//! PLAIN's password checks (PBKDF2, milliseconds of CPU each) run here, on tokio's
//! blocking threads, at most `threads` at a time: a burst of PLAIN attempts then costs at
//! most that many cores and queues behind them, while the event-loop workers keep serving
//! every other session.

use std::sync::Arc;

use session::sasl::{PasswordCheck, PasswordVerdict};
use tokio::sync::Semaphore;

#[derive(Debug)]
pub struct PasswordPool {
    permits: Arc<Semaphore>,
}

impl PasswordPool {
    pub fn new(threads: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(threads.max(1))),
        }
    }

    /// Runs `check` when a thread is free; `None` only if the check panicked.
    pub async fn run(&self, check: PasswordCheck) -> Option<PasswordVerdict> {
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok()?;
        tokio::task::spawn_blocking(move || {
            let verdict = check.run();
            drop(permit);
            verdict
        })
        .await
        .ok()
    }
}
