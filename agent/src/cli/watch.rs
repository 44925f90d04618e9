//! The attach session's event loop: drains the kernel's events, redraws the live view, samples
//! goroutines and refreshes exported metrics until a stop condition.

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Result;
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::debug;

use goprobe::{
    clock::Clock,
    export::TargetMetrics,
    probe::{BpfLogger, Probes},
    report::{self, live::Live, screen},
    signal::{gc::GcTracker, goroutines::GoroutineSampler},
};

/// Why the watch ended.
#[derive(Debug, Clone, Copy)]
pub(super) enum End {
    Duration,
    Signal,
    /// `q` in the live view.
    Quit,
    TargetExited,
}

/// Refreshes the exported metrics: (probes, tracker, last goroutine count, everything).
pub(super) type Refresh<'a> = dyn FnMut(&Probes, &GcTracker, Option<u64>, bool) + 'a;

/// What the watch loop updates.
pub(super) struct Watch<'a> {
    pub(super) tracker: &'a mut GcTracker,
    pub(super) live: &'a mut Live,
    /// The signals' blocks of the live view.
    pub(super) sections: &'a mut dyn FnMut(&Probes) -> Vec<screen::Section>,
    /// Where completed cycles are recorded, when metrics are exported.
    pub(super) metrics: Option<&'a TargetMetrics>,
    pub(super) refresh: &'a mut Refresh<'a>,
    pub(super) goroutines: &'a mut Option<GoroutineSampler>,
    pub(super) clock: &'a Clock,
    /// The target, and whether its mark assist probes are attached.
    pub(super) pid: u32,
    pub(super) assist_on: bool,
}

pub(super) async fn watch(
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
        metrics,
        refresh,
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
    // Exported metrics are refreshed each second; a scrape or push reads the latest.
    let mut metrics_tick = tokio::time::interval(Duration::from_secs(1));
    metrics_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let drain = |probes: &mut Probes, tracker: &mut GcTracker, live: &mut Live| {
        drain_cycles(probes, tracker, live, pid, assist_on, metrics);
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
            _ = metrics_tick.tick(), if metrics.is_some() => {
                let count = goroutines.as_ref().and_then(|s| s.samples().last()).map(|s| s.count);
                refresh(probes, tracker, count, false);
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
/// time when the assist probes of process `pid` are attached; records the cycles and other
/// pauses into `metrics`.
pub(super) fn drain_cycles(
    probes: &mut Probes,
    tracker: &mut GcTracker,
    live: &mut Live,
    pid: u32,
    assist_on: bool,
    metrics: Option<&TargetMetrics>,
) {
    let others_before = tracker.other.len();
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
    if let Some(m) = metrics {
        for c in &done {
            m.cycles().record_cycle(c);
        }
        for s in tracker.other.get(others_before..).unwrap_or_default() {
            m.cycles().record_other_stw(s);
        }
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

pub(super) fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by us from here on.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}
