//! `goprobe agent`: profile every selected Go process on the host (or in the pod) continuously,
//! attaching as they start and detaching as they exit, and export their metrics.

mod check;

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use goprobe::{
    daemon::{
        Config,
        run::{DaemonNote, run as run_daemon},
    },
    export::ExportConfig,
};

use super::export::ExportArgs;

/// Arguments of `goprobe agent`.
#[derive(Debug, Args)]
#[command(
    after_help = "The agent scans /proc once, then follows exec and exit through the \
    sched:sched_process_exec/exit tracepoints: a Go program is attached within milliseconds of \
    its start (after its runtime has set itself up), detached when it exits or execs, and its \
    GC pauses, allocations, goroutines and CPU samples are exported with its resource \
    attributes (process, container, Kubernetes pod). Processes of one binary share its uprobes.\n\n\
    A GC cycle or stop-the-world pause of 10 ms or more writes a snapshot (a JSON report of \
    that process' last 10 s) into /var/lib/goprobe/snapshots ([snapshots] in the \
    configuration).\n\n\
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
    let export = export_config(&args.export, &config).map_err(anyhow::Error::msg)?;
    run_daemon(config, options, export, &mut |n| match n {
        DaemonNote::Serving(addr) => {
            eprintln!("goprobe: serving http://{addr}/metrics, /healthz and /readyz");
        }
        DaemonNote::Ready(n) => eprintln!("goprobe: agent ready, profiling {n} Go processes"),
    })?;
    Ok(())
}

/// The command line's export flags over the environment over the configuration file's
/// `[export]`.
fn export_config(args: &ExportArgs, config: &Config) -> Result<ExportConfig, String> {
    let mut c = args.config(config.export.otlp_settings())?;
    c.prometheus = c.prometheus.or(config.export.listen);
    Ok(c)
}
