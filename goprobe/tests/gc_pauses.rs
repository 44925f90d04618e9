//! GC stop-the-world pauses measured by goprobe equal what the Go runtime itself records
//! (MemStats.PauseNs per cycle), for every supported calling convention and several layouts.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;

/// The runtime may differ from goprobe by at most this much (the bound: 1 µs).
const TOLERANCE_NS: i64 = 1_000;

/// `program` is one of the gcstress builds (see xtask `build_testprogs`).
fn check_exact_pauses(go: &str, program: &str) {
    // goprobe ends by itself when the target exits.
    let support::Watched { truth, report, .. } = support::watch_gcstress(
        program,
        go,
        &["-cycles", "120"],
        &[],
        Duration::from_secs(120),
    );
    let got: BTreeMap<u64, &Value> = report["gc"]["cycles"]
        .as_array()
        .expect("cycles")
        .iter()
        .map(|c| (c["cycle"].as_u64().expect("cycle"), c))
        .collect();
    let expected = truth["pause_ns"].as_object().expect("pause_ns");
    let (start, end) = (
        truth["numgc_start"].as_u64().unwrap(),
        truth["numgc_end"].as_u64().unwrap(),
    );
    assert!(
        end - start >= 100,
        "too few cycles to be a test: {start}..{end}"
    );
    let mut exact = 0;
    for cycle in start + 1..=end {
        let want = expected[&cycle.to_string()]
            .as_i64()
            .expect("runtime pause");
        let c = got
            .get(&cycle)
            .unwrap_or_else(|| panic!("Go {go}: cycle {cycle} missing from report"));
        let pause = c["pause_ns"].as_i64().expect("pause_ns");
        assert!(
            (pause - want).abs() <= TOLERANCE_NS,
            "Go {go} cycle {cycle}: goprobe {pause} ns, runtime {want} ns"
        );
        exact += usize::from(pause == want);
        let stw = c["stw"].as_array().expect("stw");
        let reasons: Vec<&str> = stw.iter().map(|s| s["reason"].as_str().unwrap()).collect();
        assert_eq!(
            reasons.first(),
            Some(&"GCSweepTerm"),
            "cycle {cycle}: {reasons:?}"
        );
        assert_eq!(
            reasons.last(),
            Some(&"GCMarkTerm"),
            "cycle {cycle}: {reasons:?}"
        );
        let sum: i64 = stw.iter().map(|s| s["duration_ns"].as_i64().unwrap()).sum();
        assert_eq!(
            sum, pause,
            "cycle {cycle}: STWs do not add up to the cycle's pause"
        );
        let t0 = report["window"]["start_unix_ns"].as_i64().unwrap();
        let t1 = report["window"]["end_unix_ns"].as_i64().unwrap();
        for s in stw {
            let t = s["start_unix_ns"].as_i64().unwrap();
            assert!(
                t0 - 1_000_000 <= t && t <= t1,
                "cycle {cycle}: STW at {t} outside window {t0}..{t1}"
            );
        }
        assert!(
            ["heap", "forced"].contains(&c["trigger"].as_str().unwrap()),
            "{}",
            c["trigger"]
        );
    }
    let forced = got.values().filter(|c| c["trigger"] == "forced").count();
    assert!(
        forced > 0,
        "runtime.GC() was called but no cycle has trigger \"forced\""
    );
    let rms = report["gc"]["other_stw"]
        .as_array()
        .expect("other_stw")
        .iter()
        .filter(|s| s["reason"] == "ReadMemStats")
        .count();
    assert_eq!(
        rms as u64,
        truth["read_mem_stats"].as_u64().unwrap(),
        "ReadMemStats STWs"
    );
    let unknown: Vec<&Value> = report["gc"]["other_stw"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["reason"] == "Unknown")
        .collect();
    assert!(
        unknown.is_empty(),
        "gcstress only stops the world for GC and ReadMemStats: {unknown:?}"
    );
    eprintln!(
        "Go {go} {program}: {} cycles, {exact} exact to the ns, {rms} ReadMemStats, attach {} ms, cpu {} ms",
        end - start,
        report["goprobe"]["attach_ms"],
        report["goprobe"]["cpu_ms"]
    );
}

#[test]
fn go1_19_pauses_match_memstats() {
    check_exact_pauses("1.19", "gcstress");
}

#[test]
fn go1_19_without_dwarf_pauses_match_memstats() {
    check_exact_pauses("1.19", "gcstress-nodwarf");
}

#[test]
fn go1_21_pauses_match_memstats() {
    check_exact_pauses("1.21.13", "gcstress");
}

#[test]
fn go1_21_without_dwarf_pauses_match_memstats() {
    check_exact_pauses("1.21.13", "gcstress-nodwarf");
}

#[test]
fn go1_23_pauses_match_memstats() {
    check_exact_pauses("1.23.9", "gcstress");
}

#[test]
fn go1_23_without_dwarf_pauses_match_memstats() {
    check_exact_pauses("1.23.9", "gcstress-nodwarf");
}

#[test]
fn go1_25_pauses_match_memstats() {
    check_exact_pauses("1.25.5", "gcstress");
}

#[test]
fn go1_25_without_dwarf_pauses_match_memstats() {
    check_exact_pauses("1.25.5", "gcstress-nodwarf");
}

#[test]
fn go1_27_pauses_match_memstats() {
    check_exact_pauses("1.27.3", "gcstress");
}

#[test]
fn go1_27_without_dwarf_pauses_match_memstats() {
    check_exact_pauses("1.27.3", "gcstress-nodwarf");
}

#[test]
fn go1_27_race_build_pauses_match_memstats() {
    check_exact_pauses("1.27.3", "gcstress-race");
}
