//! One observation window of a Go process, shared by `goprobe attach` and `goprobe doctor`:
//! analyse the target, attach the probes, run the event loop until a duration passes, a signal
//! arrives or the process exits, and build the [`Report`].

use std::{
    cell::RefCell,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use goprobe_common::site_kind;
use tracing::{info, warn};

use super::watch::{End, Watch, drain_cycles, pidfd_open, watch};

use goprobe::{
    analysis::{Target, process::kib_field},
    clock::Clock,
    export::{
        Exporter,
        collect::{Inputs, Refresher},
        resource::{self, ProcessInfo},
    },
    output::{Profile, profile},
    privileges,
    probe::{Options, Probes, stats::StatsGuard},
    report::{
        self, Cpu, OwnCost, PageFaults, Report, TargetInfo, Window, live::Live,
        live_signals::LiveSignals,
    },
    signal::{self, cycle, gc::GcTracker, goroutines::GoroutineSampler, stacks::StackNamer},
};

/// What one window watches and how.
pub(super) struct Session<'a> {
    pub(super) pid: u32,
    pub(super) options: Options,
    /// Stop after this long; `None`: until a signal or the process exits.
    pub(super) duration: Option<Duration>,
    /// No live view (the caller prints its own output at the end).
    pub(super) quiet: bool,
    /// Collect the per-signal profiles (for `--out-dir`).
    pub(super) profiles: bool,
    /// Export metrics while watching (`goprobe attach --otlp-endpoint/--prometheus`).
    pub(super) exporter: Option<&'a mut Exporter>,
    /// The `service.name` of exported metrics.
    pub(super) service_name: Option<&'a str>,
    /// Turn BPF run-time statistics on for the window (`--bpf-stats`), so that
    /// `agent.programs` has numbers without the `kernel.bpf_stats_enabled` sysctl.
    pub(super) bpf_stats: bool,
}

/// What a window produced.
pub(super) struct Observed {
    pub(super) target: Target,
    pub(super) report: Report,
    pub(super) profiles: Vec<Profile>,
}

/// Runs one window; the probes are detached when this returns.
pub(super) fn observe(s: Session<'_>) -> Result<Observed> {
    let started = Instant::now();
    privileges::check()?;
    let pid = s.pid;
    let options = s.options;
    // The pidfd names the process, not the number: opened before anything is read, it tells
    // whether the process analysed and attached to is still the one `pid` named at the start.
    let pidfd = pidfd_open(pid);
    let target = Target::analyze(pid)?; // its errors say it best when there is no such process
    let pidfd = pidfd.with_context(|| format!("pidfd_open({pid})"))?;
    let clock = Clock::new();
    // On before the first probe is attached, so every hit of the window is counted.
    let stats_guard = s.bpf_stats.then(StatsGuard::enable).transpose()?;
    let mut probes = Probes::load()?;
    let logger = probes.take_logger();
    probes.attach(&target, &options)?;
    if exited(&pidfd) {
        // Its pid may name another process by now, which the analysis or the probes may have
        // reached: nothing goprobe could report would be about the process asked for.
        anyhow::bail!(
            "pid {pid} exited while goprobe was attaching to it; nothing was measured. Is it \
             restarting in a loop? Attach to its new pid once it is up."
        );
    }
    // An exec replaces the program the analysis describes (and, for the same binary, would
    // re-arm the uprobes in the new image): the watch ends on it. The tracepoint sees every exec
    // on the host; without it (an old kernel), an exec goes unnoticed until the process exits.
    let lifecycle = probes
        .watch_lifecycle()
        .inspect_err(|e| warn!("an exec of pid {pid} will go unnoticed: {e}"))
        .ok();
    // Opens the binary now: stacks are named at the end, when the target may be gone.
    let namer = RefCell::new(StackNamer::new(pid, target.gc_start.addr));
    let attach_ms = started.elapsed().as_millis() as u64;
    let window_start = clock.now_unix();
    let until = match s.duration {
        Some(d) if s.quiet => format!("watching for {:.1} s", d.as_secs_f64()),
        _ => "Ctrl-C to stop".to_owned(),
    };
    eprintln!(
        "goprobe: attached to pid {} ({}, {}) with {} probes in {attach_ms} ms; {until}",
        pid,
        target.exe.display(),
        target.go_version,
        probes.attached()
    );
    let mut exporter = s.exporter;
    let metrics = exporter
        .as_deref()
        .filter(|e| e.enabled())
        .map(|e| {
            e.target(resource::of_process(&ProcessInfo {
                pid,
                exe: &target.exe,
                go_version: &target.go_version.raw,
                service_name: s.service_name,
                attributes: &[],
            }))
        })
        .transpose()?;
    if let Some(addr) = exporter.as_deref().and_then(Exporter::prometheus_addr) {
        eprintln!("goprobe: serving Prometheus metrics on http://{addr}/metrics");
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(server) = exporter.as_deref_mut().and_then(Exporter::take_server) {
        rt.spawn(server);
    }
    let mut tracker = GcTracker::new(target.layout.stw_abi).with_go_minor(target.go_version.minor);
    let exe_name = target.exe.file_name().map_or_else(
        || target.exe.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut live = if s.quiet {
        Live::Quiet
    } else {
        Live::new(format!(
            "goprobe · pid {} {exe_name} ({})",
            pid, target.go_version
        ))
    };
    let mut live_signals = LiveSignals::default();
    let mut sections = |probes: &Probes| {
        live_signals.sections(probes, pid, &options, |c| {
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
        lifecycle,
        logger,
        Watch {
            tracker: &mut tracker,
            live: &mut live,
            sections: &mut sections,
            metrics: metrics.as_ref(),
            refresh: &mut refresh,
            goroutines: &mut goroutine_sampler,
            clock: &clock,
            pid,
            assist_on: target.assist.is_some(),
        },
        s.duration,
    ));
    live.clear();
    let end = end?;
    if end.target_gone() {
        // Its pid is free, or runs another program: the per-CPU samplers, which select
        // processes by pid (TARGETS), must not count whoever has it now.
        probes.stop_counting(pid);
    }
    let assist_on = target.assist.is_some();
    drain_cycles(
        &mut probes,
        &mut tracker,
        &mut live,
        pid,
        assist_on,
        metrics.as_ref(),
        end.until_ns(),
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
    let assist = probes.assist_totals(pid);
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
    let programs = probes.program_stats();
    drop(stats_guard);
    let (cpu_ms, max_rss_kb) = self_usage();
    let report = Report {
        schema: report::SCHEMA.to_owned(),
        target: TargetInfo {
            pid,
            exe: target.exe.display().to_string(),
            go_version: target.go_version.raw.clone(),
            stripped: target.stripped,
        },
        window: Window {
            start_unix_ns: window_start,
            end_unix_ns: window_end,
        },
        goprobe: OwnCost {
            attach_ms,
            cpu_ms,
            max_rss_kb,
            // Dropped in the kernel, plus pauses dropped here as unreadable (report-schema.md).
            lost_events: probes.lost_events() + tracker.unreadable + sites_full,
            lost_stacks: failed_stacks,
            programs,
        },
        gc,
        alloc,
        goroutines: options.goroutines.then(|| {
            let sites = probes.sites(pid, site_kind::GOROUTINE_CREATE);
            report::Goroutines::build(
                goroutine_sampler.as_ref().map_or(&[], |s| s.samples()),
                probes.goroutine_counts(pid),
                report::sites::name_sites(&sites, |c| namer.names(&probes, c)),
            )
        }),
        page_faults: options.page_faults.then(|| {
            let raw = probes.sites(pid, site_kind::PAGE_FAULT);
            PageFaults::from_sites(&raw, |c| namer.names(&probes, c))
        }),
        cpu: (options.cpu_hz > 0).then(|| {
            let raw = probes.sites(pid, site_kind::CPU);
            Cpu::from_sites(options.cpu_hz, &raw, |c| namer.names(&probes, c))
        }),
    };
    let profiles = if s.profiles {
        profile::collect(&probes, pid, &options, &assist, &mut namer, &report.window)
    } else {
        Vec::new()
    };
    drop(probes); // detach before writing: the target runs unprobed from here on
    match end {
        End::TargetExited => eprintln!(
            "goprobe: pid {pid} exited after {:.1} s; the report covers it until then",
            (window_end - window_start) as f64 / 1e9
        ),
        End::TargetExeced { .. } => eprintln!(
            "goprobe: pid {pid} exec()ed {} after {:.1} s, so it no longer runs the program \
             goprobe attached to ({}); stopped watching, the report covers that program until \
             then. Attach again to profile the new one.",
            std::fs::read_link(format!("/proc/{pid}/exe")).map_or_else(
                |_| "another program".to_owned(),
                |p| p.display().to_string()
            ),
            (window_end - window_start) as f64 / 1e9,
            target.exe.display()
        ),
        End::Duration | End::Signal | End::Quit => {}
    }
    if let Some(m) = metrics {
        m.shutdown(); // the final OTLP export, which may wait on a slow collector
        let failures = exporter.as_deref().map_or(0, Exporter::failures);
        if failures > 0 {
            warn!(
                failures,
                "some OTLP exports failed (see the warnings above)"
            );
        }
    }
    Ok(Observed {
        target,
        report,
        profiles,
    })
}

/// Whether the process of `pidfd` has exited (its pidfd polls readable, Linux 5.3+).
fn exited(pidfd: &std::os::fd::OwnedFd) -> bool {
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

/// (CPU ms, peak RSS KiB) of this process so far. The peak is `VmHWM` of /proc/self/status,
/// the high-water mark of this process image alone.
///
/// NB: not getrusage's `ru_maxrss`, which Linux carries across exec (fs/exec.c `exec_mmap`:
/// `setmax_mm_hiwater_rss(&tsk->signal->maxrss, old_mm)`): goprobe forked and exec'd by a large
/// process would report that process's size (seen: 164 MiB reported, 38 MiB real, when started
/// from a test harness).
fn self_usage() -> (u64, u64) {
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
