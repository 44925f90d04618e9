//! On-CPU samples by stack: the `signals -mode cpu` program alternates between two busy
//! functions, `main.busyA` and `main.busyB`, about 3:1, and reports the CPU time its thread spent
//! in each (CLOCK_THREAD_CPUTIME_ID). goprobe's cpu-clock samples must show the same split
//! within ±10 points, and about `hz` samples per CPU second, for every tested release, stripped
//! too.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;

const RELEASES: &[&str] = &["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"];

/// Samples whose stack has `function` as a frame.
fn samples_in(sites: &[Value], function: &str) -> u64 {
    sites
        .iter()
        .filter(|s| {
            s["stack"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f.as_str() == Some(function))
        })
        .map(|s| s["samples"].as_u64().unwrap())
        .sum()
}

fn check(go: &str, program: &str) {
    let hz = 97u32;
    let w = support::watch(
        program,
        go,
        &["-mode", "cpu", "-cpu-budget", "4s"],
        &[],
        &["--cpu-hz", &hz.to_string(), "--no-page-faults"],
        Duration::from_secs(120),
    );
    let (truth, report) = (&w.truth, &w.report);
    assert!(
        report["page_faults"].is_null(),
        "--no-page-faults still counted: {report}"
    );
    let cpu = &report["cpu"];
    assert_eq!(cpu["hz"], hz);
    let sites = cpu["sites"].as_array().unwrap();
    let (a, b) = (
        samples_in(sites, "main.busyA"),
        samples_in(sites, "main.busyB"),
    );
    let share = a as f64 / (a + b).max(1) as f64;
    let truth_share = truth["a_share"].as_f64().unwrap();
    let cpu_s = (truth["a_ns"].as_f64().unwrap() + truth["b_ns"].as_f64().unwrap()) / 1e9;
    let expected = f64::from(hz) * cpu_s;
    eprintln!(
        "Go {go} {program}: busyA {a} / busyB {b} samples = {:.1}% (thread CPU time says \
         {:.1}%); {} samples in all, {expected:.0} expected in busyA+busyB",
        share * 100.0,
        truth_share * 100.0,
        cpu["samples"]
    );
    let top: Vec<String> = sites.iter().take(6).map(ToString::to_string).collect();
    assert!(
        (share - truth_share).abs() <= 0.10,
        "Go {go} {program}: busyA has {:.1}% of samples, {:.1}% of CPU time; top sites:\n{}",
        share * 100.0,
        truth_share * 100.0,
        top.join("\n")
    );
    // cpu-clock fires `hz` times per second on each CPU; the busy thread is on one of them.
    let got = (a + b) as f64;
    assert!(
        (got - expected).abs() <= expected * 0.25,
        "Go {go} {program}: {got} samples in busyA+busyB over {cpu_s:.2} CPU seconds at {hz} Hz"
    );
    assert!(cpu["samples"].as_u64().unwrap() >= a + b);
}

#[test]
fn cpu_samples_split_like_thread_cpu_time() {
    for go in RELEASES {
        check(go, "signals");
    }
    // Stripped (no .symtab, no DWARF).
    check("1.27.3", "signals-sw");
}
