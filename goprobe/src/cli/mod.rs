//! The command line: one module per subcommand. Arguments become plain config structs so the
//! library never depends on clap.

pub mod agent;
pub mod attach;
pub mod doctor;
pub mod export;
pub mod ps;

use std::time::Duration;

use clap::{Parser, Subcommand};

/// goprobe watches the Go runtime inside running Go programs from the outside, with eBPF — GC
/// stop-the-world pauses, their causes and cycles, allocations, GC assists, on-CPU time, page
/// faults and goroutines, each by stack: no restart, no code change.
#[derive(Debug, Parser)]
#[command(name = "goprobe", version, propagate_version = true)]
#[command(after_help = "Examples:\n  \
    sudo goprobe attach 1234                  watch until Ctrl-C, then print a summary\n  \
    sudo goprobe attach 1234 --duration 30    watch for 30 seconds\n  \
    sudo goprobe attach 1234 --json | jq .gc  the report as JSON on stdout\n  \
    sudo goprobe ps                           list Go processes and their binaries\n  \
    sudo goprobe doctor 1234                  what is wrong with its deployment, with evidence\n\n\
    Logs go to stderr; set RUST_LOG=goprobe=debug (or -v) for more.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output on stderr (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Attach to a running Go process and measure it: GC pauses and cycles, allocations, GC
    /// assists, on-CPU time, page faults and goroutines, by stack; a live view, then a summary
    /// and, with --out-dir, a report and flamegraphs.
    Attach(attach::AttachArgs),
    /// List the Go processes on this host: Go version, stripped, cgo, PIE.
    Ps(ps::PsArgs),
    /// Diagnose deployment mistakes of a Go process (GOMAXPROCS over the CPU quota, GOGC,
    /// -race or -N -l builds, goroutine leaks...) from its settings and a short window.
    Doctor(doctor::DoctorArgs),
    /// Profile every Go process on this host (or in this pod) continuously: attach as they
    /// start, detach as they exit, export metrics (OTLP, Prometheus).
    Agent(agent::AgentArgs),
}

/// `SECONDS` of a flag: a number of seconds, fractions allowed.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a valid duration"))
}
