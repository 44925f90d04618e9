//! goprobe's Grafana dashboards (`dashboards/*.json`): their structure is what Grafana and the
//! provisioning need, every metric they query is one docs/metrics.md documents, and, end to end,
//! every panel query returns data from a real Prometheus scraping `goprobe attach --prometheus`
//! on a Go program doing everything the panels show.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    collections::BTreeSet,
    fmt::Write as _,
    path::{Path, PathBuf},
    time::Duration,
};

use serde_json::{Value, json};
use support::{
    grafana::{self, DASHBOARDS, FILTERS},
    prometheus::{self, Prometheus},
};

fn ds() -> Value {
    json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"})
}

/// Every problem of one dashboard's structure, as messages (empty: none).
fn lint(file: &str, uid: &str, documented: &BTreeSet<String>) -> Vec<String> {
    let d = grafana::load(file);
    let mut bad = Vec::new();
    let mut check = |ok: bool, msg: String| {
        if !ok {
            bad.push(format!("{file}: {msg}"));
        }
    };
    check(
        d["schemaVersion"] == 41,
        format!("schemaVersion {}", d["schemaVersion"]),
    );
    check(
        d["uid"] == uid,
        format!("uid {} (must stay {uid})", d["uid"]),
    );
    check(
        d["title"].as_str().is_some_and(|t| !t.is_empty()),
        "no title".into(),
    );
    check(
        d["tags"]
            .as_array()
            .is_some_and(|t| t.contains(&json!("goprobe"))),
        "not tagged goprobe".into(),
    );

    // Variables: the data source, then service and pid from a documented metric.
    let v = grafana::variable(&d, "DS_PROMETHEUS");
    check(
        v["type"] == "datasource" && v["query"] == "prometheus",
        format!("DS_PROMETHEUS is not a prometheus data source variable: {v}"),
    );
    for name in ["service", "pid"] {
        let v = grafana::variable(&d, name);
        check(
            v["type"] == "query",
            format!("{name} is not a query variable"),
        );
        check(
            v["datasource"] == ds(),
            format!("{name} data source {}", v["datasource"]),
        );
        check(v["includeAll"] == true, format!("{name} has no All"));
        let (selector, _) = grafana::label_values(v["definition"].as_str().unwrap_or_default());
        for s in grafana::selectors(selector) {
            check(
                documented.contains(&s.metric),
                format!("variable {name}: {} is not in docs/metrics.md", s.metric),
            );
        }
    }
    check(
        grafana::variable(&d, "pid")["multi"] == true,
        "pid is not multi-value".into(),
    );

    let panels = grafana::panels(&d);
    let mut ids = BTreeSet::new();
    let mut boxes: Vec<(String, [i64; 4])> = Vec::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("(untitled)").to_owned();
        check(
            ids.insert(p["id"].to_string()),
            format!("{title}: duplicate id {}", p["id"]),
        );
        check(
            p["id"].is_u64(),
            format!("{title}: id {} is not a number", p["id"]),
        );
        let g = &p["gridPos"];
        let [h, w, x, y] = ["h", "w", "x", "y"].map(|k| g[k].as_i64().unwrap_or(-1));
        check(
            h > 0 && (1..=24).contains(&w) && x >= 0 && y >= 0 && x + w <= 24,
            format!("{title}: gridPos {g}"),
        );
        for (other, [oh, ow, ox, oy]) in &boxes {
            let apart = x + w <= *ox || *ox + ow <= x || y + h <= *oy || *oy + oh <= y;
            check(apart, format!("{title} overlaps {other}"));
        }
        boxes.push((title.clone(), [h, w, x, y]));
        if p["type"] == "row" {
            continue;
        }
        check(
            p["datasource"] == ds(),
            format!("{title}: data source {}", p["datasource"]),
        );
        check(
            p["description"].as_str().is_some_and(|s| s.len() > 40),
            format!("{title}: no description saying what to look for"),
        );
        if p["type"] == "timeseries" || p["type"] == "stat" {
            check(
                p["fieldConfig"]["defaults"]["unit"].is_string(),
                format!("{title}: no unit"),
            );
        }
        let targets = p["targets"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        check(!targets.is_empty(), format!("{title}: no queries"));
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"].as_str().unwrap_or_default();
            check(
                !r.is_empty() && refs.insert(r),
                format!("{title}: refId {:?}", t["refId"]),
            );
            check(
                t["datasource"].is_null() || t["datasource"] == ds(),
                format!("{title} {r}: data source {}", t["datasource"]),
            );
            let expr = t["expr"].as_str().unwrap_or_default();
            check(!expr.is_empty(), format!("{title} {r}: no expr"));
            let selectors = grafana::selectors(expr);
            check(
                !selectors.is_empty(),
                format!("{title} {r}: no metric in {expr}"),
            );
            for s in selectors {
                check(
                    documented.contains(&s.metric),
                    format!("{title} {r}: {} is not in docs/metrics.md", s.metric),
                );
                for f in FILTERS {
                    check(
                        s.matchers.contains(f),
                        format!("{title} {r}: {} is not filtered by {f}", s.metric),
                    );
                }
            }
        }
    }
    bad
}

#[test]
fn dashboards_are_well_formed() {
    let documented = grafana::documented_metrics();
    let bad: Vec<String> = DASHBOARDS
        .iter()
        .flat_map(|(file, uid)| lint(file, uid, &documented))
        .collect();
    assert!(
        bad.is_empty(),
        "{} problems:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// The checks above must be able to fail: the tokenizer finds metric names wherever PromQL puts
/// them, and a misspelt one is not documented.
#[test]
fn metric_name_check_catches_typos() {
    let expr = r#"histogram_quantile(0.99, sum by (le, gc_phase) (rate(goprobe_gc_phase_duration_seconds_bucket{service_name=~"$service", x="a{b}"}[$__rate_interval]))) / on (gc_phase) goprobe_gc_pauses_total"#;
    let found: Vec<(String, String)> = grafana::selectors(expr)
        .into_iter()
        .map(|s| (s.metric, s.matchers))
        .collect();
    assert_eq!(
        found,
        [
            (
                "goprobe_gc_phase_duration_seconds_bucket".to_owned(),
                r#"service_name=~"$service", x="a{b}""#.to_owned()
            ),
            ("goprobe_gc_pauses_total".to_owned(), String::new()),
        ]
    );
    let documented = grafana::documented_metrics();
    assert!(documented.contains("goprobe_gc_phase_duration_seconds_bucket"));
    assert!(documented.contains("go_memory_gc_cycles_total"));
    assert!(!documented.contains("goprobe_gc_pauses_total"));
}

/// A cgroup with a CPU quota holding one process, so that `goprobe_cpu_limit` has a value;
/// removed on drop (its processes moved back to the parent first).
struct CpuQuota {
    dir: PathBuf,
}

impl CpuQuota {
    /// Puts `pid` into a new cgroup limited to `cpus` CPUs: cgroup v2 `cpu.max` when the unified
    /// hierarchy at /sys/fs/cgroup has the cpu controller, else the v1 cpu controller.
    fn new(pid: u32, cpus: f64) -> Self {
        let period = 100_000;
        let quota = (cpus * f64::from(period)) as u64;
        let name = format!("goprobe-test-{}", std::process::id());
        let root = Path::new("/sys/fs/cgroup");
        let v2 = std::fs::read_to_string(root.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"));
        let (dir, files) = if v2 {
            (
                root.join(&name),
                vec![("cpu.max", format!("{quota} {period}"))],
            )
        } else {
            let mount = ["cpu", "cpu,cpuacct"]
                .iter()
                .map(|m| root.join(m))
                .find(|p| p.join("cpu.cfs_quota_us").exists())
                .expect("no cgroup v2 cpu controller and no v1 cpu hierarchy under /sys/fs/cgroup");
            let files = vec![
                ("cpu.cfs_period_us", period.to_string()),
                ("cpu.cfs_quota_us", quota.to_string()),
            ];
            (mount.join(&name), files)
        };
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let guard = Self { dir };
        for (file, value) in files.iter().chain(&[("cgroup.procs", pid.to_string())]) {
            let path = guard.dir.join(file);
            std::fs::write(&path, value)
                .unwrap_or_else(|e| panic!("writing {value} to {}: {e}", path.display()));
        }
        guard
    }
}

impl Drop for CpuQuota {
    fn drop(&mut self) {
        let parent = self.dir.parent().unwrap().join("cgroup.procs");
        for pid in std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
        {
            let _ = std::fs::write(&parent, pid);
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `expr` with the dashboard variables set as Grafana would for one process.
fn substitute(expr: &str, service: &str, pid: u32) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$__interval", "2s")
        .replace("$__range", "1m")
        .replace("$service", service)
        .replace("$pid", &pid.to_string())
}

/// Number of series and of those with a finite value (NaN: e.g. a quantile of no pauses).
fn counts(result: &Value) -> (usize, usize) {
    let series = result.as_array().map(Vec::as_slice).unwrap_or_default();
    let finite = series
        .iter()
        .filter(|s| prometheus::value(s).is_finite())
        .count();
    (series.len(), finite)
}

/// Every panel query of both dashboards returns data for a Go 1.27 program that does GC (heap
/// and forced), allocates, assists, reads MemStats, starts goroutines and faults pages, in a
/// cgroup with a CPU quota and with GOMEMLIMIT set: a query that returns nothing is a panel a
/// user would see empty.
#[test]
fn every_panel_query_returns_data() {
    let go = "1.27.3";
    let mut prog = support::start_testprog(
        "gcstress",
        go,
        &["-mode", "mixed"],
        &[("GOMEMLIMIT", "1GiB")],
    );
    let pid = prog.pid();
    let quota = CpuQuota::new(pid, 1.5);
    let probe = support::attach(pid, &["--prometheus", "127.0.0.1:0"]);
    let endpoint = prometheus::goprobe_endpoint(&probe);
    prog.send("start");
    let prom = Prometheus::start("dashboards", &[&endpoint]);
    let cycles = format!(r#"goprobe_gc_cycles_total{{process_pid="{pid}"}}"#);
    prom.wait_for(&cycles, Duration::from_secs(60));
    // Enough scrapes for every rate() window (10 s) to hold samples from the running workload.
    std::thread::sleep(Duration::from_secs(15));

    let service = "gcstress"; // the executable's name: goprobe's default service.name
    let mut table = String::new();
    let mut empty = Vec::new();
    for (file, _) in DASHBOARDS {
        let d = grafana::load(file);
        // The variables must offer this process.
        for (name, want) in [("service", service.to_owned()), ("pid", pid.to_string())] {
            let def = grafana::variable(&d, name)["definition"]
                .as_str()
                .unwrap()
                .to_owned();
            let (selector, label) = grafana::label_values(&def);
            let q = format!(
                "count by ({label}) ({})",
                substitute(selector, service, pid)
            );
            let values: Vec<String> = prom
                .query(&q)
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["metric"][label].as_str().map(str::to_owned))
                .collect();
            if !values.contains(&want) {
                empty.push(format!(
                    "{file}: variable {name} ({def}) offers {values:?}, not {want}"
                ));
            }
        }
        for q in grafana::queries(&d) {
            let expr = substitute(q.expr, service, pid);
            let result = prom.query(&expr);
            let (series, finite) = counts(&result);
            let first = result[0]["value"][1].as_str().unwrap_or("-");
            writeln!(
                table,
                "{file:<30} {:<52} {} {series:>3} series, {finite:>3} finite, first {first}",
                q.panel, q.ref_id
            )
            .unwrap();
            if finite == 0 {
                empty.push(format!(
                    "{file}: {} {}: {series} series, none finite: {expr}",
                    q.panel, q.ref_id
                ));
            }
        }
    }
    println!("{table}");
    // The settings the test gave the process reach the panels that show them.
    let one = |metric: &str| {
        let r = prom.query(&format!(r#"{metric}{{process_pid="{pid}"}}"#));
        (r.as_array().unwrap().len() == 1).then(|| prometheus::value(&r[0]))
    };
    let settings = [
        ("goprobe_cpu_limit", 1.5),
        ("go_config_gogc_percent", 20.0), // gcstress sets it
        ("go_memory_limit_bytes", f64::from(1u32 << 30)),
    ];
    for (metric, want) in settings {
        let got = one(metric);
        if got != Some(want) {
            empty.push(format!("{metric}: {got:?}, want {want}"));
        }
    }
    println!(
        "labels of a scraped series: {}",
        prom.query(&format!(r#"goprobe_agent_targets{{process_pid="{pid}"}}"#))[0]["metric"]
    );

    prog.send("stop");
    let (status, out, err) = prog.finish(Duration::from_secs(30));
    assert!(status.success(), "gcstress: {err}");
    let truth: Value = serde_json::from_str(out.trim()).expect("gcstress JSON");
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(30));
    assert!(gp_status.success(), "goprobe: {gp_err}");
    drop(quota);
    println!("gcstress did {truth}");
    assert!(
        empty.is_empty(),
        "{} queries without data:\n{}\n{table}",
        empty.len(),
        empty.join("\n")
    );
}
