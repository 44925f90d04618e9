//! Metrics export (docs/metrics.md): OTLP push (HTTP/protobuf or gRPC) and a Prometheus
//! endpoint, both fed by one OpenTelemetry SDK meter provider per profiled process.
//!
//! The watch loop records GC cycles as they complete ([`TargetMetrics::cycles`]) and refreshes a
//! [`Snapshot`] of everything else about once a second; the SDK's periodic reader (OTLP) and the
//! scrape handler (Prometheus) read the snapshot through observable instruments.

pub mod collect;
pub mod metrics;
pub mod prometheus;
pub mod resource;
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
use opentelemetry_otlp::{MetricExporter, Protocol as OtlpProtocol, WithExportConfig as _};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        ManualReader, PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics,
        exporter::PushMetricExporter,
    },
};
use tracing::warn;

pub use metrics::{CycleInstruments, SharedSnapshot, Snapshot};
use prometheus::{Registry, SharedReader};

/// How goprobe exports metrics.
#[derive(Clone, Debug, Default)]
pub struct ExportConfig {
    pub otlp: Option<OtlpConfig>,
    /// Where to serve the Prometheus endpoint.
    pub prometheus: Option<SocketAddr>,
}

/// OTLP push settings.
#[derive(Clone, Debug)]
pub struct OtlpConfig {
    pub endpoint: String,
    pub protocol: Protocol,
    pub interval: Duration,
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
}

/// The export pipelines shared by every profiled process.
pub struct Exporter {
    config: ExportConfig,
    registry: Registry,
    listener: Option<std::net::TcpListener>,
    prometheus_addr: Option<SocketAddr>,
    /// Drives the gRPC client's connections (tonic needs Tokio), independent of the caller's
    /// runtime, so the final export at detach works when that runtime no longer runs.
    grpc_runtime: Option<tokio::runtime::Runtime>,
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
        let grpc_runtime = match &config.otlp {
            Some(o) if o.protocol == Protocol::Grpc => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("goprobe-otlp")
                    .enable_all()
                    .build()
                    .map_err(ExportError::Runtime)?,
            ),
            _ => None,
        };
        Ok(Self {
            config,
            registry: Registry::default(),
            listener,
            prometheus_addr,
            grpc_runtime,
            failures: Arc::default(),
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

    /// The Prometheus endpoint's server, to spawn on the caller's Tokio runtime; `None` when
    /// there is no endpoint or it was already taken.
    pub fn take_server(&mut self) -> Option<impl Future<Output = ()> + use<>> {
        let listener = self.listener.take()?;
        Some(prometheus::serve(listener, self.registry.clone()))
    }

    /// Sets what the HTTP listener's `/readyz` answers.
    pub fn set_ready(&self, ready: bool) {
        self.registry.set_ready(ready);
    }

    /// OTLP exports that failed after the exporter's own retries, so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Starts exporting the metrics of one process described by `resource`.
    pub fn target(&self, resource: Resource) -> Result<TargetMetrics, ExportError> {
        let mut builder = SdkMeterProvider::builder().with_resource(resource);
        if let Some(otlp) = &self.config.otlp {
            let exporter = CountingExporter {
                inner: self.otlp_exporter(otlp)?,
                failures: self.failures.clone(),
                endpoint: otlp.endpoint.clone(),
            };
            builder = builder.with_reader(
                PeriodicReader::builder(exporter)
                    .with_interval(otlp.interval)
                    .build(),
            );
        }
        let reader = self.config.prometheus.map(|_| {
            let r = Arc::new(ManualReader::builder().build());
            self.registry.add(r.clone());
            r
        });
        if let Some(r) = &reader {
            builder = builder.with_reader(SharedReader(r.clone()));
        }
        let provider = builder.build();
        let meter = provider.meter("goprobe");
        let snapshot = SharedSnapshot::default();
        let cycles = metrics::register(&meter, &snapshot, &self.failures);
        Ok(TargetMetrics {
            provider,
            cycles,
            snapshot,
            reader,
            registry: self.registry.clone(),
        })
    }

    fn otlp_exporter(&self, otlp: &OtlpConfig) -> Result<MetricExporter, ExportError> {
        let err = |e: &dyn std::fmt::Display| ExportError::Otlp {
            endpoint: otlp.endpoint.clone(),
            message: e.to_string(),
        };
        match otlp.protocol {
            Protocol::Http => {
                let endpoint = http_endpoint(&otlp.endpoint);
                // NB: the blocking reqwest client owns a Tokio runtime and panics when built or
                // dropped inside another one; a plain thread builds it wherever we are called.
                std::thread::scope(|s| {
                    s.spawn(|| {
                        MetricExporter::builder()
                            .with_http()
                            .with_protocol(OtlpProtocol::HttpBinary)
                            .with_endpoint(endpoint)
                            .with_temporality(Temporality::Cumulative)
                            .build()
                    })
                    .join()
                })
                .map_err(|_| err(&"exporter construction panicked"))?
                .map_err(|e| err(&e))
            }
            Protocol::Grpc => {
                let _guard = self
                    .grpc_runtime
                    .as_ref()
                    .map(tokio::runtime::Runtime::enter);
                MetricExporter::builder()
                    .with_tonic()
                    .with_endpoint(otlp.endpoint.clone())
                    .with_temporality(Temporality::Cumulative)
                    .build()
                    .map_err(|e| err(&e))
            }
        }
    }
}

/// `endpoint` with `/v1/metrics` appended when it has no path, as the OTLP exporter
/// specification does for the generic endpoint; any other path is used as given.
pub fn http_endpoint(endpoint: &str) -> String {
    let after_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    match after_scheme.find('/') {
        None => format!("{endpoint}/v1/metrics"),
        Some(i) if after_scheme[i..] == *"/" => format!("{}v1/metrics", endpoint),
        Some(_) => endpoint.to_owned(),
    }
}

/// The metrics of one process.
pub struct TargetMetrics {
    provider: SdkMeterProvider,
    cycles: CycleInstruments,
    snapshot: SharedSnapshot,
    reader: Option<Arc<ManualReader>>,
    registry: Registry,
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

    /// Stops exporting: one last OTLP export with everything recorded, then the process leaves
    /// the Prometheus endpoint.
    pub fn shutdown(self) {
        if let Some(r) = &self.reader {
            self.registry.remove(r);
        }
        if let Err(e) = self.provider.shutdown() {
            warn!(
                "final metrics export failed (the export warnings above name the cause; the \
                 collector has the values of the last export that succeeded): {e}"
            );
        }
    }
}

/// Counts the exports that failed after the OTLP exporter's retries (it retries with
/// exponential backoff itself: opentelemetry-otlp 0.33 `RetryPolicy::recommended`, 3 retries
/// from 100 ms to 1.6 s). Temporality is cumulative, so the next export that succeeds carries
/// everything a failed one held: a failure delays data, it does not lose it.
struct CountingExporter {
    inner: MetricExporter,
    failures: Arc<AtomicU64>,
    endpoint: String,
}

impl PushMetricExporter for CountingExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        if let Err(e) = &result {
            let n = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
            // The first failure, then every 10th: an unreachable collector must not flood logs.
            if n == 1 || n.is_multiple_of(10) {
                warn!(
                    endpoint = %self.endpoint,
                    failures = n,
                    "OTLP export failed (goprobe keeps profiling and retries at the next interval): {e}"
                );
            }
        }
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

#[cfg(test)]
mod tests {
    use super::http_endpoint;

    #[test]
    fn http_endpoint_gets_the_metrics_path_only_when_it_has_none() {
        assert_eq!(http_endpoint("http://h:4318"), "http://h:4318/v1/metrics");
        assert_eq!(http_endpoint("http://h:4318/"), "http://h:4318/v1/metrics");
        assert_eq!(
            http_endpoint("http://h:8428/opentelemetry/v1/metrics"),
            "http://h:8428/opentelemetry/v1/metrics"
        );
    }
}
