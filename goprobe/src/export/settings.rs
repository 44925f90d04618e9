//! Where and how OTLP is pushed, as the OpenTelemetry specification configures an OTLP exporter
//! (opentelemetry-specification `protocol/exporter.md`, "Endpoint URLs for OTLP/HTTP", and
//! `configuration/sdk-environment-variables.md`): each setting comes from the first source that
//! sets it — the command line, then the environment, then the agent's configuration file — else
//! its default; within one source the metrics-specific endpoint, protocol and timeout win over
//! the generic ones. docs/metrics.md, "Where OTLP goes", says the same for users.

use std::time::Duration;

use tracing::warn;

use super::{OtlpConfig, Protocol};

/// Each export's bound when nothing sets one. The SDKs' default is 10 s; goprobe's is shorter
/// because its last export runs at exit (Ctrl-C, SIGTERM in a pod's grace period), and half the
/// default interval, so that a collector that never answers cannot hold a push past the next.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time between two pushes when nothing sets it.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// What a timeout of 0 ("indefinite", sdk-environment-variables.md "Timeout") becomes: the
/// largest number of milliseconds a 32-bit integer holds, as the specification suggests.
pub const INDEFINITE: Duration = Duration::from_millis(i32::MAX as u64);
/// The shortest interval accepted.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The OTLP settings of one source; `None`: this source does not set it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The generic endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`): over HTTP its path is a base that
    /// `v1/metrics` is appended to.
    pub endpoint: Option<String>,
    /// The metrics endpoint (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`): posted to as it is.
    pub metrics_endpoint: Option<String>,
    pub protocol: Option<Protocol>,
    /// Each export's bound (0: indefinite, see [`INDEFINITE`]).
    pub timeout: Option<Duration>,
    /// Time between two pushes.
    pub interval: Option<Duration>,
}

impl OtlpSettings {
    /// What the environment sets, read through `var`. An empty variable is unset; a value that
    /// cannot be used is warned about and ignored (the next source, or the default, applies), as
    /// the specification asks of numbers and enums.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
        // The metrics variable first; one whose value is ignored counts as unset.
        let protocol = [
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ]
        .into_iter()
        .find_map(|k| env_protocol(k, &get(k)?));
        let timeout = [
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]
        .into_iter()
        .find_map(|k| env_millis(k, &get(k)?));
        Self {
            endpoint: get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            metrics_endpoint: get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"),
            protocol,
            timeout: timeout.map(indefinite_if_zero),
            interval: get("OTEL_METRIC_EXPORT_INTERVAL")
                .and_then(|v| env_millis("OTEL_METRIC_EXPORT_INTERVAL", &v))
                .filter(|d| {
                    let ok = *d >= MIN_INTERVAL;
                    if !ok {
                        warn!("OTEL_METRIC_EXPORT_INTERVAL below 100 ms is ignored");
                    }
                    ok
                }),
        }
    }

    /// The OTLP export `sources` (highest precedence first) ask for, or `None` when none of
    /// them names an endpoint: goprobe pushes nowhere unless told where.
    pub fn resolve(sources: &[Self]) -> Result<Option<OtlpConfig>, String> {
        let Some((endpoint, signal)) = sources.iter().find_map(|s| {
            s.metrics_endpoint
                .clone()
                .map(|e| (e, true))
                .or_else(|| s.endpoint.clone().map(|e| (e, false)))
        }) else {
            return Ok(None);
        };
        let protocol = sources
            .iter()
            .find_map(|s| s.protocol)
            .unwrap_or(Protocol::Http);
        let timeout = sources
            .iter()
            .find_map(|s| s.timeout)
            .map_or(DEFAULT_TIMEOUT, indefinite_if_zero);
        let interval = sources
            .iter()
            .find_map(|s| s.interval)
            .unwrap_or(DEFAULT_INTERVAL);
        if interval < MIN_INTERVAL {
            return Err("the OTLP export interval must be at least 0.1 seconds".to_owned());
        }
        let url = metrics_url(&endpoint, signal, protocol)?;
        if !signal
            && protocol == Protocol::Http
            && endpoint.trim_end_matches('/').ends_with("/v1/metrics")
        {
            warn!(
                "the generic OTLP endpoint {endpoint} gets `v1/metrics` appended, as the \
                 OpenTelemetry specification says: goprobe posts to {url}. To post to {endpoint} \
                 as it is, give it as --otlp-metrics-endpoint, OTEL_EXPORTER_OTLP_METRICS_ENDPOINT \
                 or otlp_metrics_endpoint"
            );
        }
        Ok(Some(OtlpConfig {
            endpoint: url,
            protocol,
            interval,
            timeout,
        }))
    }
}

/// The URL goprobe sends metrics to, from an endpoint as given: for HTTP, a metrics-specific
/// (`signal`) endpoint as it is (with the root path `/` when it has none), a generic one as the
/// base of `v1/metrics` (a `/` put between); for gRPC, the endpoint as it is (the method's path
/// is fixed). Only `http://` URLs with a host are accepted: this build has no TLS.
pub fn metrics_url(endpoint: &str, signal: bool, protocol: Protocol) -> Result<String, String> {
    let endpoint = endpoint.trim();
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return Err(if endpoint.starts_with("https://") {
            format!(
                "OTLP endpoint `{endpoint}`: this build has no TLS (send to a collector on the \
                 host or in the pod over http://, which can forward over TLS)"
            )
        } else {
            format!("OTLP endpoint `{endpoint}` must be a URL starting with http://")
        });
    };
    // The authority ends at the path, the query or the fragment (RFC 3986, section 3).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(authority_end);
    if authority.is_empty() {
        return Err(format!("OTLP endpoint `{endpoint}` has no host"));
    }
    if protocol == Protocol::Grpc {
        return Ok(endpoint.to_owned());
    }
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (path, suffix) = rest.split_at(path_end);
    let mut path = if path.is_empty() { "/" } else { path }.to_owned();
    if !signal {
        if !path.ends_with('/') {
            path.push('/');
        }
        path.push_str("v1/metrics");
    }
    Ok(format!("http://{authority}{path}{suffix}"))
}

fn indefinite_if_zero(d: Duration) -> Duration {
    if d.is_zero() { INDEFINITE } else { d }
}

/// A protocol variable's value; `None` (warned) for one goprobe does not speak.
fn env_protocol(key: &str, value: &str) -> Option<Protocol> {
    match value.trim() {
        "http/protobuf" => Some(Protocol::Http),
        "grpc" => Some(Protocol::Grpc),
        "http/json" => {
            warn!("{key}=http/json is not supported by goprobe (grpc, http/protobuf); ignored");
            None
        }
        other => {
            warn!("{key}={other} is not an OTLP protocol (grpc, http/protobuf); ignored");
            None
        }
    }
}

/// A duration or timeout variable: a non-negative integer of milliseconds; `None` (warned)
/// for anything else.
fn env_millis(key: &str, value: &str) -> Option<Duration> {
    match value.trim().parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => {
            warn!("{key}={value} is not a whole number of milliseconds; ignored");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn http(endpoint: &str, signal: bool) -> String {
        metrics_url(endpoint, signal, Protocol::Http).unwrap()
    }

    #[test]
    fn generic_http_endpoints_are_the_base_of_v1_metrics() {
        // exporter.md, "Endpoint URLs for OTLP/HTTP", example 1 and 3.
        assert_eq!(http("http://h:4318", false), "http://h:4318/v1/metrics");
        assert_eq!(http("http://h:4318/", false), "http://h:4318/v1/metrics");
        assert_eq!(
            http("http://h:4318/mycollector/", false),
            "http://h:4318/mycollector/v1/metrics"
        );
        // The user's case: a receiver under a path prefix (VictoriaMetrics, Prometheus).
        assert_eq!(
            http("http://h:8428/opentelemetry", false),
            "http://h:8428/opentelemetry/v1/metrics"
        );
        assert_eq!(
            http("http://h:9090/api/v1/otlp", false),
            "http://h:9090/api/v1/otlp/v1/metrics"
        );
        // Nothing else is changed: a path that already ends in v1/metrics gets it twice, as
        // the specification says (resolve warns), no port is added, the query stays.
        assert_eq!(
            http("http://h:4318/v1/metrics", false),
            "http://h:4318/v1/metrics/v1/metrics"
        );
        assert_eq!(http("http://h", false), "http://h/v1/metrics");
        assert_eq!(
            http("http://h:4318/p?tenant=a", false),
            "http://h:4318/p/v1/metrics?tenant=a"
        );
        assert_eq!(
            http("http://h:4318?tenant=a", false),
            "http://h:4318/v1/metrics?tenant=a"
        );
    }

    #[test]
    fn metrics_endpoints_are_used_as_they_are() {
        // Example 2: no path means the root path.
        assert_eq!(http("http://h:4318", true), "http://h:4318/");
        assert_eq!(
            http("http://h:4318/v1/metrics", true),
            "http://h:4318/v1/metrics"
        );
        // Example 3: a trailing slash stays.
        assert_eq!(
            http("http://h:4318/v1/metrics/", true),
            "http://h:4318/v1/metrics/"
        );
        assert_eq!(
            http("http://h:8428/opentelemetry/api/v1/push", true),
            "http://h:8428/opentelemetry/api/v1/push"
        );
    }

    #[test]
    fn grpc_endpoints_are_used_as_they_are() {
        for signal in [false, true] {
            assert_eq!(
                metrics_url("http://h:4317", signal, Protocol::Grpc).unwrap(),
                "http://h:4317"
            );
            assert_eq!(
                metrics_url("http://h:4317/", signal, Protocol::Grpc).unwrap(),
                "http://h:4317/"
            );
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        for e in [
            "https://h:4318",
            "h:4318",
            "http://",
            "http:///v1/metrics",
            "grpc://h",
        ] {
            for p in [Protocol::Http, Protocol::Grpc] {
                assert!(metrics_url(e, false, p).is_err(), "{e} {p:?}");
            }
        }
        assert!(
            metrics_url("https://h:4318", true, Protocol::Http)
                .unwrap_err()
                .contains("TLS")
        );
    }

    fn env(vars: &[(&str, &str)]) -> OtlpSettings {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        OtlpSettings::from_env(|k| vars.get(k).cloned())
    }

    fn resolve(sources: &[OtlpSettings]) -> OtlpConfig {
        OtlpSettings::resolve(sources).unwrap().unwrap()
    }

    #[test]
    fn the_environment_as_the_specification_names_it() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318/base"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "7000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "1500"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "2000"),
        ]);
        assert_eq!(
            e,
            OtlpSettings {
                endpoint: Some("http://h:4318/base".into()),
                metrics_endpoint: None,
                protocol: Some(Protocol::Http),
                timeout: Some(Duration::from_millis(1500)),
                interval: Some(Duration::from_secs(2)),
            }
        );
        let c = resolve(&[e]);
        assert_eq!(c.endpoint, "http://h:4318/base/v1/metrics");
        assert_eq!(c.protocol, Protocol::Http);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        // The metrics endpoint wins over the generic one of the same source, as it is.
        let c = resolve(&[env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://h:4318/base"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://m:9090/api/v1/otlp/v1/metrics",
            ),
        ])]);
        assert_eq!(c.endpoint, "http://m:9090/api/v1/otlp/v1/metrics");
        assert_eq!(c.timeout, DEFAULT_TIMEOUT);
        assert_eq!(c.interval, DEFAULT_INTERVAL);
    }

    #[test]
    fn unusable_and_empty_variables_are_ignored() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/json"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "-1"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "5000"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "10s"),
        ]);
        // An ignored metrics variable is as if unset: the generic one applies.
        assert_eq!(
            e,
            OtlpSettings {
                protocol: Some(Protocol::Grpc),
                timeout: Some(Duration::from_secs(5)),
                ..Default::default()
            }
        );
        // With both ignored, the next source (here the file) or the default applies.
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "udp"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1.5"),
        ]);
        assert_eq!(e, OtlpSettings::default());
        let file = OtlpSettings {
            endpoint: Some("http://f:4318".into()),
            protocol: Some(Protocol::Grpc),
            timeout: Some(Duration::from_secs(3)),
            ..Default::default()
        };
        let c = resolve(&[e, file]);
        assert_eq!(c.endpoint, "http://f:4318");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.timeout, Duration::from_secs(3));
        // Zero is indefinite.
        let e = env(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "0")]);
        assert_eq!(e.timeout, Some(INDEFINITE));
    }

    #[test]
    fn the_command_line_over_the_environment_over_the_file() {
        let flag = OtlpSettings {
            endpoint: Some("http://flag:4318".into()),
            ..Default::default()
        };
        let env = env(&[
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://env:4318/v1/metrics",
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2000"),
        ]);
        let file = OtlpSettings {
            metrics_endpoint: Some("http://file:4317".into()),
            protocol: Some(Protocol::Grpc),
            timeout: Some(Duration::from_secs(9)),
            interval: Some(Duration::from_secs(30)),
            ..Default::default()
        };
        // Each setting from the first source that has it: the flag's generic endpoint beats
        // the environment's metrics endpoint (a lower source).
        let c = resolve(&[flag.clone(), env.clone(), file.clone()]);
        assert_eq!(c.endpoint, "http://flag:4318/v1/metrics");
        assert_eq!(c.protocol, Protocol::Http);
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!(c.interval, Duration::from_secs(30));
        let c = resolve(&[OtlpSettings::default(), env, file.clone()]);
        assert_eq!(c.endpoint, "http://env:4318/v1/metrics");
        let c = resolve(&[OtlpSettings::default(), OtlpSettings::default(), file]);
        assert_eq!(c.endpoint, "http://file:4317");
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(OtlpSettings::resolve(&[OtlpSettings::default()]), Ok(None));
        let fast = OtlpSettings {
            interval: Some(Duration::from_millis(50)),
            ..flag
        };
        assert!(OtlpSettings::resolve(&[fast]).is_err());
    }
}
