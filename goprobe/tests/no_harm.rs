//! The profiled program never crashes or changes behaviour: attach and detach 20 times while it
//! runs a GC- and goroutine-heavy workload under `GODEBUG=gccheckmark=1` (the runtime re-verifies
//! every mark phase and throws on a missed object), then check what the program computed. On the
//! newest Go, 100 cycles with every option set, every fifth ended by SIGKILL, each followed by
//! proof that goprobe left no BPF program, link or breakpoint behind.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{
    attach, leaks,
    leaks::{BpfIds, text_changes},
    start_testprog,
};

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

/// The option sets the 100 cycles go through in turn: sampled allocations (the default, which
/// writes `runtime.MemProfileRate`), exact (uprobes on every allocation path), spans, and CPU
/// sampling at another rate.
const OPTION_SETS: [&[&str]; 4] = [
    &[],
    &["--alloc", "exact"],
    &["--alloc", "spans"],
    &["--cpu-hz", "997"],
];

/// NB: `runtime.MemProfileRate`'s default, which `--alloc sampled` writes into a program that has
/// it at 0 and restores on detach (goprobe/src/analysis/process/memprofile.rs); a SIGKILLed goprobe cannot.
const MEM_PROFILE_RATE: u64 = 512 * 1024;

#[test]
fn go1_27_survives_100_attach_detach_and_kill_cycles() {
    const CYCLES: usize = 100;
    let go = "1.27.3";
    let mut prog = start_testprog(
        "gcstress",
        go,
        &["-mode", "churn"],
        &[("GODEBUG", "gccheckmark=1")],
    );
    let pid = prog.pid();
    assert!(text_changes(pid).is_empty(), "text differs before attach");
    prog.send("start");
    let (mut killed, mut killed_sampled, mut cycles_seen, mut max_breakpoints) = (0, 0, 0, 0);
    for i in 0..CYCLES {
        let options = OPTION_SETS[i % OPTION_SETS.len()];
        let kill = i % 5 == 2; // every option set is killed 5 times
        let mut args = options.to_vec();
        args.extend(["--json"]);
        if !kill {
            args.extend(["--duration", "0.2"]);
        }
        let what = format!(
            "cycle {i} {options:?}{}",
            if kill { " SIGKILL" } else { "" }
        );
        let probe = attach(pid, &args);
        let ids = BpfIds::of_process(probe.pid());
        if kill {
            // While it runs: its programs and links are loaded, its breakpoints are in the text
            // (so the checks after it ends can fail).
            assert!(!ids.programs.is_empty(), "{what}: no BPF program fds");
            let loaded = ids.still_loaded();
            assert_eq!(loaded.programs, ids.programs, "{what}: not enumerated");
            assert_eq!(loaded.links, ids.links, "{what}: not enumerated");
            let breakpoints = text_changes(pid);
            assert!(!breakpoints.is_empty(), "{what}: no breakpoint in the text");
            assert!(
                breakpoints.iter().all(|&(_, b)| b == 0xcc),
                "{what}: text changed other than by int3: {breakpoints:x?}"
            );
            max_breakpoints = max_breakpoints.max(breakpoints.len());
            std::thread::sleep(Duration::from_millis(37 * (i as u64 % 5)));
            // SAFETY: plain kill(2) of our own child.
            assert_eq!(
                unsafe { libc::kill(probe.pid() as libc::pid_t, libc::SIGKILL) },
                0
            );
            let (status, _, _) = probe.finish(Duration::from_secs(30));
            assert_eq!(
                std::os::unix::process::ExitStatusExt::signal(&status),
                Some(libc::SIGKILL),
                "{what}: {status}"
            );
            killed += 1;
            killed_sampled += usize::from(options.is_empty());
        } else {
            let (status, out, err) = probe.finish(Duration::from_secs(60));
            assert!(status.success(), "{what}: goprobe failed: {err}");
            let report: Value = serde_json::from_str(&out).expect("report JSON");
            cycles_seen += report["gc"]["cycles"].as_array().expect("cycles").len();
        }
        leaks::assert_nothing_left(&ids, pid, &what);
        assert!(
            prog.child.try_wait().unwrap().is_none(),
            "{what}: the Go program died"
        );
    }
    prog.send("stop");
    let (status, out, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "Go {go} program failed: {status}\n{err}");
    assert!(
        !err.contains("fatal error") && !err.contains("panic"),
        "{err}"
    );
    let result: Value = serde_json::from_str(out.trim()).expect("gcstress JSON");
    assert_eq!(result["failures"], 0, "wrong results: {result}");
    assert!(result["iterations"].as_u64().unwrap() > 0, "{result}");
    assert!(result["goroutines"].as_u64().unwrap() > 0, "{result}");
    assert!(cycles_seen > 0, "no GC cycle seen in {CYCLES} cycles");
    // The documented cost of a SIGKILL during `--alloc sampled` (docs/report-schema.md): the
    // runtime's heap-profile sampler stays on at the default rate, as in a program that imports
    // runtime/pprof. The program's results are unaffected (above).
    assert_eq!(result["mem_profile_rate_ready"], 0, "{result}");
    assert!(killed_sampled > 0);
    assert_eq!(
        result["mem_profile_rate_end"], MEM_PROFILE_RATE,
        "after {killed_sampled} SIGKILLs of `--alloc sampled`: {result}"
    );
    eprintln!(
        "Go {go}: {CYCLES} cycles ({killed} SIGKILL), up to {max_breakpoints} breakpoints while \
         attached, none left after; {cycles_seen} GC cycles seen; {result}"
    );
}
