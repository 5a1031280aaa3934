//! The TOML configuration file: schema, embedded defaults and validation.
//!
//! Every setting has a safe default so the server runs without a file. Unknown keys are
//! rejected (`deny_unknown_fields`) so a typo fails loudly instead of silently keeping a
//! default; parse errors name the file, the line and the key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proxy_protocol::{CidrError, TrustedSources};
use serde::{Deserialize, Deserializer};

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// XMPP domains served; clients must address one of them.
    pub domains: Vec<String>,
    /// The accounts file managed by `xmpp-edge user ...`; relative paths are taken from
    /// the configuration file's directory.
    pub users_file: PathBuf,
    pub tls: TlsConfig,
    pub listeners: Vec<ListenerConfig>,
    pub limits: LimitsConfig,
    pub shutdown: ShutdownConfig,
    pub log: LogConfig,
    pub admin: AdminConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            domains: vec!["localhost".to_owned()],
            users_file: PathBuf::from("users.toml"),
            tls: TlsConfig::default(),
            listeners: vec![
                ListenerConfig::new(ListenerKind::Starttls, ([127, 0, 0, 1], 5222).into()),
                ListenerConfig::new(ListenerKind::DirectTls, ([127, 0, 0, 1], 5223).into()),
            ],
            limits: LimitsConfig::default(),
            shutdown: ShutdownConfig::default(),
            log: LogConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// Certificate and key; both omitted means a self-signed certificate made at start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

/// How a listener's connections start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// Plain TCP upgraded with STARTTLS (RFC 6120, port 5222).
    Starttls,
    /// TLS from the first byte (XEP-0368, port 5223), ALPN `xmpp-client`.
    DirectTls,
}

impl From<ListenerKind> for session::ListenerKind {
    fn from(kind: ListenerKind) -> Self {
        match kind {
            ListenerKind::Starttls => session::ListenerKind::Starttls,
            ListenerKind::DirectTls => session::ListenerKind::DirectTls,
        }
    }
}

impl fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Starttls => "starttls",
            Self::DirectTls => "direct_tls",
        })
    }
}

/// One listening address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub kind: ListenerKind,
    /// `IP:PORT`; IPv6 in brackets (`[::1]:5222`). Port 0 picks a free port.
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddr,
    /// Pending-connection queue length passed to listen(2).
    #[serde(default = "default_backlog")]
    pub backlog: u32,
    /// 0: one socket and one accept loop. N > 0: N sockets bound with SO_REUSEPORT, each
    /// with its own accept loop, so the kernel spreads accepts over them.
    #[serde(default)]
    pub reuse_port_workers: u32,
    /// Whether connections start with a PROXY protocol header from a load balancer.
    #[serde(default)]
    pub proxy_protocol: ProxyProtocol,
    /// CIDR blocks of the balancers allowed to connect when `proxy_protocol` is
    /// `required`: a header from anyone else would let a client choose the address SIC
    /// reports, so other peers are closed before anything is read.
    #[serde(default = "default_proxy_trusted")]
    pub proxy_trusted: Vec<String>,
    /// How long a connection may take to send its complete PROXY header.
    #[serde(
        default = "default_proxy_header_timeout",
        deserialize_with = "duration"
    )]
    pub proxy_header_timeout: Duration,
}

/// Whether a listener expects a PROXY protocol header (v1 or v2) first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    /// Clients connect directly; the socket's peer is the client.
    #[default]
    Off,
    /// Every connection comes from a trusted balancer and starts with a header.
    Required,
}

impl ListenerConfig {
    /// A listener with default backlog and a single accept loop.
    pub fn new(kind: ListenerKind, address: SocketAddr) -> Self {
        Self {
            kind,
            address,
            backlog: default_backlog(),
            reuse_port_workers: 0,
            proxy_protocol: ProxyProtocol::Off,
            proxy_trusted: default_proxy_trusted(),
            proxy_header_timeout: default_proxy_header_timeout(),
        }
    }

    /// The parsed `proxy_trusted` blocks.
    pub fn trusted_sources(&self) -> Result<TrustedSources, CidrError> {
        TrustedSources::parse(&self.proxy_trusted)
    }
}

fn default_backlog() -> u32 {
    4096
}

/// Loopback only: a balancer on the same host.
fn default_proxy_trusted() -> Vec<String> {
    TrustedSources::loopback()
        .blocks()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn default_proxy_header_timeout() -> Duration {
    Duration::from_secs(3)
}

/// Resource limits; each one is counted and logged when it triggers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections in total; 0 derives it from RLIMIT_NOFILE (soft limit minus headroom).
    pub max_connections: u64,
    /// Connections from one client address.
    pub max_connections_per_ip: u32,
    /// From accept (or `<proceed/>`) to a finished TLS handshake.
    #[serde(deserialize_with = "duration")]
    pub tls_handshake_timeout: Duration,
    /// From connect to a bound resource (SASL and bind included).
    #[serde(deserialize_with = "duration")]
    pub negotiation_timeout: Duration,
    /// No bytes from the client for this long closes the stream.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// Largest stanza (and stream header) in bytes.
    pub max_stanza_bytes: usize,
    /// Sustained stanzas per second per session. A client over it is throttled (its
    /// input waits, and the edge stops reading its socket until the budget refills), never
    /// disconnected.
    pub stanza_rate: f64,
    /// Stanzas allowed in a burst above the rate.
    pub stanza_burst: u32,
    /// Sustained bytes per second read from one session; over it, reading pauses.
    pub byte_rate: u64,
    /// Bytes read in a burst above the byte rate.
    pub byte_burst: u64,
    /// Unsent output held for a client that does not read before it is disconnected.
    pub max_unsent_output: usize,
    /// Failed SASL attempts before the stream is closed.
    pub max_auth_failures: u32,
    /// Failed SASL attempts per client address (IPv6: per /64) in each
    /// `auth_failure_window` that are answered at once.
    pub auth_failures_free: u32,
    /// How fast an address's failures are forgotten: `auth_failures_free` per window.
    #[serde(deserialize_with = "duration")]
    pub auth_failure_window: Duration,
    /// The wait before answering the first failure past the free ones; it doubles with
    /// each further failure.
    #[serde(deserialize_with = "duration")]
    pub auth_failure_delay: Duration,
    /// The longest such wait.
    #[serde(deserialize_with = "duration")]
    pub auth_failure_delay_max: Duration,
    /// Client addresses whose failures are remembered at most (memory bound).
    pub auth_failure_addresses: usize,
    /// Threads that run PLAIN password checks (PBKDF2) at once; 0 is one per core. The
    /// CPU a flood of PLAIN attempts can take is bounded by this.
    pub password_check_threads: usize,
}

impl LimitsConfig {
    pub fn auth_failure_policy(&self) -> crate::auth_failures::AuthFailurePolicy {
        crate::auth_failures::AuthFailurePolicy {
            free: self.auth_failures_free,
            window: self.auth_failure_window,
            delay: self.auth_failure_delay,
            max_delay: self.auth_failure_delay_max,
            max_addresses: self.auth_failure_addresses,
        }
    }

    /// `password_check_threads`, with 0 resolved to the number of cores.
    pub fn password_check_threads(&self) -> usize {
        match self.password_check_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let session = session::Config::default();
        Self {
            max_connections: 0,
            max_connections_per_ip: 64,
            tls_handshake_timeout: Duration::from_secs(10),
            negotiation_timeout: session.negotiation_timeout,
            idle_timeout: session.idle_timeout,
            max_stanza_bytes: session.stanza_limits.max_stanza_bytes,
            stanza_rate: session.stanza_rate,
            stanza_burst: session.stanza_burst,
            byte_rate: session.byte_rate,
            byte_burst: session.byte_burst,
            max_unsent_output: session.max_unsent_output,
            max_auth_failures: session.max_auth_failures,
            auth_failures_free: 5,
            auth_failure_window: Duration::from_secs(60),
            auth_failure_delay: Duration::from_millis(250),
            auth_failure_delay_max: Duration::from_secs(10),
            auth_failure_addresses: 65_536,
            password_check_threads: 0,
        }
    }
}

/// Graceful shutdown on SIGTERM/SIGINT.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// How long sessions may keep running after the listeners close before they are
    /// told `<system-shutdown/>`.
    #[serde(deserialize_with = "duration")]
    pub grace_period: Duration,
    /// How long after `<system-shutdown/>` remaining connections are closed by force.
    #[serde(deserialize_with = "duration")]
    pub force_after: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(10),
            force_after: Duration::from_secs(5),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            filter: "info".to_owned(),
        }
    }
}

/// The admin HTTP endpoint: `/metrics`, `/healthz` and `/readyz`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// `IP:PORT`. Loopback by default: metrics are for the local Prometheus, not the world.
    #[serde(deserialize_with = "socket_addr")]
    pub address: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            address: ([127, 0, 0, 1], 9145).into(),
        }
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{origin}: invalid configuration: {message}")]
    Invalid { origin: String, message: String },
}

impl Config {
    /// Reads, parses and validates `path`; relative paths inside are resolved against the
    /// file's directory so the server behaves the same from any working directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        config.validate().map_err(|message| ConfigError::Invalid {
            origin: path.display().to_string(),
            message,
        })?;
        Ok(config)
    }

    /// The embedded defaults (validated like a file would be).
    pub fn embedded() -> Self {
        Self::default()
    }

    /// Parses TOML text without validating it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut config: Self =
            toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
        for domain in &mut config.domains {
            *domain = domain.to_ascii_lowercase();
        }
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.users_file);
        if let Some(cert) = &mut self.tls.cert {
            resolve(cert);
        }
        if let Some(key) = &mut self.tls.key {
            resolve(key);
        }
    }

    /// Checks the values that the types alone do not constrain; the message lists every
    /// problem found.
    pub fn validate(&self) -> Result<(), String> {
        let mut problems = Vec::new();
        if self.domains.is_empty() {
            problems.push("`domains` must list at least one domain".to_owned());
        }
        for domain in &self.domains {
            if domain.is_empty() || domain.contains(['@', '/', ' ']) || domain.len() > 1023 {
                problems.push(format!("`domains`: {domain:?} is not a valid domain"));
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            problems.push("`tls.cert` and `tls.key` must be given together (or both omitted for a self-signed certificate)".to_owned());
        }
        if self.listeners.is_empty() {
            problems.push("at least one `[[listeners]]` entry is required".to_owned());
        }
        for (i, listener) in self.listeners.iter().enumerate() {
            if !(1..=65535).contains(&listener.backlog) {
                problems.push(format!(
                    "`listeners[{i}].backlog` must be between 1 and 65535"
                ));
            }
            if listener.reuse_port_workers > 256 {
                problems.push(format!(
                    "`listeners[{i}].reuse_port_workers` must be at most 256"
                ));
            }
            match listener.trusted_sources() {
                Err(e) => problems.push(format!("`listeners[{i}].proxy_trusted`: {e}")),
                Ok(trusted)
                    if trusted.blocks().is_empty()
                        && listener.proxy_protocol == ProxyProtocol::Required =>
                {
                    problems.push(format!(
                        "`listeners[{i}].proxy_trusted` is empty: with `proxy_protocol = \"required\"` every connection would be refused"
                    ));
                }
                Ok(_) => {}
            }
            let timeout = listener.proxy_header_timeout;
            if timeout.is_zero() || timeout > Duration::from_secs(600) {
                problems.push(format!(
                    "`listeners[{i}].proxy_header_timeout` must be between 1ms and 10m"
                ));
            }
            let clash = self.listeners[..i]
                .iter()
                .any(|other| other.address == listener.address && listener.address.port() != 0);
            if clash {
                problems.push(format!(
                    "`listeners[{i}].address` {} is listed twice",
                    listener.address
                ));
            }
        }
        if self.admin.enabled
            && self.admin.address.port() != 0
            && self
                .listeners
                .iter()
                .any(|listener| listener.address == self.admin.address)
        {
            problems.push(format!(
                "`admin.address` {} is also an XMPP listener",
                self.admin.address
            ));
        }
        let l = &self.limits;
        if l.max_connections_per_ip == 0 {
            problems.push("`limits.max_connections_per_ip` must be at least 1".to_owned());
        }
        for (name, value) in [
            ("tls_handshake_timeout", l.tls_handshake_timeout),
            ("negotiation_timeout", l.negotiation_timeout),
            ("idle_timeout", l.idle_timeout),
            ("auth_failure_window", l.auth_failure_window),
            ("auth_failure_delay_max", l.auth_failure_delay_max),
        ] {
            if value.is_zero() || value > Duration::from_secs(7 * 24 * 3600) {
                problems.push(format!("`limits.{name}` must be between 1ms and 7 days"));
            }
        }
        if !(1024..=16 * 1024 * 1024).contains(&l.max_stanza_bytes) {
            problems.push("`limits.max_stanza_bytes` must be between 1024 and 16777216".to_owned());
        }
        if !(l.stanza_rate.is_finite() && l.stanza_rate > 0.0) {
            problems.push("`limits.stanza_rate` must be a positive number".to_owned());
        }
        if l.stanza_burst == 0 {
            problems.push("`limits.stanza_burst` must be at least 1".to_owned());
        }
        if l.auth_failure_addresses == 0 {
            problems.push("`limits.auth_failure_addresses` must be at least 1".to_owned());
        }
        if l.auth_failure_delay > l.auth_failure_delay_max {
            problems.push(
                "`limits.auth_failure_delay` must not exceed `limits.auth_failure_delay_max`"
                    .to_owned(),
            );
        }
        if l.byte_rate == 0 {
            problems.push("`limits.byte_rate` must be at least 1".to_owned());
        }
        if l.byte_burst < 4096 {
            problems.push("`limits.byte_burst` must be at least 4096 (one read)".to_owned());
        }
        if !(4096..=1 << 30).contains(&l.max_unsent_output) {
            problems
                .push("`limits.max_unsent_output` must be between 4096 and 1073741824".to_owned());
        }
        if l.max_auth_failures == 0 {
            problems.push("`limits.max_auth_failures` must be at least 1".to_owned());
        }
        let s = &self.shutdown;
        if s.grace_period > Duration::from_secs(3600) {
            problems.push("`shutdown.grace_period` must be at most 1h".to_owned());
        }
        if s.force_after.is_zero() || s.force_after > Duration::from_secs(3600) {
            problems.push("`shutdown.force_after` must be between 1ms and 1h".to_owned());
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            problems.push(format!("`log.filter` {:?}: {e}", self.log.filter));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// The protocol settings handed to every session.
    pub fn session_config(&self) -> session::Config {
        let l = &self.limits;
        let defaults = session::Config::default();
        session::Config {
            domains: self.domains.clone(),
            require_tls: true,
            tls_available: true,
            stanza_limits: stanza::TokenizerLimits {
                max_stanza_bytes: l.max_stanza_bytes,
                ..defaults.stanza_limits
            },
            max_auth_failures: l.max_auth_failures,
            negotiation_timeout: l.negotiation_timeout,
            idle_timeout: l.idle_timeout,
            stanza_rate: l.stanza_rate,
            stanza_burst: l.stanza_burst,
            max_unsent_output: l.max_unsent_output,
            byte_rate: l.byte_rate,
            byte_burst: l.byte_burst,
            ..defaults
        }
    }
}

fn socket_addr<'de, D: Deserializer<'de>>(de: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(de)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid address {text:?}: expected IP:PORT such as \"127.0.0.1:5222\" or \"[::1]:5222\""
        ))
    })
}

fn duration<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(de)?;
    parse_duration(&text).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "invalid duration {text:?}: expected a number with a unit: \"500ms\", \"10s\", \"5m\" or \"1h\""
        ))
    })
}

/// Parses `<number><unit>` with unit `ms`, `s`, `m` or `h`; the number may have a fraction.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 0.001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return None,
    };
    Duration::try_from_secs_f64(number * scale).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5m"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("10"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("3 days"), None);
    }

    #[test]
    fn defaults_are_valid() {
        Config::embedded().validate().unwrap();
    }

    #[test]
    fn empty_file_is_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.domains, ["localhost"]);
        assert_eq!(config.listeners.len(), 2);
    }

    #[test]
    fn unknown_key_is_named_with_line() {
        let err =
            Config::parse("domains = [\"a.example\"]\n[limits]\nmax_conections = 5\n").unwrap_err();
        assert!(err.contains("max_conections"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn listener_addresses() {
        let config = Config::parse(
            "[[listeners]]\nkind = \"direct_tls\"\naddress = \"[::1]:5223\"\nreuse_port_workers = 2\n",
        )
        .unwrap();
        assert_eq!(config.listeners[0].address, "[::1]:5223".parse().unwrap());
        assert_eq!(config.listeners[0].backlog, 4096);
        let err =
            Config::parse("[[listeners]]\nkind = \"starttls\"\naddress = \"localhost:5222\"\n")
                .unwrap_err();
        assert!(err.contains("invalid address"), "{err}");
    }

    #[test]
    fn admin_section() {
        let config = Config::parse("[admin]\naddress = \"[::1]:9100\"\nenabled = false\n").unwrap();
        assert!(!config.admin.enabled);
        assert_eq!(config.admin.address, "[::1]:9100".parse().unwrap());
        let mut clash = Config::embedded();
        clash.admin.address = clash.listeners[0].address;
        let err = clash.validate().unwrap_err();
        assert!(err.contains("admin.address"), "{err}");
        clash.admin.enabled = false;
        clash.validate().unwrap();
    }

    #[test]
    fn proxy_listener_settings() {
        let config = Config::parse(
            "[[listeners]]\nkind = \"direct_tls\"\naddress = \"127.0.0.1:0\"\n\
             proxy_protocol = \"required\"\nproxy_trusted = [\"10.0.0.0/8\", \"fd00::/8\"]\n\
             proxy_header_timeout = \"500ms\"\n",
        )
        .unwrap();
        let listener = &config.listeners[0];
        assert_eq!(listener.proxy_protocol, ProxyProtocol::Required);
        assert_eq!(listener.proxy_header_timeout, Duration::from_millis(500));
        assert!(
            listener
                .trusted_sources()
                .unwrap()
                .contains("10.1.2.3".parse().unwrap())
        );
        config.validate().unwrap();

        let defaults = ListenerConfig::new(ListenerKind::Starttls, "127.0.0.1:0".parse().unwrap());
        assert_eq!(defaults.proxy_protocol, ProxyProtocol::Off);
        assert_eq!(
            defaults.trusted_sources().unwrap(),
            TrustedSources::loopback()
        );

        let err = Config::parse(
            "[[listeners]]\nkind = \"starttls\"\naddress = \"127.0.0.1:0\"\nproxy_protocol = \"maybe\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("proxy_protocol") || err.contains("maybe"),
            "{err}"
        );
    }

    #[test]
    fn bad_proxy_settings_name_listener_and_value() {
        let mut config = Config::embedded();
        config.listeners[1].proxy_protocol = ProxyProtocol::Required;
        config.listeners[1].proxy_trusted = vec!["127.0.0.0/8".to_owned(), "10.0.0.1/8".to_owned()];
        config.listeners[1].proxy_header_timeout = Duration::ZERO;
        let err = config.validate().unwrap_err();
        assert!(
            err.contains("`listeners[1].proxy_trusted`") && err.contains("\"10.0.0.1/8\""),
            "{err}"
        );
        assert!(err.contains("`listeners[1].proxy_header_timeout`"), "{err}");

        config.listeners[1].proxy_trusted.clear();
        config.listeners[1].proxy_header_timeout = Duration::from_secs(3);
        let err = config.validate().unwrap_err();
        assert!(
            err.contains("`listeners[1].proxy_trusted` is empty"),
            "{err}"
        );
    }

    #[test]
    fn validation_lists_problems() {
        let mut config = Config::embedded();
        config.limits.max_connections_per_ip = 0;
        config.limits.stanza_rate = f64::NAN;
        let err = config.validate().unwrap_err();
        assert!(
            err.contains("max_connections_per_ip") && err.contains("stanza_rate"),
            "{err}"
        );
    }
}
