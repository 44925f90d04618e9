//! Metrics export (docs/metrics.md): OTLP push (HTTP/protobuf or gRPC) and a Prometheus
//! endpoint, both fed by one OpenTelemetry SDK meter provider per profiled process, read through
//! one manual reader.
//!
//! The watch loop records GC cycles as they complete ([`TargetMetrics::cycles`]) and refreshes a
//! [`Snapshot`] of everything else about once a second; the OTLP push thread (`otlp.rs`) and the
//! scrape handler (`prometheus.rs`), each on a thread of its own, read the snapshot through
//! observable instruments. Where OTLP goes is resolved in `settings.rs`.

pub mod collect;
mod http;
pub mod metrics;
mod otlp;
pub mod prometheus;
pub mod resource;
pub mod settings;
pub mod topn;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::{
    Resource,
    metrics::{ManualReader, SdkMeterProvider, data::ResourceMetrics, reader::MetricReader as _},
};
use tracing::{debug, warn};

pub use metrics::{CycleInstruments, SharedSnapshot, Snapshot};
pub use otlp::FinalPush;
use otlp::{Otlp, Pusher};
use prometheus::{Registry, SharedReader};
pub use settings::OtlpSettings;

/// How goprobe exports metrics.
#[derive(Clone, Debug, Default)]
pub struct ExportConfig {
    pub otlp: Option<OtlpConfig>,
    /// Where to serve the Prometheus endpoint.
    pub prometheus: Option<SocketAddr>,
}

/// OTLP push settings, resolved ([`OtlpSettings::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The URL metrics are sent to (for HTTP, with its path: [`settings::metrics_url`]).
    pub endpoint: String,
    pub protocol: Protocol,
    pub interval: Duration,
    /// Each export's bound, the final one's too.
    pub timeout: Duration,
}

/// OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP with protobuf bodies (`http/protobuf`).
    Http,
    Grpc,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot serve Prometheus metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("OTLP exporter for {endpoint}: {message}")]
    Otlp { endpoint: String, message: String },
    #[error("OTLP/gRPC runtime: {0}")]
    Runtime(std::io::Error),
    #[error("starting the Prometheus endpoint's thread: {0}")]
    Serve(std::io::Error),
}

/// The export pipelines shared by every profiled process: the Prometheus endpoint's thread,
/// one OTLP exporter and the thread that pushes to it.
pub struct Exporter {
    config: ExportConfig,
    registry: Registry,
    listener: Option<std::net::TcpListener>,
    prometheus_addr: Option<SocketAddr>,
    server: Option<http::Server>,
    otlp: Option<Arc<Otlp>>,
    pusher: Option<Pusher>,
    failures: Arc<AtomicU64>,
}

impl Exporter {
    /// Binds the Prometheus endpoint now, so a taken port fails before anything is attached.
    pub fn new(config: ExportConfig) -> Result<Self, ExportError> {
        let listener = config
            .prometheus
            .map(|addr| {
                std::net::TcpListener::bind(addr)
                    .map_err(|source| ExportError::Bind { addr, source })
            })
            .transpose()?;
        let prometheus_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let failures = Arc::<AtomicU64>::default();
        let registry = Registry::default();
        let otlp = config
            .otlp
            .as_ref()
            .map(|o| Otlp::new(o, failures.clone()).map(Arc::new))
            .transpose()?;
        let pusher = otlp
            .as_ref()
            .zip(config.otlp.as_ref())
            .map(|(otlp, c)| Pusher::spawn(otlp.clone(), registry.clone(), c.interval));
        Ok(Self {
            config,
            registry,
            listener,
            prometheus_addr,
            server: None,
            otlp,
            pusher,
            failures,
        })
    }

    /// Whether anything is exported at all.
    pub fn enabled(&self) -> bool {
        self.config.otlp.is_some() || self.config.prometheus.is_some()
    }

    /// The address the Prometheus endpoint listens on (with the port the kernel chose for 0).
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.prometheus_addr
    }

    /// Starts serving the Prometheus endpoint on its own thread (once; nothing without an
    /// endpoint). It answers until this is dropped.
    pub fn serve(&mut self) -> Result<(), ExportError> {
        if let Some(listener) = self.listener.take() {
            self.server =
                Some(http::spawn(listener, self.registry.clone()).map_err(ExportError::Serve)?);
        }
        Ok(())
    }

    /// Sets what the HTTP listener's `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.registry.set_ready(ready);
    }

    /// The event loop is alive (for `/healthz`; see [`Registry::beat`]).
    pub fn beat(&self) {
        self.registry.beat();
    }

    /// The watch has ended (for `/healthz`; see [`Registry::set_stopping`]).
    pub fn set_stopping(&self) {
        self.registry.set_stopping();
    }

    /// OTLP exports that failed after the exporter's own retries, so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Starts exporting the metrics of one process described by `resource`.
    pub fn target(&self, resource: Resource) -> Result<TargetMetrics, ExportError> {
        let reader = Arc::new(ManualReader::builder().build());
        let provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(SharedReader(reader.clone()))
            .build();
        self.registry.add(reader.clone());
        let meter = provider.meter("goprobe");
        let snapshot = SharedSnapshot::default();
        let cycles = metrics::register(&meter, &snapshot, &self.failures);
        Ok(TargetMetrics {
            provider,
            cycles,
            snapshot,
            reader,
            registry: self.registry.clone(),
            keep: None,
        })
    }

    /// Ends one process' export when it went away while others go on: its series leave the
    /// Prometheus endpoint, its last values go with the next OTLP push.
    pub fn finish_later(&self, metrics: TargetMetrics) {
        let last = metrics.finish(false);
        if let (Some(otlp), Some(rm)) = (&self.otlp, last) {
            otlp.push_later(rm);
        }
    }

    /// Ends the export of `metrics` (every process still exported, at exit): their last
    /// values stay on the Prometheus endpoint until exit and go to the collector in one last
    /// push, which [`FinalPush::wait`] waits for at most the export timeout. Periodic pushes
    /// stop here.
    pub fn push_final(&mut self, metrics: Vec<TargetMetrics>) -> FinalPush {
        self.pusher = None;
        let last: Vec<Arc<ResourceMetrics>> =
            metrics.into_iter().filter_map(|m| m.finish(true)).collect();
        match &self.otlp {
            Some(otlp) => FinalPush::start(otlp, last),
            None => FinalPush::none(),
        }
    }
}

/// The metrics of one process.
pub struct TargetMetrics {
    provider: SdkMeterProvider,
    cycles: CycleInstruments,
    snapshot: SharedSnapshot,
    reader: Arc<ManualReader>,
    registry: Registry,
    /// The last values, to stay on the Prometheus endpoint once this is dropped.
    keep: Option<Arc<ResourceMetrics>>,
}

impl TargetMetrics {
    /// Where GC cycles and pauses are recorded as they complete.
    pub fn cycles(&self) -> &CycleInstruments {
        &self.cycles
    }

    /// Updates the values the next collection reports.
    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut metrics::lock(&self.snapshot));
    }

    /// Reads the last values and stops; with `keep_serving` they stay on the Prometheus
    /// endpoint, else the process leaves it.
    fn finish(mut self, keep_serving: bool) -> Option<Arc<ResourceMetrics>> {
        let mut rm = ResourceMetrics::default();
        let last = match self.reader.collect(&mut rm) {
            Ok(()) => Some(Arc::new(rm)),
            Err(e) => {
                warn!("reading the final metrics: {e}");
                None
            }
        };
        self.keep = last.clone().filter(|_| keep_serving);
        last
    }
}

impl Drop for TargetMetrics {
    /// The process leaves the registry (its last values stay when [`Self::finish`] kept them);
    /// the provider, with a manual reader only, stops without exporting anything.
    fn drop(&mut self) {
        self.registry.remove(&self.reader, self.keep.take());
        if let Err(e) = self.provider.shutdown() {
            debug!("stopping the metrics of a process: {e}");
        }
    }
}
