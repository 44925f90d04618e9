//! The attach session's event loop: drains the kernel's events, redraws the live view, samples
//! goroutines and refreshes exported metrics until a stop condition.

use std::{
    os::fd::{FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::Result;
use aya::maps::{MapData, RingBuf};
use goprobe_common::{LifecycleEvent, lifecycle_kind};
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
    /// The target exec()ed (at `at_ns`, CLOCK_MONOTONIC): it runs another program now, which
    /// the analysis does not describe.
    TargetExeced {
        at_ns: u64,
    },
}

impl End {
    /// Whether the target is gone (exited, or replaced by another program): its pid may already
    /// name another process.
    pub(super) fn target_gone(self) -> bool {
        matches!(self, Self::TargetExited | Self::TargetExeced { .. })
    }

    /// Events after this CLOCK_MONOTONIC time are not the target's (see [`drain_cycles`]).
    pub(super) fn until_ns(self) -> Option<u64> {
        match self {
            Self::TargetExeced { at_ns } => Some(at_ns),
            _ => None,
        }
    }
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
    lifecycle: Option<RingBuf<MapData>>,
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
    // SAFETY: the ring buffer owns its fd and moves into its AsyncFd.
    let mut execs = lifecycle.map(|l| unsafe { register(l) }).transpose()?;
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
    // The time of the target's exec, once seen. NB: checked before each drain of the STW
    // events, so that none of the new program's (a re-exec of the same binary re-arms the
    // uprobes; its runtime stops the world for the first time milliseconds after the exec) is
    // taken for the target's, whichever of the two fds is found ready first.
    let mut exec_at = None;
    let mut drain = |probes: &mut Probes,
                     tracker: &mut GcTracker,
                     live: &mut Live,
                     execs: &mut Option<AsyncFd<RingBuf<MapData>>>| {
        if exec_at.is_none()
            && let Some(ring) = execs.as_mut()
        {
            exec_at = exec_time(ring.get_mut(), pid);
        }
        drain_cycles(probes, tracker, live, pid, assist_on, metrics, exec_at);
        exec_at
    };
    let end = loop {
        tokio::select! {
            guard = events.readable() => {
                let mut guard = guard?;
                let execed = drain(probes, tracker, live, &mut execs);
                guard.clear_ready();
                if let Some(at_ns) = execed {
                    break End::TargetExeced { at_ns };
                }
            }
            _ = drain_tick.tick() => {
                if let Some(at_ns) = drain(probes, tracker, live, &mut execs) {
                    break End::TargetExeced { at_ns };
                }
            }
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
            guard = async { execs.as_mut().expect("guarded").readable_mut().await }, if execs.is_some() => {
                guard?.clear_ready();
                if let Some(at_ns) = drain(probes, tracker, live, &mut execs) {
                    break End::TargetExeced { at_ns };
                }
            }
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
/// pauses into `metrics`. Events whose world started after `until_ns` (the target's exec) are
/// the new program's and dropped.
pub(super) fn drain_cycles(
    probes: &mut Probes,
    tracker: &mut GcTracker,
    live: &mut Live,
    pid: u32,
    assist_on: bool,
    metrics: Option<&TargetMetrics>,
    until_ns: Option<u64>,
) {
    let others_before = tracker.other.len();
    let mut done = Vec::new();
    probes.drain(|ev| {
        // NB: `now` is the runtime's nanotime() (CLOCK_MONOTONIC, src/runtime/time_nofake.go),
        // the clock of bpf_ktime_get_ns.
        if until_ns.is_some_and(|t| ev.now > 0 && ev.now as u64 > t) {
            debug!(cycles = ev.cycles, "STW after the exec: not the target's");
            return;
        }
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

/// Reads the lifecycle events waiting in `ring` (every exec on the host); when `pid` exec()ed,
/// when (CLOCK_MONOTONIC ns).
fn exec_time(ring: &mut RingBuf<MapData>, pid: u32) -> Option<u64> {
    let mut found = None;
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<LifecycleEvent>() {
            // SAFETY: the kernel side writes one LifecycleEvent per record.
            let ev = unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<LifecycleEvent>()) };
            if ev.kind == lifecycle_kind::EXEC && ev.tgid == pid {
                found = found.or(Some(ev.ktime_ns));
            }
        }
    }
    found
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
