//! What every connection task shares, read-only (the tables and counters inside are
//! internally synchronised).

use std::sync::Arc;
use std::time::Duration;

use crate::admission::Admission;
use crate::auth_failures::AuthFailures;
use crate::password_pool::PasswordPool;
use crate::tls::Acceptors;
use crate::users::UserStore;

#[derive(Debug)]
pub struct Shared {
    pub session_config: Arc<session::Config>,
    pub accounts: Arc<UserStore>,
    pub tls: Acceptors,
    pub admission: Arc<Admission>,
    pub tls_handshake_timeout: Duration,
    /// Failed logins per client address, and the delays they earn.
    pub auth_failures: AuthFailures,
    /// Where PLAIN's password checks run.
    pub passwords: PasswordPool,
}
