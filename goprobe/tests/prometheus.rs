//! What a Prometheus scraping `goprobe attach --prometheus` stores equals goprobe's report.json
//! for the same window: the GC pause count and sum, the GC cycle count, and the target's Go
//! release on `target_info`.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::prometheus::{self, Prometheus};

/// The one value of a query that must return exactly one series.
fn single(prom: &Prometheus, expr: &str) -> f64 {
    let result = prom.query(expr);
    let series = result.as_array().unwrap();
    assert_eq!(series.len(), 1, "{expr}: {result}");
    prometheus::value(&series[0])
}

fn check_pauses_match_report(go: &str) {
    // gcstress lingers after its last cycle, so that Prometheus scrapes goprobe's final values
    // while the target (and so goprobe) still runs; it then exits and goprobe writes the report.
    let mut prog = support::start_testprog(
        "gcstress",
        go,
        &["-mode", "pauses", "-cycles", "40", "-linger", "8"],
        &[],
    );
    let pid = prog.pid();
    let dir = std::env::temp_dir().join(format!("goprobe-prom-{go}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let probe = support::attach(
        pid,
        &[
            "--prometheus",
            "127.0.0.1:0",
            "--out-dir",
            dir.to_str().unwrap(),
        ],
    );
    let endpoint = prometheus::goprobe_endpoint(&probe);
    let prom = Prometheus::start(&format!("pauses-{go}"), &[&endpoint]);
    let sel = format!(r#"{{process_pid="{pid}"}}"#);
    prom.wait_for(
        &format!("goprobe_agent_targets{sel}"),
        Duration::from_secs(30),
    );
    prog.send("start");
    let truth: Value =
        serde_json::from_str(&prog.wait_stdout("{", Duration::from_secs(120))).unwrap();
    // Three scrapes at least after the last cycle, which ended before the JSON line.
    std::thread::sleep(Duration::from_secs(3));
    let count = single(
        &prom,
        &format!("sum(goprobe_gc_pause_duration_seconds_count{sel})"),
    );
    let sum = single(
        &prom,
        &format!("sum(goprobe_gc_pause_duration_seconds_sum{sel})"),
    );
    let cycles = single(&prom, &format!("go_memory_gc_cycles_total{sel}"));
    let info = prom.query(&format!("target_info{sel}"));

    let (status, _, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "gcstress {go}: {err}");
    let (gp_status, _, gp_err) = probe.finish(Duration::from_secs(30));
    assert!(gp_status.success(), "goprobe on Go {go}: {gp_err}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(report["goprobe"]["lost_events"], 0, "{gp_err}");

    let report_cycles = report["gc"]["cycles"].as_array().unwrap();
    let stws: Vec<u64> = report_cycles
        .iter()
        .flat_map(|c| c["stw"].as_array().unwrap())
        .map(|s| s["duration_ns"].as_u64().unwrap())
        .collect();
    let report_sum: u64 = stws.iter().sum();
    let ran = truth["numgc_end"].as_u64().unwrap() - truth["numgc_start"].as_u64().unwrap();
    println!(
        "Go {go}: {ran} cycles ran; report {} cycles, {} pauses, {report_sum} ns; Prometheus {cycles} cycles, {count} pauses, {:.0} ns",
        report_cycles.len(),
        stws.len(),
        sum * 1e9
    );
    assert!(
        report_cycles.len() as u64 >= ran,
        "report misses cycles: {ran} ran"
    );
    assert_eq!(
        count,
        stws.len() as f64,
        "pause count: Prometheus vs report"
    );
    // Seconds as f64 lose nothing at these sizes; allow 1 ns per pause for rounding.
    let diff = (sum * 1e9 - report_sum as f64).abs();
    assert!(
        diff <= stws.len() as f64,
        "pause sum: Prometheus {sum} s, report {report_sum} ns ({diff} ns apart)"
    );
    assert_eq!(
        cycles,
        report_cycles.len() as f64,
        "GC cycles: Prometheus vs report"
    );
    let info = info.as_array().unwrap();
    assert_eq!(info.len(), 1, "target_info: {info:?}");
    let version = info[0]["metric"]["process_runtime_version"]
        .as_str()
        .unwrap_or_default();
    assert!(
        support::is_release(version, go),
        "target_info says {version:?}, not Go {go}"
    );
    assert_eq!(
        version, report["target"]["go_version"],
        "target_info vs report"
    );
}

#[test]
fn pauses_match_report_go1_27() {
    check_pauses_match_report("1.27.3");
}

#[test]
fn pauses_match_report_go1_19() {
    check_pauses_match_report("1.19");
}
