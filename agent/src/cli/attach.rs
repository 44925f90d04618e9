//! `goprobe attach <PID>`: watch one Go process until a duration passes, a signal arrives, or
//! the process exits; then write the report.

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use clap::Args;
use goprobe_common::site_kind;
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::{debug, info, warn};

use goprobe::{
    clock::Clock,
    output::{self, Format, OutputConfig, Profile, profile},
    privileges,
    probe::{AllocMode, BpfLogger, Options, Probes},
    report::{
        self, AgentStats, Cpu, PageFaults, Report, TargetInfo, Window, live::Live,
        live_signals::LiveSignals, screen,
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

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("`{s}` is not a valid duration"))
}

/// Why the watch ended.
#[derive(Debug, Clone, Copy)]
enum End {
    Duration,
    Signal,
    /// `q` in the live view.
    Quit,
    TargetExited,
}

/// Runs `goprobe attach`.
pub fn run(args: AttachArgs) -> Result<()> {
    let started = Instant::now();
    privileges::check()?;
    let target = Target::analyze(args.pid)?;
    let clock = Clock::new();
    let mut probes = Probes::load()?;
    let logger = probes.take_logger();
    // Open the pidfd before attaching, so an exit in between is still seen.
    let pidfd = pidfd_open(args.pid).with_context(|| format!("pidfd_open({})", args.pid))?;
    let options = args.options();
    probes.attach(&target, &options)?;
    // Opens the binary now: stacks are named at the end, when the target may be gone.
    let mut namer = StackNamer::new(args.pid, target.gc_start.addr);
    let attach_ms = started.elapsed().as_millis() as u64;
    let window_start = clock.now_unix();
    eprintln!(
        "goprobe: attached to pid {} ({}, {}) with {} probes in {attach_ms} ms; Ctrl-C to stop",
        args.pid,
        target.exe.display(),
        target.go_version,
        probes.attached()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
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
        live_signals.sections(probes, args.pid, &options, |c| namer.names(probes, c))
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
    drain_cycles(&mut probes, &mut tracker, &mut live, args.pid, assist_on);
    info!(?end, cycles = tracker.cycles.len(), "detaching");
    if let Some(s) = goroutine_sampler.as_mut() {
        s.sample(&clock); // the last reading; fails quietly if the target is gone
    }
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
    write_outputs(&args, &report, &profiles)
}

/// What the watch loop updates.
struct Watch<'a> {
    tracker: &'a mut GcTracker,
    live: &'a mut Live,
    /// The signals' blocks of the live view.
    sections: &'a mut dyn FnMut(&Probes) -> Vec<screen::Section>,
    goroutines: &'a mut Option<GoroutineSampler>,
    clock: &'a Clock,
    /// The target, and whether its mark assist probes are attached.
    pid: u32,
    assist_on: bool,
}

async fn watch(
    probes: &mut Probes,
    pidfd: OwnedFd,
    logger: Option<BpfLogger>,
    w: Watch<'_>,
    duration: Option<Duration>,
) -> Result<End> {
    let Watch {
        tracker,
        live,
        sections,
        goroutines,
        clock,
        pid,
        assist_on,
    } = w;
    // SAFETY: the ring buffer fd belongs to `probes`, which outlives `events`.
    let events = unsafe { register(probes.events_fd()) }?;
    // SAFETY: the pidfd and the logger own their fds and move into their AsyncFd.
    let exited = unsafe { register(pidfd) }?;
    let mut logs = logger.map(|l| unsafe { register(l) }).transpose()?;
    // SAFETY: stdin stays open for the whole run.
    let keys = if live.reads_keys() {
        Some(unsafe { register(std::io::stdin()) }?)
    } else {
        None
    };
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    // NB: the kernel side submits events without waking this loop (a wake-up costs the
    // goroutine that stopped the world ~29 µs, see ebpf gc.rs `try_stw_start_ret`), so the ring
    // buffer is drained on this timer; a ring a quarter full still makes `events` readable.
    let mut drain_tick = tokio::time::interval(Duration::from_millis(100));
    // The goroutine count is read from the target's memory at ≥ 10 Hz (signal/goroutines.rs).
    let mut goroutine_tick = tokio::time::interval(Duration::from_millis(100));
    goroutine_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drain = |probes: &mut Probes, tracker: &mut GcTracker, live: &mut Live| {
        drain_cycles(probes, tracker, live, pid, assist_on);
    };
    let end = loop {
        tokio::select! {
            guard = events.readable() => {
                let mut guard = guard?;
                drain(probes, tracker, live);
                guard.clear_ready();
            }
            _ = drain_tick.tick() => drain(probes, tracker, live),
            guard = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                let mut guard = guard?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            guard = async { keys.as_ref().expect("guarded").readable().await }, if keys.is_some() => {
                let mut guard = guard?;
                let typed = screen::read_keys();
                guard.clear_ready();
                if screen::wants_quit(&typed) {
                    break End::Quit;
                }
            }
            _ = exited.readable() => break End::TargetExited,
            _ = int.recv() => break End::Signal,
            _ = term.recv() => break End::Signal,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                break End::Duration;
            }
            _ = tick.tick() => {
                live.tick(tracker, started.elapsed().as_secs_f64(), || {
                    let mut all = sections(probes);
                    if let Some(s) = goroutines.as_ref() {
                        all.extend(report::goroutines::live_section(s.samples()));
                    }
                    all
                });
            }
            _ = goroutine_tick.tick(), if goroutines.as_ref().is_some_and(GoroutineSampler::active) => {
                if let Some(s) = goroutines.as_mut()
                    && !s.sample(clock)
                {
                    debug!(samples = s.samples().len(), "goroutine sampling ended");
                }
            }
        }
    };
    Ok(end)
}

/// Drains the STW events into `tracker` and shows each completed cycle, with its mark assist
/// time when the assist probes of process `pid` are attached.
fn drain_cycles(
    probes: &mut Probes,
    tracker: &mut GcTracker,
    live: &mut Live,
    pid: u32,
    assist_on: bool,
) {
    let mut done = Vec::new();
    probes.drain(|ev| {
        if let Some(c) = tracker.on_event(&ev) {
            debug!(cycle = c.cycle, pause_ns = c.pause_ns, trigger = %c.trigger, "GC cycle");
            done.push(c.clone());
        }
    });
    for c in &done {
        live.cycle(c, assist_on.then(|| probes.assist_ns(pid, c.cycle)));
    }
}

/// Registers `fd` with the reactor.
///
/// # Safety
/// The fd must stay open and the same for the lifetime of the returned `AsyncFd`.
unsafe fn register<T: std::os::fd::AsRawFd>(fd: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: upheld by the caller.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
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
