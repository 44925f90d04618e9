//! `goprobe ps`: the Go processes on this host and what goprobe sees in each binary.

use std::io::Write as _;

use anyhow::{Context as _, Result};
use clap::Args;

use goprobe::discover::{self, GoProcess};

/// Arguments of `goprobe ps`.
#[derive(Debug, Args)]
#[command(
    after_help = "Columns: GO is the Go version from the binary's build info (`?` when \
    it has none and it could not be inferred); STRIPPED means no symbol table (-ldflags=-s or \
    strip); CGO comes from the build info (`?` when unknown); PIE is -buildmode=pie. Processes \
    whose executable cannot be read (run as root) are counted at the end."
)]
pub struct PsArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs `goprobe ps`. A closed stdout (`goprobe ps | head`) ends it quietly.
pub fn run(args: PsArgs) -> Result<()> {
    match print(&args) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

fn print(args: &PsArgs) -> std::io::Result<()> {
    let scan = discover::scan();
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &scan.processes)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:>8}  {:<16} {:<10} {:<8} {:<4} {:<4} EXE",
        "PID", "COMM", "GO", "STRIPPED", "CGO", "PIE"
    )?;
    for p in &scan.processes {
        writeln!(out, "{}", row(p))?;
    }
    if scan.unreadable > 0 {
        writeln!(
            out,
            "({} processes not inspected: their executable is gone or not readable; run as root)",
            scan.unreadable
        )?;
    }
    Ok(())
}

fn row(p: &GoProcess) -> String {
    let b = &p.binary;
    let yes_no = |v: bool| if v { "yes" } else { "no" };
    let version = match (&b.go_version, b.version_source) {
        (Some(v), "inferred") => format!("~{v}"),
        (Some(v), _) => v.clone(),
        (None, _) => "?".into(),
    };
    let cgo = b.cgo.map_or("?", yes_no);
    let exe = match b.packer {
        Some(packer) => format!("{} (packed: {packer})", p.exe.display()),
        None => p.exe.display().to_string(),
    };
    format!(
        "{:>8}  {:<16} {:<10} {:<8} {:<4} {:<4} {exe}",
        p.pid,
        p.comm,
        version,
        yes_no(b.stripped),
        cgo,
        yes_no(b.pie)
    )
}
