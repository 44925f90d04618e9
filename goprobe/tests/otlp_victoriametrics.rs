//! OTLP export into a real receiver that is not ours: VictoriaMetrics with its OTLP endpoint
//! (`cargo xtask setup` unpacks it from Debian's newer suites; Debian's Prometheus 3 is built
//! without its OTLP receiver), queried back through its Prometheus-compatible HTTP API. goprobe
//! is given the generic endpoint `http://HOST/opentelemetry`, a base with a path, and must post
//! to `…/opentelemetry/v1/metrics` as the OpenTelemetry specification says (posting to the base
//! as it is, as goprobe did, was answered 400). Also: a collector down for a minute loses
//! nothing, and goprobe exits at most its export timeout (and under a second) after its target,
//! with the collector down or never answering, serving its final values on `--prometheus`
//! meanwhile.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{
    Proc,
    prometheus::{free_port, http_get, url_encode, value},
};

/// One test at a time: the minute-long outage test keeps a core busy, and the exit tests time
/// goprobe's exit.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A VictoriaMetrics on a fixed loopback port with its own storage, so that it can be stopped
/// and started again as the same collector.
struct Receiver {
    proc: Option<Proc>,
    addr: String,
    dir: PathBuf,
}

impl Receiver {
    fn binary() -> PathBuf {
        std::env::var_os("GOPROBE_VICTORIA_METRICS").map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../target/thirdparty/victoria-metrics/usr/bin/victoria-metrics")
            },
            PathBuf::from,
        )
    }

    fn start(name: &str) -> Self {
        let bin = Self::binary();
        let help = Command::new(&bin).arg("-help").output();
        assert!(
            help.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("-opentelemetry.")),
            "{} is not a VictoriaMetrics with OTLP ingestion: run `cargo xtask setup`",
            bin.display()
        );
        let dir = std::env::temp_dir().join(format!("goprobe-vm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut r = Self {
            proc: None,
            addr: format!("127.0.0.1:{}", free_port()),
            dir,
        };
        r.restart();
        r
    }

    /// Starts it (again, on the same port and storage) and waits until it is ready.
    fn restart(&mut self) {
        let mut cmd = Command::new(Self::binary());
        cmd.current_dir(&self.dir)
            .arg("-storageDataPath=data")
            .arg(format!("-httpListenAddr={}", self.addr))
            // Prometheus' names (`goprobe_gc_pause_duration_seconds_count`, `service_name`).
            .arg("-opentelemetry.usePrometheusNaming")
            // Every sample queryable at once, and the last one however old.
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-search.maxStalenessInterval=10m")
            .arg("-loggerLevel=WARN");
        self.proc = Some(Proc::spawn(cmd));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(http_get(&self.addr, "/health"), Some((200, _))) {
            assert!(
                Instant::now() < deadline,
                "VictoriaMetrics on {} not ready",
                self.addr
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops it as an operator would (SIGTERM: it flushes what it holds); connecting to its
    /// port is refused until [`Self::restart`].
    fn stop(&mut self) {
        let mut p = self.proc.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &p.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while p.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "VictoriaMetrics did not stop");
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The generic OTLP endpoint (a base: `v1/metrics` goes after it).
    fn endpoint(&self) -> String {
        format!("http://{}/opentelemetry", self.addr)
    }

    /// The single value of `expr`, or `None` while it has no series.
    fn single(&self, expr: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", url_encode(expr));
        let (status, body) = http_get(&self.addr, &path).expect("the collector answers");
        let json: Value = serde_json::from_slice(&body).unwrap();
        assert!(status == 200, "{expr}: HTTP {status}: {json}");
        let series = json["data"]["result"].as_array().unwrap();
        assert!(series.len() <= 1, "{expr}: {series:?}");
        series.first().map(value)
    }

    fn wait_for(&self, expr: &str, timeout: Duration) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = self.single(expr) {
                return v;
            }
            assert!(Instant::now() < deadline, "no {expr} within {timeout:?}");
            thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        drop(self.proc.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `goprobe attach` pushing OTLP every second under `service` (the `service_name` label),
/// writing report.json into `out`, else printing it (`--json`). The test's own `OTEL_*`
/// variables are removed.
fn attach(pid: u32, extra: &[&str], service: &str, out: Option<&Path>) -> Proc {
    let mut cmd = support::goprobe();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("attach")
        .arg(pid.to_string())
        .args(["--export-interval", "1", "--service-name", service])
        .args(extra);
    match out {
        Some(dir) => cmd.arg("--out-dir").arg(dir),
        None => cmd.arg("--json"),
    };
    let p = Proc::spawn(cmd);
    p.wait_stderr("attached to pid", Duration::from_secs(60));
    p
}

fn out_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("goprobe-otlp3-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// (GC cycles, GC pauses, their sum in ns) in report.json.
fn report_totals(dir: &Path) -> (u64, u64, u64) {
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    totals(&report)
}

fn totals(report: &Value) -> (u64, u64, u64) {
    assert_eq!(report["goprobe"]["lost_events"], 0);
    let cycles = report["gc"]["cycles"].as_array().unwrap();
    let stws: Vec<u64> = cycles
        .iter()
        .flat_map(|c| c["stw"].as_array().unwrap())
        .map(|s| s["duration_ns"].as_u64().unwrap())
        .collect();
    (cycles.len() as u64, stws.len() as u64, stws.iter().sum())
}

/// What the collector holds for `job`: (GC cycles, GC pauses, their sum in ns).
fn stored_totals(prom: &Receiver, job: &str) -> (f64, f64, f64) {
    let sel = format!(r#"{{service_name="{job}"}}"#);
    let get = |e: String| prom.single(&e).unwrap_or(f64::NAN);
    (
        get(format!("sum(go_memory_gc_cycles_total{sel})")),
        get(format!("sum(goprobe_gc_pause_duration_seconds_count{sel})")),
        get(format!("sum(goprobe_gc_pause_duration_seconds_sum{sel})")) * 1e9,
    )
}

/// goprobe's totals in the collector equal its report.json: the counts exactly, the sum within
/// 1 ns per pause (seconds as f64). The last push arrived before goprobe exited; the collector
/// may take a moment to make it queryable.
fn assert_stored_equals_report(prom: &Receiver, job: &str, dir: &Path) -> (u64, u64) {
    let (cycles, pauses, sum_ns) = report_totals(dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    let (p_cycles, p_pauses, p_sum) = loop {
        let t = stored_totals(prom, job);
        if (t.0, t.1) == (cycles as f64, pauses as f64) || Instant::now() > deadline {
            break t;
        }
        thread::sleep(Duration::from_millis(250));
    };
    eprintln!(
        "{job}: report {cycles} cycles, {pauses} pauses, {sum_ns} ns; \
         collector {p_cycles} cycles, {p_pauses} pauses, {p_sum:.0} ns"
    );
    assert_eq!(p_cycles, cycles as f64, "GC cycles: collector vs report");
    assert_eq!(p_pauses, pauses as f64, "GC pauses: collector vs report");
    assert!(
        (p_sum - sum_ns as f64).abs() <= pauses as f64,
        "pause sum: collector {p_sum} ns, report {sum_ns} ns"
    );
    (cycles, pauses)
}

/// gcstress `-mode pauses` under goprobe, pushing to VictoriaMetrics: the pause histogram and
/// the cycle counter read back through its query API equal goprobe's report, and
/// the cycles equal what the runtime counted (NumGC; GC is off after its last read).
#[test]
fn pauses_read_back_from_the_collector() {
    let _serial = serial();
    let prom = Receiver::start("pauses");
    let dir = out_dir("pauses");
    let mut prog = support::start_testprog(
        "gcstress",
        "1.27.3",
        &["-mode", "pauses", "-cycles", "60"],
        &[],
    );
    let job = format!("otlp3-pauses-{}", std::process::id());
    let probe = attach(
        prog.pid(),
        &["--otlp-endpoint", &prom.endpoint()],
        &job,
        Some(&dir),
    );
    // The periodic pushes arrive before the workload starts (no cycle yet: no cycle series).
    prom.wait_for(
        &format!(r#"goprobe_agent_targets{{service_name="{job}"}}"#),
        Duration::from_secs(30),
    );
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "gcstress: {err}");
    let truth: Value = serde_json::from_str(out.trim()).unwrap();
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(gp_status.success(), "goprobe: {gp_err}");
    assert!(!gp_err.contains("OTLP export failed"), "{gp_err}");
    let (cycles, _) = assert_stored_equals_report(&prom, &job, &dir);
    let ran = truth["numgc_end"].as_u64().unwrap() - truth["numgc_start"].as_u64().unwrap();
    assert_eq!(cycles, ran, "report cycles vs the runtime's NumGC");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The collector goes away for 60 s while GC cycles go on, and comes back on the same port and
/// storage: the counters are cumulative, so the values pushed after it returns (the last of
/// them at goprobe's exit) hold every cycle, those of the minute it was away too.
#[test]
fn collector_down_for_a_minute_loses_nothing() {
    let _serial = serial();
    let mut prom = Receiver::start("outage");
    let dir = out_dir("outage");
    // Forced cycles every 500 ms, heap-triggered ones in between, until "stop".
    let mut prog = support::start_testprog(
        "gcstress",
        "1.27.3",
        &["-mode", "mixed"],
        &[("GOMAXPROCS", "1")],
    );
    let job = format!("otlp3-outage-{}", std::process::id());
    let mut probe = attach(
        prog.pid(),
        &["--otlp-endpoint", &prom.endpoint()],
        &job,
        Some(&dir),
    );
    prog.send("start");
    let sel = format!(r#"{{service_name="{job}"}}"#);
    let before = prom.wait_for(
        &format!("go_memory_gc_cycles_total{sel}"),
        Duration::from_secs(30),
    );
    thread::sleep(Duration::from_secs(3));
    prom.stop();
    let down = Instant::now();
    thread::sleep(Duration::from_secs(60));
    assert!(
        probe.child.try_wait().unwrap().is_none(),
        "goprobe exited while the collector was down"
    );
    prom.restart();
    eprintln!("collector down for {:?}", down.elapsed());
    // What the collector held from before the outage, and the first push after it.
    let at_return = prom
        .single(&format!("go_memory_gc_cycles_total{sel}"))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let v = prom
            .single(&format!("go_memory_gc_cycles_total{sel}"))
            .unwrap();
        if v > at_return {
            break v;
        }
        assert!(
            Instant::now() < deadline,
            "no push after the collector came back"
        );
        thread::sleep(Duration::from_millis(250));
    };
    // Forced cycles alone: 2 a second for the minute away.
    assert!(
        after - at_return >= 100.0,
        "the first push after the outage holds {} more cycles than the last before it",
        after - at_return
    );
    prog.send("stop");
    let (status, _, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "gcstress: {err}");
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(gp_status.success(), "goprobe: {gp_err}");
    assert!(
        gp_err.contains("OTLP export failed"),
        "no failed export reported: {gp_err}"
    );
    let (cycles, pauses) = assert_stored_equals_report(&prom, &job, &dir);
    eprintln!(
        "{before} cycles before the outage, {at_return} when it ended, {after} after; {cycles} cycles and {pauses} pauses in all"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A collector that accepts connections and never answers.
struct Hanging {
    addr: String,
    accepted: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hanging {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let keep = accepted.clone();
        thread::spawn(move || {
            for s in l.incoming().flatten() {
                keep.lock().unwrap().push(s);
            }
        });
        Self { addr, accepted }
    }

    fn connections(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

/// The export timeout the exit tests give goprobe: longer than building the report takes (a
/// debug build on a busy machine: about 2 s), with which the final push runs concurrently, so
/// that the exit measures the push's bound.
const TIMEOUT_S: f64 = 4.0;

/// goprobe attached to a short gcstress, pushing to `endpoint` with `--otlp-timeout 4` and
/// serving `--prometheus`, report on stdout: returns how long after its target it exited, and
/// what its endpoint served after the target had exited (the last scrape's GC pause count, and
/// how many scrapes).
fn exit_after_target(test: &str, endpoint: &str, protocol: &str) -> (Duration, f64, usize) {
    let mut prog = support::start_testprog(
        "gcstress",
        "1.27.3",
        &["-mode", "pauses", "-cycles", "40"],
        &[],
    );
    let probe = attach(
        prog.pid(),
        &[
            "--otlp-endpoint",
            endpoint,
            "--otlp-protocol",
            protocol,
            "--otlp-timeout",
            &TIMEOUT_S.to_string(),
            "--prometheus",
            "127.0.0.1:0",
        ],
        test,
        None,
    );
    let metrics = support::prometheus::goprobe_endpoint(&probe);
    thread::sleep(Duration::from_millis(2500)); // periodic pushes fail or hang meanwhile
    prog.send("start");
    let (status, _, err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "gcstress: {err}");
    let exited = Instant::now();
    // Scrape until goprobe is gone: the endpoint must answer while the report is built and the
    // last push waits on the collector.
    let (mut scrapes, mut last) = (0, f64::NAN);
    let mut probe = probe;
    let status = loop {
        if let Some(s) = probe.child.try_wait().unwrap() {
            break s;
        }
        if let Some((200, body)) = http_get(&metrics, "/metrics") {
            let text = String::from_utf8_lossy(&body);
            if let Some(n) = pause_count(&text) {
                last = n;
                scrapes += 1;
            }
        }
        thread::sleep(Duration::from_millis(50));
    };
    let delay = exited.elapsed();
    let (_, gp_out, gp_err) = probe.finish(Duration::from_secs(5));
    assert!(status.success(), "goprobe: {gp_err}");
    let (_, pauses, _) = totals(&serde_json::from_str(&gp_out).unwrap());
    eprintln!(
        "{test}: goprobe exited {delay:?} after its target; {scrapes} scrapes answered meanwhile"
    );
    assert_eq!(
        last, pauses as f64,
        "{test}: the endpoint's last pause count vs the report"
    );
    (delay, last, scrapes)
}

/// The sum of `goprobe_gc_pause_duration_seconds_count` over its series, if there is one.
fn pause_count(metrics: &str) -> Option<f64> {
    let values: Vec<f64> = metrics
        .lines()
        .filter(|l| l.starts_with("goprobe_gc_pause_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

fn assert_bounded(test: &str, delay: Duration, scrapes: usize) {
    let bound = Duration::from_secs_f64(TIMEOUT_S + 1.0);
    assert!(
        delay <= bound,
        "{test}: goprobe exited {delay:?} after its target, over {bound:?}"
    );
    assert!(
        scrapes > 0,
        "{test}: the Prometheus endpoint did not answer after the target exited"
    );
}

/// Nothing listens on the collector's port (connecting is refused).
#[test]
fn exit_bounded_with_the_collector_down() {
    let _serial = serial();
    let port = free_port();
    for protocol in ["http", "grpc"] {
        let test = format!("down-{protocol}");
        let (delay, _, scrapes) =
            exit_after_target(&test, &format!("http://127.0.0.1:{port}"), protocol);
        assert_bounded(&test, delay, scrapes);
    }
}

/// The collector accepts connections and never answers: the final push is cut at the timeout,
/// and goprobe waits that long for it, not more.
#[test]
fn exit_bounded_with_a_collector_that_never_answers() {
    let _serial = serial();
    for protocol in ["http", "grpc"] {
        let hanging = Hanging::start();
        let test = format!("hanging-{protocol}");
        let (delay, _, scrapes) =
            exit_after_target(&test, &format!("http://{}", hanging.addr), protocol);
        assert!(hanging.connections() > 0, "{test}: goprobe never connected");
        assert_bounded(&test, delay, scrapes);
        assert!(
            delay >= Duration::from_secs_f64(TIMEOUT_S * 0.9),
            "{test}: exited {delay:?} after its target: the final push did not wait for the collector"
        );
    }
}
