//! Non-GC stop-the-worlds are named for what the program did: gcstress `-mode reasons` calls each
//! public API that stops the world and lists its calls; goprobe must report exactly the matching
//! reasons, in order. On Go 1.21+ the reason is the runtime's own `stwReason` argument; on Go 1.19
//! it is inferred from the `m.preemptoff` string, and must come out the same.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

/// The reasons one call of the program causes, in the runtime's words (`stwReason` names).
fn reasons_of(call: &str, go: &str) -> Vec<&'static str> {
    match call {
        "GOMAXPROCS" => vec!["GOMAXPROCS"],
        "Stack" => vec!["AllGoroutinesStack"],
        // NB: goroutineProfileWithLabelsConcurrent stops the world twice: to start the
        // profile and to clean up (src/runtime/mprof.go, go1.19 :911 and :976).
        "GoroutineProfile" => vec!["GoroutineProfile", "GoroutineProfileCleanup"],
        "WriteHeapDump" => vec!["WriteHeapDump"],
        "trace.Start" => vec!["StartTrace"],
        // NB: the execution tracer rewritten in Go 1.22 stops tracing without stopping the
        // world (src/runtime/trace.go StopTrace -> traceAdvance); 1.19 and 1.21 stop it.
        "trace.Stop" if go == "1.19" || go.starts_with("1.21.") => vec!["StopTrace"],
        "trace.Stop" => vec![],
        "ReadMemStats" => vec!["ReadMemStats"],
        other => panic!("gcstress made a call this test does not know: {other}"),
    }
}

fn check_reasons(go: &str) {
    let support::Watched { truth, report, .. } = support::watch_gcstress(
        "gcstress",
        go,
        &["-mode", "reasons"],
        &[],
        Duration::from_secs(60),
    );

    let calls: Vec<&str> = truth["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let want: Vec<&str> = calls.iter().flat_map(|c| reasons_of(c, go)).collect();
    let got: Vec<&str> = report["gc"]["other_stw"]
        .as_array()
        .expect("other_stw")
        .iter()
        .map(|s| s["reason"].as_str().unwrap())
        .collect();
    assert_eq!(got, want, "Go {go}: calls {calls:?}");
    for s in report["gc"]["other_stw"].as_array().unwrap() {
        assert!(s["duration_ns"].as_u64().unwrap() > 0, "{s}");
    }
    eprintln!(
        "Go {go}: {} non-GC stop-the-worlds named: {got:?}",
        got.len()
    );
}

#[test]
fn go1_19_reasons_are_named() {
    check_reasons("1.19");
}

#[test]
fn go1_21_reasons_are_named() {
    check_reasons("1.21.13");
}

#[test]
fn go1_27_reasons_are_named() {
    check_reasons("1.27.3");
}
