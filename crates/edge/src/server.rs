//! Startup (TLS, accounts, descriptor limit, listeners) and the serving lifetime: accept
//! loops, users reload on SIGHUP, graceful shutdown.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};

use prometheus_client::registry::Registry;

use crate::admin::{self, Readiness};
use crate::admission::Admission;
use crate::auth_failures::AuthFailures;
use crate::config::{Config, ListenerKind, ShutdownConfig};
use crate::limits;
use crate::listener::{self, Listener};
use crate::password_pool::PasswordPool;
use crate::process::ProcessCollector;
use crate::proxy_listener::{HeaderMetrics, ProxyListener};
use crate::state::Shared;
use crate::tls::{self, TlsError};
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

/// A server whose listeners are bound but not yet accepting, so callers (tests) can learn
/// the addresses of `:0` listeners before serving.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<Listener>,
    /// Every metric, for the admin endpoint; created here at start, never global.
    metrics: Arc<Registry>,
    readiness: Readiness,
    /// The admin endpoint's socket, unless `[admin]` is disabled.
    admin: Option<std::net::TcpListener>,
    shutdown: ShutdownConfig,
}

impl Server {
    /// Validates `config`, prepares TLS, the accounts and the metrics, raises the
    /// descriptor limit and binds every listener and the admin endpoint.
    pub fn bind(config: Config) -> Result<Self, Error> {
        config.validate().map_err(Error::Invalid)?;
        let mut metrics = Registry::default();
        let listener_metrics = listener::Metrics::register(&mut metrics);
        let proxy_metrics = Arc::new(HeaderMetrics::register(&mut metrics));
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
        let admission = Admission::new(
            max_connections,
            config.limits.max_connections_per_ip,
            &mut metrics,
        );
        let readiness = Readiness::register(&mut metrics);
        metrics.register_collector(Box::new(ProcessCollector::new()));
        let tls = tls::acceptors(&config.tls, &config.domains)?;
        if tls.self_signed {
            warn!(
                domains = ?config.domains,
                "no certificate configured: serving a SELF-SIGNED certificate generated at start; clients will not trust it"
            );
        }
        let (accounts, report) = UserStore::open(&config.users_file, &config.domains)?;
        log_users(&config.users_file.display().to_string(), &report);
        let mut bound = Vec::new();
        for (i, listener_config) in config.listeners.iter().enumerate() {
            let address = listener_config.address;
            let proxy = ProxyListener::from_config(listener_config, &proxy_metrics)
                .map_err(|e| Error::Invalid(format!("`listeners[{i}].proxy_trusted`: {e}")))?;
            bound.extend(
                listener::bind(listener_config, proxy.map(Arc::new))
                    .map_err(|source| Error::Bind { address, source })?,
            );
        }
        let addresses = bound
            .iter()
            .map(|bound| {
                bound.listener.local_addr().map_err(|source| Error::Bind {
                    address: SocketAddr::from(([0, 0, 0, 0], 0)),
                    source,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let admin = if config.admin.enabled {
            let address = config.admin.address;
            Some(admin::bind(address).map_err(|source| Error::Bind { address, source })?)
        } else {
            None
        };
        let shared = Arc::new(Shared {
            session_config: Arc::new(config.session_config()),
            accounts: Arc::new(accounts),
            tls,
            admission: Arc::new(admission),
            tls_handshake_timeout: config.limits.tls_handshake_timeout,
            auth_failures: AuthFailures::new(config.limits.auth_failure_policy()),
            passwords: PasswordPool::new(config.limits.password_check_threads()),
        });
        let listeners = bound
            .into_iter()
            .zip(addresses)
            .map(|(bound, address)| Listener::new(bound, address, &listener_metrics, &shared))
            .collect();
        info!(max_connections, domains = ?config.domains, "server ready");
        Ok(Self {
            shared,
            listeners,
            metrics: Arc::new(metrics),
            readiness,
            admin,
            shutdown: config.shutdown,
        })
    }

    /// The bound listeners (one entry per socket).
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.listeners
            .iter()
            .filter_map(|l| Some((l.endpoint.kind, l.socket.local_addr().ok()?)))
            .collect()
    }

    /// Every metric this server updates, as its admin endpoint's `/metrics` shows them.
    pub fn metrics(&self) -> Arc<Registry> {
        Arc::clone(&self.metrics)
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
                    self.readiness.clone(),
                    admin_stop_rx,
                )))
            }
            None => None,
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut accept_loops = JoinSet::new();
        for Listener {
            socket,
            accepted,
            endpoint,
        } in self.listeners
        {
            let address = socket.local_addr().map_err(|source| Error::Bind {
                address: SocketAddr::from(([0, 0, 0, 0], 0)),
                source,
            })?;
            let listener =
                TcpListener::from_std(socket).map_err(|source| Error::Bind { address, source })?;
            info!(
                listener = %endpoint.kind, %address, proxy_protocol = endpoint.proxy.is_some(),
                "listening"
            );
            accept_loops.spawn(listener::accept_loop(
                listener,
                accepted,
                endpoint,
                stop_rx.clone(),
            ));
        }
        self.readiness.set(true);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(()) = hangup.recv() => reload_users(&self.shared.accounts),
            }
        }
        // Not ready from here on, so balancers send new clients elsewhere while the
        // sessions here drain.
        self.readiness.set(false);
        let sessions = self.shared.admission.sessions();
        info!(
            connections = sessions.len(),
            "shutting down: no longer accepting"
        );
        // Send errors only mean every accept loop is gone already.
        let _ = stop_tx.send(true);
        while accept_loops.join_next().await.is_some() {}
        shutdown::drain(sessions, &self.shutdown).await;
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
