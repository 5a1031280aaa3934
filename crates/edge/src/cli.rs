//! The `xmpp-edge` command line: run the server, check a configuration, manage accounts.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use session::jid::JidPattern;
use session::sasl::DEFAULT_ITERATIONS;
use tracing_subscriber::EnvFilter;

use crate::config::{Config, ProxyProtocol};
use crate::users::{StoredUser, UsersFile, normalize_jid, split_jid};
use crate::{Server, shutdown, tls};

/// Most accounts `user add-range` creates in one go.
const MAX_RANGE: u64 = 1_000_000;

/// XMPP edge responder: answers XEP-0279 Server IP Check, disco and ping from socket
/// metadata.
#[derive(Debug, Parser)]
#[command(name = "xmpp-edge", version)]
pub struct Cli {
    /// Configuration file (TOML). Without it the embedded defaults are used: domain
    /// `localhost`, a self-signed certificate, accounts in ./users.toml.
    #[arg(long, short, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default). SIGHUP reloads the users file; SIGTERM or SIGINT
    /// shut down gracefully.
    Run,
    /// Validate a configuration file (including certificate, key and users file) without
    /// starting; exits 0 when it is usable.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
    /// Manage accounts in the users file.
    User {
        /// The users file (default: `users_file` from the configuration).
        #[arg(long, global = true, value_name = "FILE")]
        users: Option<PathBuf>,
        #[command(subcommand)]
        action: UserAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Add an account or change its password. The password is read from standard input:
    /// prompted for without echo on a terminal, otherwise the first line.
    Add {
        /// Bare JID, e.g. alice@localhost.
        jid: String,
        /// Read the password as one line from standard input, without prompting.
        #[arg(long)]
        password_stdin: bool,
        /// PBKDF2 iteration count.
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
    /// Remove an account.
    Remove {
        /// Bare JID.
        jid: String,
    },
    /// List the accounts.
    List,
    /// Add many test accounts for load generation, sharing one password and one salt (so
    /// a SCRAM client that caches salted passwords derives it once, not per account); use
    /// `add` for real accounts.
    AddRange {
        /// JID pattern with one `%d`, replaced by each number: `user%d@localhost`.
        pattern: String,
        /// First number.
        #[arg(long)]
        from: u64,
        /// Last number (inclusive).
        #[arg(long)]
        to: u64,
        /// Read the password as one line from standard input, without prompting.
        #[arg(long)]
        password_stdin: bool,
        /// PBKDF2 iteration count.
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
    },
}

/// Runs the parsed command line; the exit code is 0 on success and 1 on any error, which
/// is printed to standard error.
pub fn execute(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None | Some(Command::Run) => run_server(cli.config.as_deref()),
        Some(Command::CheckConfig { file }) => check_config(&file),
        Some(Command::User { users, action }) => user(cli.config.as_deref(), users, action),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xmpp-edge: {message}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(path) => Config::load(path).map_err(|e| e.to_string()),
        None => Ok(Config::embedded()),
    }
}

fn run_server(config_path: Option<&Path>) -> Result<(), String> {
    let config = load_config(config_path)?;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.log.filter));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime =
        tokio::runtime::Runtime::new().map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async {
        let termination =
            shutdown::termination().map_err(|e| format!("cannot handle signals: {e}"))?;
        let server = Server::bind(config).map_err(|e| e.to_string())?;
        server.serve(termination).await.map_err(|e| e.to_string())
    })
}

fn check_config(file: &Path) -> Result<(), String> {
    let config = Config::load(file).map_err(|e| e.to_string())?;
    tls::acceptors(&config.tls, &config.domains)
        .map_err(|e| format!("{}: TLS: {e}", file.display()))?;
    let users = UsersFile::load(&config.users_file).map_err(|e| e.to_string())?;
    let accounts = match users {
        Some(users) => format!("{} accounts", users.users.len()),
        None => format!(
            "users file {} does not exist yet",
            config.users_file.display()
        ),
    };
    let listeners: Vec<String> = config
        .listeners
        .iter()
        .map(|l| match l.proxy_protocol {
            ProxyProtocol::Off => format!("{} {}", l.kind, l.address),
            ProxyProtocol::Required => format!(
                "{} {} (PROXY protocol from {})",
                l.kind,
                l.address,
                l.proxy_trusted.join(" ")
            ),
        })
        .collect();
    println!(
        "{}: OK (domains {}; listeners {}; {}; {})",
        file.display(),
        config.domains.join(", "),
        listeners.join(", "),
        if config.tls.cert.is_some() {
            "certificate loaded"
        } else {
            "self-signed certificate"
        },
        accounts,
    );
    Ok(())
}

fn user(
    config_path: Option<&Path>,
    users: Option<PathBuf>,
    action: UserAction,
) -> Result<(), String> {
    let config = load_config(config_path)?;
    let path = users.unwrap_or_else(|| config.users_file.clone());
    let mut file = UsersFile::load(&path)
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    match action {
        UserAction::Add {
            jid,
            password_stdin,
            iterations,
        } => {
            let jid = checked_jid(&jid, &config.domains)?;
            let password = read_password(password_stdin)?;
            let user =
                StoredUser::from_password(&password, iterations).map_err(|e| e.to_string())?;
            let verb = if file.users.insert(jid.clone(), user).is_some() {
                "updated"
            } else {
                "added"
            };
            file.save(&path).map_err(|e| e.to_string())?;
            eprintln!("{verb} {jid} in {}", path.display());
        }
        UserAction::Remove { jid } => {
            let jid = normalize_jid(&jid)?;
            if file.users.remove(&jid).is_none() {
                return Err(format!("no account {jid} in {}", path.display()));
            }
            file.save(&path).map_err(|e| e.to_string())?;
            eprintln!("removed {jid} from {}", path.display());
        }
        UserAction::List => {
            let mut out = std::io::stdout().lock();
            for jid in file.users.keys() {
                writeln!(out, "{jid}").map_err(|e| e.to_string())?;
            }
        }
        UserAction::AddRange {
            pattern,
            from,
            to,
            password_stdin,
            iterations,
        } => {
            let jids = range_jids(&pattern, from, to)?;
            if let Some(first) = jids.first() {
                checked_jid(first, &config.domains)?;
            }
            let password = read_password(password_stdin)?;
            let users = derive_many(&jids, &password, iterations)?;
            let count = users.len();
            file.users.extend(users);
            file.save(&path).map_err(|e| e.to_string())?;
            eprintln!("added {count} accounts to {}", path.display());
        }
    }
    Ok(())
}

/// Normalises `jid`, warning when its domain is not served.
fn checked_jid(jid: &str, domains: &[String]) -> Result<String, String> {
    let (_, domain) = split_jid(jid).map_err(|e| format!("{jid:?}: {e}"))?;
    if !domains.contains(&domain) {
        eprintln!(
            "warning: {domain} is not one of the served domains ({})",
            domains.join(", ")
        );
    }
    normalize_jid(jid)
}

fn range_jids(pattern: &str, from: u64, to: u64) -> Result<Vec<String>, String> {
    let numbered = JidPattern::parse(pattern)
        .map_err(|_| format!("pattern {pattern:?} must contain exactly one %d"))?;
    if from > to || to - from >= MAX_RANGE {
        return Err(format!(
            "--from must not exceed --to, and at most {MAX_RANGE} accounts at once"
        ));
    }
    (from..=to)
        .map(|n| normalize_jid(&numbered.jid(n)))
        .collect()
}

/// Credentials for `jids`, all derived once: the accounts share the password anyway, and
/// sharing the salt too means one PBKDF2 run here for any number of accounts, and one per
/// run in a SCRAM client that caches salted passwords (loadgen), instead of one per login.
fn derive_many(
    jids: &[String],
    password: &str,
    iterations: u32,
) -> Result<Vec<(String, StoredUser)>, String> {
    let user = StoredUser::from_password(password, iterations).map_err(|e| e.to_string())?;
    Ok(jids.iter().map(|jid| (jid.clone(), user.clone())).collect())
}

/// Reads the password: prompted for without echo when standard input is a terminal
/// (unless `--password-stdin`), otherwise the first line of standard input.
fn read_password(from_stdin: bool) -> Result<String, String> {
    let stdin = std::io::stdin();
    let line = if !from_stdin && stdin.is_terminal() {
        let first = prompt_hidden("Password: ")?;
        let second = prompt_hidden("Repeat password: ")?;
        if first != second {
            return Err("the passwords do not match".to_owned());
        }
        first
    } else {
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| format!("cannot read the password: {e}"))?;
        line
    };
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err("empty password".to_owned());
    }
    Ok(password.to_owned())
}

/// Reads one line from the terminal with echo turned off.
fn prompt_hidden(prompt: &str) -> Result<String, String> {
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    let saved = tcgetattr(&stdin).map_err(|e| format!("cannot configure the terminal: {e}"))?;
    let mut silent = saved.clone();
    silent.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &silent)
        .map_err(|e| format!("cannot configure the terminal: {e}"))?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let restored = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    read.map_err(|e| format!("cannot read the password: {e}"))?;
    restored.map_err(|e| format!("cannot restore the terminal: {e}"))?;
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(
            range_jids("u%d@LocalHost", 1, 3).unwrap(),
            ["u1@localhost", "u2@localhost", "u3@localhost"]
        );
        assert!(range_jids("u@localhost", 1, 3).is_err());
        assert!(range_jids("u%d@localhost", 3, 1).is_err());
    }

    #[test]
    fn derives_in_parallel() {
        let jids: Vec<String> = (0..5).map(|n| format!("u{n}@localhost")).collect();
        let users = derive_many(&jids, "pw", 2).unwrap();
        assert_eq!(users.len(), 5);
        assert_eq!(users[4].0, "u4@localhost");
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "xmpp-edge",
            "user",
            "add",
            "a@localhost",
            "--users",
            "u.toml",
            "--password-stdin",
        ]);
        assert!(matches!(
            cli.command,
            Some(Command::User {
                users: Some(_),
                action: UserAction::Add { .. }
            })
        ));
    }
}
