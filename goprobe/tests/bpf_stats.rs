//! `goprobe attach --bpf-stats`: the report's `agent.programs` carries the kernel's own run count
//! and run time of each BPF program goprobe loaded. A real GC workload (gcstress `-mode mixed`:
//! heap and forced cycles, ReadMemStats, goroutines, page faults, allocations) is watched; every
//! event goprobe reports came from one run of a program, so each program's kernel run count is at
//! least the number of events goprobe reports from it, and a program that ran took time.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;

/// How long the workload runs under goprobe.
const RUN: Duration = Duration::from_secs(4);

/// (hits, run_ns) by program name, checked to be unique names.
fn programs(report: &Value) -> BTreeMap<String, (u64, u64)> {
    let list = report["goprobe"]["programs"]
        .as_array()
        .expect("agent.programs");
    let map: BTreeMap<String, (u64, u64)> = list
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                (p["hits"].as_u64().unwrap(), p["run_ns"].as_u64().unwrap()),
            )
        })
        .collect();
    assert_eq!(map.len(), list.len(), "duplicate program names: {list:?}");
    map
}

/// Runs gcstress -mode mixed of Go `go` for [`RUN`] under `goprobe attach --json --bpf-stats --goroutine-sites
/// <extra>` and returns the report.
fn watch_mixed(go: &str, extra: &[&str]) -> Value {
    let mut prog = support::start_testprog("gcstress", go, &["-mode", "mixed"], &[]);
    let mut args = vec!["--json", "--bpf-stats", "--goroutine-sites"];
    args.extend_from_slice(extra);
    // Attached while the program idles after its runtime.GC(): no cycle is in flight, so every
    // cycle in the report started (called runtime.gcStart) under the probes.
    let probe = support::attach(prog.pid(), &args);
    prog.send("start");
    std::thread::sleep(RUN);
    prog.send("stop");
    let (status, _, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "gcstress {go}: {err}");
    let (gp, out, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(gp.success(), "goprobe on {go}: {gp_err}");
    let report: Value = serde_json::from_str(&out).expect("goprobe --json output");
    assert_eq!(report["goprobe"]["lost_events"], 0, "{gp_err}");
    report
}

/// The checks shared by every run: events reported ≤ kernel runs of the program that saw them.
fn check(go: &str, report: &Value) -> BTreeMap<String, (u64, u64)> {
    let p = programs(report);
    let hits = |name: &str| p.get(name).map(|v| v.0);
    let gc = &report["gc"];
    let cycles = gc["cycles"].as_array().unwrap();
    let other = gc["other_stw"].as_array().unwrap();
    let stws: usize = cycles
        .iter()
        .map(|c| c["stw"].as_array().unwrap().len())
        .sum::<usize>()
        + other.len();
    assert!(
        cycles.len() >= 4,
        "Go {go}: too few cycles to be a test: {}",
        cycles.len()
    );
    let mut want: Vec<(&str, u64)> = vec![
        // Every cycle began with a call of runtime.gcStart (and more calls find a cycle running).
        ("gc_start_entry", cycles.len() as u64),
        // Every stop-the-world ends in runtime.startTheWorldWithSema: one entry each. Its end
        // is read at that entry, or (Go 1.19/1.21, and non-GC STWs on 1.22+) at a RET or after
        // the caller's call (docs/internals.md, "End sites without RET probes"): together at
        // least one run per STW.
        ("stw_start_entry", stws as u64),
    ];
    if p.contains_key("stw_stop_entry") {
        want.push(("stw_stop_entry", stws as u64));
    }
    // A non-GC stop-the-world has a non-empty stack only when runtime.stopTheWorld's probe ran.
    let with_stack = other
        .iter()
        .filter(|s| s["stack"].as_array().is_some_and(|f| !f.is_empty()))
        .count();
    if with_stack > 0 || p.contains_key("stw_caller_entry") {
        want.push(("stw_caller_entry", with_stack as u64));
    }
    if !other.is_empty() {
        // Non-GC stop-the-worlds end after startTheWorld's call (1.22+) or at a RET.
        want.push(("stw_start_ret", other.len() as u64));
    }
    let g = &report["goroutines"];
    want.push(("goroutine_create_entry", g["created"].as_u64().unwrap()));
    want.push(("goroutine_exit_entry", g["exited"].as_u64().unwrap()));
    want.push(("cpu_sample", report["cpu"]["samples"].as_u64().unwrap()));
    for (name, events) in want {
        let got = hits(name).unwrap_or_else(|| panic!("Go {go}: {name} not listed: {p:?}"));
        assert!(events > 0, "Go {go}: no events for {name} to compare with");
        assert!(
            got >= events,
            "Go {go}: {name} ran {got} times but goprobe reports {events} events from it"
        );
        let run_ns = p[name].1;
        assert!(run_ns > 0, "Go {go}: {name} ran {got} times in 0 ns");
    }
    // Page faults are sampled: each stack sample is one run of page_fault_min or _maj (the
    // totals are the kernel's own count, no program run).
    let pf = &report["page_faults"];
    let samples = pf["samples"].as_u64().unwrap();
    let runs = hits("page_fault_min").unwrap_or(0) + hits("page_fault_maj").unwrap_or(0);
    assert!(samples > 0, "Go {go}: no page-fault samples: {pf}");
    assert!(
        runs >= samples,
        "Go {go}: page-fault programs ran {runs} times for {samples} samples"
    );
    assert!(
        samples < pf["minor"].as_u64().unwrap(),
        "Go {go}: every fault sampled: {pf}"
    );
    for (name, (h, ns)) in &p {
        assert!(*h == 0 || *ns > 0, "Go {go}: {name} ran {h} times in 0 ns");
        eprintln!(
            "Go {go}: {name:<24} {h:>9} hits {:>7} ns/hit",
            ns.checked_div(*h).unwrap_or(0)
        );
    }
    p
}

#[test]
fn programs_ran_at_least_once_per_reported_event() {
    // 1.27: the one-probe stop-the-world ABI; 1.21: stopTheWorldWithSema is probed too.
    for go in ["1.27.3", "1.21.13"] {
        let report = watch_mixed(go, &[]);
        check(go, &report);
    }
}

/// With `--alloc exact` every allocation is counted in the kernel by the allocation probes: they
/// ran at least once per object counted.
#[test]
fn exact_allocation_probes_ran_once_per_object() {
    let go = "1.27.3";
    let report = watch_mixed(go, &["--alloc", "exact"]);
    let p = check(go, &report);
    let alloc = &report["alloc"];
    assert_eq!(alloc["mode"], "exact", "{alloc}");
    let objects = alloc["objects"].as_u64().unwrap();
    assert!(objects > 0, "no allocations counted");
    let hits: u64 = p
        .iter()
        .filter(|(n, _)| n.starts_with("alloc_"))
        .map(|(_, v)| v.0)
        .sum();
    assert!(
        hits >= objects,
        "allocation probes ran {hits} times for {objects} objects"
    );
}
