//! `goprobe attach <PID>`: watch one Go process until a duration passes, a signal arrives, or
//! the process exits; then write the report.

use std::{
    cell::RefCell,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Args;
use goprobe_common::site_kind;
use tracing::{info, warn};

use super::watch::{Watch, drain_cycles, pidfd_open, watch};

use goprobe::{
    clock::Clock,
    export::{
        Exporter,
        collect::{Inputs, Refresher},
        resource::{self, ProcessInfo},
    },
    output::{self, Format, OutputConfig, Profile, profile},
    privileges,
    probe::{AllocMode, Options, Probes},
    report::{
        self, AgentStats, Cpu, PageFaults, Report, TargetInfo, Window, live::Live,
        live_signals::LiveSignals,
    },
    signal::{self, cycle, gc::GcTracker, goroutines::GoroutineSampler, stacks::StackNamer},
    target::Target,
};

/// Arguments of `goprobe attach`.
#[derive(Debug, Args)]
#[command(
    after_help = "goprobe stops on --duration, on Ctrl-C or SIGTERM, on q in the live view, or by itself when \
    the process exits; then it prints a summary (or JSON with --json) and, with --out-dir, \
    writes DIR/report.json (schema goprobe.report.v1, see docs/report-schema.md)."
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
    /// Which outputs --out-dir writes, comma-separated: json, svg, pprof, folded, html.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "json,svg,pprof,folded,html",
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
    /// Do not sample the goroutine count or record goroutine creation sites.
    #[arg(long)]
    pub no_goroutines: bool,
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
    fn options(&self) -> Options {
        Options {
            alloc: match self.alloc {
                AllocArg::Sampled => AllocMode::Sampled,
                AllocArg::Spans => AllocMode::Spans,
                AllocArg::Exact => AllocMode::Exact,
                AllocArg::Off => AllocMode::Off,
            },
            cpu_hz: self.cpu_hz,
            page_faults: !self.no_page_faults,
            goroutines: !self.no_goroutines,
        }
    }
}

pub(super) fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a valid duration"))
}

/// Runs `goprobe attach`.
pub fn run(args: AttachArgs) -> Result<()> {
    let started = Instant::now();
    privileges::check()?;
    let export_config = args.export.config().map_err(anyhow::Error::msg)?;
    let mut exporter = Exporter::new(export_config)?;
    let target = Target::analyze(args.pid)?;
    let clock = Clock::new();
    let mut probes = Probes::load()?;
    let logger = probes.take_logger();
    // Open the pidfd before attaching, so an exit in between is still seen.
    let pidfd = pidfd_open(args.pid).with_context(|| format!("pidfd_open({})", args.pid))?;
    let options = args.options();
    probes.attach(&target, &options)?;
    // Opens the binary now: stacks are named at the end, when the target may be gone.
    let namer = RefCell::new(StackNamer::new(args.pid, target.gc_start.addr));
    let attach_ms = started.elapsed().as_millis() as u64;
    let window_start = clock.now_unix();
    eprintln!(
        "goprobe: attached to pid {} ({}, {}) with {} probes in {attach_ms} ms; Ctrl-C to stop",
        args.pid,
        target.exe.display(),
        target.go_version,
        probes.attached()
    );
    let metrics = exporter
        .enabled()
        .then(|| {
            exporter.target(resource::of_process(&ProcessInfo {
                pid: args.pid,
                exe: &target.exe,
                go_version: &target.go_version.raw,
                service_name: args.export.service_name.as_deref(),
            }))
        })
        .transpose()?;
    if let Some(addr) = exporter.prometheus_addr() {
        eprintln!("goprobe: serving Prometheus metrics on http://{addr}/metrics");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(server) = exporter.take_server() {
        rt.spawn(server);
    }
    let mut tracker = GcTracker::new(target.layout.stw_abi).with_go_minor(target.go_version.minor);
    let exe_name = target.exe.file_name().map_or_else(
        || target.exe.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut live = Live::new(format!(
        "goprobe · pid {} {exe_name} ({})",
        args.pid, target.go_version
    ));
    let mut live_signals = LiveSignals::default();
    let mut sections = |probes: &Probes| {
        live_signals.sections(probes, args.pid, &options, |c| {
            namer.borrow_mut().names(probes, c)
        })
    };
    let mut refresher = Refresher::default();
    let mut refresh = |probes: &Probes, tracker: &GcTracker, goroutines: Option<u64>, all: bool| {
        if let Some(m) = &metrics {
            let inputs = Inputs {
                probes,
                target: &target,
                options: &options,
                goroutines,
                lost_events: probes.lost_events() + tracker.unreadable + probes.sites_full(),
                names: &mut |c| namer.borrow_mut().names(probes, c),
            };
            refresher.refresh(m, inputs, all);
        }
    };
    let mut goroutine_sampler = options
        .goroutines
        .then(|| GoroutineSampler::new(&target))
        .transpose()
        .inspect_err(|e| warn!("{e}"))
        .ok()
        .flatten();
    let end = rt.block_on(watch(
        &mut probes,
        pidfd,
        logger,
        Watch {
            tracker: &mut tracker,
            live: &mut live,
            sections: &mut sections,
            metrics: metrics.as_ref(),
            refresh: &mut refresh,
            goroutines: &mut goroutine_sampler,
            clock: &clock,
            pid: args.pid,
            assist_on: target.assist.is_some(),
        },
        args.duration,
    ));
    live.clear();
    let end = end?;
    let assist_on = target.assist.is_some();
    drain_cycles(
        &mut probes,
        &mut tracker,
        &mut live,
        args.pid,
        assist_on,
        metrics.as_ref(),
    );
    info!(?end, cycles = tracker.cycles.len(), "detaching");
    if let Some(s) = goroutine_sampler.as_mut() {
        s.sample(&clock); // the last reading; fails quietly if the target is gone
    }
    let last_count = goroutine_sampler
        .as_ref()
        .and_then(|s| s.samples().last())
        .map(|s| s.count);
    refresh(&probes, &tracker, last_count, true);
    let mut namer = namer.into_inner();
    let window_end = clock.now_unix();

    let mut unavailable = cycle::unavailable(
        target.go_version.minor,
        target.vars.gc_controller.is_some(),
        target.layout.cycle.gcc_last_heap_goal.is_some(),
    );
    // Stack probes are optional (Target::analyze warns when one cannot be placed).
    if target.assist.is_none() {
        unavailable.extend(["assist".to_owned(), "assist_ns".to_owned()]);
    }
    if target.stw_caller.is_none() {
        unavailable.push("stack".to_owned());
    }
    let mut gc = report::Gc::from_tracker(&tracker, &clock, unavailable);
    let assist = probes.assist_totals(args.pid);
    gc.add_stacks(&tracker, &assist, |c| namer.names(&probes, c));
    let alloc =
        signal::alloc::collect(&probes, &target, options.alloc, |c| namer.names(&probes, c));
    let sites_full = probes.sites_full();
    if sites_full > 0 {
        warn!(
            sites_full,
            "per-stack counts lost: the SITES map is full (counted in agent.lost_events)"
        );
    }
    let failed_stacks = probes.failed_stacks();
    if failed_stacks > 0 {
        warn!(
            failed_stacks,
            "some stacks could not be captured (stack map full?)"
        );
    }
    let (cpu_ms, max_rss_kb) = self_usage();
    let report = Report {
        schema: report::SCHEMA.to_owned(),
        target: TargetInfo {
            pid: args.pid,
            exe: target.exe.display().to_string(),
            go_version: target.go_version.raw.clone(),
            stripped: target.stripped,
        },
        window: Window {
            start_unix_ns: window_start,
            end_unix_ns: window_end,
        },
        agent: AgentStats {
            attach_ms,
            cpu_ms,
            max_rss_kb,
            // Dropped in the kernel, plus pauses dropped here as unreadable (report-schema.md).
            lost_events: probes.lost_events() + tracker.unreadable + sites_full,
            lost_stacks: failed_stacks,
        },
        gc,
        alloc,
        goroutines: options.goroutines.then(|| {
            let sites = probes.sites(args.pid, site_kind::GOROUTINE_CREATE);
            report::Goroutines::build(
                goroutine_sampler.as_ref().map_or(&[], |s| s.samples()),
                probes.goroutine_counts(args.pid),
                report::sites::name_sites(&sites, |c| namer.names(&probes, c)),
            )
        }),
        page_faults: options.page_faults.then(|| {
            let raw = probes.sites(args.pid, site_kind::PAGE_FAULT);
            PageFaults::from_sites(&raw, |c| namer.names(&probes, c))
        }),
        cpu: (options.cpu_hz > 0).then(|| {
            let raw = probes.sites(args.pid, site_kind::CPU);
            Cpu::from_sites(options.cpu_hz, &raw, |c| namer.names(&probes, c))
        }),
    };
    let profiles = if args.out_dir.is_some() {
        profile::collect(
            &probes,
            args.pid,
            &options,
            &assist,
            &mut namer,
            &report.window,
        )
    } else {
        Vec::new()
    };
    drop(probes); // detach before writing: the target runs unprobed from here on
    if let Some(m) = metrics {
        m.shutdown(); // the final OTLP export, which may wait on a slow collector
        let failures = exporter.failures();
        if failures > 0 {
            warn!(
                failures,
                "some OTLP exports failed (see the warnings above)"
            );
        }
    }
    write_outputs(&args, &report, &profiles)
}

/// (CPU ms, max RSS KiB) of this process so far.
fn self_usage() -> (u64, u64) {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    (ms(ru.ru_utime) + ms(ru.ru_stime), ru.ru_maxrss as u64)
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
