//! The `goprobe` binary: parse arguments, set up logging, dispatch, report errors with a hint.

use std::process::ExitCode;

mod cli;

use clap::Parser as _;
use cli::{Cli, Command, agent, attach, doctor, ps};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "goprobe=warn",
        1 => "goprobe=debug",
        _ => "goprobe=trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not for logs and pipes.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let result = match cli.command {
        Command::Attach(args) => attach::run(args),
        Command::Ps(args) => ps::run(args),
        Command::Doctor(args) => doctor::run(args),
        Command::Agent(args) => agent::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // The whole cause chain on one line: "what failed: why: deeper why".
            let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
            eprintln!("goprobe: error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}
