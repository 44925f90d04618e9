//! What each GC cycle was, compared with the Go runtime's own numbers: triggers against
//! `MemStats.NumForcedGC`, phases and heap sizes against the line `GODEBUG=gctrace=1` prints for
//! the same cycle, GOGC / GOMEMLIMIT against `debug.SetGCPercent` / `SetMemoryLimit` and
//! runtime/metrics while the program changes them, and the stop latency (Go 1.23+) against the
//! `/sched/pauses/stopping/gc:seconds` histogram. gcstress `-mode cycles` and `-mode heap`.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;

/// One line of `GODEBUG=gctrace=1` output (src/runtime/mgc.go gcMarkTermination).
#[derive(Debug)]
struct Trace {
    /// "A+B+C ms clock", as printed.
    clock: [String; 3],
    /// "H0->H1->H2 MB".
    heap_mb: [u64; 3],
    /// "G MB goal".
    goal_mb: u64,
}

/// Parses `gc N @T s U%[ (checking for goroutine leaks)]: A+B+C ms clock, … ms cpu,
/// H0->H1->H2 MB, G MB goal, …` lines by cycle number.
fn parse_gctrace(stderr: &str) -> BTreeMap<u64, Trace> {
    let mut out = BTreeMap::new();
    for line in stderr.lines().filter(|l| l.starts_with("gc ")) {
        let Some((head, rest)) = line.split_once(": ") else {
            continue;
        };
        let n: u64 = head[3..].split(' ').next().unwrap().parse().unwrap();
        let parts: Vec<&str> = rest.split(", ").collect();
        let clock = parts[0].strip_suffix(" ms clock").expect(line);
        let clock: Vec<String> = clock.split('+').map(str::to_owned).collect();
        let heap = parts[2].strip_suffix(" MB").expect(line);
        let heap: Vec<u64> = heap.split("->").map(|h| h.parse().unwrap()).collect();
        let goal = parts[3]
            .strip_suffix(" MB goal")
            .expect(line)
            .parse()
            .unwrap();
        out.insert(
            n,
            Trace {
                clock: clock.try_into().expect(line),
                heap_mb: heap.try_into().expect(line),
                goal_mb: goal,
            },
        );
    }
    out
}

/// The runtime's `fmtNSAsMS` (src/runtime/mgc.go, unchanged Go 1.19–1.27): whole milliseconds
/// from 10 ms, else two significant digits with at most three decimals, truncated.
fn fmt_ns_as_ms(ns: u64) -> String {
    if ns >= 10_000_000 {
        return (ns / 1_000_000).to_string();
    }
    let mut x = ns / 1_000;
    if x == 0 {
        return "0".into();
    }
    let mut dec = 3;
    while x >= 100 {
        x /= 10;
        dec -= 1;
    }
    let digits = format!("{x:0>width$}", width = dec + 1);
    let (int, frac) = digits.split_at(digits.len() - dec);
    if dec == 0 {
        int.to_owned()
    } else {
        format!("{int}.{frac}")
    }
}

#[test]
fn fmt_ns_as_ms_is_the_runtimes() {
    // Examples worked through the runtime's itoaDiv by hand.
    assert_eq!(fmt_ns_as_ms(999), "0");
    assert_eq!(fmt_ns_as_ms(52_345), "0.052");
    assert_eq!(fmt_ns_as_ms(1_234_567), "1.2");
    assert_eq!(fmt_ns_as_ms(123_456), "0.12");
    assert_eq!(fmt_ns_as_ms(9_999_999), "9.9");
    assert_eq!(fmt_ns_as_ms(12_345_678), "12");
}

struct Run {
    go: String,
    truth: Value,
    report: Value,
    target_stderr: String,
}

impl Run {
    fn start(go: &str, program: &str, mode: &str, cycles: &str) -> Self {
        let support::Watched {
            truth,
            report,
            target_stderr,
            goprobe_stderr: gp_err,
        } = support::watch_gcstress(
            program,
            go,
            &["-mode", mode, "-cycles", cycles],
            &[("GODEBUG", "gctrace=1")],
            Duration::from_secs(120),
        );
        // The live view: one line per completed cycle on goprobe's stderr (not a terminal here).
        let lines = gp_err.lines().filter(|l| l.starts_with("gc ")).count();
        assert_eq!(
            lines,
            report["gc"]["cycles"].as_array().unwrap().len(),
            "cycle lines on stderr: {gp_err}"
        );
        Self {
            go: go.to_owned(),
            truth,
            report,
            target_stderr,
        }
    }

    /// The report's cycles numbered (numgc_start, numgc_end], all of which must be there.
    fn window(&self) -> Vec<&Value> {
        let (start, end) = (
            self.truth["numgc_start"].as_u64().unwrap(),
            self.truth["numgc_end"].as_u64().unwrap(),
        );
        assert!(
            end - start >= 30,
            "too few cycles to be a test: {start}..{end}"
        );
        let by_number: BTreeMap<u64, &Value> = self.report["gc"]["cycles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["cycle"].as_u64().unwrap(), c))
            .collect();
        (start + 1..=end)
            .map(|n| {
                *by_number
                    .get(&n)
                    .unwrap_or_else(|| panic!("Go {}: cycle {n} missing", self.go))
            })
            .collect()
    }

    fn forced_delta(&self) -> usize {
        let d = self.truth["numforcedgc_end"].as_u64().unwrap()
            - self.truth["numforcedgc_start"].as_u64().unwrap();
        d as usize
    }
}

fn minor(go: &str) -> u32 {
    go.split('.').nth(1).unwrap().parse().unwrap()
}

fn check_cycles(go: &str, program: &str) {
    let run = Run::start(go, program, "cycles", "90");
    let window = run.window();
    let unavailable: Vec<&str> = run.report["gc"]["unavailable"]
        .as_array()
        .expect("gc.unavailable")
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    let has_stopping = minor(go) >= 23;
    let want_unavailable: &[&str] = if has_stopping { &[] } else { &["stopping_ns"] };
    assert_eq!(unavailable, want_unavailable, "Go {go}");

    // 1. Triggers: forced cycles are exactly the runtime's NumForcedGC increase.
    let forced = window.iter().filter(|c| c["trigger"] == "forced").count();
    assert_eq!(forced, run.forced_delta(), "Go {go}: forced cycles");
    assert!(
        forced > 0 && forced < window.len(),
        "Go {go}: {forced} forced"
    );
    for c in &window {
        assert!(
            ["heap", "forced"].contains(&c["trigger"].as_str().unwrap()),
            "{c}"
        );
    }

    // 2 and 3. Phases and heap against gctrace's line for the same cycle.
    let traces = parse_gctrace(&run.target_stderr);
    let mut with_phases = 0;
    for c in &window {
        let n = c["cycle"].as_u64().unwrap();
        let t = traces
            .get(&n)
            .unwrap_or_else(|| panic!("Go {go}: no gctrace line for cycle {n}"));
        // NB: gctrace's "(forced)" is not compared: it reads work.userForced after the world
        // restarts, when a runtime.GC() woken by this cycle's end may already have set it for
        // the next cycle (go1.19 mgc.go:1039 wakes sweepWaiters, :616 sets userForced, :1127
        // prints). NumForcedGC, counted before the restart, is the ground truth above.
        let heap: Vec<u64> = ["heap_start_bytes", "heap_end_bytes", "heap_marked_bytes"]
            .iter()
            .map(|f| c[*f].as_u64().unwrap() >> 20)
            .collect();
        assert_eq!(heap, t.heap_mb, "Go {go} cycle {n}: heap MB vs gctrace");
        assert_eq!(
            c["heap_goal_bytes"].as_u64().unwrap() >> 20,
            t.goal_mb,
            "Go {go} cycle {n}: goal MB vs gctrace"
        );
        let Some(p) = c["phases_ns"].as_object() else {
            continue;
        };
        let phases: Vec<u64> = ["sweep_termination", "mark", "mark_termination"]
            .iter()
            .map(|f| p[*f].as_u64().unwrap())
            .collect();
        with_phases += usize::from(phases.iter().all(|&v| v > 0));
        let printed: Vec<String> = phases.iter().map(|&v| fmt_ns_as_ms(v)).collect();
        assert_eq!(printed, t.clock, "Go {go} cycle {n}: phases vs gctrace");
        // The sum is the cycle's wall time from the same timestamps.
        let (start, end) = (
            c["start_unix_ns"].as_i64().unwrap(),
            c["end_unix_ns"].as_i64().unwrap(),
        );
        assert_eq!(phases.iter().sum::<u64>() as i64, end - start, "cycle {n}");
        // Sweep termination ends when its stop-the-world ends (work.tMark = the `now` that
        // startTheWorldWithSema returned): two different readings, one instant.
        let stw0 = &c["stw"][0];
        assert_eq!(stw0["reason"], "GCSweepTerm");
        let stw0_start = stw0["start_unix_ns"].as_i64().unwrap();
        if minor(go) <= 21 {
            // NB: Go 1.19/1.21 gcStart: `work.tSweepTerm = now; work.pauseStart = now`.
            assert_eq!(
                start, stw0_start,
                "Go {go} cycle {n}: tSweepTerm vs pauseStart"
            );
        } else {
            // NB: Go 1.22+ gcStart takes tSweepTerm before stopTheWorldWithSema, which takes
            // startedStopping once it holds sched.lock (src/runtime/mgc.go, proc.go).
            assert!(
                start <= stw0_start,
                "Go {go} cycle {n}: {start} > {stw0_start}"
            );
        }
        assert_eq!(
            start + phases[0] as i64,
            stw0["start_unix_ns"].as_i64().unwrap() + stw0["duration_ns"].as_i64().unwrap(),
            "Go {go} cycle {n}: tMark vs end of the sweep-termination pause"
        );
    }
    assert!(
        with_phases * 100 >= window.len() * 95,
        "Go {go}: phases present and positive in {with_phases} of {} cycles",
        window.len()
    );

    // 3. GOGC and GOMEMLIMIT in effect, per cycle, as the program changed them.
    let settings = run.truth["settings"].as_array().unwrap();
    assert_eq!(settings.len(), 3);
    for s in settings {
        if minor(go) >= 21 {
            assert_eq!(s["metric_gogc"].as_i64(), s["gogc"].as_i64(), "{s}");
            assert_eq!(
                s["metric_gomemlimit"].as_i64(),
                s["gomemlimit"].as_i64(),
                "{s}"
            );
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for c in &window {
        let n = c["cycle"].as_u64().unwrap();
        let s = settings
            .iter()
            .rev()
            .find(|s| s["after_cycle"].as_u64().unwrap() < n)
            .unwrap();
        assert_eq!(c["gogc"].as_i64(), s["gogc"].as_i64(), "Go {go} cycle {n}");
        assert_eq!(
            c["gomemlimit_bytes"].as_i64(),
            s["gomemlimit"].as_i64(),
            "Go {go} cycle {n}"
        );
        seen.insert(c["gogc"].as_i64().unwrap());
    }
    assert_eq!(seen.len(), 3, "Go {go}: every setting seen: {seen:?}");

    // 4. Stop latency.
    let gc_stws: Vec<&Value> = window
        .iter()
        .flat_map(|c| c["stw"].as_array().unwrap())
        .collect();
    let all_stws = gc_stws
        .iter()
        .copied()
        .chain(run.report["gc"]["other_stw"].as_array().unwrap());
    for s in all_stws {
        if has_stopping {
            let st = s["stopping_ns"].as_u64().expect("stopping_ns on Go 1.23+");
            assert!(st <= s["duration_ns"].as_u64().unwrap(), "{s}");
        } else {
            assert!(s["stopping_ns"].is_null(), "{s}");
        }
    }
    if has_stopping {
        let h = &run.truth["stopping_gc"];
        let buckets: Vec<f64> = h["buckets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_f64().unwrap())
            .collect();
        let want: Vec<u64> = h["counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .collect();
        let mut got = vec![0u64; want.len()];
        for s in &gc_stws {
            let secs = s["stopping_ns"].as_u64().unwrap() as f64 / 1e9;
            let i = buckets.partition_point(|&b| b <= secs) - 1;
            got[i] += 1;
        }
        assert_eq!(
            got.iter().sum::<u64>(),
            want.iter().sum::<u64>(),
            "Go {go}: GC stop-the-worlds vs /sched/pauses/stopping/gc:seconds count"
        );
        assert_eq!(got, want, "Go {go}: stop latency histogram");
    }
    eprintln!(
        "Go {go} {program}: {} cycles ({forced} forced), phases in {with_phases}, {} GC STWs",
        window.len(),
        gc_stws.len()
    );
}

fn check_heap_only(go: &str) {
    let run = Run::start(go, "gcstress", "heap", "40");
    let window = run.window();
    assert_eq!(run.forced_delta(), 0);
    for c in window {
        assert_eq!(c["trigger"], "heap", "Go {go}: {c}");
    }
}

#[test]
fn go1_19_cycles() {
    check_cycles("1.19", "gcstress");
}

#[test]
fn go1_19_without_dwarf_cycles() {
    check_cycles("1.19", "gcstress-nodwarf");
}

#[test]
fn go1_21_cycles() {
    check_cycles("1.21.13", "gcstress");
}

#[test]
fn go1_21_without_dwarf_cycles() {
    check_cycles("1.21.13", "gcstress-nodwarf");
}

#[test]
fn go1_23_cycles() {
    check_cycles("1.23.9", "gcstress");
}

#[test]
fn go1_23_without_dwarf_cycles() {
    check_cycles("1.23.9", "gcstress-nodwarf");
}

#[test]
fn go1_25_cycles() {
    check_cycles("1.25.5", "gcstress");
}

#[test]
fn go1_25_without_dwarf_cycles() {
    check_cycles("1.25.5", "gcstress-nodwarf");
}

#[test]
fn go1_27_cycles() {
    check_cycles("1.27.3", "gcstress");
}

#[test]
fn go1_27_without_dwarf_cycles() {
    check_cycles("1.27.3", "gcstress-nodwarf");
}

#[test]
fn go1_19_pie_cycles() {
    check_cycles("1.19", "gcstress-pie");
}

#[test]
fn go1_27_pie_cycles() {
    check_cycles("1.27.3", "gcstress-pie");
}

#[test]
fn go1_27_race_build_cycles() {
    check_cycles("1.27.3", "gcstress-race");
}

#[test]
fn go1_19_heap_triggers_only() {
    check_heap_only("1.19");
}

#[test]
fn go1_21_heap_triggers_only() {
    check_heap_only("1.21.13");
}

#[test]
fn go1_23_heap_triggers_only() {
    check_heap_only("1.23.9");
}

#[test]
fn go1_25_heap_triggers_only() {
    check_heap_only("1.25.5");
}

#[test]
fn go1_27_heap_triggers_only() {
    check_heap_only("1.27.3");
}
