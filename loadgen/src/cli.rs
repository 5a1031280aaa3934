//! The command line: `loadgen [run] OPTIONS` and `loadgen merge FILE...`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Open-loop XMPP load generator: logs sessions in at a set rate, drives SIC, disco and ping
/// requests at a fixed total rate, checks every reply and reports latency percentiles
/// (corrected for coordinated omission) and its own CPU and memory cost.
#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a load test (the default when no subcommand is given).
    Run(Box<RunArgs>),
    /// Combine HdrHistogram interval logs (--hdr-log) of several loadgen processes into one
    /// report.
    Merge(MergeArgs),
    /// Draw latency by percentile from interval logs as an SVG chart; several logs (one per
    /// server, say) give one line each.
    Plot(PlotArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TlsArg {
    /// STARTTLS on a plain connection (port 5222).
    Starttls,
    /// TLS from the first byte, ALPN xmpp-client (port 5223).
    Direct,
    /// No TLS (only for servers that allow it).
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyArg {
    /// The text header (`PROXY TCP4 ...`), as HAProxy's `send-proxy`.
    V1,
    /// The binary header, as HAProxy's `send-proxy-v2` and cloud load balancers.
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslArg {
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-1")]
    ScramSha1,
    /// SCRAM-SHA-256 with tls-exporter channel binding (TLS 1.3).
    #[value(name = "scram-sha-256-plus")]
    ScramSha256Plus,
    #[value(name = "scram-sha-1-plus")]
    ScramSha1Plus,
    Plain,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Server host name or address.
    #[arg(long, default_value = "127.0.0.1", help_heading = "Target")]
    pub host: String,
    /// Server port [default: 5223 with --tls direct, else 5222].
    #[arg(long, help_heading = "Target")]
    pub port: Option<u16>,
    /// XMPP domain (stream `to`, TLS name) [default: the accounts' domain].
    #[arg(long, help_heading = "Target")]
    pub domain: Option<String>,
    /// How the connection is secured.
    #[arg(long, value_enum, default_value = "starttls", help_heading = "Target")]
    pub tls: TlsArg,
    /// Do not verify the server certificate (self-signed test servers).
    #[arg(long, alias = "no-verify", help_heading = "Target")]
    pub insecure: bool,
    /// PEM file of CA certificates to trust instead of the system store.
    #[arg(long, value_name = "FILE", help_heading = "Target")]
    pub ca_file: Option<PathBuf>,
    /// Resume TLS sessions across connections (by default every login is a full handshake).
    #[arg(long, help_heading = "Target")]
    pub tls_resume: bool,
    /// SASL mechanism.
    #[arg(
        long,
        value_enum,
        default_value = "scram-sha-256",
        help_heading = "Target"
    )]
    pub sasl: SaslArg,
    /// Start every connection with a PROXY protocol header, as a load balancer would, for
    /// a server listener that requires one; SIC answers must then report the header's
    /// synthetic client address and port, not the socket's.
    #[arg(long, value_enum, value_name = "VERSION", help_heading = "Target")]
    pub proxy: Option<ProxyArg>,
    /// Synthetic client addresses for --proxy: CIDR blocks, addresses or first-last
    /// ranges, comma-separated. Sessions take the blocks in turn.
    #[arg(
        long,
        value_name = "RANGES",
        default_value = "198.51.100.0/24,2001:db8::/64",
        requires = "proxy",
        help_heading = "Target"
    )]
    pub proxy_sources: String,
    /// Synthetic client ports for --proxy, first-last; they change with every session.
    #[arg(
        long,
        value_name = "FIRST-LAST",
        default_value = "1024-65535",
        requires = "proxy",
        help_heading = "Target"
    )]
    pub proxy_ports: String,

    /// Account JID pattern; %d is replaced by numbers from --from to --to.
    #[arg(
        long,
        value_name = "PATTERN",
        default_value = "user%d@localhost",
        help_heading = "Accounts"
    )]
    pub users: String,
    /// First account number.
    #[arg(long, default_value_t = 1, help_heading = "Accounts")]
    pub from: u64,
    /// Last account number [default: enough for one account per session].
    #[arg(long, help_heading = "Accounts")]
    pub to: Option<u64>,
    /// The accounts' password (visible in the process list: prefer --password-file).
    #[arg(long, help_heading = "Accounts")]
    pub password: Option<String>,
    /// Read the password from the first line of FILE.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "password",
        help_heading = "Accounts"
    )]
    pub password_file: Option<PathBuf>,
    /// Read the password from the first line of standard input.
    #[arg(long, conflicts_with_all = ["password", "password_file"], help_heading = "Accounts")]
    pub password_stdin: bool,
    /// Accounts from FILE instead of a pattern: one `user@domain password` per line.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["password", "password_file", "password_stdin"], help_heading = "Accounts")]
    pub accounts: Option<PathBuf>,

    /// Sessions to log in and keep.
    #[arg(long, default_value_t = 100, help_heading = "Load")]
    pub sessions: u64,
    /// Logins started per second.
    #[arg(long, default_value_t = 500.0, help_heading = "Load")]
    pub setup_rate: f64,
    /// Most logins in progress at once.
    #[arg(long, default_value_t = 256, help_heading = "Load")]
    pub concurrency: usize,
    /// Keep the sessions idle this long after the ramp, before requests start.
    #[arg(long, value_parser = parse_duration, default_value = "0s", help_heading = "Load")]
    pub hold: Duration,
    /// Requests per second, all sessions together (0: log in, hold and close only).
    #[arg(long, default_value_t = 1000.0, help_heading = "Load")]
    pub rate: f64,
    /// How long to send requests.
    #[arg(long, value_parser = parse_duration, default_value = "10s", help_heading = "Load")]
    pub duration: Duration,
    /// Request kinds and weights: sic0-ip, sic0-address, sic1-address, disco-info, ping.
    #[arg(
        long,
        default_value = "sic0-ip=1,sic0-address=1,sic1-address=1,disco-info=1,ping=1",
        help_heading = "Load"
    )]
    pub mix: String,
    /// Most requests in flight on one session.
    #[arg(long, default_value_t = 1, help_heading = "Load")]
    pub pipeline: usize,
    /// How long a login step or a request may wait for the server.
    #[arg(long, value_parser = parse_duration, default_value = "10s", help_heading = "Load")]
    pub timeout: Duration,
    /// Event-loop threads [default: number of CPUs].
    #[arg(long, help_heading = "Load")]
    pub threads: Option<usize>,
    /// Source addresses to spread connections over, e.g. 127.0.0.2-127.0.0.254 (each
    /// address has its own 64k ports).
    #[arg(long, value_name = "RANGES", help_heading = "Load")]
    pub local_ips: Option<String>,

    /// Find the highest request rate whose p99 latency stays within --slo-p99, starting at
    /// --rate and multiplying by --step-factor each --duration step.
    #[arg(long, help_heading = "Saturation")]
    pub saturate: bool,
    /// Latency bound for --saturate.
    #[arg(long, value_parser = parse_duration, default_value = "10ms", help_heading = "Saturation")]
    pub slo_p99: Duration,
    /// Rate multiplier between --saturate steps.
    #[arg(long, default_value_t = 1.5, help_heading = "Saturation")]
    pub step_factor: f64,
    /// Highest rate --saturate tries.
    #[arg(long, default_value_t = 1_000_000.0, help_heading = "Saturation")]
    pub max_rate: f64,
    /// Bisection steps between the last passing and the first failing rate.
    #[arg(long, default_value_t = 2, help_heading = "Saturation")]
    pub refine: u32,

    /// Fail (exit 1) when errors exceed this fraction of logins plus requests.
    #[arg(long, default_value_t = 0.0, help_heading = "Output")]
    pub max_error_ratio: f64,
    /// Print the summary as JSON on standard output (the table goes to standard error).
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Write HdrHistogram interval logs (format 1.3) to FILE.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub hdr_log: Option<PathBuf>,
    /// Length of one measurement interval (log lines and progress).
    #[arg(long, value_parser = parse_duration, default_value = "1s", help_heading = "Output")]
    pub interval: Duration,
    /// Print a progress line every interval on standard error.
    #[arg(long, help_heading = "Output")]
    pub progress: bool,
}

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// Interval logs written with --hdr-log.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the combined intervals as one interval log.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct PlotArgs {
    /// Interval logs written with --hdr-log (or by `loadgen merge --output`).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Metrics to draw (connect, login, sic1-address, requests, ...).
    #[arg(long = "tag", value_name = "TAG", default_value = "requests")]
    pub tags: Vec<String>,
    /// The SVG file to write.
    #[arg(long, short, value_name = "FILE", default_value = "latency.svg")]
    pub output: PathBuf,
}

/// `1.5s`, `250ms`, `2m`, `100us`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 10s, 250ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "ns" => value / 1e9,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ns, us, ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{text:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("100us"), Ok(Duration::from_micros(100)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn run_is_the_default_subcommand() {
        let cli = Cli::try_parse_from(["loadgen", "--sessions", "5", "--tls", "none"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.sessions, 5);
        assert_eq!(cli.run.tls, TlsArg::None);
        let cli = Cli::try_parse_from(["loadgen", "run", "--rate", "7"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Run(ref args)) if args.rate == 7.0));
        let cli = Cli::try_parse_from(["loadgen", "merge", "a.hlog", "b.hlog"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Merge(ref args)) if args.files.len() == 2));
        assert!(Cli::try_parse_from(["loadgen", "merge"]).is_err());
    }

    #[test]
    fn proxy_ranges_need_proxy() {
        let cli = Cli::try_parse_from(["loadgen", "--proxy", "v2"]).unwrap();
        assert_eq!(cli.run.proxy, Some(ProxyArg::V2));
        assert_eq!(cli.run.proxy_ports, "1024-65535");
        let cli = Cli::try_parse_from(["loadgen"]).unwrap();
        assert_eq!(cli.run.proxy, None);
        assert!(Cli::try_parse_from(["loadgen", "--proxy-sources", "10.0.0.0/8"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
