//! OTLP metrics export, end to end: the real goprobe binary attached to a real gcstress pushes
//! to an OTLP receiver in this process (support::otlp, the official protobuf definitions), and
//! what arrives must equal goprobe's own report.json: names, units, kinds and attributes as
//! docs/metrics.md specifies them, values down to the nanosecond, and nothing lost when the
//! receiver goes away for a while.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    thread,
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    common::v1::any_value::Value as AttrValue,
    metrics::v1::{AggregationTemporality, Metric, metric::Data},
};
use serde_json::Value;
use support::{
    Proc,
    otlp::{Attrs, Protocol, Receiver, attrs, histogram_points, number_data_points, number_value},
};

/// docs/metrics.md, "Histogram buckets": 10 µs to 1 s.
const PAUSE_BOUNDS: [f64; 16] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// How goprobe is told its service name; docs/metrics.md: flag, else `OTEL_SERVICE_NAME`, else
/// the executable's file name.
enum Naming {
    Flag(&'static str),
    Env(&'static str),
    Default,
}

/// `goprobe attach` pushing OTLP to `endpoint` every second and writing report.json to `out`.
/// The test's own `OTEL_*` variables are removed: the exporter would read them.
fn attach_otlp(pid: u32, endpoint: &str, protocol: Protocol, naming: &Naming, out: &Path) -> Proc {
    let mut cmd = support::goprobe();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("attach").arg(pid.to_string()).args([
        "--otlp-endpoint",
        endpoint,
        "--otlp-protocol",
        protocol.flag(),
        "--export-interval",
        "1",
        "--out-dir",
        out.to_str().unwrap(),
    ]);
    match naming {
        Naming::Flag(name) => {
            // The flag wins over the variable.
            cmd.args(["--service-name", name])
                .env("OTEL_SERVICE_NAME", "not-this-one");
        }
        Naming::Env(name) => {
            cmd.env("OTEL_SERVICE_NAME", name);
        }
        Naming::Default => {}
    }
    let p = Proc::spawn(cmd);
    p.wait_stderr("attached to pid", Duration::from_secs(60));
    p
}

fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("goprobe-otlp-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read_report(dir: &Path) -> Value {
    let path = dir.join("report.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let report: Value = serde_json::from_str(&text).expect("report.json");
    assert_eq!(report["schema"], "goprobe.report.v2");
    report
}

/// report.json's durations (ns) as goprobe's histograms group them: GC pauses by
/// (`gc.stw.reason`, `gc.trigger`), other stop-the-worlds by `gc.stw.reason`, phases by
/// `gc.phase`. The reason attribute carries report.json's reason names (docs/metrics.md).
fn report_durations(report: &Value) -> [BTreeMap<Vec<String>, Vec<u64>>; 3] {
    let [mut pauses, mut stw, mut phases] = [(); 3].map(|()| BTreeMap::<_, Vec<u64>>::new());
    let text = |v: &Value| v.as_str().unwrap().to_owned();
    for c in report["gc"]["cycles"].as_array().expect("cycles") {
        for s in c["stw"].as_array().expect("stw") {
            pauses
                .entry(vec![text(&s["reason"]), text(&c["trigger"])])
                .or_default()
                .push(s["duration_ns"].as_u64().unwrap());
        }
        for (phase, ns) in c["phases_ns"].as_object().into_iter().flatten() {
            phases
                .entry(vec![phase.clone()])
                .or_default()
                .push(ns.as_u64().unwrap());
        }
    }
    for s in report["gc"]["other_stw"].as_array().expect("other_stw") {
        stw.entry(vec![text(&s["reason"])])
            .or_default()
            .push(s["duration_ns"].as_u64().unwrap());
    }
    [pauses, stw, phases]
}

/// Bucket counts as OTLP defines them: bucket i holds values in (bounds[i-1], bounds[i]].
fn buckets(durations_ns: &[u64]) -> Vec<u64> {
    let mut counts = vec![0; PAUSE_BOUNDS.len() + 1];
    for &ns in durations_ns {
        let s = ns as f64 / 1e9;
        counts[PAUSE_BOUNDS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(PAUSE_BOUNDS.len())] += 1;
    }
    counts
}

/// Histogram `name` in the last export holds exactly the durations `want`, by the values of
/// the attributes `keys`: the same attribute sets, and per set the count, the sum (within 1 ns
/// per value) and every bucket. Returns the number of values and their sum in ns.
fn assert_histogram(
    receiver: &Receiver,
    name: &str,
    keys: &[&str],
    want: &BTreeMap<Vec<String>, Vec<u64>>,
) -> (usize, u64) {
    let got: BTreeMap<Vec<String>, _> = receiver
        .metric(name)
        .map(|m| histogram_points(&m))
        .unwrap_or_default()
        .into_iter()
        .map(|(a, p)| {
            assert_eq!(a.keys().collect::<Vec<_>>(), keys, "{name}: attributes");
            (keys.iter().map(|k| a[*k].clone()).collect(), p)
        })
        .collect();
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{name}: attribute sets"
    );
    let (mut n, mut total_ns) = (0, 0);
    for (key, durations) in want {
        let p = &got[key];
        let sum_ns: u64 = durations.iter().sum();
        assert_eq!(p.count, durations.len() as u64, "{name} {key:?}: count");
        assert!(
            (p.sum * 1e9 - sum_ns as f64).abs() <= durations.len() as f64,
            "{name} {key:?}: OTLP sum {} s, report {sum_ns} ns",
            p.sum
        );
        assert_eq!(p.bounds, PAUSE_BOUNDS, "{name} {key:?}: bucket bounds");
        assert_eq!(
            p.bucket_counts,
            buckets(durations),
            "{name} {key:?}: buckets"
        );
        n += durations.len();
        total_ns += sum_ns;
    }
    (n, total_ns)
}

/// The final export equals report.json: GC pauses, other stop-the-worlds and phases as
/// histograms (see [`assert_histogram`]), cycles in total and by trigger.
fn assert_gc_matches(receiver: &Receiver, report: &Value) {
    let [pauses, stw, phases] = report_durations(report);
    let (n, total_ns) = assert_histogram(
        receiver,
        "goprobe.gc.pause.duration",
        &["gc.stw.reason", "gc.trigger"],
        &pauses,
    );
    let (other, _) = assert_histogram(
        receiver,
        "goprobe.stw.pause.duration",
        &["gc.stw.reason"],
        &stw,
    );
    let (phased, _) = assert_histogram(
        receiver,
        "goprobe.gc.phase.duration",
        &["gc.phase"],
        &phases,
    );
    let cycles = report["gc"]["cycles"].as_array().unwrap();
    assert_eq!(
        receiver.total("go.memory.gc.cycles"),
        cycles.len() as f64,
        "go.memory.gc.cycles"
    );
    let mut by_trigger = BTreeMap::<String, f64>::new();
    for c in cycles {
        *by_trigger
            .entry(c["trigger"].as_str().unwrap().to_owned())
            .or_default() += 1.0;
    }
    let got: BTreeMap<String, f64> = receiver
        .numbers("goprobe.gc.cycles")
        .into_iter()
        .map(|(a, v)| (a["gc.trigger"].clone(), v))
        .collect();
    assert_eq!(got, by_trigger, "goprobe.gc.cycles by gc.trigger");
    eprintln!(
        "{} cycles, {n} GC pauses ({total_ns} ns), {other} other pauses, {phased} phases: \
         report.json = last export",
        cycles.len()
    );
}

/// The metric's kind: `"gauge"` (a gauge or a non-monotonic sum: OpenTelemetry's up-down
/// counters), `"counter"` or `"histogram"`; sums and histograms must be cumulative.
fn kind(m: &Metric) -> &'static str {
    let cumulative = AggregationTemporality::Cumulative as i32;
    match &m.data {
        Some(Data::Gauge(_)) => "gauge",
        Some(Data::Sum(s)) => {
            assert_eq!(s.aggregation_temporality, cumulative, "{}", m.name);
            if s.is_monotonic { "counter" } else { "gauge" }
        }
        Some(Data::Histogram(h)) => {
            assert_eq!(h.aggregation_temporality, cumulative, "{}", m.name);
            "histogram"
        }
        other => panic!("{}: unexpected data {other:?}", m.name),
    }
}

/// Name, unit and kind of every metric this test relies on (docs/metrics.md).
fn assert_metric_types(receiver: &Receiver) {
    for (name, unit, want) in [
        ("go.goroutine.count", "{goroutine}", "gauge"),
        ("go.processor.limit", "{thread}", "gauge"),
        ("go.memory.gc.cycles", "{gc_cycle}", "counter"),
        ("goprobe.gc.pause.duration", "s", "histogram"),
        ("goprobe.stw.pause.duration", "s", "histogram"),
        ("goprobe.gc.cycles", "{gc_cycle}", "counter"),
        ("goprobe.agent.lost_events", "{event}", "counter"),
        ("goprobe.agent.lost_stacks", "{stack}", "counter"),
    ] {
        let m = receiver
            .metric(name)
            .unwrap_or_else(|| panic!("no {name}; seen {:?}", receiver.names()));
        assert_eq!(m.unit, unit, "unit of {name}");
        assert_eq!(kind(&m), want, "kind of {name}");
    }
}

/// Across all exports: one resource, the same in every export; counters and histogram counts
/// never decrease and keep their start time (cumulative temporality from the attach).
fn assert_cumulative(receiver: &Receiver) {
    let exports = receiver.exports();
    let first = exports[0].resource();
    let mut seen = BTreeMap::<(String, Attrs), (u64, f64)>::new();
    for e in &exports {
        assert_eq!(e.resource(), first, "the resource changed between exports");
        for m in e.metrics() {
            let points: Vec<(Attrs, u64, f64)> = match (&m.data, kind(m)) {
                (Some(Data::Sum(_)), "counter") => number_data_points(m)
                    .iter()
                    .map(|p| {
                        let v = number_value(m, p);
                        (attrs(&p.attributes), p.start_time_unix_nano, v)
                    })
                    .collect(),
                (Some(Data::Histogram(_)), _) => histogram_points(m)
                    .into_iter()
                    .map(|(a, p)| (a, p.start_unix_ns, p.count as f64))
                    .collect(),
                _ => continue,
            };
            for (a, start, v) in points {
                let key = (m.name.clone(), a);
                if let Some(&(start0, v0)) = seen.get(&key) {
                    assert_eq!(start, start0, "{key:?}: start time changed");
                    assert!(v >= v0, "{key:?}: went down from {v0} to {v}");
                }
                seen.insert(key, (start, v));
            }
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

/// The resource attributes docs/metrics.md lists, for gcstress as `pid`.
fn assert_resource(receiver: &Receiver, pid: u32, exe: &Path, service: &str, report: &Value) {
    let res = receiver.resource();
    let s = |v: &str| AttrValue::StringValue(v.to_owned());
    let host = hostname();
    for (key, want) in [
        ("service.name", s(service)),
        ("service.instance.id", s(&format!("{host}:{pid}"))),
        ("process.pid", AttrValue::IntValue(pid.into())),
        ("process.executable.name", s("gcstress")),
        ("process.executable.path", s(exe.to_str().unwrap())),
        ("process.runtime.name", s("go")),
        (
            "process.runtime.version",
            s(report["target"]["go_version"].as_str().unwrap()),
        ),
        ("host.name", s(&host)),
    ] {
        assert_eq!(
            res.get(key),
            Some(&want),
            "resource attribute {key}: {res:?}"
        );
    }
}

/// gcstress `-mode pauses` under goprobe with OTLP export; everything that arrived is checked
/// against report.json and the program's own numbers.
fn gc_pauses_exported(protocol: Protocol, go: &str, naming: Naming) {
    let receiver = Receiver::start(protocol);
    let dir = out_dir(protocol.flag());
    // GOMAXPROCS=3, not the machine's CPU count, so go.processor.limit must really be read.
    let mut prog = support::start_testprog(
        "gcstress",
        go,
        &["-mode", "pauses", "-cycles", "40"],
        &[("GOMAXPROCS", "3")],
    );
    let pid = prog.pid();
    let exe = std::fs::canonicalize(support::testprog("gcstress", go)).unwrap();
    let probe = attach_otlp(pid, &receiver.endpoint(), protocol, &naming, &dir);
    // Two periodic exports before the workload: they come by themselves, once a second.
    receiver.wait_count(2, Duration::from_secs(20));
    prog.send("start");
    let (status, out, target_err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "gcstress failed: {target_err}");
    let truth: Value = serde_json::from_str(out.trim()).expect("gcstress JSON");
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(30));
    assert!(gp_status.success(), "goprobe failed: {gp_err}");
    let report = read_report(&dir);
    assert!(support::is_release(
        report["target"]["go_version"].as_str().unwrap(),
        go
    ));
    assert_eq!(report["goprobe"]["lost_events"], 0, "{gp_err}");

    assert_eq!(receiver.errors(), Vec::<String>::new(), "receiver errors");
    let exports = receiver.exports();
    assert!(exports.len() >= 3, "{} exports", exports.len());
    let gap = exports[1].at - exports[0].at;
    assert!(
        Duration::from_millis(500) <= gap && gap <= Duration::from_secs(3),
        "--export-interval 1, but the periodic exports came {gap:?} apart"
    );

    let service = match naming {
        Naming::Flag(n) | Naming::Env(n) => n,
        Naming::Default => "gcstress",
    };
    assert_resource(&receiver, pid, &exe, service, &report);
    assert_metric_types(&receiver);
    assert_cumulative(&receiver);
    assert_gc_matches(&receiver, &report);

    let rms = report_durations(&report)[1]
        .get(&vec!["ReadMemStats".to_owned()])
        .map_or(0, Vec::len);
    assert!(
        rms > 0,
        "gcstress calls ReadMemStats: there is a non-GC pause to export"
    );

    let gomaxprocs = truth["gomaxprocs"].as_f64().expect("gcstress gomaxprocs");
    assert_eq!(gomaxprocs, 3.0);
    assert_eq!(receiver.total("go.processor.limit"), gomaxprocs);
    let goroutines = receiver.total("go.goroutine.count");
    assert!(goroutines >= 1.0, "go.goroutine.count {goroutines}");
    assert_eq!(receiver.total("goprobe.agent.lost_events"), 0.0);
    assert_eq!(
        receiver.total("goprobe.agent.lost_stacks"),
        report["goprobe"]["lost_stacks"].as_f64().unwrap_or(0.0)
    );
    if receiver.metric("goprobe.agent.export.failures").is_some() {
        assert_eq!(receiver.total("goprobe.agent.export.failures"), 0.0);
    }
    eprintln!(
        "{protocol:?} Go {go}: {} exports, metrics {:?}",
        exports.len(),
        receiver.names()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_protobuf_metrics() {
    gc_pauses_exported(Protocol::Http, "1.27.3", Naming::Env("otlp-http-test"));
}

#[test]
fn grpc_metrics() {
    gc_pauses_exported(Protocol::Grpc, "1.19", Naming::Flag("otlp-grpc-test"));
}

/// The receiver goes away for ~5 s in the middle of a run and comes back on the same port.
fn receiver_down_and_back(protocol: Protocol) {
    let mut receiver = Receiver::start(protocol);
    let dir = out_dir(&format!("down-{}", protocol.flag()));
    let mut prog = support::start_testprog(
        "gcstress",
        "1.27.3",
        &["-mode", "churn"],
        // One P: churn allocates flat out on four goroutines; the machine is shared.
        &[("GOMAXPROCS", "1")],
    );
    // With a trailing "/" goprobe must still append /v1/metrics (HTTP); gRPC ignores the path.
    let endpoint = format!("{}/", receiver.endpoint());
    let mut probe = attach_otlp(prog.pid(), &endpoint, protocol, &Naming::Default, &dir);
    prog.send("start");
    receiver.wait_count(2, Duration::from_secs(20));
    receiver.stop();
    let before = receiver.count();
    thread::sleep(Duration::from_secs(5));
    assert!(
        probe.child.try_wait().unwrap().is_none(),
        "goprobe exited while the receiver was down"
    );
    receiver.restart();
    let back = Instant::now();
    receiver.wait_count(before + 2, Duration::from_secs(30));
    prog.send("stop");
    let (status, _, target_err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "gcstress failed: {target_err}");
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(gp_status.success(), "goprobe failed: {gp_err}");
    let report = read_report(&dir);
    assert_eq!(report["goprobe"]["lost_events"], 0, "{gp_err}");

    assert_eq!(receiver.errors(), Vec::<String>::new(), "receiver errors");
    let last = receiver.last();
    assert!(last.at > back);
    // Cumulative temporality: what was recorded while nothing was listening is in the
    // exports after the restart, so the final export still equals the whole report.
    assert_gc_matches(&receiver, &report);
    assert_cumulative(&receiver);
    let failures = receiver.total("goprobe.agent.export.failures");
    // ~5 periodic exports fell into the gap; each failed export counts once, whatever the
    // exporter retried.
    assert!(
        (1.0..=8.0).contains(&failures),
        "goprobe.agent.export.failures {failures} after ~5 s down"
    );
    // Nothing has to be kept for a failed export (the next one carries the cumulative state),
    // so the outage must not grow goprobe: its peak RSS stays well below 256 MiB, about five
    // times what a whole run normally needs (docs/report-schema.md's example: 46 MiB). An
    // exporter that queued failed batches or leaked a connection per retry would cross it.
    let rss_kb = report["goprobe"]["max_rss_kb"].as_u64().unwrap();
    assert!(rss_kb < 256 * 1024, "max_rss_kb {rss_kb}");
    eprintln!(
        "{protocol:?}: {} exports ({before} before the outage), {failures} failures, {} cycles, max RSS {rss_kb} KiB",
        receiver.count(),
        report["gc"]["cycles"].as_array().unwrap().len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_receiver_down_and_back() {
    receiver_down_and_back(Protocol::Http);
}

#[test]
fn grpc_receiver_down_and_back() {
    receiver_down_and_back(Protocol::Grpc);
}

/// Nothing listens at the endpoint for the whole run: goprobe profiles as usual, exits 0 with
/// its report and says that exports failed.
fn endpoint_unreachable(protocol: Protocol) {
    // A port that was free a moment ago: connecting is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let dir = out_dir(&format!("unreachable-{}", protocol.flag()));
    let mut prog = support::start_testprog(
        "gcstress",
        "1.27.3",
        &["-mode", "pauses", "-cycles", "40"],
        &[],
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let probe = attach_otlp(prog.pid(), &endpoint, protocol, &Naming::Default, &dir);
    thread::sleep(Duration::from_millis(2500)); // two periodic exports fail
    prog.send("start");
    let (status, out, target_err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "gcstress failed: {target_err}");
    let truth: Value = serde_json::from_str(out.trim()).unwrap();
    let target_exited = Instant::now();
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(60));
    let exit_delay = target_exited.elapsed();
    assert!(gp_status.success(), "goprobe failed: {gp_err}");
    let report = read_report(&dir);
    let cycles = report["gc"]["cycles"].as_array().unwrap().len() as u64;
    let ran = truth["numgc_end"].as_u64().unwrap() - truth["numgc_start"].as_u64().unwrap();
    assert_eq!(cycles, ran, "report cycles vs the runtime's NumGC");
    assert!(
        gp_err.contains(EXPORT_FAILED),
        "goprobe's stderr does not say the export failed ({EXPORT_FAILED:?}):\n{gp_err}"
    );
    for line in gp_err.lines().filter(|l| l.contains("export")) {
        eprintln!("{protocol:?}: {line}");
    }
    eprintln!("{protocol:?}: goprobe exited {exit_delay:?} after its target");
    // The final export to a refused port ends after the exporter's retries (3, backoff 100 ms to
    // 1.6 s: about 3.5 s measured); waiting much longer would leave the user's terminal hanging.
    assert!(
        exit_delay < Duration::from_secs(15),
        "goprobe took {exit_delay:?} to exit after its target"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// What goprobe's warning on stderr says when an OTLP export fails (it warns at the first failure
/// and at every 10th).
const EXPORT_FAILED: &str = "OTLP export failed";

#[test]
fn http_endpoint_unreachable() {
    endpoint_unreachable(Protocol::Http);
}

#[test]
fn grpc_endpoint_unreachable() {
    endpoint_unreachable(Protocol::Grpc);
}
