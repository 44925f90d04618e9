//! One observation window of one Go process, for `goprobe attach` and `goprobe doctor`: analyse
//! the target, attach the probes, watch until a duration passes, a signal arrives or the process
//! exits, then build the [`Report`] and the profiles from one read of the signals.

use std::{
    cell::RefCell,
    net::SocketAddr,
    os::fd::{FromRawFd as _, OwnedFd},
    rc::Rc,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    Session,
    watch::{Sources, Tick, Timer, watch},
    window::{Watching, drain_cycles},
};
use crate::{
    analysis::{Target, TargetError, process::kib_field},
    clock::Clock,
    export::{
        ExportError, Exporter, FinalPush, TargetMetrics,
        resource::{self, ProcessInfo},
    },
    live::{Live, signals::LiveSignals},
    output::Profile,
    privileges::{self, MissingCapabilities},
    probe::{Options, ProbeError, Probes, stats::StatsError, stats::StatsGuard},
    report::{self, OwnCost, Report, TargetInfo, Window},
    signal::{Parts, StackNamer, cost, cycle, gc::GcStacks},
};

/// What one window watches and how.
#[derive(Clone, Debug)]
pub struct WindowConfig {
    pub pid: u32,
    pub options: Options,
    /// Stop after this long; `None`: until a signal or the process exits.
    pub duration: Option<Duration>,
    /// No live view (the caller prints its own output at the end).
    pub quiet: bool,
    /// Build the per-signal profiles (for `--out-dir`).
    pub profiles: bool,
    /// The `service.name` of exported metrics.
    pub service_name: Option<String>,
    /// Turn BPF run-time statistics on for the window (`--bpf-stats`), so that
    /// `goprobe.programs` has numbers without the `kernel.bpf_stats_enabled` sysctl.
    pub bpf_stats: bool,
}

/// Why the watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Duration,
    Signal,
    /// `q` in the live view.
    Quit,
    TargetExited,
    /// The target exec()ed (at `at_ns`, CLOCK_MONOTONIC): it runs another program now, which
    /// the analysis does not describe.
    TargetExeced {
        at_ns: u64,
    },
}

impl End {
    /// Whether the target is gone (exited, or replaced by another program): its pid may already
    /// name another process.
    pub fn target_gone(self) -> bool {
        matches!(self, Self::TargetExited | Self::TargetExeced { .. })
    }

    /// Events after this CLOCK_MONOTONIC time are not the target's (see [`drain_cycles`]).
    pub fn until_ns(self) -> Option<u64> {
        match self {
            Self::TargetExeced { at_ns } => Some(at_ns),
            _ => None,
        }
    }
}

/// What happens during a window that the person running it is told (the CLI words it).
#[derive(Debug)]
pub enum Note<'a> {
    /// Every probe is live.
    Attached {
        target: &'a Target,
        probes: usize,
        attach_ms: u64,
    },
    /// Prometheus metrics are served here.
    Serving(SocketAddr),
    /// The watch ended on the target's exit or exec, after `seconds`.
    Gone {
        target: &'a Target,
        end: End,
        seconds: f64,
    },
}

/// Why a window could not be observed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Privileges(#[from] MissingCapabilities),
    #[error(transparent)]
    Target(#[from] TargetError),
    /// Boxed: a `ProbeError` is large, and every `Result` of this type would carry its size.
    #[error(transparent)]
    Probe(Box<ProbeError>),
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("pidfd_open({pid})")]
    Pidfd { pid: u32, source: std::io::Error },
    #[error(
        "pid {pid} exited while goprobe was attaching to it; nothing was measured. Is it \
         restarting in a loop? Attach to its new pid once it is up."
    )]
    ExitedWhileAttaching { pid: u32 },
    #[error("running the event loop")]
    EventLoop(#[from] std::io::Error),
}

impl From<ProbeError> for SessionError {
    fn from(e: ProbeError) -> Self {
        Self::Probe(Box::new(e))
    }
}

/// What a window produced.
pub struct Observed {
    pub target: Target,
    pub report: Report,
    pub profiles: Vec<Profile>,
}

/// Runs one window; the probes are detached when this returns. `exporter` exports metrics while
/// watching (`goprobe attach --otlp-endpoint/--prometheus`); `note` hears what to tell the user.
pub fn observe(
    config: WindowConfig,
    exporter: Option<&mut Exporter>,
    note: &mut dyn FnMut(Note<'_>),
) -> Result<Observed, SessionError> {
    let started = Instant::now();
    privileges::check()?;
    let pid = config.pid;
    // The pidfd names the process, not the number: opened before anything is read, it tells
    // whether the process analysed and attached to is still the one `pid` named at the start.
    let pidfd = pidfd_open(pid);
    let target = Target::analyze(pid)?; // its errors say it best when there is no such process
    let pidfd = pidfd.map_err(|source| SessionError::Pidfd { pid, source })?;
    let clock = Clock::new();
    // On before the first probe is attached, so every hit of the window is counted.
    let stats_guard = config.bpf_stats.then(StatsGuard::enable).transpose()?;
    let mut probes = Probes::load()?;
    let logger = probes.take_logger();
    probes.attach(&target, &config.options)?;
    if exited(&pidfd) {
        // Its pid may name another process by now, which the analysis or the probes may have
        // reached: nothing goprobe could report would be about the process asked for.
        return Err(SessionError::ExitedWhileAttaching { pid });
    }
    // An exec replaces the program the analysis describes (and, for the same binary, would
    // re-arm the uprobes in the new image): the watch ends on it. The tracepoint sees every exec
    // on the host; without it (an old kernel), an exec goes unnoticed until the process exits.
    let lifecycle = probes
        .watch_lifecycle()
        .inspect_err(|e| warn!("an exec of pid {pid} will go unnoticed: {e}"))
        .ok();
    // Opens the binary now: stacks are named at the end, when the target may be gone.
    let namer = Rc::new(RefCell::new(StackNamer::new(pid, target.gc_start.addr)));
    let attach_ms = started.elapsed().as_millis() as u64;
    let window_start = clock.now_unix();
    note(Note::Attached {
        target: &target,
        probes: probes.attached(),
        attach_ms,
    });
    let mut exporter = exporter;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let metrics = start_export(exporter.as_deref_mut(), &target, &config, note)?;
    let mut session = Session::new(target, config.options.clone(), namer, metrics, window_start);
    let mut live = live_view(&config, &session.target);
    let sources = Sources {
        lifecycle,
        logger,
        pidfd: Some(pidfd),
        keys: live.reads_keys(),
        duration: config.duration,
    };
    let mut timers = vec![
        Timer::every(Tick::Drain, Duration::from_millis(100)),
        Timer::every(Tick::Redraw, Duration::from_millis(250)),
        // The goroutine count is read from the target's memory at ≥ 10 Hz (signal/goroutines.rs).
        Timer::every(Tick::Goroutines, Duration::from_millis(100)),
    ];
    if session.exports() {
        // Exported metrics are refreshed each second; a scrape or push reads the latest.
        timers.push(Timer::every(Tick::Metrics, Duration::from_secs(1)));
    }
    let mut watching = Watching {
        probes: &mut probes,
        session: &mut session,
        live: &mut live,
        live_signals: LiveSignals::default(),
        clock: &clock,
        exec_at: None,
        started: Instant::now(),
    };
    let end = rt.block_on(watch(&mut watching, sources, &timers));
    live.clear();
    if let Some(e) = exporter.as_deref() {
        e.set_stopping();
    }
    let end = end?;
    if end.target_gone() {
        // Its pid is free, or runs another program: the per-CPU samplers, which select
        // processes by pid (TARGETS), must not count whoever has it now.
        probes.stop_counting(pid);
    }
    drain_cycles(&mut probes, &mut session, &mut live, end.until_ns());
    info!(?end, cycles = session.tracker.cycles.len(), "detaching");
    if let Some(s) = session.goroutines.as_mut() {
        s.sample(&clock); // the last reading; fails quietly if the target is gone
    }
    session.refresh_metrics(&probes, true);
    // The last push runs while the report is built; the endpoint serves the last values.
    let final_push = start_final_push(&mut session, exporter.as_deref_mut());
    let window = Window {
        start_unix_ns: window_start,
        end_unix_ns: clock.now_unix(),
    };
    let (report, profiles) = finish(
        &session,
        &probes,
        &clock,
        window,
        attach_ms,
        config.profiles,
    );
    drop(stats_guard);
    drop(probes); // detach before writing: the target runs unprobed from here on
    if end.target_gone() {
        note(Note::Gone {
            target: &session.target,
            end,
            seconds: (report.window.end_unix_ns - report.window.start_unix_ns) as f64 / 1e9,
        });
    }
    end_export(final_push, exporter.as_deref());
    Ok(Observed {
        target: session.target,
        report,
        profiles,
    })
}

/// The metrics of `target` (when `exporter` exports any), and the Prometheus endpoint served
/// (on its own thread, until the exporter is dropped).
fn start_export(
    exporter: Option<&mut Exporter>,
    target: &Target,
    config: &WindowConfig,
    note: &mut dyn FnMut(Note<'_>),
) -> Result<Option<TargetMetrics>, SessionError> {
    let Some(exporter) = exporter else {
        return Ok(None);
    };
    let metrics = exporter
        .enabled()
        .then(|| {
            exporter.target(resource::of_process(&ProcessInfo {
                pid: target.process.pid,
                exe: &target.exe,
                go_version: &target.go_version.raw,
                service_name: config.service_name.as_deref(),
                attributes: &[],
            }))
        })
        .transpose()?;
    if let Some(addr) = exporter.prometheus_addr() {
        note(Note::Serving(addr));
    }
    exporter.serve()?;
    Ok(metrics)
}

/// Starts the final OTLP push of `session`'s metrics; their last values stay on the
/// Prometheus endpoint.
fn start_final_push(session: &mut Session, exporter: Option<&mut Exporter>) -> Option<FinalPush> {
    let m = session.take_metrics()?;
    Some(exporter?.push_final(vec![m]))
}

/// Waits for the final OTLP push, at most the export timeout.
fn end_export(push: Option<FinalPush>, exporter: Option<&Exporter>) {
    let Some(push) = push else {
        return;
    };
    push.wait();
    let failures = exporter.map_or(0, Exporter::failures);
    if failures > 0 {
        warn!(
            failures,
            "some OTLP exports failed (see the warnings above)"
        );
    }
}

/// The live view of `target`: full screen on a terminal unless `config.quiet`.
fn live_view(config: &WindowConfig, target: &Target) -> Live {
    if config.quiet {
        return Live::Quiet;
    }
    let exe_name = target.exe.file_name().map_or_else(
        || target.exe.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Live::new(format!(
        "goprobe · pid {} {exe_name} ({})",
        target.process.pid, target.go_version
    ))
}

/// The report of `session`'s `window` and, when asked for, its profiles: both from one read.
fn finish(
    session: &Session,
    probes: &Probes,
    clock: &Clock,
    window: Window,
    attach_ms: u64,
    with_profiles: bool,
) -> (Report, Vec<Profile>) {
    let target = &session.target;
    let unavailable = unavailable_fields(target);
    let reading = session.read(probes, Parts::ALL);
    let gc_stacks = GcStacks::new(&session.tracker, |c| {
        session.namer().borrow_mut().stack(probes, c)
    });
    let losses = cost::Losses::read(probes);
    if losses.sites_full > 0 {
        warn!(
            sites_full = losses.sites_full,
            "per-stack counts lost: the SITES map is full (counted in goprobe.lost_events)"
        );
    }
    if losses.stacks > 0 {
        warn!(
            failed_stacks = losses.stacks,
            "some stacks could not be captured (stack map full?)"
        );
    }
    let (cpu_ms, max_rss_kb) = self_usage();
    let profiles = if with_profiles {
        session.profiles_of(&reading, &window)
    } else {
        Vec::new()
    };
    let report = Report::build(report::Inputs {
        target: TargetInfo {
            pid: session.pid(),
            exe: target.exe.display().to_string(),
            go_version: target.go_version.raw.clone(),
            stripped: target.stripped,
        },
        window,
        goprobe: OwnCost {
            attach_ms,
            cpu_ms,
            max_rss_kb,
            // Dropped in the kernel, plus pauses dropped here as unreadable (report-schema.md).
            lost_events: losses.lost_events(session.tracker.unreadable),
            lost_stacks: losses.stacks,
            programs: cost::programs(probes),
            budget: report::perf::budget_uses(
                &session.options.effective_budget().caps,
                &losses.skipped,
            ),
            rss_kb: cost::rss_bytes() / 1024,
            bpf_map_bytes: cost::map_bytes(),
        },
        tracker: &session.tracker,
        gc_stacks: &gc_stacks,
        clock,
        unavailable,
        reading: &reading,
        goroutines: session
            .options
            .goroutines
            .then(|| session.goroutines.as_ref().map_or(&[][..], |s| s.samples())),
    });
    (report, profiles)
}

/// Report field names (`gc.unavailable`) `target` cannot provide: by its Go version and binary,
/// and where a stack probe could not be placed.
pub fn unavailable_fields(target: &Target) -> Vec<String> {
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
    unavailable
}

/// Whether the process of `pidfd` has exited (its pidfd polls readable, Linux 5.3+).
fn exited(pidfd: &OwnedFd) -> bool {
    use std::os::fd::AsRawFd as _;
    let mut pfd = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let ready = unsafe { libc::poll(&raw mut pfd, 1, 0) };
    ready > 0 && pfd.revents & libc::POLLIN != 0
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

/// (CPU ms, peak RSS KiB) of this process so far. The peak is `VmHWM` of /proc/self/status,
/// the high-water mark of this process image alone.
///
/// NB: not getrusage's `ru_maxrss`, which Linux carries across exec (fs/exec.c `exec_mmap`:
/// `setmax_mm_hiwater_rss(&tsk->signal->maxrss, old_mm)`): goprobe forked and exec'd by a large
/// process would report that process's size (seen: 164 MiB reported, 38 MiB real, when started
/// from a test harness).
pub fn self_usage() -> (u64, u64) {
    // SAFETY: zeroed rusage is valid; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let ms = |t: libc::timeval| t.tv_sec as u64 * 1000 + t.tv_usec as u64 / 1000;
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| kib_field(&s, "VmHWM:"))
        .map_or(ru.ru_maxrss as u64, |bytes| bytes / 1024);
    (ms(ru.ru_utime) + ms(ru.ru_stime), hwm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark() {
        let status = "VmPeak:\t  123456 kB\nVmHWM:\t    38912 kB\nVmRSS:\t   30000 kB\n";
        assert_eq!(kib_field(status, "VmHWM:"), Some(38912 * 1024));
        assert_eq!(kib_field("VmRSS:\t 1 kB\n", "VmHWM:"), None);
        let (_, own) = self_usage();
        assert!(own > 0);
    }
}
