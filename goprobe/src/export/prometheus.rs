//! OpenTelemetry metrics → the Prometheus text exposition format (version 0.0.4), named the way
//! the OpenTelemetry specification converts them ("Prometheus and OpenMetrics compatibility");
//! the [`Registry`] of every process exported, which `/metrics` (`http.rs`) renders.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::{
    Resource,
    metrics::{
        ManualReader,
        data::{AggregatedMetrics, MetricData, ResourceMetrics},
        reader::MetricReader,
    },
};
use tracing::{debug, warn};

/// Resource attributes put on every series as labels (as Prometheus' OTLP receiver does with
/// `promote_resource_attributes`), so dashboards can select by service and process.
const PROMOTED: [&str; 6] = [
    "service.name",
    "service.instance.id",
    "process.pid",
    "container.id",
    "k8s.namespace.name",
    "k8s.pod.name",
];

/// How long the event loop may go without a beat before `/healthz` says it is stuck.
const STALL: Duration = Duration::from_secs(10);

/// Every process being exported (its live reader, or its final values once it was stopped):
/// what a scrape renders and what each OTLP round pushes; and what `/readyz` and `/healthz`
/// answer.
#[derive(Clone, Default)]
pub struct Registry(Arc<Inner>);

#[derive(Default)]
struct Inner {
    sources: Mutex<Vec<Source>>,
    ready: AtomicBool,
    /// The event loop's last beat ([`Registry::beat`]); `None` when it does not beat.
    beat: Mutex<Option<Instant>>,
    /// Set once the watch has ended: the final report is being built, or done.
    stopping: AtomicBool,
}

enum Source {
    Live(Arc<ManualReader>),
    /// A stopped process' last values, served until exit.
    Final(Arc<ResourceMetrics>),
}

impl Registry {
    /// Marks the agent ready: `/readyz` answers 200 from now on (503 before).
    pub fn set_ready(&self, ready: bool) {
        self.0.ready.store(ready, Ordering::Relaxed);
    }

    pub(super) fn ready(&self) -> bool {
        self.0.ready.load(Ordering::Relaxed)
    }

    /// The event loop is alive: `/healthz` answers 503 once it has not beaten for [`STALL`].
    pub fn beat(&self) {
        *lock(&self.0.beat) = Some(Instant::now());
    }

    /// The watch has ended: from now on `/healthz` answers 200 without beats, while the final
    /// report is built and the last values are served.
    pub fn set_stopping(&self) {
        self.0.stopping.store(true, Ordering::Relaxed);
    }

    /// How long the event loop has not beaten, when that is too long.
    pub(super) fn stalled(&self) -> Option<Duration> {
        if self.0.stopping.load(Ordering::Relaxed) {
            return None;
        }
        lock(&self.0.beat)
            .map(|t| t.elapsed())
            .filter(|&d| d > STALL)
    }

    pub fn add(&self, reader: Arc<ManualReader>) {
        lock(&self.0.sources).push(Source::Live(reader));
    }

    /// Takes `reader` out; with `last`, its final values stay in its place.
    pub fn remove(&self, reader: &Arc<ManualReader>, last: Option<Arc<ResourceMetrics>>) {
        let mut sources = lock(&self.0.sources);
        let at = sources
            .iter()
            .position(|s| matches!(s, Source::Live(r) if Arc::ptr_eq(r, reader)));
        match (at, last) {
            (Some(i), Some(rm)) => sources[i] = Source::Final(rm),
            (Some(i), None) => {
                sources.remove(i);
            }
            (None, _) => {}
        }
    }

    /// Collects every live process' metrics (for an OTLP round).
    pub fn collect_live(&self) -> Vec<Arc<ResourceMetrics>> {
        self.readers()
            .into_iter()
            .filter_map(|r| collect(&r).map(Arc::new))
            .collect()
    }

    fn readers(&self) -> Vec<Arc<ManualReader>> {
        lock(&self.0.sources)
            .iter()
            .filter_map(|s| match s {
                Source::Live(r) => Some(r.clone()),
                Source::Final(_) => None,
            })
            .collect()
    }

    /// Collects every process' metrics and renders them.
    pub fn render(&self) -> String {
        let finals: Vec<Arc<ResourceMetrics>> = lock(&self.0.sources)
            .iter()
            .filter_map(|s| match s {
                Source::Final(rm) => Some(rm.clone()),
                Source::Live(_) => None,
            })
            .collect();
        let mut families = Families::default();
        for rm in self.collect_live().iter().chain(&finals) {
            families.add(rm);
        }
        families.render()
    }
}

/// Collects `reader` into a fresh [`ResourceMetrics`].
fn collect(reader: &ManualReader) -> Option<ResourceMetrics> {
    let mut rm = ResourceMetrics::default();
    match reader.collect(&mut rm) {
        Ok(()) => Some(rm),
        Err(e) => {
            debug!("collect: {e}");
            None
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A [`ManualReader`] shared between a meter provider and the [`Registry`].
#[derive(Debug, Clone)]
pub struct SharedReader(pub Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: std::sync::Weak<opentelemetry_sdk::metrics::Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(
        &self,
        timeout: std::time::Duration,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(
        &self,
        kind: opentelemetry_sdk::metrics::InstrumentKind,
    ) -> opentelemetry_sdk::metrics::Temporality {
        self.0.temporality(kind)
    }
}

/// Metric families by Prometheus name: the text format wants each family's series together.
#[derive(Default)]
struct Families {
    by_name: BTreeMap<String, Family>,
}

struct Family {
    kind: &'static str,
    help: String,
    lines: Vec<String>,
}

impl Families {
    fn family(&mut self, name: &str, kind: &'static str, help: &str) -> &mut Vec<String> {
        &mut self
            .by_name
            .entry(name.to_owned())
            .or_insert_with(|| Family {
                kind,
                help: help.replace('\\', "\\\\").replace('\n', "\\n"),
                lines: Vec::new(),
            })
            .lines
    }

    fn add(&mut self, rm: &ResourceMetrics) {
        let resource = rm.resource();
        let base = resource_labels(resource);
        let mut info: Vec<(String, String)> = resource
            .iter()
            .map(|(k, v)| (label_name(k.as_str()), v.to_string()))
            .collect();
        info.extend(job_instance(resource));
        info.sort();
        info.dedup_by(|a, b| a.0 == b.0);
        let line = format!("target_info{} 1", labels(&info));
        self.family("target_info", "gauge", "Target metadata")
            .push(line);
        for scope in rm.scope_metrics() {
            for m in scope.metrics() {
                match m.data() {
                    AggregatedMetrics::F64(d) => {
                        self.add_data(m.name(), m.unit(), m.description(), &base, d, |v| *v)
                    }
                    AggregatedMetrics::U64(d) => {
                        self.add_data(m.name(), m.unit(), m.description(), &base, d, |v| *v as f64)
                    }
                    AggregatedMetrics::I64(d) => {
                        self.add_data(m.name(), m.unit(), m.description(), &base, d, |v| *v as f64)
                    }
                }
            }
        }
    }

    fn add_data<T>(
        &mut self,
        name: &str,
        unit: &str,
        help: &str,
        base: &[(String, String)],
        data: &MetricData<T>,
        f: impl Fn(&T) -> f64,
    ) where
        T: Copy,
    {
        let with = |attrs: &mut dyn Iterator<Item = &KeyValue>| -> Vec<(String, String)> {
            let mut l: Vec<(String, String)> = attrs
                .map(|kv| (label_name(kv.key.as_str()), kv.value.to_string()))
                .collect();
            l.extend(base.iter().cloned());
            l
        };
        match data {
            MetricData::Gauge(g) => {
                let n = metric_name(name, unit, false);
                let lines = self.family(&n, "gauge", help);
                for p in g.data_points() {
                    lines.push(sample(&n, &with(&mut p.attributes()), f(&p.value())));
                }
            }
            MetricData::Sum(s) => {
                let monotonic = s.is_monotonic();
                let n = metric_name(name, unit, monotonic);
                let lines = self.family(&n, if monotonic { "counter" } else { "gauge" }, help);
                for p in s.data_points() {
                    lines.push(sample(&n, &with(&mut p.attributes()), f(&p.value())));
                }
            }
            MetricData::Histogram(h) => {
                let n = metric_name(name, unit, false);
                let lines = self.family(&n, "histogram", help);
                for p in h.data_points() {
                    let l = with(&mut p.attributes());
                    let mut cumulative = 0u64;
                    let bounds: Vec<f64> = p.bounds().collect();
                    for (i, c) in p.bucket_counts().enumerate() {
                        cumulative += c;
                        let le = bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                        let mut bl = l.clone();
                        bl.push(("le".to_owned(), le));
                        lines.push(sample(&format!("{n}_bucket"), &bl, cumulative as f64));
                    }
                    lines.push(sample(&format!("{n}_sum"), &l, f(&p.sum())));
                    lines.push(sample(&format!("{n}_count"), &l, p.count() as f64));
                }
            }
            // goprobe configures no exponential histograms; classic Prometheus has no form for
            // them.
            MetricData::ExponentialHistogram(_) => {
                warn!(name, "exponential histogram not exported")
            }
        }
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (name, f) in self.by_name {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for l in f.lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }
}

/// `job` and `instance` as the specification derives them from the resource.
fn job_instance(r: &Resource) -> Vec<(String, String)> {
    let get = |k: &'static str| r.get(&Key::from_static_str(k)).map(|v| v.to_string());
    let mut out = Vec::new();
    if let Some(service) = get("service.name") {
        let job = match get("service.namespace") {
            Some(ns) => format!("{ns}/{service}"),
            None => service,
        };
        out.push(("job".to_owned(), job));
    }
    if let Some(instance) = get("service.instance.id") {
        out.push(("instance".to_owned(), instance));
    }
    out
}

/// The labels every series of a resource carries.
fn resource_labels(r: &Resource) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = PROMOTED
        .iter()
        .filter_map(|k| {
            r.get(&Key::from_static_str(k))
                .map(|v| (label_name(k), v.to_string()))
        })
        .collect();
    out.extend(job_instance(r));
    out
}

/// A metric name with its unit suffix and, for monotonic counters, `_total`.
pub fn metric_name(name: &str, unit: &str, counter: bool) -> String {
    let mut n = sanitize(name);
    if let Some(suffix) = unit_suffix(unit)
        && !n.ends_with(&format!("_{suffix}"))
    {
        n = format!("{n}_{suffix}");
    }
    if counter && !n.ends_with("_total") {
        n.push_str("_total");
    }
    n
}

/// The spec's unit → suffix mapping for the units goprobe uses; annotations in braces have none.
fn unit_suffix(unit: &str) -> Option<String> {
    let s = match unit {
        "" => return None,
        u if u.starts_with('{') => return None,
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "%" => "percent",
        "1" => "ratio",
        other => return Some(sanitize(other)),
    };
    Some(s.to_owned())
}

fn label_name(key: &str) -> String {
    sanitize(key)
}

/// Characters outside `[a-zA-Z0-9_]` → `_`, runs of `_` squeezed, no leading digit.
fn sanitize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = if c.is_ascii_alphanumeric() { c } else { '_' };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn labels(l: &[(String, String)]) -> String {
    if l.is_empty() {
        return String::new();
    }
    let body: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", body.join(","))
}

fn sample(name: &str, l: &[(String, String)], v: f64) -> String {
    let v = if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    };
    format!("{name}{} {v}", labels(l))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_specification() {
        assert_eq!(
            metric_name("goprobe.gc.pause.duration", "s", false),
            "goprobe_gc_pause_duration_seconds"
        );
        assert_eq!(
            metric_name("go.goroutine.count", "{goroutine}", false),
            "go_goroutine_count"
        );
        assert_eq!(
            metric_name("go.config.gogc", "%", false),
            "go_config_gogc_percent"
        );
        assert_eq!(
            metric_name("go.memory.gc.cycles", "{gc_cycle}", true),
            "go_memory_gc_cycles_total"
        );
        assert_eq!(
            metric_name("goprobe.alloc.bytes", "By", true),
            "goprobe_alloc_bytes_total"
        );
        assert_eq!(
            metric_name("goprobe.gc.assist.time", "s", true),
            "goprobe_gc_assist_time_seconds_total"
        );
        assert_eq!(
            metric_name("goprobe.page_faults", "{fault}", true),
            "goprobe_page_faults_total"
        );
        assert_eq!(label_name("code.function.name"), "code_function_name");
    }

    #[test]
    fn label_values_are_escaped() {
        let l = vec![("code_function".to_owned(), "main.(*T).\"x\"\\".to_owned())];
        assert_eq!(labels(&l), "{code_function=\"main.(*T).\\\"x\\\"\\\\\"}");
    }
}
