//! One window's event loop: drains the kernel's events into the session, redraws the live
//! view, samples goroutines and refreshes exported metrics until a stop condition.

use std::{
    os::fd::OwnedFd,
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use goprobe_common::{LifecycleEvent, lifecycle_kind};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::debug;

use super::{End, Session};
use crate::{
    clock::Clock,
    live::{Live, screen},
    probe::{BpfLogger, Probes},
    signal::{Parts, goroutines::GoroutineSampler},
};

/// What the watch loop updates.
pub(super) struct Watch<'a> {
    pub(super) session: &'a mut Session,
    pub(super) live: &'a mut Live,
    pub(super) clock: &'a Clock,
}

pub(super) async fn watch(
    probes: &mut Probes,
    pidfd: OwnedFd,
    lifecycle: Option<RingBuf<MapData>>,
    logger: Option<BpfLogger>,
    w: Watch<'_>,
    duration: Option<Duration>,
) -> std::io::Result<End> {
    let Watch {
        session,
        live,
        clock,
    } = w;
    let pid = session.pid();
    let mut live_signals = crate::live::signals::LiveSignals::default();
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
                     session: &mut Session,
                     live: &mut Live,
                     execs: &mut Option<AsyncFd<RingBuf<MapData>>>| {
        if exec_at.is_none()
            && let Some(ring) = execs.as_mut()
        {
            exec_at = exec_time(ring.get_mut(), pid);
        }
        drain_cycles(probes, session, live, exec_at);
        exec_at
    };
    let exporting = session.exports();
    let end = loop {
        tokio::select! {
            guard = events.readable() => {
                let mut guard = guard?;
                let execed = drain(probes, session, live, &mut execs);
                guard.clear_ready();
                if let Some(at_ns) = execed {
                    break End::TargetExeced { at_ns };
                }
            }
            _ = drain_tick.tick() => {
                if let Some(at_ns) = drain(probes, session, live, &mut execs) {
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
                if let Some(at_ns) = drain(probes, session, live, &mut execs) {
                    break End::TargetExeced { at_ns };
                }
            }
            _ = int.recv() => break End::Signal,
            _ = term.recv() => break End::Signal,
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                break End::Duration;
            }
            _ = tick.tick() => {
                let s = &*session;
                live.tick(&s.tracker, started.elapsed().as_secs_f64(), || {
                    let parts = Parts { assist: false, creations: false, ..Parts::ALL };
                    let mut all = live_signals.sections(&s.read(probes, parts));
                    if let Some(g) = s.goroutines.as_ref() {
                        all.extend(crate::live::signals::goroutine_section(g.samples()));
                    }
                    all
                });
            }
            _ = metrics_tick.tick(), if exporting => {
                session.refresh_metrics(probes, false);
            }
            _ = goroutine_tick.tick(), if session.goroutines.as_ref().is_some_and(GoroutineSampler::active) => {
                if let Some(s) = session.goroutines.as_mut()
                    && !s.sample(clock)
                {
                    debug!(samples = s.samples().len(), "goroutine sampling ended");
                }
            }
        }
    };
    Ok(end)
}

/// Drains the STW events into `session` and shows each completed cycle, with its mark assist
/// time when the assist probes are attached. Events whose world started after `until_ns` (the
/// target's exec) are the new program's and dropped.
pub(super) fn drain_cycles(
    probes: &mut Probes,
    session: &mut Session,
    live: &mut Live,
    until_ns: Option<u64>,
) {
    let mut done = Vec::new();
    probes.drain(|ev| {
        // NB: `now` is the runtime's nanotime() (CLOCK_MONOTONIC, src/runtime/time_nofake.go),
        // the clock of bpf_ktime_get_ns.
        if until_ns.is_some_and(|t| ev.now > 0 && ev.now as u64 > t) {
            debug!(cycles = ev.cycles, "STW after the exec: not the target's");
            return;
        }
        if let Some(c) = session.on_event(&ev) {
            debug!(cycle = c.cycle, pause_ns = c.pause_ns, trigger = %c.trigger, "GC cycle");
            done.push(c);
        }
    });
    let (pid, assist_on) = (session.pid(), session.target.assist.is_some());
    for c in &done {
        live.cycle(c, assist_on.then(|| probes.assist_ns(pid, c.cycle)));
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
