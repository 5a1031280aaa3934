//! Startup (TLS, accounts, descriptor limit, listeners) and the serving lifetime: accept
//! loops, users reload on SIGHUP, graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::admin;
use crate::config::{Config, ListenerKind, ShutdownConfig};
use crate::limits::{self, ConnLimits};
use crate::listener::{self, Bound};
use crate::process::ProcessCollector;
use crate::proxy_listener::ProxyListener;
use crate::sessions::SessionTable;
use crate::stats::{ListenerStats, Stats};
use crate::tls::{self, Acceptors, TlsError};
use crate::users::{LoadReport, UserStore, UsersError};
use crate::{config::ConfigError, shutdown};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: io::Error,
    },
    #[error("cannot handle signals: {0}")]
    Signal(io::Error),
}

/// What every connection task needs, shared read-only (counters and tables are
/// internally synchronised).
#[derive(Debug)]
pub struct Shared {
    pub session_config: Arc<session::Config>,
    pub accounts: Arc<UserStore>,
    pub tls: Acceptors,
    pub limits: ConnLimits,
    pub sessions: SessionTable,
    pub stats: Arc<Stats>,
    pub tls_handshake_timeout: Duration,
}

/// A server whose listeners are bound but not yet accepting, so callers (tests) can learn
/// the addresses of `:0` listeners before serving.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Bound>,
    /// The counters of each entry in `listeners`.
    listener_stats: Vec<Arc<ListenerStats>>,
    /// Every metric, for the admin endpoint; created here at start, never global.
    metrics: Arc<prometheus_client::registry::Registry>,
    /// The admin endpoint's socket, unless `[admin]` is disabled.
    admin: Option<std::net::TcpListener>,
    shutdown: ShutdownConfig,
}

impl Server {
    /// Validates `config`, prepares TLS, the accounts and the metrics, raises the
    /// descriptor limit and binds every listener and the admin endpoint.
    pub fn bind(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::Invalid)?;
        let mut metrics = prometheus_client::registry::Registry::default();
        let stats = Arc::new(Stats::register(&mut metrics));
        metrics.register_collector(Box::new(ProcessCollector::new()));
        let fd_limit = limits::raise_fd_limit();
        let max_connections = limits::max_connections(config.limits.max_connections, fd_limit);
        if let Some(fd_limit) = fd_limit
            && max_connections > fd_limit
        {
            warn!(
                max_connections,
                fd_limit, "limits.max_connections exceeds the file descriptor limit"
            );
        }
        let tls = tls::acceptors(&config.tls, &config.domains)?;
        if tls.self_signed {
            warn!(
                domains = ?config.domains,
                "no certificate configured: serving a SELF-SIGNED certificate generated at start; clients will not trust it"
            );
        }
        let (accounts, report) = UserStore::open(&config.users_file, &config.domains)?;
        log_users(&config.users_file.display().to_string(), &report);
        let mut listeners = Vec::new();
        for (i, listener_config) in config.listeners.iter().enumerate() {
            let address = listener_config.address;
            let proxy = ProxyListener::from_config(listener_config)
                .map_err(|e| Error::Invalid(format!("`listeners[{i}].proxy_trusted`: {e}")))?;
            listeners.extend(
                listener::bind(listener_config, proxy.map(Arc::new))
                    .map_err(|source| Error::Bind { address, source })?,
            );
        }
        let listener_stats = listeners
            .iter()
            .map(|bound| {
                let address = bound.listener.local_addr().map_err(|source| Error::Bind {
                    address: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source,
                })?;
                Ok(stats.listener(bound.kind, address))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let admin = if config.admin.enabled {
            let address = config.admin.address;
            Some(admin::bind(address).map_err(|source| Error::Bind { address, source })?)
        } else {
            None
        };
        stats.set_connection_limit(max_connections);
        let shared = Shared {
            session_config: Arc::new(config.session_config()),
            accounts: Arc::new(accounts),
            tls,
            limits: ConnLimits::new(max_connections, config.limits.max_connections_per_ip),
            sessions: SessionTable::default(),
            stats,
            tls_handshake_timeout: config.limits.tls_handshake_timeout,
        };
        info!(max_connections, domains = ?config.domains, "server ready");
        Ok(Self {
            shared: Arc::new(shared),
            listeners,
            listener_stats,
            metrics: Arc::new(metrics),
            admin,
            shutdown: config.shutdown,
        })
    }

    /// The bound listeners (one entry per socket).
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|bound| Some((bound.kind, bound.listener.local_addr().ok()?)))
            .collect()
    }

    /// The counters this server updates.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// The admin endpoint's address, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref()?.local_addr().ok()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets sessions finish for
    /// the grace period, closes the rest with `<system-shutdown/>` and returns once all
    /// connections are gone (or forced closed). Reloads the users file on SIGHUP.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
        let mut hangup = signal(SignalKind::hangup()).map_err(Error::Signal)?;
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let admin_task = match self.admin {
            Some(listener) => {
                let address = listener.local_addr().map_err(|source| Error::Bind {
                    address: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source,
                })?;
                let listener = TcpListener::from_std(listener)
                    .map_err(|source| Error::Bind { address, source })?;
                info!(%address, "admin endpoint serving /metrics, /healthz and /readyz");
                Some(tokio::spawn(admin::serve(
                    listener,
                    self.metrics,
                    Arc::clone(&self.shared.stats),
                    admin_stop_rx,
                )))
            }
            None => None,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accept_loops = JoinSet::new();
        for (bound, counters) in self.listeners.into_iter().zip(self.listener_stats) {
            let address = bound.listener.local_addr().map_err(|source| Error::Bind {
                address: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            let listener = TcpListener::from_std(bound.listener)
                .map_err(|source| Error::Bind { address, source })?;
            info!(
                listener = %bound.kind, %address, proxy_protocol = bound.proxy.is_some(),
                "listening"
            );
            accept_loops.spawn(listener::accept_loop(
                listener,
                bound.kind,
                bound.proxy,
                counters,
                Arc::clone(&self.shared),
                stop_rx.clone(),
            ));
        }
        self.shared.stats.set_ready(true);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = hangup.recv() => reload_users(&self.shared.accounts),
            }
        }
        // Not ready from here on, so balancers send new clients elsewhere while the
        // sessions here drain.
        self.shared.stats.set_ready(false);
        info!(
            connections = self.shared.sessions.len(),
            "shutting down: no longer accepting"
        );
        // Send errors only mean every accept loop is gone already.
        let _ = stop_tx.send(true);
        while accept_loops.join_next().await.is_some() {}
        shutdown::drain(&self.shared.sessions, &self.shutdown).await;
        // The admin endpoint lasts through the drain, so /readyz and /metrics show it.
        let _ = admin_stop_tx.send(true);
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        info!("shutdown complete");
        Ok(())
    }
}

/// Binds with `config` and serves until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), Error> {
    Server::bind(config)?.serve(shutdown).await
}

fn reload_users(accounts: &UserStore) {
    match accounts.reload() {
        Ok(report) => log_users("reloaded", &report),
        Err(error) => warn!(%error, "users file not reloaded; keeping the accounts in use"),
    }
}

fn log_users(origin: &str, report: &LoadReport) {
    if report.missing {
        warn!(
            origin,
            "users file does not exist: no accounts (create some with `xmpp-edge user add`)"
        );
    }
    for skipped in &report.skipped {
        warn!(origin, entry = %skipped, "users file entry skipped");
    }
    info!(origin, accounts = report.accounts, "accounts loaded");
}
