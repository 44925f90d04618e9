//! Goroutines: the count over time equals `runtime.NumGoroutine()` during plateaus the program
//! holds still, a leak names the function that spawns it, and created/exited equal the
//! goroutines the program started and saw exit, for every tested release, plain and stripped.
//! The `signals` program (`-mode goroutine-wave`, `goroutine-leak`) is the ground truth.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{creation_sites_total, u};

/// The tolerance on the count during a plateau.
const COUNT_TOLERANCE: i64 = 2;

/// Runs `program -mode mode` under goprobe, with `--goroutine-sites` when `sites`.
fn run(program: &str, go: &str, mode: &str, sites: bool) -> (Value, Value) {
    let args: &[&str] = if sites { &["--goroutine-sites"] } else { &[] };
    let w = support::watch(
        program,
        go,
        &["-mode", mode],
        &[],
        args,
        Duration::from_secs(120),
    );
    let g = w.report["goroutines"].clone();
    assert!(
        g.is_object(),
        "Go {go}: no goroutines section: {}",
        w.report
    );
    (w.truth, g)
}

fn stack(site: &Value) -> Vec<&str> {
    site["stack"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect()
}

/// Goroutines the runtime created for itself: creation sites whose `go` statement is in a
/// runtime function (the GC's mark workers, started by the first GC of the process, one per P).
fn runtime_created(g: &Value) -> u64 {
    g["creation_sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| stack(s).first().is_some_and(|f| f.starts_with("runtime.")))
        .map(|s| u(&s["count"]))
        .sum()
}

/// created/exited: every goroutine the program started is counted created, every one it saw
/// exit counted exited; beyond those, only the runtime's own (their sites say which).
fn check_created_exited(go: &str, truth: &Value, g: &Value) {
    let (started, finished) = (u(&truth["started"]), u(&truth["finished"]));
    let runtime = runtime_created(g);
    // NB: the runtime starts at most one mark worker per P (src/runtime/mgc.go
    // gcBgMarkStartWorkers, Go 1.19–1.27); no other runtime goroutine is created by these modes.
    assert!(
        runtime <= u(&truth["gomaxprocs"]),
        "Go {go}: {runtime} runtime goroutines created: {g:#}"
    );
    println!(
        "Go {go}: created {} (program {started} + runtime {runtime}), exited {} (program {finished})",
        g["created"], g["exited"]
    );
    assert_eq!(u(&g["created"]), started + runtime, "Go {go}: {truth}");
    // NB: mark workers never exit; the program's goroutines all did (it waits until
    // NumGoroutine says so, i.e. until gdestroy/goexit0 put them on a free list).
    assert_eq!(u(&g["exited"]), finished, "Go {go}: {truth}");
    let sites_total = creation_sites_total(g);
    assert_eq!(sites_total, u(&g["created"]), "Go {go}: sites vs created");
}

/// The count follows the program's plateaus; with `sites` (`--goroutine-sites`) created and
/// exited are exact, without them they are `null` and no site is listed (no probe was placed).
fn check_wave(program: &str, go: &str, sites: bool) {
    let (truth, g) = run(program, go, "goroutine-wave", sites);
    let samples: Vec<(i64, i64)> = g["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["t_unix_ns"].as_i64().unwrap(),
                s["count"].as_i64().unwrap(),
            )
        })
        .collect();
    // ≥ 10 Hz: the median gap between readings (robust to a stall of the loaded test machine).
    let mut gaps: Vec<i64> = samples.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    let median = gaps[gaps.len() / 2];
    println!(
        "Go {go} {program}: {} readings, median gap {median} ns",
        samples.len()
    );
    assert!(median <= 110_000_000, "Go {go}: median gap {median} ns");
    let mut waves = 0;
    for p in truth["plateaus"].as_array().unwrap() {
        let (start, end) = (
            p["start_unix_ns"].as_i64().unwrap(),
            p["end_unix_ns"].as_i64().unwrap(),
        );
        let truth_counts: Vec<i64> = p["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .collect();
        let (lo, hi) = (
            *truth_counts.iter().min().unwrap(),
            *truth_counts.iter().max().unwrap(),
        );
        let inside: Vec<i64> = samples
            .iter()
            .filter(|(t, _)| (start..=end).contains(t))
            .map(|&(_, c)| c)
            .collect();
        if hi > 100 {
            waves += 1;
            // A 1.5 s plateau read at 10 Hz: allow for a stalled loop, not for no readings.
            assert!(
                inside.len() >= 5,
                "Go {go}: {} readings in a wave",
                inside.len()
            );
            assert!(
                u(&g["max"]) as i64 >= lo - COUNT_TOLERANCE,
                "Go {go}: max {} below a plateau of {lo}",
                g["max"]
            );
        }
        println!(
            "Go {go} {program}: plateau {:.2}s NumGoroutine {lo}..={hi}, goprobe {:?} ({} readings)",
            (end - start) as f64 / 1e9,
            {
                let mut d = inside.clone();
                d.sort_unstable();
                d.dedup();
                d
            },
            inside.len()
        );
        for c in &inside {
            assert!(
                (lo - COUNT_TOLERANCE..=hi + COUNT_TOLERANCE).contains(c),
                "Go {go}: goprobe read {c} while NumGoroutine() said {lo}..={hi}"
            );
        }
    }
    assert_eq!(waves, 2, "Go {go}: {truth}");
    if sites {
        check_created_exited(go, &truth, &g);
    } else {
        assert!(g["created"].is_null() && g["exited"].is_null(), "{g:#}");
        assert_eq!(
            g["creation_sites"].as_array().map(Vec::len),
            Some(0),
            "{g:#}"
        );
    }
}

fn check_leak(program: &str, go: &str) {
    let (truth, g) = run(program, go, "goroutine-leak", true);
    let sites = g["creation_sites"].as_array().unwrap();
    let top = stack(&sites[0]);
    assert_eq!(top.first(), Some(&"main.leakForever"), "Go {go}: {g:#}");
    assert_eq!(u(&sites[0]["count"]), u(&truth["leaked"]), "Go {go}");
    assert!(
        sites
            .iter()
            .any(|s| stack(s).first() == Some(&"main.shortLived")),
        "Go {go}: {g:#}"
    );
    check_created_exited(go, &truth, &g);
}

/// Go 1.23+: coroutines (`iter.Pull`) are created by `runtime.newcoro` and exit through
/// `gdestroy`; they count as created and exited, their site is `iter.Pull`'s caller.
fn check_coro(program: &str, go: &str) {
    let (truth, g) = run(program, go, "goroutine-coro", true);
    let sites = g["creation_sites"].as_array().unwrap();
    let top = stack(&sites[0]);
    assert!(
        top.first().is_some_and(|f| f.starts_with("iter.Pull"))
            && top.get(1) == Some(&"main.pullMany"),
        "Go {go}: {g:#}"
    );
    check_created_exited(go, &truth, &g);
}

#[test]
fn go1_19() {
    check_wave("signals", "1.19", true);
    check_leak("signals", "1.19");
}

#[test]
fn go1_21() {
    check_wave("signals", "1.21.13", true);
    check_leak("signals-sw", "1.21.13");
}

#[test]
fn go1_23() {
    check_wave("signals", "1.23.9", true);
    check_leak("signals", "1.23.9");
    check_coro("signals", "1.23.9");
}

#[test]
fn go1_25() {
    check_wave("signals-sw", "1.25.5", true);
    check_leak("signals", "1.25.5");
    check_coro("signals-sw", "1.25.5");
}

#[test]
fn go1_27() {
    check_wave("signals", "1.27.3", true);
    check_wave("signals-sw", "1.27.3", false);
    check_leak("signals", "1.27.3");
    check_coro("signals", "1.27.3");
}
