//! The table of live connections and their bound JIDs, so the edge can replace a session
//! whose full JID is bound again (RFC 6120 §7.7.2.2) and tell every session about shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// Requests from outside a connection task, delivered as flags plus a wake-up so an idle
/// connection costs one small allocation rather than a channel.
#[derive(Debug, Default)]
pub struct Control {
    flags: AtomicU8,
    notify: Notify,
}

/// What a connection task has been asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Another connection bound the same full JID.
    Replaced,
    /// The edge is shutting down: close the stream with `<system-shutdown/>`.
    Shutdown,
    /// Stop now without further writes.
    Force,
}

impl Request {
    fn bit(self) -> u8 {
        match self {
            Self::Replaced => 1,
            Self::Shutdown => 2,
            Self::Force => 4,
        }
    }
}

impl Control {
    pub fn request(&self, request: Request) {
        self.flags.fetch_or(request.bit(), Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// Takes (clears) `request` if it was made.
    pub fn take(&self, request: Request) -> bool {
        self.flags.fetch_and(!request.bit(), Ordering::AcqRel) & request.bit() != 0
    }

    pub fn is_set(&self, request: Request) -> bool {
        self.flags.load(Ordering::Acquire) & request.bit() != 0
    }

    /// Completes after the next [`Control::request`] (or at once if one came since the
    /// last wake-up).
    pub fn requested(&self) -> Notified<'_> {
        self.notify.notified()
    }

    /// Completes once [`Request::Force`] is made.
    pub async fn forced(&self) {
        while !self.is_set(Request::Force) {
            self.requested().await;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    connections: HashMap<u64, Arc<Control>>,
    bound: HashMap<String, u64>,
    next_id: u64,
}

/// Every live connection (from accept on) and the full JIDs bound by them.
#[derive(Debug, Default)]
pub struct SessionTable {
    inner: Mutex<Inner>,
}

impl SessionTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a connection; the id is passed back to [`SessionTable::bind`] and
    /// [`SessionTable::remove`].
    pub fn register(&self) -> (u64, Arc<Control>) {
        let control = Arc::new(Control::default());
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.connections.insert(id, Arc::clone(&control));
        (id, control)
    }

    /// Records that connection `id` bound `full_jid`; returns the control of the
    /// connection that had it, which must now be replaced.
    pub fn bind(&self, id: u64, full_jid: &str) -> Option<Arc<Control>> {
        let mut inner = self.lock();
        let previous = inner.bound.insert(full_jid.to_owned(), id)?;
        if previous == id {
            return None;
        }
        inner.connections.get(&previous).cloned()
    }

    /// Forgets that connection `id` bound `jid`, unless another connection has it now.
    pub fn unbind(&self, id: u64, jid: &str) {
        Self::unbind_locked(&mut self.lock(), id, jid);
    }

    fn unbind_locked(inner: &mut Inner, id: u64, jid: &str) {
        if inner.bound.get(jid) == Some(&id) {
            inner.bound.remove(jid);
        }
    }

    /// Forgets connection `id` and, if it still owns it, its bound JID.
    pub fn remove(&self, id: u64, bound: Option<&str>) {
        let mut inner = self.lock();
        inner.connections.remove(&id);
        if let Some(jid) = bound {
            Self::unbind_locked(&mut inner, id, jid);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().connections.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends `request` to every live connection.
    pub fn broadcast(&self, request: Request) {
        let controls: Vec<Arc<Control>> = self.lock().connections.values().cloned().collect();
        for control in controls {
            control.request(request);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebinding_replaces_the_older_connection() {
        let sessions = SessionTable::default();
        let (a, control_a) = sessions.register();
        let (b, _) = sessions.register();
        assert!(sessions.bind(a, "u@d/r").is_none());
        let replaced = sessions.bind(b, "u@d/r").unwrap();
        assert!(Arc::ptr_eq(&replaced, &control_a));
        // The old connection leaving must not unbind the new one.
        sessions.remove(a, Some("u@d/r"));
        let (c, _) = sessions.register();
        assert!(sessions.bind(c, "u@d/r").is_some());
        assert_eq!(sessions.len(), 2);
    }

    #[test]
    fn flags() {
        let control = Control::default();
        control.request(Request::Shutdown);
        assert!(!control.take(Request::Replaced));
        assert!(control.take(Request::Shutdown));
        assert!(!control.take(Request::Shutdown));
    }
}
