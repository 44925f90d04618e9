//! `goprobe.toml`: which processes `goprobe agent` profiles, what it watches in each, where it
//! exports. Every key is optional; docs/config.md lists them with their defaults.

use std::{net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::{
    export::{OtlpSettings, Protocol},
    probe::{
        AllocMode, Options,
        budget::{Budget, SIGNALS},
    },
};

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// At most this many processes are profiled at once; more are counted as skipped.
    pub max_targets: Option<usize>,
    pub select: Select,
    pub signals: Signals,
    pub export: Export,
    pub snapshots: Snapshots,
}

/// Which Go processes to profile. A process is profiled when it matches every non-empty
/// `include_*` list (any entry of each) and no `exclude_*` entry.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Select {
    /// Globs (`*`, `?`) on the executable's path: `/usr/bin/*`, `*/caddy`.
    pub include_exe: Vec<String>,
    pub exclude_exe: Vec<String>,
    /// Substrings of the command line (arguments joined by spaces).
    pub include_cmdline: Vec<String>,
    pub exclude_cmdline: Vec<String>,
    /// Substrings of the process' cgroup paths: a container id, `kubepods`, a systemd unit.
    pub include_cgroup: Vec<String>,
    pub exclude_cgroup: Vec<String>,
    /// `own`: only processes in goprobe's own pid namespace (a sidecar with
    /// `shareProcessNamespace` sees its pod's); `any` (the default): all it can see.
    pub pid_namespace: PidNamespace,
}

/// See [`Select::pid_namespace`].
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PidNamespace {
    #[default]
    Any,
    Own,
}

/// What is watched in each process.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Signals {
    /// `sampled` (default), `spans`, `exact` or `off`, as `goprobe attach --alloc`.
    pub alloc: String,
    /// On-CPU samples per second and CPU; 0 turns CPU sampling off.
    pub cpu_hz: u32,
    pub page_faults: bool,
    /// The goroutine count (read from memory: free for the target).
    pub goroutines: bool,
    /// Goroutine creation sites and created/exited counts (a probe hit per goroutine created
    /// and exited: about 6 µs each).
    pub goroutine_sites: bool,
    /// Faults per page-fault stack sample, as `goprobe attach --page-fault-period`.
    pub page_fault_period: u32,
    /// Per-second caps on each signal's BPF work, program runs per CPU (`page_faults`, `cpu`,
    /// `alloc`, `goroutines`, `assist`, `stacks`; 0 = none), as `goprobe attach --budget`.
    pub budget: std::collections::BTreeMap<String, u32>,
    /// Bytes per allocation sample when goprobe turns the runtime's heap-profile sampler on in
    /// a program that has it off (`runtime.MemProfileRate` 0); a program's own rate is kept.
    pub alloc_sample_bytes: u64,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            alloc: "sampled".into(),
            // NB: a prime, so samples do not lock step with periodic work (as in attach).
            cpu_hz: 19,
            page_faults: false,
            goroutines: true,
            goroutine_sites: false,
            page_fault_period: crate::probe::perf::PAGE_FAULT_PERIOD,
            budget: Default::default(),
            // Left running for weeks, the agent samples 8× less often than `goprobe attach`
            // (512 KiB): each sample is a uprobe hit and a stack walk in the target, and the
            // runtime's own heap-profile bookkeeping (issue 19: at ~1,200 samples a second
            // on an allocation-heavy program that was ~0.5% of its CPU). Estimates stay
            // unbiased; they need 8× the allocation for the same relative error.
            alloc_sample_bytes: 4 << 20,
        }
    }
}

impl Signals {
    /// The probe options these signals ask for.
    pub fn options(&self) -> Result<Options, String> {
        let alloc = match self.alloc.as_str() {
            "sampled" => AllocMode::Sampled,
            "spans" => AllocMode::Spans,
            "exact" => AllocMode::Exact,
            "off" => AllocMode::Off,
            other => {
                return Err(format!(
                    "signals.alloc = {other:?}: expected sampled, spans, exact or off"
                ));
            }
        };
        let mut budget = Budget::default();
        for (name, &cap) in &self.budget {
            if !budget.set(name, cap) {
                return Err(format!(
                    "signals.budget.{name}: no such signal (have {})",
                    SIGNALS.map(|(n, _)| n).join(", ")
                ));
            }
        }
        Ok(Options {
            alloc,
            cpu_hz: self.cpu_hz,
            page_faults: self.page_faults,
            goroutines: self.goroutines,
            goroutine_sites: self.goroutine_sites,
            page_fault_period: self.page_fault_period,
            budget,
            alloc_rate: self.alloc_sample_bytes.max(1),
        })
    }
}

/// Where metrics go; the command line's flags and the OpenTelemetry variables win
/// (docs/metrics.md, "Where OTLP goes").
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Export {
    /// The generic endpoint: over HTTP, `v1/metrics` is appended to its path.
    pub otlp_endpoint: Option<String>,
    /// The metrics endpoint, used as it is; wins over `otlp_endpoint`.
    pub otlp_metrics_endpoint: Option<String>,
    /// `http` (HTTP/protobuf, the default) or `grpc`.
    pub otlp_protocol: Option<String>,
    /// Seconds between OTLP pushes.
    pub otlp_interval_s: f64,
    /// Seconds each OTLP push may take, the last one at exit too (0: indefinite; default 5).
    pub otlp_timeout_s: Option<f64>,
    /// Address of the HTTP listener: `/metrics`, `/healthz`, `/readyz`.
    pub listen: Option<SocketAddr>,
    /// Write every process' profiles (pprof, gzipped) into this directory.
    pub pprof_dir: Option<std::path::PathBuf>,
    /// Seconds between two profiles of a process (each covers the time since it was attached).
    pub pprof_interval_s: f64,
    /// The directory's size cap in MiB: the oldest files go first.
    pub pprof_max_mb: u64,
}

impl Default for Export {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_metrics_endpoint: None,
            otlp_protocol: None,
            otlp_interval_s: 10.0,
            otlp_timeout_s: None,
            listen: None,
            pprof_dir: None,
            pprof_interval_s: 60.0,
            pprof_max_mb: 100,
        }
    }
}

impl Export {
    pub fn otlp_interval(&self) -> Duration {
        Duration::from_secs_f64(self.otlp_interval_s.max(0.1))
    }

    /// The OTLP settings of this file, the lowest of their sources.
    pub fn otlp_settings(&self) -> OtlpSettings {
        OtlpSettings {
            endpoint: self.otlp_endpoint.clone(),
            metrics_endpoint: self.otlp_metrics_endpoint.clone(),
            protocol: self.otlp_protocol.as_deref().map(|p| match p {
                "grpc" => Protocol::Grpc,
                _ => Protocol::Http,
            }),
            timeout: self
                .otlp_timeout_s
                .map(|s| Duration::from_secs_f64(s.max(0.0))),
            interval: Some(self.otlp_interval()),
        }
    }

    pub fn pprof_interval(&self) -> Duration {
        Duration::from_secs_f64(self.pprof_interval_s.max(1.0))
    }
}

/// Pause-triggered snapshots (daemon::snapshot): a small report of the last `window_s` seconds
/// of a process, written when one of its pauses lasts `pause_threshold` or more.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Snapshots {
    /// A GC cycle's pause (all its stop-the-worlds, as `MemStats.PauseNs`) or a non-GC
    /// stop-the-world of at least this long writes a snapshot (`"10ms"`); `"off"`: none.
    pub pause_threshold: String,
    /// Where; by default `$STATE_DIRECTORY/snapshots` (systemd's `StateDirectory=`), else
    /// `/var/lib/goprobe/snapshots`.
    pub dir: Option<std::path::PathBuf>,
    /// Seconds of history a snapshot covers (at least this much, at most twice: see
    /// docs/config.md).
    pub window_s: f64,
    /// Snapshots per process and minute at most (a burst of this many, then one every
    /// 60/max_per_minute seconds); more are counted as skipped.
    pub max_per_minute: u32,
    /// The directory's caps: the oldest snapshots go first.
    pub max_files: usize,
    pub max_mb: u64,
}

impl Default for Snapshots {
    fn default() -> Self {
        Self {
            // Ten times a healthy GC pause budget: rare enough to be worth a look.
            pause_threshold: "10ms".into(),
            dir: None,
            window_s: 10.0,
            max_per_minute: 6,
            max_files: 100,
            max_mb: 20,
        }
    }
}

impl Snapshots {
    /// The threshold in nanoseconds; `None` when snapshots are off.
    pub fn threshold_ns(&self) -> Result<Option<u64>, String> {
        if self.pause_threshold.trim() == "off" {
            return Ok(None);
        }
        crate::text::duration::parse_ns(&self.pause_threshold)
            .map(Some)
            .map_err(|e| format!("snapshots.pause_threshold = {e} (or \"off\")"))
    }

    /// The directory snapshots go to.
    pub fn dir(&self) -> std::path::PathBuf {
        self.dir.clone().unwrap_or_else(|| {
            std::env::var_os("STATE_DIRECTORY")
                .and_then(|d| std::env::split_paths(&d).next())
                .map_or_else(|| "/var/lib/goprobe".into(), std::path::PathBuf::from)
                .join("snapshots")
        })
    }

    pub fn window(&self) -> Duration {
        Duration::from_secs_f64(self.window_s.clamp(1.0, 3600.0))
    }
}

impl Config {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks a configuration text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        config.signals.options()?;
        config.snapshots.threshold_ns()?;
        if let Some(p) = &config.export.otlp_protocol
            && !matches!(p.as_str(), "http" | "grpc")
        {
            return Err(format!(
                "export.otlp_protocol = {p:?}: expected http or grpc"
            ));
        }
        if let Some(t) = config.export.otlp_timeout_s
            && !(t >= 0.0 && Duration::try_from_secs_f64(t).is_ok())
        {
            return Err(format!(
                "export.otlp_timeout_s = {t}: expected seconds, 0 or more"
            ));
        }
        Ok(config)
    }

    /// [`Self::max_targets`] or its default.
    pub fn max_targets(&self) -> usize {
        self.max_targets.unwrap_or(DEFAULT_MAX_TARGETS)
    }
}

/// Targets at once by default: well under the BPF maps' capacity (`MAX_TARGETS`, 1024).
pub const DEFAULT_MAX_TARGETS: usize = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        let o = c.signals.options().unwrap();
        assert_eq!(o.alloc, AllocMode::Sampled);
        assert_eq!(o.cpu_hz, 19);
        assert!(!o.page_faults && o.goroutines);
        assert_eq!(c.max_targets(), DEFAULT_MAX_TARGETS);
    }

    #[test]
    fn every_key_and_the_mistakes() {
        let c = Config::parse(
            r#"
            max_targets = 10
            [select]
            include_exe = ["/usr/bin/*"]
            exclude_cmdline = ["--no-profile"]
            include_cgroup = ["kubepods"]
            pid_namespace = "own"
            [signals]
            alloc = "off"
            cpu_hz = 0
            page_faults = true
            page_fault_period = 50
            [signals.budget]
            alloc = 0
            page_faults = 7
            [export]
            otlp_endpoint = "http://collector:4318"
            otlp_protocol = "grpc"
            otlp_interval_s = 5
            otlp_timeout_s = 2.5
            listen = "127.0.0.1:9464"
            "#,
        )
        .unwrap();
        assert_eq!(c.max_targets(), 10);
        assert_eq!(c.select.pid_namespace, PidNamespace::Own);
        let o = c.signals.options().unwrap();
        assert_eq!(o.alloc, AllocMode::Off);
        assert_eq!(o.page_fault_period, 50);
        let caps = o.budget.caps;
        assert_eq!((caps[2], caps[0]), (0, 7), "alloc, page_faults: {caps:?}");
        assert!(
            Config::parse("[signals.budget]\nfaults = 1")
                .unwrap_err()
                .contains("page_faults")
        );
        assert_eq!(c.export.otlp_interval(), Duration::from_secs(5));
        let otlp = c.export.otlp_settings();
        assert_eq!(otlp.endpoint.as_deref(), Some("http://collector:4318"));
        assert_eq!(otlp.protocol, Some(Protocol::Grpc));
        assert_eq!(otlp.timeout, Some(Duration::from_millis(2500)));
        assert!(Config::parse("[export]\notlp_timeout_s = -1").is_err());
        assert!(
            Config::parse("[select]\ninclude = []")
                .unwrap_err()
                .contains("unknown field")
        );
        assert!(
            Config::parse("[signals]\nalloc = \"all\"")
                .unwrap_err()
                .contains("expected")
        );
        assert!(Config::parse("[export]\notlp_protocol = \"udp\"").is_err());
        assert!(Config::parse("[select]\npid_namespace = \"host\"").is_err());
    }

    #[test]
    fn snapshots_are_on_by_default_and_can_be_turned_off() {
        let c = Config::default();
        assert_eq!(c.snapshots.threshold_ns(), Ok(Some(10_000_000)));
        let c =
            Config::parse("[snapshots]\npause_threshold = \"off\"\ndir = \"/tmp/s\"\nwindow_s = 5")
                .unwrap();
        assert_eq!(c.snapshots.threshold_ns(), Ok(None));
        assert_eq!(c.snapshots.dir(), std::path::Path::new("/tmp/s"));
        assert_eq!(c.snapshots.window(), Duration::from_secs(5));
        let e = Config::parse("[snapshots]\npause_threshold = \"10\"").unwrap_err();
        assert!(e.contains("pause_threshold"), "{e}");
    }
}
