//! `goprobe attach <PID>`: watch one Go process until a duration passes, a signal arrives, or
//! the process exits; then write the report.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;

use super::parse_seconds;

use goprobe::{
    export::{Exporter, OtlpSettings},
    output::{self, Format, OutputConfig, Profile},
    probe::{AllocMode, Options, budget::Budget},
    report::{self, Report},
    session::{End, Note, WindowConfig, observe},
};

/// Arguments of `goprobe attach`.
#[derive(Debug, Args)]
#[command(
    after_help = "goprobe stops on --duration, on Ctrl-C or SIGTERM, on q in the live view, or by itself when \
    the process exits; then it prints a summary (or JSON with --json) and, with --out-dir, \
    writes DIR/report.json (schema goprobe.report.v2, see docs/report-schema.md)."
)]
pub struct AttachArgs {
    /// Process id of a running Go program (Go 1.19 or 1.21 to 1.27, linux/amd64; stripped, PIE
    /// and cgo binaries too). `goprobe ps` lists them.
    pub pid: u32,
    /// Stop after this many seconds (fractions allowed). Default: until Ctrl-C or the process exits.
    #[arg(short, long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub duration: Option<Duration>,
    /// Write the outputs into this directory (created if missing): report.json, a flamegraph
    /// (NAME.svg), pprof profile (NAME.pb.gz) and collapsed stacks (NAME.folded) per signal,
    /// gc-pauses.svg and index.html. See --format.
    #[arg(short, long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Which outputs --out-dir writes, comma-separated from json, folded, svg, pprof, html
    /// (default: all of them).
    #[arg(
        long,
        value_delimiter = ',',
        hide_default_value = true,
        default_values_t = Format::all().collect::<Vec<_>>(),
        value_name = "LIST"
    )]
    pub format: Vec<Format>,
    /// Print the report as JSON on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Allocation profiling: `sampled` (no measurable cost: the runtime's own heap-profile sampler,
    /// weighted into estimates of all bytes and objects; if the program has it off,
    /// runtime.MemProfileRate 0 as without runtime/pprof, goprobe sets it to 512 KiB for the
    /// window and restores 0 on detach), `spans` (read-only: never writes to the process;
    /// samples the allocator's span refills instead, 1.2–2.5× slower allocation-bound code),
    /// `exact` (every allocation counted per stack in the kernel; 30–90× slower
    /// allocation-bound code, see `cargo xtask bench`), or `off`.
    #[arg(long, value_enum, default_value_t = AllocArg::Sampled, value_name = "MODE")]
    pub alloc: AllocArg,
    /// On-CPU sampling frequency, per CPU (Hz; a prime avoids lock-step with periodic work);
    /// 0 turns CPU sampling off.
    #[arg(long, default_value_t = 97, value_name = "HZ")]
    pub cpu_hz: u32,
    /// Do not record page faults.
    #[arg(long)]
    pub no_page_faults: bool,
    /// Take a page-fault stack sample once per this many faults (per CPU). The fault totals
    /// are exact whatever it is (the kernel's own count); the per-stack numbers are estimates
    /// from the samples, scaled to the totals. 1 samples every fault (about 4 µs each).
    #[arg(long, default_value_t = goprobe::probe::perf::PAGE_FAULT_PERIOD, value_name = "FAULTS")]
    pub page_fault_period: u32,
    /// Cap a signal's BPF work: at most RUNS program runs per CPU and second, the rest skipped
    /// and counted (report.json goprobe.budget). SIGNAL is page_faults, cpu, alloc,
    /// goroutines, assist or stacks; 0 removes the cap. Repeatable. Defaults: page_faults 1000,
    /// cpu 1000, alloc 2000 (none with --alloc exact), goroutines 2000, assist 2000, stacks
    /// 1000.
    #[arg(long, value_name = "SIGNAL=RUNS")]
    pub budget: Vec<String>,
    /// Do not sample the goroutine count (read from memory ten times a second: free for the target).
    #[arg(long, conflicts_with = "goroutine_sites")]
    pub no_goroutines: bool,
    /// Also count goroutines created and exited, by the stack of the `go` statement (finds
    /// goroutine leaks). Costs the target about 6 µs per goroutine created (a probe on
    /// runtime.newproc and on goroutine exit): a net/http server, one goroutine per request,
    /// serves about 20% fewer requests. For diagnosis, not for always-on profiling.
    #[arg(long)]
    pub goroutine_sites: bool,
    /// Turn the kernel's BPF run-time statistics on while attached (BPF_ENABLE_STATS; off again
    /// when goprobe exits, the sysctl kernel.bpf_stats_enabled is not changed), so that the
    /// report's goprobe.programs says how often each BPF program ran and for how long. Costs
    /// about two clock reads per program run, for every BPF program on the host.
    #[arg(long)]
    pub bpf_stats: bool,
    #[command(flatten)]
    pub export: super::export::ExportArgs,
}

/// `--alloc` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AllocArg {
    Sampled,
    Spans,
    Exact,
    Off,
}

impl AttachArgs {
    /// The probe options these arguments ask for.
    fn options(&self) -> Result<Options> {
        let mut budget = Budget::default();
        for b in &self.budget {
            budget.parse_one(b).map_err(anyhow::Error::msg)?;
        }
        Ok(Options {
            alloc: match self.alloc {
                AllocArg::Sampled => AllocMode::Sampled,
                AllocArg::Spans => AllocMode::Spans,
                AllocArg::Exact => AllocMode::Exact,
                AllocArg::Off => AllocMode::Off,
            },
            cpu_hz: self.cpu_hz,
            page_faults: !self.no_page_faults,
            goroutines: !self.no_goroutines,
            goroutine_sites: self.goroutine_sites,
            page_fault_period: self.page_fault_period,
            budget,
            ..Options::default()
        })
    }
}

/// Runs `goprobe attach`.
pub fn run(args: AttachArgs) -> Result<()> {
    let export_config = args
        .export
        .config(OtlpSettings::default())
        .map_err(anyhow::Error::msg)?;
    let mut exporter = Exporter::new(export_config)?;
    let config = WindowConfig {
        pid: args.pid,
        options: args.options()?,
        duration: args.duration,
        quiet: false,
        profiles: args.out_dir.is_some(),
        service_name: args.export.service_name.clone(),
        bpf_stats: args.bpf_stats,
    };
    let observed = observe(config, Some(&mut exporter), &mut |n| {
        tell(n, "Ctrl-C to stop")
    })?;
    write_outputs(&args, &observed.report, &observed.profiles)
}

/// Prints what the window tells the user on stderr; `until` says how the watch ends.
pub(super) fn tell(note: Note<'_>, until: &str) {
    match note {
        Note::Attached {
            target,
            probes,
            attach_ms,
        } => eprintln!(
            "goprobe: attached to pid {} ({}, {}) with {probes} probes in {attach_ms} ms; {until}",
            target.process.pid,
            target.exe.display(),
            target.go_version,
        ),
        Note::Serving(addr) => {
            eprintln!("goprobe: serving Prometheus metrics on http://{addr}/metrics");
        }
        Note::Gone {
            target,
            end: End::TargetExeced { .. },
            seconds,
        } => {
            let pid = target.process.pid;
            eprintln!(
                "goprobe: pid {pid} exec()ed {} after {seconds:.1} s, so it no longer runs the \
                 program goprobe attached to ({}); stopped watching, the report covers that \
                 program until then. Attach again to profile the new one.",
                std::fs::read_link(format!("/proc/{pid}/exe")).map_or_else(
                    |_| "another program".to_owned(),
                    |p| p.display().to_string()
                ),
                target.exe.display()
            );
        }
        Note::Gone {
            target, seconds, ..
        } => eprintln!(
            "goprobe: pid {} exited after {seconds:.1} s; the report covers it until then",
            target.process.pid
        ),
    }
}

fn write_outputs(args: &AttachArgs, report: &Report, profiles: &[Profile]) -> Result<()> {
    let json = serde_json::to_string_pretty(report)?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let config = OutputConfig {
            dir: dir.clone(),
            formats: args.format.iter().copied().collect(),
        };
        let written = output::write_all(&config, report, &json, profiles)?;
        let index = written.iter().find(|p| p.ends_with(output::index::FILE));
        eprintln!(
            "goprobe: wrote {} files into {}{}",
            written.len(),
            dir.display(),
            index.map_or(String::new(), |p| format!("; open {}", p.display()))
        );
    }
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report::summary::render(report));
    }
    Ok(())
}
