//! `goprobe agent`'s event loop: the fleet of sessions driven by process exec/exit events and
//! timers until SIGTERM or SIGINT.

use std::time::Duration;

use goprobe_common::{LifecycleEvent, lifecycle_kind};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::info;

use super::{Config, fleet::Fleet, pprof::PprofDir};
use crate::{
    export::{ExportConfig, ExportError, Exporter},
    privileges::{self, MissingCapabilities},
    probe::{BpfLogger, Options, ProbeError, Probes, Scope},
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
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("[export] pprof_dir {path}")]
    PprofDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("running the event loop")]
    EventLoop(#[from] std::io::Error),
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
    let mut exporter = Exporter::new(export)?;
    let mut probes = Probes::load_with(Scope::Shared)?;
    let logger = probes.take_logger();
    let lifecycle = probes.watch_lifecycle()?;
    if let Some(addr) = exporter.prometheus_addr() {
        note(DaemonNote::Serving(addr));
    }
    let server = exporter.take_server();
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
    let mut fleet = Fleet::new(probes, options, config, exporter);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if let Some(server) = server {
        rt.spawn(server);
    }
    rt.block_on(async {
        // The exec events from now on are queued while the scan runs: nothing falls between.
        fleet.scan();
        fleet.exporter.set_ready(true);
        info!(targets = fleet.running.len(), "initial scan done");
        note(DaemonNote::Ready(fleet.running.len()));
        watch(
            &mut fleet,
            lifecycle,
            logger,
            pprof.map(|d| (d, pprof_every)),
        )
        .await
    })?;
    fleet.shutdown();
    let skipped: u64 = fleet.skipped.values().sum();
    info!(?fleet.skipped, skipped, "agent stopped; everything detached");
    Ok(())
}

async fn watch(
    fleet: &mut Fleet,
    lifecycle: aya::maps::RingBuf<aya::maps::MapData>,
    logger: Option<BpfLogger>,
    pprof: Option<(PprofDir, Duration)>,
) -> std::io::Result<()> {
    // SAFETY: the ring buffer and the logger own their fds and move into their AsyncFd.
    let mut lifecycle = unsafe { AsyncFd::register(lifecycle) }?;
    let mut logs = match logger {
        // SAFETY: as above.
        Some(l) => Some(unsafe { AsyncFd::register(l) }?),
        None => None,
    };
    let mut term = tokio::signal::unix::signal(SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(SignalKind::interrupt())?;
    let interval = |ms| {
        let mut i = tokio::time::interval(Duration::from_millis(ms));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i
    };
    // NB: as in attach (cli/watch.rs), the GC probes submit without waking user space.
    let mut drain_tick = interval(100);
    let mut pending_tick = interval(20);
    // Per-process work (goroutine count, metric values, per-stack series) every 5 s: export
    // intervals and scrapes are 10 s or more, and with 200 processes at 1 s this was most of
    // the agent's CPU.
    let mut refresh_tick = interval(REFRESH_EVERY_MS);
    let mut reap_tick = interval(1000);
    let mut sweep_tick = interval(10_000);
    // The first profiles one interval after start (the branch is off without pprof_dir).
    let pprof_every = pprof.as_ref().map_or(Duration::from_secs(3600), |p| p.1);
    let mut pprof_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + pprof_every, pprof_every);
    loop {
        tokio::select! {
            guard = lifecycle.readable_mut() => {
                let mut guard = guard?;
                guard.clear_ready();
                lifecycle_events(fleet, guard.get_inner_mut());
            }
            guard = async { logs.as_mut().expect("guarded").readable_mut().await }, if logs.is_some() => {
                let mut guard = guard?;
                guard.get_inner_mut().flush();
                guard.clear_ready();
            }
            _ = pending_tick.tick() => {
                // NB: an event submitted between the last read and clear_ready() wakes no one;
                // reading here too bounds its wait by this tick.
                lifecycle_events(fleet, lifecycle.get_mut());
                fleet.attach_ready();
            }
            _ = drain_tick.tick() => fleet.drain(),
            _ = refresh_tick.tick() => {
                fleet.sample_goroutines();
                fleet.refresh(false);
            }
            _ = reap_tick.tick() => fleet.probes.reap(REAP_AFTER),
            _ = sweep_tick.tick() => fleet.sweep(),
            _ = pprof_tick.tick(), if pprof.is_some() => {
                if let Some((dir, _)) = &pprof {
                    fleet.write_profiles(dir);
                }
            }
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    fleet.drain();
    Ok(())
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

/// Handles the lifecycle events waiting in the ring buffer.
fn lifecycle_events(fleet: &mut Fleet, ring: &mut aya::maps::RingBuf<aya::maps::MapData>) {
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        if item.len() >= size_of::<LifecycleEvent>() {
            // SAFETY: the kernel side writes one LifecycleEvent per record; records are 8-byte
            // aligned, so read_unaligned.
            events
                .push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<LifecycleEvent>()) });
        }
    }
    for ev in events {
        match ev.kind {
            lifecycle_kind::EXEC => fleet.on_exec(ev.tgid, ev.ktime_ns),
            lifecycle_kind::EXIT => fleet.on_exit(ev.tgid),
            _ => {}
        }
    }
}
