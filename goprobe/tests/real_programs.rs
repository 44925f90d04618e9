//! `goprobe attach` on real Go programs that are not ours, all stripped: Debian's prometheus,
//! caddy and etcd (Go 1.19), hugo (Go 1.27, cgo, 95 MB) and esbuild (no build info). Where the
//! program exports its own GC metrics (client_golang's `go_gc_duration_seconds`: count = NumGC,
//! sum = PauseTotalNs), goprobe's cycles and pauses must agree with them exactly.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{attach, thirdparty::Program};

fn watch(program: Program) {
    let dir = std::env::temp_dir().join(format!("goprobe-real-{}-{program:?}", std::process::id()));
    let running = program.start(&dir);
    let probe = attach(running.proc.pid(), &["--json"]);
    // Attached first, then the program's own numbers: every cycle that completes between the
    // two metric reads is inside goprobe's window.
    let before = running.gc_metrics();
    let mut requests = running.load(Duration::from_secs(4));
    let mut after = running.gc_metrics();
    // Some programs allocate little per request: keep going until a cycle has completed.
    for _ in 0..10 {
        if after.zip(before).is_none_or(|(a, b)| a.count > b.count) {
            break;
        }
        requests += running.load(Duration::from_secs(2));
        after = running.gc_metrics();
    }
    if before.is_none() {
        requests += running.load(Duration::from_secs(4));
    }
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(
        unsafe { libc::kill(probe.pid() as libc::pid_t, libc::SIGINT) },
        0
    );
    let (status, out, err) = probe.finish(Duration::from_secs(30));
    assert!(status.success(), "{program:?}: goprobe failed: {err}");
    let report: Value = serde_json::from_str(&out).expect("goprobe --json output");
    assert_eq!(report["target"]["stripped"], true, "{program:?}");
    assert_eq!(report["goprobe"]["lost_events"], 0, "{program:?}: {err}");
    let cycles = report["gc"]["cycles"].as_array().unwrap();
    eprintln!(
        "{program:?} ({}): {requests} requests, {} GC cycles seen",
        report["target"]["go_version"],
        cycles.len()
    );
    assert!(!cycles.is_empty(), "{program:?}: no GC cycle seen: {err}");
    for c in cycles {
        assert!(c["pause_ns"].as_u64().unwrap() > 0, "{program:?}: {c}");
    }
    check_cycle_details(program, &report);
    check_stacks(program, &report);
    if let (Some(b), Some(a)) = (before, after) {
        let ours: Vec<&Value> = cycles
            .iter()
            .filter(|c| (b.count + 1..=a.count).contains(&c["cycle"].as_u64().unwrap()))
            .collect();
        let ours_ns: u64 = ours.iter().map(|c| c["pause_ns"].as_u64().unwrap()).sum();
        let theirs_ns = ((a.sum_seconds - b.sum_seconds) * 1e9).round() as i64;
        eprintln!(
            "{program:?}: own metrics: {} cycles, {theirs_ns} ns paused; goprobe: {} cycles, \
             {ours_ns} ns",
            a.count - b.count,
            ours.len()
        );
        assert_eq!(
            ours.len() as u64,
            a.count - b.count,
            "{program:?}: cycle count"
        );
        // The metric is a float64 of seconds: a few ns of rounding over a sum.
        assert!(
            (ours_ns as i64 - theirs_ns).abs() <= 1_000,
            "{program:?}: goprobe {ours_ns} ns vs own metrics {theirs_ns} ns"
        );
    }
    drop(running);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Per-cycle details on stripped binaries, where `runtime.gcController` comes from the code
/// (`analysis::binary::vars`) and offsets from the table: every program runs with `GOGC=10` (see
/// `Program::start`), which the runtime parses at start (src/runtime/mgcpacer.go readGOGC); no
/// memory limit is set, so GOMEMLIMIT is the runtime's "none", `math.MaxInt64`.
fn check_cycle_details(program: Program, report: &Value) {
    let go = report["target"]["go_version"].as_str().unwrap();
    let minor: u32 = go
        .trim_start_matches("go1.")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let unavailable: Vec<&str> = report["gc"]["unavailable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let mut want = Vec::new();
    if minor < 23 {
        want.push("stopping_ns");
    }
    // NB: without DWARF, gcControllerState.lastHeapGoal is only known for the releases whose
    // DWARF goprobe's tests read (target/cycle_layout.rs); esbuild is built with Go 1.26.
    let goal_known = ![22, 24, 26].contains(&minor);
    if !goal_known {
        want.push("heap_goal_bytes");
    }
    assert_eq!(unavailable, want, "{program:?} ({go})");
    let cycles = report["gc"]["cycles"].as_array().unwrap();
    let mut with_phases = 0;
    for c in cycles {
        assert_eq!(c["gogc"], 10, "{program:?}: {c}");
        assert_eq!(c["gomemlimit_bytes"], i64::MAX, "{program:?}: {c}");
        assert!(
            c["heap_start_bytes"].as_u64().unwrap() > 0,
            "{program:?}: {c}"
        );
        let goal = &c["heap_goal_bytes"];
        assert_eq!(
            goal.as_u64().is_some_and(|g| g > 0),
            goal_known,
            "{program:?}: {c}"
        );
        with_phases += usize::from(c["phases_ns"].is_object());
    }
    assert!(
        with_phases * 100 >= cycles.len() * 95,
        "{program:?}: phases in {with_phases} of {} cycles",
        cycles.len()
    );
}

/// Every non-GC stop-the-world has a stack; one for `ReadMemStats` (client_golang's Go collector
/// calls it on every scrape of /metrics) starts in `runtime.stopTheWorld` and goes through
/// `runtime.ReadMemStats`, named from the stripped binary's own function table.
fn check_stacks(program: Program, report: &Value) {
    let other = report["gc"]["other_stw"].as_array().unwrap();
    for s in other {
        let stack: Vec<&str> = s["stack"]
            .as_array()
            .unwrap_or_else(|| panic!("{program:?}: other_stw without stack: {s}"))
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        if s["reason"] == "ReadMemStats" && !stack.is_empty() {
            assert_eq!(stack[0], "runtime.stopTheWorld", "{program:?}: {stack:?}");
            assert!(
                stack.contains(&"runtime.ReadMemStats"),
                "{program:?}: {stack:?}"
            );
        }
    }
    if let Some(s) = other.iter().find(|s| s["reason"] == "ReadMemStats") {
        eprintln!("{program:?}: a ReadMemStats stop-the-world: {}", s["stack"]);
    }
    let assist = &report["gc"]["assist"];
    eprintln!(
        "{program:?}: mark assist {} ns over {} sites; top: {}",
        assist["total_ns"],
        assist["sites"].as_array().map_or(0, Vec::len),
        assist["sites"][0]["stack"]
    );
}

#[test]
fn prometheus_go119_stripped() {
    watch(Program::Prometheus);
}

#[test]
fn caddy_go119_stripped() {
    watch(Program::Caddy);
}

#[test]
fn etcd_go119_stripped() {
    watch(Program::Etcd);
}

#[test]
fn hugo_go127_stripped_cgo() {
    watch(Program::Hugo);
}

#[test]
fn esbuild_without_build_info() {
    watch(Program::Esbuild);
}
