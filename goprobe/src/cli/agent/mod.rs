//! `goprobe agent`: profile every selected Go process on the host (or in the pod) continuously,
//! attaching as they start and detaching as they exit, and export their metrics.

mod check;
mod fleet;
mod os;
mod pprof;

use std::{path::PathBuf, time::Duration};

use anyhow::{Context as _, Result};
use clap::Args;
use goprobe::{
    daemon::Config,
    export::{ExportConfig, Exporter, OtlpConfig, Protocol},
    privileges,
    probe::{Probes, Scope},
};
use goprobe_common::{LifecycleEvent, lifecycle_kind};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::info;

use super::export::ExportArgs;
use fleet::Fleet;

/// How long released probes stay attached (unused) before they are detached: past the burst
/// of an exec, whose new probes would wait on their detachment (`Probes::bury`).
const REAP_AFTER: Duration = Duration::from_secs(2);

/// How often each process' goroutine count and exported values are refreshed, in ms.
const REFRESH_EVERY_MS: u64 = 5000;

/// Arguments of `goprobe agent`.
#[derive(Debug, Args)]
#[command(
    after_help = "The agent scans /proc once, then follows exec and exit through the \
    sched:sched_process_exec/exit tracepoints: a Go program is attached within milliseconds of \
    its start (after its runtime has set itself up), detached when it exits or execs, and its \
    GC pauses, allocations, goroutines and CPU samples are exported with its resource \
    attributes (process, container, Kubernetes pod). Processes of one binary share its uprobes.\n\n\
    With no --config, every Go process it can see is profiled with the defaults \
    (docs/config.md lists every key).\n\n\
    Examples:\n  \
    sudo goprobe agent --prometheus 127.0.0.1:9464\n  \
    sudo goprobe agent --config /etc/goprobe/goprobe.toml --otlp-endpoint http://127.0.0.1:4318\n  \
    goprobe agent --check"
)]
pub struct AgentArgs {
    /// The configuration file (TOML): selection, signals, export. Default: none, every Go
    /// process with the defaults.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Report which kernel features and capabilities goprobe needs are present, load the BPF
    /// programs once, and exit (0 when the agent can run).
    #[arg(long)]
    pub check: bool,
    #[command(flatten)]
    pub export: ExportArgs,
}

/// Runs `goprobe agent`.
pub fn run(args: AgentArgs) -> Result<()> {
    if args.check {
        return check::run();
    }
    let config = match &args.config {
        Some(path) => Config::read(path)?,
        None => Config::default(),
    };
    let options = config
        .signals
        .options()
        .map_err(anyhow::Error::msg)
        .context("the configuration's [signals]")?;
    if args.export.service_name.is_some() {
        anyhow::bail!(
            "--service-name names one process; in agent mode each process' service.name comes \
             from its OTEL_SERVICE_NAME, else its executable name"
        );
    }
    privileges::check()?;
    raise_fd_limit();
    let export = export_config(&args.export, &config).map_err(anyhow::Error::msg)?;
    let mut exporter = Exporter::new(export)?;
    let mut probes = Probes::load_with(Scope::Shared)?;
    let logger = probes.take_logger();
    let lifecycle = probes.watch_lifecycle()?;
    if let Some(addr) = exporter.prometheus_addr() {
        eprintln!("goprobe: serving http://{addr}/metrics, /healthz and /readyz");
    }
    let server = exporter.take_server();
    let pprof = config
        .export
        .pprof_dir
        .as_deref()
        .map(|d| {
            pprof::PprofDir::new(d, config.export.pprof_max_mb)
                .with_context(|| format!("[export] pprof_dir {}", d.display()))
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
        eprintln!(
            "goprobe: agent ready, profiling {} Go processes",
            fleet.running.len()
        );
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
    logger: Option<goprobe::probe::BpfLogger>,
    pprof: Option<(pprof::PprofDir, Duration)>,
) -> Result<()> {
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

/// The command line's export flags over the configuration file's `[export]`.
fn export_config(args: &ExportArgs, config: &Config) -> Result<ExportConfig, String> {
    let mut c = args.config()?;
    let e = &config.export;
    if c.otlp.is_none()
        && let Some(endpoint) = &e.otlp_endpoint
    {
        c.otlp = Some(OtlpConfig {
            endpoint: endpoint.clone(),
            protocol: if e.otlp_protocol == "grpc" {
                Protocol::Grpc
            } else {
                Protocol::Http
            },
            interval: e.otlp_interval(),
        });
    }
    c.prometheus = c.prometheus.or(e.listen);
    Ok(c)
}
