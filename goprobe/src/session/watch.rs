//! The one watch loop of goprobe: it waits on the probes' ring buffers, the target's pidfd, the
//! terminal, signals and timers, and hands each event to its [`Host`] — the one window of
//! `goprobe attach` and `goprobe doctor` ([`super::observe`]), or the fleet of `goprobe agent`
//! (crate::daemon) — until the host or a stop condition ends it.

use std::{
    os::fd::{OwnedFd, RawFd},
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use goprobe_common::{LifecycleEvent, lifecycle_kind};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind, time::Instant};

use super::End;
use crate::{live::screen, probe::BpfLogger};

/// What a timer of the loop is for; the host says what each does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Take the STW events waiting in the ring buffer.
    ///
    /// NB: the kernel side submits events without waking this loop (a wake-up costs the
    /// goroutine that stopped the world ~29 µs, see ebpf gc.rs `try_stw_start_ret`), so the
    /// ring buffer is drained on a timer; a ring a quarter full still wakes the loop.
    Drain,
    /// Redraw the live view.
    Redraw,
    /// Refresh the exported metrics.
    Metrics,
    /// Read the goroutine count.
    Goroutines,
    /// Attach the processes whose runtime is set up by now (agent).
    Pending,
    /// Detach released probes (agent).
    Reap,
    /// Drop processes that ended unseen (agent).
    Sweep,
    /// Write the rotated pprof files (agent).
    Profiles,
}

/// One timer: what, how often, and whether it first fires at once or one period later.
#[derive(Clone, Copy, Debug)]
pub struct Timer {
    pub tick: Tick,
    pub every: Duration,
    pub at_start: bool,
}

impl Timer {
    /// A timer that fires at once, then every `every`.
    pub fn every(tick: Tick, every: Duration) -> Self {
        Self {
            tick,
            every,
            at_start: true,
        }
    }
}

/// What the loop waits on besides the STW ring buffer and the timers.
pub struct Sources {
    /// The process lifecycle ring buffer (exec and exit events).
    pub lifecycle: Option<RingBuf<MapData>>,
    /// The BPF programs' log messages.
    pub logger: Option<BpfLogger>,
    /// The watch ends with [`End::TargetExited`] when this pidfd's process exits.
    pub pidfd: Option<OwnedFd>,
    /// Read the keys typed on stdin (the live view).
    pub keys: bool,
    /// The watch ends with [`End::Duration`] after this long.
    pub duration: Option<Duration>,
}

/// What the loop drives. Each method returns `Some` to end the watch.
pub trait Host {
    /// The STW ring buffer's file descriptor (owned by the host's probes).
    fn events_fd(&self) -> RawFd;
    /// STW events are waiting. `lifecycle` is the lifecycle ring, for a host that must know of
    /// an exec before it takes the events.
    fn drain(&mut self, lifecycle: Option<&mut RingBuf<MapData>>) -> Option<End>;
    /// Lifecycle events are waiting in `ring`.
    fn lifecycle(&mut self, ring: &mut RingBuf<MapData>) -> Option<End>;
    /// Timer `tick` fired.
    fn tick(&mut self, tick: Tick, lifecycle: Option<&mut RingBuf<MapData>>) -> Option<End>;
    /// Keys were typed in the live view.
    fn keys(&mut self, typed: &[u8]) -> Option<End> {
        screen::wants_quit(typed).then_some(End::Quit)
    }
}

/// Runs the loop until `host`, the pidfd, a signal or the duration ends it.
pub async fn watch(
    host: &mut impl Host,
    sources: Sources,
    timers: &[Timer],
) -> std::io::Result<End> {
    // SAFETY: the ring buffer fd belongs to the host's probes, which outlive `events`.
    let events = unsafe { register(host.events_fd()) }?;
    // SAFETY: the pidfd, the rings and the logger own their fds and move into their AsyncFd.
    let exited = sources.pidfd.map(|p| unsafe { register(p) }).transpose()?;
    // SAFETY: as above.
    let mut lifecycle = sources
        .lifecycle
        .map(|l| unsafe { register(l) })
        .transpose()?;
    // SAFETY: as above.
    let mut logs = sources.logger.map(|l| unsafe { register(l) }).transpose()?;
    // SAFETY: stdin stays open for the whole run.
    let keys = if sources.keys {
        Some(unsafe { register(std::io::stdin()) }?)
    } else {
        None
    };
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let deadline = sources.duration.map(|d| Instant::now() + d);
    let mut timers = Timers::new(timers);
    let end = loop {
        let end = tokio::select! {
            guard = events.readable() => {
                let mut guard = guard?;
                let end = host.drain(ring(&mut lifecycle));
                guard.clear_ready();
                end
            }
            guard = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                let mut guard = guard?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
                None
            }
            guard = async { keys.as_ref().expect("guarded").readable().await }, if keys.is_some() => {
                let mut guard = guard?;
                let typed = screen::read_keys();
                guard.clear_ready();
                host.keys(&typed)
            }
            _ = async { exited.as_ref().expect("guarded").readable().await }, if exited.is_some() => {
                Some(End::TargetExited)
            }
            guard = async { lifecycle.as_mut().expect("guarded").readable_mut().await }, if lifecycle.is_some() => {
                let mut guard = guard?;
                guard.clear_ready();
                host.lifecycle(guard.get_inner_mut())
            }
            _ = int.recv() => Some(End::Signal),
            _ = term.recv() => Some(End::Signal),
            _ = async { tokio::time::sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                Some(End::Duration)
            }
            tick = timers.next() => host.tick(tick, ring(&mut lifecycle)),
        };
        if let Some(end) = end {
            break end;
        }
    };
    Ok(end)
}

/// The lifecycle ring inside its reactor registration, if there is one.
fn ring(l: &mut Option<AsyncFd<RingBuf<MapData>>>) -> Option<&mut RingBuf<MapData>> {
    l.as_mut().map(AsyncFd::get_mut)
}

/// The loop's timers, each due at its own time.
struct Timers(Vec<(Instant, Timer)>);

impl Timers {
    fn new(timers: &[Timer]) -> Self {
        let now = Instant::now();
        Self(
            timers
                .iter()
                .map(|t| (if t.at_start { now } else { now + t.every }, *t))
                .collect(),
        )
    }

    /// Waits for the next timer due and schedules it again; missed ticks are skipped, not
    /// fired in a burst. Cancel-safe: nothing changes until the wait is over.
    async fn next(&mut self) -> Tick {
        let Some(i) = (0..self.0.len()).min_by_key(|&i| self.0[i].0) else {
            return std::future::pending().await;
        };
        tokio::time::sleep_until(self.0[i].0).await;
        let (due, t) = &mut self.0[i];
        let now = Instant::now();
        *due += t.every;
        if *due <= now {
            *due = now + t.every;
        }
        t.tick
    }
}

/// The lifecycle events waiting in `ring`.
pub fn lifecycle_events(ring: &mut RingBuf<MapData>) -> Vec<LifecycleEvent> {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<LifecycleEvent>() {
            // SAFETY: the kernel side writes one LifecycleEvent per record; records are 8-byte
            // aligned, so read_unaligned.
            events
                .push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<LifecycleEvent>()) });
        }
    }
    events
}

/// When process `pid` exec()ed (CLOCK_MONOTONIC ns), if one of the lifecycle events waiting in
/// `ring` (every exec on the host) says so.
pub fn exec_time(ring: &mut RingBuf<MapData>, pid: u32) -> Option<u64> {
    lifecycle_events(ring)
        .into_iter()
        .find(|ev| ev.kind == lifecycle_kind::EXEC && ev.tgid == pid)
        .map(|ev| ev.ktime_ns)
}

/// Registers `fd` with the reactor.
///
/// # Safety
/// The fd must stay open and the same for the lifetime of the returned `AsyncFd`.
unsafe fn register<T: std::os::fd::AsRawFd>(fd: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: upheld by the caller.
    Ok(unsafe { AsyncFd::register(fd) }?)
}
