//! The metrics export flags, shared by `goprobe attach` and `goprobe agent`.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};
use goprobe::export::{ExportConfig, OtlpConfig, Protocol};

/// Metrics export (docs/metrics.md lists every metric).
#[derive(Debug, Args)]
#[command(next_help_heading = "Metrics export (docs/metrics.md)")]
pub struct ExportArgs {
    /// Push OTLP metrics to this endpoint, e.g. http://127.0.0.1:4318 (HTTP: `/v1/metrics` is
    /// appended when the URL has no path) or http://127.0.0.1:4317 with `--otlp-protocol grpc`.
    /// Default: OTEL_EXPORTER_OTLP_ENDPOINT when set, else no OTLP export.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// OTLP transport: `http` (HTTP/protobuf) or `grpc`. Default: from OTEL_EXPORTER_OTLP_PROTOCOL
    /// (`grpc`, `http/protobuf`), else http.
    #[arg(long, value_enum, value_name = "PROTOCOL")]
    pub otlp_protocol: Option<ProtocolArg>,
    /// Seconds between OTLP pushes (counters are cumulative: a failed push loses nothing, the
    /// next one carries it).
    #[arg(long, default_value = "10", value_name = "SECONDS", value_parser = super::parse_seconds)]
    pub export_interval: Duration,
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
    /// The export configuration, with the OTel environment variables as fallbacks.
    pub fn config(&self) -> Result<ExportConfig, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let endpoint = self
            .otlp_endpoint
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let protocol = match self.otlp_protocol {
            Some(ProtocolArg::Http) => Protocol::Http,
            Some(ProtocolArg::Grpc) => Protocol::Grpc,
            None => match env("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() {
                None | Some("http/protobuf") => Protocol::Http,
                Some("grpc") => Protocol::Grpc,
                Some(other) => {
                    return Err(format!(
                        "OTEL_EXPORTER_OTLP_PROTOCOL={other} is not supported (grpc or http/protobuf)"
                    ));
                }
            },
        };
        if let Some(e) = &endpoint
            && !e.starts_with("http://")
        {
            return Err(format!(
                "OTLP endpoint `{e}` must start with http:// (this build has no TLS: send to a \
                 collector on the host or in the pod, which can forward over TLS)"
            ));
        }
        if self.export_interval < Duration::from_millis(100) {
            return Err("--export-interval must be at least 0.1 seconds".to_owned());
        }
        Ok(ExportConfig {
            otlp: endpoint.map(|endpoint| OtlpConfig {
                endpoint,
                protocol,
                interval: self.export_interval,
            }),
            prometheus: self.prometheus,
        })
    }
}
