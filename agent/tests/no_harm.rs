//! The profiled program never crashes or changes behaviour: attach and detach 20 times while it
//! runs a GC-heavy workload under `GODEBUG=gccheckmark=1` (the runtime re-verifies every mark
//! phase and throws on a missed object), then check what the program computed.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{attach, start_testprog};

const ROUNDS: usize = 20;

fn attach_detach_repeatedly(go: &str) {
    let mut prog = start_testprog(
        "gcstress",
        go,
        &["-mode", "churn"],
        &[("GODEBUG", "gccheckmark=1")],
    );
    prog.send("start");
    let mut cycles_seen = 0;
    for round in 0..ROUNDS {
        let probe = attach(prog.pid(), &["--duration", "0.3", "--json"]);
        let (status, out, err) = probe.finish(Duration::from_secs(30));
        assert!(status.success(), "round {round}: goprobe failed: {err}");
        let report: Value = serde_json::from_str(&out).expect("report JSON");
        cycles_seen += report["gc"]["cycles"].as_array().expect("cycles").len();
        assert!(
            prog.child.try_wait().unwrap().is_none(),
            "round {round}: the Go program died"
        );
    }
    prog.send("stop");
    let (status, out, err) = prog.finish(Duration::from_secs(60));
    assert!(
        status.success(),
        "Go {go} program failed after {ROUNDS} attaches: {status}\n{err}"
    );
    assert!(
        !err.contains("fatal error") && !err.contains("panic"),
        "{err}"
    );
    let result: Value = serde_json::from_str(out.trim()).expect("gcstress JSON");
    assert_eq!(
        result["failures"], 0,
        "the program computed wrong results: {result}"
    );
    assert!(result["iterations"].as_u64().unwrap() > 0, "{result}");
    assert!(
        cycles_seen > 0,
        "goprobe saw no GC cycle in {ROUNDS} rounds of a GC-heavy program"
    );
    eprintln!("Go {go}: {ROUNDS} attach/detach rounds, {cycles_seen} cycles seen, {result}");
}

#[test]
fn go1_19_survives_attach_detach() {
    attach_detach_repeatedly("1.19");
}

#[test]
fn go1_21_survives_attach_detach() {
    attach_detach_repeatedly("1.21.13");
}

#[test]
fn go1_27_survives_attach_detach() {
    attach_detach_repeatedly("1.27.3");
}
