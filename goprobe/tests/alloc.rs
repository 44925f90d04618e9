//! Allocations by stack (`goprobe attach --alloc`), checked against what the Go runtime itself
//! counted over the same window (`runtime.ReadMemStats` in the `signals` program, modes `alloc`,
//! `alloc-detach`, `alloc-flood` and `alloc-stacks`, tests/testprogs/signals/alloc.go), for every
//! tested release:
//! - sampled, on a program with the runtime's sampler off (MemProfileRate 0, as in any program
//!   without runtime/pprof): goprobe turns it on (512 KiB) for the window; bytes within ±10% of
//!   TotalAlloc, the 80/20 pair of sites at 80% ± 5%, and MemProfileRate back at 0 once goprobe
//!   has detached;
//! - spans (the read-only span-refill sampler): the same checks, the rate never touched;
//! - sampled, with the program's own MemProfileRate on: the same checks, at the program's rate;
//! - exact: objects within ±1% of Mallocs, the 80/20 pair exact, every site's leaf its Go
//!   function (the allocator's frames trimmed) on every release, Go 1.27's direct
//!   size-specialized calls included;
//! - overload: as many allocations as the machine can do in exact mode; whatever is not in the
//!   report is in agent.lost_events;
//! - more distinct stacks than the stack map holds: every allocation still counted, the
//!   failed stacks in agent.lost_stacks.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{stackless_objects, u};

const RELEASES: &[&str] = &["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"];

/// The runtime's heap-profile rate the program sets itself (bytes): an eighth of the 512 KiB
/// default, for enough samples in a short window.
const PROFILE_RATE: &str = "65536";

/// Iterations of the mix when goprobe sets the rate (512 KiB): four times the default, about
/// 1.6 GB, for ~1500 samples of the 80/20 pair (its share's standard error ~1%).
const ITERATIONS_AT_512K: &str = "1200000";

struct Run {
    truth: Value,
    alloc: Value,
}

fn run(program: &str, go: &str, env: &[(&str, &str)], alloc: &str) -> Run {
    let w = support::watch(
        program,
        go,
        &["-mode", "alloc"],
        env,
        // Allocations alone: the other signals' stacks would share (and crowd) the stack map.
        &[
            "--alloc",
            alloc,
            "--cpu-hz",
            "0",
            "--no-page-faults",
            "--no-goroutines",
        ],
        Duration::from_secs(300),
    );
    let a = w.report["alloc"].clone();
    assert!(a.is_object(), "Go {go}: no alloc section: {}", w.report);
    assert_eq!(
        a["unavailable"],
        Value::Null,
        "Go {go}: {}",
        w.goprobe_stderr
    );
    // A stack that could not be captured keeps its weight under an empty stack: a handful at
    // most (the map holds 32768 distinct stacks; these programs have far fewer).
    let lost_stacks = u(&w.report["goprobe"]["lost_stacks"]);
    assert!(lost_stacks <= 5, "Go {go}: {lost_stacks} stacks lost");
    Run {
        truth: w.truth,
        alloc: a,
    }
}

/// Bytes of the site whose leaf is `function`.
fn site_bytes(alloc: &Value, function: &str) -> u64 {
    alloc["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["stack"][0] == function)
        .map(|s| u(&s["bytes"]))
        .sum()
}

/// The checks every mode shares: the 80/20 pair, and leaves that are the program's functions.
fn check_sites(go: &str, r: &Run) {
    let a = site_bytes(&r.alloc, r.truth["site_a"].as_str().unwrap());
    let b = site_bytes(&r.alloc, r.truth["site_b"].as_str().unwrap());
    assert!(a + b > 0, "Go {go}: neither site: {:#}", r.alloc);
    let share = a as f64 / (a + b) as f64;
    eprintln!("Go {go}: allocA/(allocA+allocB) = {:.1}%", share * 100.0);
    assert!(
        (share - 0.8).abs() <= 0.05,
        "Go {go}: allocA has {:.1}% of the pair's bytes, not 80% ± 5",
        share * 100.0
    );
    // The five allocating functions are the top sites, each with its own stack.
    for f in [
        "main.allocA",
        "main.allocB",
        "main.allocNode",
        "main.allocTiny",
        "main.allocLarge",
    ] {
        assert!(
            site_bytes(&r.alloc, f) > 0,
            "Go {go}: no site with leaf {f}: {:#}",
            r.alloc["sites"]
        );
    }
}

/// `mode` (sampled or spans) with `sampler`: bytes within ±10% of TotalAlloc, and the sites.
fn check_sampled(go: &str, program: &str, env: &[(&str, &str)], mode: &str, sampler: &str) {
    let r = run(program, go, env, mode);
    assert_eq!(r.alloc["mode"], mode);
    assert_eq!(r.alloc["sampler"], sampler, "Go {go}");
    assert_eq!(r.alloc["sample_rate_set_by_goprobe"], false, "Go {go}");
    // The program's own rate, untouched: 0 unless it set one.
    let own: u64 = env
        .iter()
        .find(|(k, _)| *k == "SIGNALS_MEMPROFILERATE")
        .map_or(0, |(_, v)| v.parse().unwrap());
    assert_eq!(u(&r.truth["mem_profile_rate"]), own, "Go {go}");
    check_estimate(go, program, sampler, &r);
}

/// Sampled mode on a program whose MemProfileRate is 0: goprobe sets 512 KiB for the window and
/// restores 0 when it detaches (stopped with SIGINT before the program reads the rate again).
fn check_runtime_sampler(go: &str, program: &str) {
    let mut prog = support::start_testprog(
        program,
        go,
        &["-mode", "alloc-detach"],
        &[("SIGNALS_ALLOC_N", ITERATIONS_AT_512K)],
    );
    let probe = support::attach(prog.pid(), &["--json", "--alloc", "sampled"]);
    prog.send("start");
    let line = prog.wait_stdout("total_alloc", Duration::from_secs(300));
    let truth: Value = serde_json::from_str(&line).unwrap();
    // SAFETY: plain kill(2) of our own child.
    assert_eq!(
        unsafe { libc::kill(probe.pid() as libc::pid_t, libc::SIGINT) },
        0
    );
    let (gp_status, gp_out, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(gp_status.success(), "Go {go}: {gp_err}");
    // goprobe has exited: the program reads its rate now.
    prog.send("detached");
    let (status, out, err) = prog.finish(Duration::from_secs(30));
    assert!(status.success(), "Go {go}: {err}");
    let after: Value = serde_json::from_str(out.trim()).unwrap();
    let report: Value = serde_json::from_str(&gp_out).unwrap();
    let version = report["target"]["go_version"].as_str().unwrap_or_default();
    assert!(support::is_release(version, go), "{version} is not Go {go}");
    assert_eq!(report["goprobe"]["lost_events"], 0, "{gp_err}");
    let alloc = report["alloc"].clone();
    assert_eq!(alloc["unavailable"], Value::Null, "Go {go}: {gp_err}");
    assert_eq!(alloc["mode"], "sampled");
    assert_eq!(alloc["sampler"], "profilealloc", "Go {go}: {gp_err}");
    assert_eq!(alloc["sample_rate"], 524288, "Go {go}");
    assert_eq!(alloc["sample_rate_set_by_goprobe"], true, "Go {go}");
    // The program does not link runtime.MemProfile: its rate was 0 before goprobe came, 512 KiB
    // while goprobe was attached, and 0 again after it left.
    assert_eq!(u(&truth["mem_profile_rate_at_ready"]), 0, "Go {go}");
    assert_eq!(u(&truth["mem_profile_rate"]), 524288, "Go {go}");
    assert_eq!(
        u(&after["mem_profile_rate_after_detach"]),
        0,
        "Go {go}: not restored; {gp_err}"
    );
    assert!(gp_err.contains("restored to 0"), "Go {go}: {gp_err}");
    let r = Run { truth, alloc };
    check_estimate(go, program, "profilealloc (set by goprobe)", &r);
}

/// Bytes within ±10% of TotalAlloc, and the sites.
fn check_estimate(go: &str, program: &str, sampler: &str, r: &Run) {
    let truth = u(&r.truth["total_alloc"]);
    let bytes = u(&r.alloc["bytes"]);
    let ratio = bytes as f64 / truth as f64;
    eprintln!(
        "Go {go} {program} {sampler}: {bytes} bytes vs TotalAlloc {truth} ({ratio:.4}); \
         {} objects vs Mallocs {}; {} GCs",
        r.alloc["objects"], r.truth["mallocs"], r.truth["num_gc"]
    );
    assert!(
        (ratio - 1.0).abs() <= 0.10,
        "Go {go} {sampler}: {bytes} bytes vs TotalAlloc {truth}"
    );
    check_sites(go, r);
}

fn check_exact(go: &str, program: &str) {
    let r = run(program, go, &[], "exact");
    assert_eq!(r.alloc["sampler"], "exact");
    let truth = u(&r.truth["mallocs"]);
    let objects = u(&r.alloc["objects"]);
    let ratio = objects as f64 / truth as f64;
    eprintln!(
        "Go {go} {program} exact: {objects} objects vs Mallocs {truth} ({ratio:.5}); {} bytes \
         vs TotalAlloc {}; {} s",
        r.alloc["bytes"], r.truth["total_alloc"], r.truth["seconds"]
    );
    assert!(
        (ratio - 1.0).abs() <= 0.01,
        "Go {go}: {objects} objects vs Mallocs {truth}"
    );
    check_sites(go, &r);
    // Exact counts: one object per call at every site of the loop.
    let n = u(&r.truth["iterations"]);
    for f in ["main.allocA", "main.allocNode", "main.allocTiny"] {
        let objects: u64 = r.alloc["sites"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["stack"][0] == f)
            .map(|s| u(&s["objects"]))
            .sum();
        assert_eq!(objects, n, "Go {go}: {f}");
    }
}

fn check_all(go: &str) {
    check_runtime_sampler(go, "signals");
    check_sampled(go, "signals", &[], "spans", "span-refill");
    check_sampled(
        go,
        "signals",
        &[("SIGNALS_MEMPROFILERATE", PROFILE_RATE)],
        "sampled",
        "profilealloc",
    );
    check_exact(go, "signals");
}

#[test]
fn go1_19() {
    check_all(RELEASES[0]);
}

#[test]
fn go1_21() {
    check_all(RELEASES[1]);
}

#[test]
fn go1_23() {
    check_all(RELEASES[2]);
}

#[test]
fn go1_25() {
    check_all(RELEASES[3]);
}

#[test]
fn go1_27() {
    check_all(RELEASES[4]);
}

/// Stripped binaries: MemProfileRate located by its recipes (no .symtab) before goprobe writes
/// it; no DWARF, so the span-refill sampler reads the per-release table.
#[test]
fn stripped() {
    for go in ["1.21.13", "1.27.3"] {
        check_runtime_sampler(go, "signals-sw");
        check_sampled(go, "signals-sw", &[], "spans", "span-refill");
        check_exact(go, "signals-sw");
    }
}

/// Exact mode under as many allocations as the target can make: nothing lost silently.
#[test]
fn overload() {
    let go = "1.27.3";
    let mut prog = support::start_testprog("signals", go, &["-mode", "alloc-flood"], &[]);
    let probe = support::attach(prog.pid(), &["--json", "--alloc", "exact"]);
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(120));
    assert!(status.success(), "{err}");
    let truth: Value = serde_json::from_str(out.trim()).unwrap();
    let (gp_status, gp_out, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(gp_status.success(), "{gp_err}");
    let report: Value = serde_json::from_str(&gp_out).unwrap();
    let alloc = &report["alloc"];
    let mallocs = u(&truth["mallocs"]);
    let objects = u(&alloc["objects"]);
    let lost = u(&report["goprobe"]["lost_events"]);
    eprintln!(
        "Go {go} flood: {} allocations/s under exact mode; {objects} objects + {lost} lost vs \
         Mallocs {mallocs}",
        truth["allocs_per_sec"]
    );
    if lost > 0 {
        assert!(gp_err.contains("lost"), "lost events not printed: {gp_err}");
    }
    // Whatever the report lacks was counted lost (a lost event is a whole site update, so it
    // can stand for one allocation or more).
    assert!(
        objects as f64 >= mallocs as f64 * 0.99 - lost as f64,
        "{objects} objects + {lost} lost vs Mallocs {mallocs}"
    );
    assert!(
        objects as f64 <= mallocs as f64 * 1.01,
        "{objects} objects vs Mallocs {mallocs}"
    );
    assert!(
        site_bytes(alloc, "main.floodAlloc") > 0,
        "{:#}",
        alloc["sites"]
    );
}

/// More distinct stacks (2^16) than the stack map holds (32768), in exact mode: allocations whose
/// stack could not be taken are still counted, under an empty stack, and the failures are
/// counted in agent.lost_stacks and printed.
#[test]
fn stack_map_overflow() {
    let go = "1.27.3";
    let w = support::watch(
        "signals",
        go,
        &["-mode", "alloc-stacks"],
        &[],
        &["--alloc", "exact"],
        Duration::from_secs(300),
    );
    let alloc = &w.report["alloc"];
    let mallocs = u(&w.truth["mallocs"]);
    let objects = u(&alloc["objects"]);
    let lost_stacks = u(&w.report["goprobe"]["lost_stacks"]);
    let unattributed = stackless_objects(alloc);
    eprintln!(
        "Go {go}: {objects} objects vs Mallocs {mallocs}; {lost_stacks} stacks lost, \
         {unattributed} objects without a stack"
    );
    assert!(
        (objects as f64 / mallocs as f64 - 1.0).abs() <= 0.01,
        "{objects} objects vs Mallocs {mallocs}"
    );
    assert!(lost_stacks > 0, "2^16 stacks fit a 32768-stack map?");
    assert!(
        unattributed > 0 && unattributed <= lost_stacks,
        "{unattributed} objects without a stack, {lost_stacks} stacks lost"
    );
    assert!(
        w.goprobe_stderr.contains("could not be captured"),
        "lost stacks not printed: {}",
        w.goprobe_stderr
    );
}
