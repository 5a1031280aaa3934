//! `loadgen`: an open-loop XMPP load generator. See `loadgen --help`.
//!
//! Exit status: 0 when the run passed, 1 when it failed (errors above
//! `--max-error-ratio`, no session logged in, no rate within the bound), 2 for bad usage.
#![forbid(unsafe_code)]

mod accounts;
mod cli;
mod client;
mod histo;
mod logs;
mod net;
mod plot;
mod progress;
mod proxy_plan;
mod records;
mod report;
mod run;
mod schedule;
mod sys;
mod tls;
mod worker;

use std::io::Read as _;
use std::process::ExitCode;

use clap::Parser as _;
use session::sasl::Mechanism;

use accounts::Accounts;
use cli::{Cli, Command, MergeArgs, PlotArgs, ProxyArg, RunArgs, SaslArg, TlsArg};
use client::{Mix, Profile, RequestKind, TlsMode};
use proxy_plan::{ProxyPlan, Sources};
use report::Target;
use run::{Options, SaturationOptions};
use tls::{TlsOptions, TlsSetup};
use worker::Plan;

/// File descriptors kept free for everything that is not a session.
const SPARE_FILES: u64 = 64;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Merge(args)) => merge(&args),
        Some(Command::Plot(args)) => draw_plot(&args),
        Some(Command::Run(args)) => load_test(*args),
        None => load_test(cli.run),
    }
}

fn load_test(args: RunArgs) -> ExitCode {
    let json = args.json;
    let (plan, options) = match options(args) {
        Ok(built) => built,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    let finished = match run::run(plan, options) {
        Ok(finished) => finished,
        Err(e) => {
            eprintln!("loadgen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = finished.summary.render(&finished.histos);
    if json {
        eprint!("{text}");
        match serde_json::to_string_pretty(&finished.summary) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("loadgen: cannot encode the summary: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        print!("{text}");
    }
    if finished.summary.pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Checks the arguments and turns them into a run.
fn options(args: RunArgs) -> Result<(Plan, Options), String> {
    if args.sessions == 0 {
        return Err("--sessions must be at least 1".into());
    }
    if !(args.setup_rate > 0.0 && args.setup_rate.is_finite()) {
        return Err("--setup-rate must be positive".into());
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err("--rate must be zero or positive".into());
    }
    if args.saturate && (args.rate <= 0.0 || args.step_factor <= 1.0) {
        return Err("--saturate needs a positive --rate and a --step-factor above 1".into());
    }
    if args.pipeline == 0 || args.concurrency == 0 {
        return Err("--pipeline and --concurrency must be at least 1".into());
    }
    if !(0.0..=1.0).contains(&args.max_error_ratio) {
        return Err("--max-error-ratio must be between 0 and 1".into());
    }
    if args.timeout.is_zero() || args.interval.as_millis() < 1 {
        return Err("--timeout must be positive and --interval at least 1ms".into());
    }
    if args.duration.is_zero() && args.rate > 0.0 {
        return Err("--duration must be positive".into());
    }
    let nofile_limit =
        host::raise_fd_limit().map_err(|e| format!("cannot raise the open-file limit: {e}"))?;
    if args.sessions + SPARE_FILES > nofile_limit {
        return Err(format!(
            "{} sessions need more open files than the limit of {nofile_limit}: raise the hard limit (ulimit -Hn)",
            args.sessions
        ));
    }
    let accounts = accounts(&args)?;
    let domain = match &args.domain {
        Some(domain) => domain.to_ascii_lowercase(),
        None => accounts.domain().map_err(|e| e.to_string())?,
    };
    if domain.is_empty()
        || !domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_:[]".contains(c))
    {
        return Err(format!("{domain:?} is not a domain loadgen can use"));
    }
    let tls_mode = match args.tls {
        TlsArg::Starttls => TlsMode::Starttls,
        TlsArg::Direct => TlsMode::Direct,
        TlsArg::None => TlsMode::None,
    };
    let port = args.port.unwrap_or(if tls_mode == TlsMode::Direct {
        5223
    } else {
        5222
    });
    let server =
        net::resolve(&args.host, port).map_err(|e| format!("cannot resolve {}: {e}", args.host))?;
    let tls = match tls_mode {
        TlsMode::None => None,
        _ => Some(
            TlsSetup::new(
                &TlsOptions {
                    verify: !args.insecure,
                    ca_file: args.ca_file.clone(),
                    alpn: tls_mode == TlsMode::Direct,
                    resume: args.tls_resume,
                },
                &domain,
            )
            .map_err(|e| e.to_string())?,
        ),
    };
    let mechanism = match args.sasl {
        SaslArg::ScramSha256 => Mechanism::ScramSha256,
        SaslArg::ScramSha1 => Mechanism::ScramSha1,
        SaslArg::ScramSha256Plus => Mechanism::ScramSha256Plus,
        SaslArg::ScramSha1Plus => Mechanism::ScramSha1Plus,
        SaslArg::Plain => Mechanism::Plain,
    };
    if mechanism.is_plus() && tls_mode == TlsMode::None {
        return Err(format!("{} needs TLS", mechanism.name()));
    }
    let mix = parse_mix(&args.mix)?;
    let proxy = match args.proxy {
        Some(version) => Some(ProxyPlan {
            version: match version {
                ProxyArg::V1 => proxy_plan::Version::V1,
                ProxyArg::V2 => proxy_plan::Version::V2,
            },
            sources: Sources::parse(&args.proxy_sources, &args.proxy_ports)
                .map_err(|e| format!("--proxy-sources/--proxy-ports: {e}"))?,
            destination: server,
        }),
        None => None,
    };
    let local_ips = match &args.local_ips {
        Some(spec) => net::parse_local_ips(spec).map_err(|e| format!("--local-ips: {e}"))?,
        None => Vec::new(),
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Every thread needs sessions to send its share of the requests.
    let threads = args
        .threads
        .unwrap_or(cpus)
        .clamp(1, args.sessions.min(1024) as usize);
    let target = Target {
        server: format!("{}:{port} ({server})", args.host),
        domain: domain.clone(),
        tls: format!("{tls_mode:?}").to_ascii_lowercase(),
        sasl: mechanism.name().to_owned(),
        proxy: proxy.as_ref().map(|p| {
            format!(
                "{} from {} ports {}",
                p.version.name(),
                args.proxy_sources,
                args.proxy_ports
            )
        }),
    };
    let timeout = args.timeout.as_nanos() as u64;
    let mut profile = Profile::new(domain, tls_mode, mechanism, timeout, args.pipeline);
    profile.proxy = proxy;
    let plan = Plan {
        profile,
        accounts,
        server,
        local_ips,
        tls,
        sessions: args.sessions,
        setup_rate: args.setup_rate,
        concurrency: args.concurrency,
        mix,
        interval: args.interval.as_nanos() as u64,
        threads,
    };
    let options = Options {
        hold: args.hold,
        rate: args.rate,
        duration: args.duration,
        saturation: args.saturate.then_some(SaturationOptions {
            slo_p99: args.slo_p99,
            step_factor: args.step_factor,
            max_rate: args.max_rate,
            refine: args.refine,
        }),
        max_error_ratio: args.max_error_ratio,
        hdr_log: args.hdr_log,
        progress: args.progress,
        nofile_limit,
        target,
    };
    Ok((plan, options))
}

fn accounts(args: &RunArgs) -> Result<Accounts, String> {
    if let Some(path) = &args.accounts {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return Accounts::parse_file(&path.display().to_string(), &text).map_err(|e| e.to_string());
    }
    let password = if let Some(password) = &args.password {
        password.clone()
    } else if let Some(path) = &args.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        first_line(&text)
    } else if args.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read the password from standard input: {e}"))?;
        first_line(&text)
    } else {
        return Err("the accounts need a password: --password, --password-file or --password-stdin (or --accounts FILE)".into());
    };
    if password.is_empty() {
        return Err("the password is empty".into());
    }
    let to = args.to.unwrap_or(args.from + args.sessions - 1);
    Accounts::pattern(&args.users, args.from, to, password).map_err(|e| e.to_string())
}

fn first_line(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
        .to_owned()
}

/// `kind=weight,...`; a kind without `=weight` has weight 1.
fn parse_mix(spec: &str) -> Result<Mix, String> {
    let mut weights = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part.split_once('=').unwrap_or((part, "1"));
        let kind = RequestKind::ALL
            .into_iter()
            .find(|k| k.name() == name.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = RequestKind::ALL.iter().map(|k| k.name()).collect();
                format!(
                    "--mix: unknown request kind {name:?} (known: {})",
                    names.join(", ")
                )
            })?;
        let weight: u32 = weight
            .trim()
            .parse()
            .map_err(|_| format!("--mix: bad weight {weight:?} for {name}"))?;
        if weight > 1000 {
            return Err(format!("--mix: weight {weight} for {name} is above 1000"));
        }
        weights.push((kind, weight));
    }
    Mix::new(&weights)
        .ok_or_else(|| "--mix names no request kind with a positive weight".to_owned())
}

fn draw_plot(args: &PlotArgs) -> ExitCode {
    match plot::series(&args.files, &args.tags).and_then(|series| plot::draw(&series, &args.output))
    {
        Ok(()) => {
            println!("wrote {}", args.output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen plot: {e}");
            ExitCode::FAILURE
        }
    }
}

fn merge(args: &MergeArgs) -> ExitCode {
    let merged = match logs::Merged::from_files(&args.files) {
        Ok(merged) => merged,
        Err(e) => {
            eprintln!("loadgen merge: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.output {
        let written = std::fs::File::create(path).and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            merged.write_log(&mut out)?;
            std::io::Write::flush(&mut out)
        });
        if let Err(e) = written {
            eprintln!("loadgen merge: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if args.json {
        match serde_json::to_string_pretty(&merged) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("loadgen merge: cannot encode the summary: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        println!(
            "{} intervals from {} logs over {:.1}s",
            merged.intervals,
            merged.files.len(),
            merged.span_seconds
        );
        print!("{}", merged.table());
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes() {
        let mix = parse_mix("sic1-address=3, ping").unwrap();
        let kinds: Vec<RequestKind> = (0..4).map(|n| mix.kind(n)).collect();
        assert_eq!(
            kinds
                .iter()
                .filter(|&&k| k == RequestKind::Sic1Address)
                .count(),
            3
        );
        assert!(kinds.contains(&RequestKind::Ping));
        assert!(parse_mix("sic2").is_err());
        assert!(parse_mix("ping=0").is_err());
        assert!(parse_mix("ping=x").is_err());
    }
}
