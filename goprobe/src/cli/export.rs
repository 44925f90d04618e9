//! The metrics export flags, shared by `goprobe attach` and `goprobe agent`.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};
use goprobe::export::{ExportConfig, OtlpSettings, Protocol};

/// Metrics export (docs/metrics.md lists every metric).
#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics export (docs/metrics.md)")]
pub struct ExportArgs {
    /// Push OTLP metrics to this endpoint, e.g. http://127.0.0.1:4318 or, with `--otlp-protocol
    /// grpc`, http://127.0.0.1:4317. As OTEL_EXPORTER_OTLP_ENDPOINT: over HTTP its path is a base
    /// that `v1/metrics` is appended to (http://host:8428/opentelemetry posts to
    /// http://host:8428/opentelemetry/v1/metrics). Default: OTEL_EXPORTER_OTLP_ENDPOINT, else no
    /// OTLP export.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Push OTLP metrics to exactly this URL, e.g. http://127.0.0.1:9090/api/v1/otlp/v1/metrics
    /// (as OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: used as it is). Wins over --otlp-endpoint.
    #[arg(long, value_name = "URL")]
    pub otlp_metrics_endpoint: Option<String>,
    /// OTLP transport: `http` (HTTP/protobuf) or `grpc`. Default: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL
    /// or OTEL_EXPORTER_OTLP_PROTOCOL (`grpc`, `http/protobuf`), else http.
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<ProtocolArg>,
    /// Seconds each OTLP push may take, the last one at exit too: goprobe exits at most this
    /// long (and a fraction of a second) after it stops, whatever the collector does; 0 waits
    /// indefinitely. Default: OTEL_EXPORTER_OTLP_METRICS_TIMEOUT or OTEL_EXPORTER_OTLP_TIMEOUT
    /// (milliseconds), else 5.
    #[arg(long, value_name = "SECONDS", value_parser = super::parse_seconds)]
    pub otlp_timeout: Option<Duration>,
    /// Seconds between OTLP pushes (counters are cumulative: a failed push loses nothing, the
    /// next one carries it). Default: OTEL_METRIC_EXPORT_INTERVAL (milliseconds), else 10.
    #[arg(long, value_name = "SECONDS", value_parser = super::parse_seconds)]
    pub export_interval: Option<Duration>,
    /// Serve the metrics in Prometheus' text format at http://ADDR/metrics, e.g. 127.0.0.1:9464
    /// (port 0 picks a free port and prints it). Binds loopback unless told otherwise.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    pub prometheus: Option<SocketAddr>,
    /// `service.name` of the exported metrics. Default: OTEL_SERVICE_NAME, else the program's
    /// executable name.
    #[arg(long, value_name = "NAME")]
    pub service_name: Option<String>,
}

/// `--otlp-protocol` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    #[value(alias = "http/protobuf")]
    Http,
    Grpc,
}

/// `ADDR` as `host:port`, or a bare port meaning loopback.
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse()
        .map_err(|_| format!("`{s}` is not an address like 127.0.0.1:9464 or a port"))
}

impl ExportArgs {
    /// The export configuration: each OTLP setting from these flags, else the OpenTelemetry
    /// variables, else `file` (the agent's configuration), else its default.
    pub fn config(&self, file: OtlpSettings) -> Result<ExportConfig, String> {
        let flags = OtlpSettings {
            endpoint: self.otlp_endpoint.clone(),
            metrics_endpoint: self.otlp_metrics_endpoint.clone(),
            protocol: self.otlp_protocol.map(|p| match p {
                ProtocolArg::Http => Protocol::Http,
                ProtocolArg::Grpc => Protocol::Grpc,
            }),
            timeout: self.otlp_timeout,
            interval: self.export_interval,
        };
        let env = OtlpSettings::from_env(|k| std::env::var(k).ok());
        Ok(ExportConfig {
            otlp: OtlpSettings::resolve(&[flags, env, file])?,
            prometheus: self.prometheus,
        })
    }
}
