//! `xmpp-edge`: see `xmpp-edge --help`.
#![forbid(unsafe_code)]

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    edge::cli::execute(edge::cli::Cli::parse())
}
