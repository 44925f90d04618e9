//! `goprobe agent`'s event loop: the fleet of sessions driven by process exec/exit events and
//! timers until SIGTERM or SIGINT.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use goprobe_common::lifecycle_kind;
use tracing::{info, warn};

use super::{Config, fleet::Fleet, pprof::PprofDir, snapshot::Snapshots};
use crate::{
    export::{ExportConfig, ExportError, Exporter},
    privileges::{self, MissingCapabilities},
    probe::{Options, ProbeError, Probes, Scope},
    session::{
        End,
        watch::{Host, Sources, Tick, Timer, lifecycle_events, watch},
    },
};

/// How long released probes stay attached (unused) before they are detached: past the burst
/// of an exec, whose new probes would wait on their detachment (`Probes::bury`).
const REAP_AFTER: Duration = Duration::from_secs(2);

/// How often each process' goroutine count and exported values are refreshed, in ms.
const REFRESH_EVERY_MS: u64 = 5000;

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Privileges(#[from] MissingCapabilities),
    /// Boxed: a `ProbeError` is large, and every `Result` of this type would carry its size.
    #[error(transparent)]
    Probe(Box<ProbeError>),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("[export] pprof_dir {path}")]
    PprofDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("[snapshots] dir {path}")]
    SnapshotDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("running the event loop")]
    EventLoop(#[from] std::io::Error),
}

impl From<ProbeError> for DaemonError {
    fn from(e: ProbeError) -> Self {
        Self::Probe(Box::new(e))
    }
}

/// What happens that the person running the agent is told (the CLI words it).
#[derive(Debug)]
pub enum DaemonNote {
    /// Metrics, `/healthz` and `/readyz` are served here.
    Serving(std::net::SocketAddr),
    /// The initial scan is done; this many processes are profiled.
    Ready(usize),
}

/// Runs the agent with `config` (signals as `options`) until SIGTERM or SIGINT, then detaches
/// everything.
pub fn run(
    config: Config,
    options: Options,
    export: ExportConfig,
    note: &mut dyn FnMut(DaemonNote),
) -> Result<(), DaemonError> {
    privileges::check()?;
    raise_fd_limit();
    pin_mmap_threshold();
    let mut exporter = Exporter::new(export)?;
    let mut probes = Probes::load_with(Scope::Shared)?;
    let logger = probes.take_logger();
    let lifecycle = probes.watch_lifecycle()?;
    if let Some(addr) = exporter.prometheus_addr() {
        note(DaemonNote::Serving(addr));
    }
    // On its own thread: it answers from here to the exit, whatever the loop does.
    exporter.serve()?;
    let pprof = config
        .export
        .pprof_dir
        .as_deref()
        .map(|d| {
            PprofDir::new(d, config.export.pprof_max_mb).map_err(|source| DaemonError::PprofDir {
                path: d.to_owned(),
                source,
            })
        })
        .transpose()?;
    let pprof_every = config.export.pprof_interval();
    let snapshots = snapshots(&config)?;
    let mut fleet = Fleet::new(probes, options, config, exporter);
    fleet.snapshots = snapshots;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let timers = timers(pprof.is_some().then_some(pprof_every));
    let sources = Sources {
        lifecycle: Some(lifecycle),
        logger,
        pidfd: None,
        keys: false,
        duration: None,
    };
    rt.block_on(async {
        // The exec events from now on are queued while the scan runs: nothing falls between.
        fleet.scan();
        fleet.exporter.set_ready(true);
        info!(targets = fleet.running.len(), "initial scan done");
        note(DaemonNote::Ready(fleet.running.len()));
        let mut agent = Agent {
            fleet: &mut fleet,
            pprof,
        };
        watch(&mut agent, sources, &timers).await
    })?;
    fleet.exporter.set_stopping();
    fleet.drain();
    let final_push = fleet.shutdown();
    let skipped: u64 = fleet.skipped.values().sum();
    info!(?fleet.skipped, skipped, "agent stopped; everything detached");
    final_push.wait();
    Ok(())
}

/// The loop's host in agent mode: the fleet and its pprof directory.
struct Agent<'a> {
    fleet: &'a mut Fleet,
    pprof: Option<PprofDir>,
}

impl Host for Agent<'_> {
    fn events_fd(&self) -> std::os::fd::RawFd {
        self.fleet.probes.events_fd()
    }

    fn drain(&mut self, _: Option<&mut RingBuf<MapData>>) -> Option<End> {
        self.fleet.drain();
        None
    }

    fn lifecycle(&mut self, ring: &mut RingBuf<MapData>) -> Option<End> {
        on_lifecycle(self.fleet, ring);
        None
    }

    fn tick(&mut self, tick: Tick, lifecycle: Option<&mut RingBuf<MapData>>) -> Option<End> {
        let fleet = &mut *self.fleet;
        match tick {
            Tick::Pending => {
                // NB: an event submitted between the last read and clear_ready() wakes no one;
                // reading here too bounds its wait by this tick.
                if let Some(ring) = lifecycle {
                    on_lifecycle(fleet, ring);
                }
                fleet.attach_ready();
            }
            Tick::Drain => {
                fleet.exporter.beat();
                fleet.drain();
            }
            // The goroutine counts are read with the metrics, every few seconds; the per-stack
            // rows are taken then too (bounded kernel maps, see `Fleet::take`).
            Tick::Metrics => {
                fleet.take(self.pprof.is_some());
                fleet.sample_goroutines();
                fleet.refresh(false);
                fleet.snapshot_tick();
            }
            Tick::Reap => fleet.probes.reap(REAP_AFTER),
            Tick::Sweep => fleet.sweep(),
            Tick::Profiles => {
                if let Some(dir) = &self.pprof {
                    fleet.write_profiles(dir);
                }
            }
            Tick::Redraw | Tick::Goroutines => {}
        }
        None
    }
}

/// The pause-triggered snapshots `config` asks for. A directory set in the file must be
/// usable; the default one may not be (a read-only system, no `StateDirectory=`): then
/// snapshots are off, with a warning.
fn snapshots(config: &Config) -> Result<Option<Snapshots>, DaemonError> {
    let c = &config.snapshots;
    match Snapshots::new(c) {
        Ok(s) => {
            if let Some(s) = &s {
                info!(dir = %s.dir().display(), threshold = %c.pause_threshold, "pause-triggered snapshots on");
            }
            Ok(s)
        }
        Err(source) if c.dir.is_some() => Err(DaemonError::SnapshotDir {
            path: c.dir(),
            source,
        }),
        Err(e) => {
            warn!(
                dir = %c.dir().display(),
                "pause-triggered snapshots off: cannot create the directory ({e}); set \
                 [snapshots] dir, or pause_threshold = \"off\""
            );
            Ok(None)
        }
    }
}

/// The agent's timers; `pprof_every` when profiles are written.
fn timers(pprof_every: Option<Duration>) -> Vec<Timer> {
    let ms = Duration::from_millis;
    let mut timers = vec![
        Timer::every(Tick::Drain, ms(100)),
        Timer::every(Tick::Pending, ms(20)),
        // Per-process work (goroutine count, metric values, per-stack series) every 5 s:
        // export intervals and scrapes are 10 s or more, and with 200 processes at 1 s this
        // was most of the agent's CPU.
        Timer::every(Tick::Metrics, ms(REFRESH_EVERY_MS)),
        Timer::every(Tick::Reap, ms(1000)),
        Timer::every(Tick::Sweep, ms(10_000)),
    ];
    if let Some(every) = pprof_every {
        // The first profiles one interval after start.
        timers.push(Timer {
            tick: Tick::Profiles,
            every,
            at_start: false,
        });
    }
    timers
}

/// Keeps large allocations out of the heap, so that the agent's RSS stays flat under scrapes.
///
/// NB: glibc raises its mmap threshold to the size of the largest mmapped block freed (malloc.c,
/// "dynamic mmap threshold", up to 32 MiB on 64-bit), so after the first multi-MiB `/metrics`
/// render of a large fleet the next ones come from the brk heap, which fragments around the
/// per-refresh allocations: measured, 200 targets scraped every 3 s grew the agent to 192 MiB in
/// two minutes; with the threshold pinned at 64 KiB (which also turns the adjustment off),
/// 62 MiB.
fn pin_mmap_threshold() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a malloc parameter; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
    }
}

/// Raises the soft limit of open files to the hard one: each profiled process holds a few
/// (its /proc files, its binary for symbols) and each uprobe one or two.
fn raise_fd_limit() {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut l: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
    }
}

/// Handles the lifecycle events waiting in `ring`.
fn on_lifecycle(fleet: &mut Fleet, ring: &mut RingBuf<MapData>) {
    for ev in lifecycle_events(ring) {
        match ev.kind {
            lifecycle_kind::EXEC => fleet.on_exec(ev.tgid, ev.ktime_ns),
            lifecycle_kind::EXIT => fleet.on_exit(ev.tgid),
            _ => {}
        }
    }
}
