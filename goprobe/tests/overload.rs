//! Overload (issue 10): a target that allocates as fast as every P can under
//! `goprobe attach --alloc exact`, from more distinct stacks (2^17) than the stack map holds, and
//! a target that creates and ends goroutines as fast as every P can, each for 10 s
//! (tests/testprogs/signals/overload.go). The target must finish its self-checked work; goprobe
//! must end with a report whose counts plus its declared losses account for what the runtime
//! counted, and its memory must stay bounded.
//!
//! The rates reached are printed with the unprobed rate of the same workload: on a small
//! machine they show how far exact mode slows the target, and are not asserted (speed belongs in
//! `cargo xtask bench`).

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{attach, creation_sites_total, stackless_objects, start_testprog, u};

const GO: &str = "1.27.3";
/// How long each overload runs under goprobe: long enough for every map to fill.
const OVERLOAD_FOR: &str = "10s";
/// goprobe's peak resident memory must stay under this. Its kernel maps are not in its RSS;
/// what it holds in user space is bounded by them: at most every stack of the 32768-entry stack
/// map read once (127 frames of 8 bytes each: 32 MiB) with its names, the per-stack sums of the
/// 65600-entry sites map, and the binary's symbol tables (mapped, a few MiB for gcstress-sized
/// programs). 256 MiB is about twice that worst case, and far below what a leak that kept a
/// record per allocation or per goroutine (tens of millions here) would need.
const MAX_RSS_KIB: u64 = 256 * 1024;

/// One overload at a time: each is meant to have the whole machine, and their rates to say
/// what it can do.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The workload's rate without goprobe, for the record: `rate_key` of a 2-second run.
fn unprobed(mode: &str, rate_key: &str) -> f64 {
    let mut prog = start_testprog("signals", GO, &["-mode", mode, "-overload-for", "2s"], &[]);
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "{mode} unprobed: {err}");
    let truth: Value = serde_json::from_str(out.trim()).unwrap();
    truth[rate_key].as_f64().unwrap()
}

/// VmRSS of `pid` in KiB, every 250 ms until `stop`: (seconds since start, KiB).
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<(f64, u64)>> {
    thread::spawn(move || {
        let t0 = Instant::now();
        let mut samples = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
                break;
            };
            let rss = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
            if let Some(rss) = rss {
                samples.push((t0.elapsed().as_secs_f64(), rss));
            }
            thread::sleep(Duration::from_millis(250));
        }
        samples
    })
}

/// One overload run under goprobe.
struct Run {
    truth: Value,
    report: Value,
    goprobe_stderr: String,
}

/// Runs signals `-mode mode` for [`OVERLOAD_FOR`] under `goprobe attach --json <goprobe_args>`:
/// both must succeed, and goprobe's memory must stay under [`MAX_RSS_KIB`] throughout.
fn overload(mode: &str, goprobe_args: &[&str]) -> Run {
    let mut prog = start_testprog(
        "signals",
        GO,
        &["-mode", mode, "-overload-for", OVERLOAD_FOR],
        &[],
    );
    let mut args = vec!["--json"];
    args.extend_from_slice(goprobe_args);
    let probe = attach(prog.pid(), &args);
    let stop = Arc::new(AtomicBool::new(false));
    let rss = sample_rss(probe.pid(), Arc::clone(&stop));
    prog.send("start");
    let (status, out, err) = prog.finish(Duration::from_secs(180));
    assert!(status.success(), "{mode} under goprobe failed: {err}");
    let truth: Value = serde_json::from_str(out.trim()).expect("signals JSON");
    // goprobe ends by itself when the target exits, having read and named everything.
    let (gp_status, gp_out, goprobe_stderr) = probe.finish(Duration::from_secs(120));
    stop.store(true, Ordering::SeqCst);
    let rss = rss.join().unwrap();
    assert!(gp_status.success(), "goprobe failed: {goprobe_stderr}");
    assert!(!goprobe_stderr.contains("panicked"), "{goprobe_stderr}");
    let report: Value = serde_json::from_str(&gp_out).expect("goprobe --json output");
    let peak = rss.iter().map(|&(_, kib)| kib).max().unwrap_or(0);
    let max_rss = u(&report["goprobe"]["max_rss_kb"]);
    let per_second: Vec<String> = rss
        .iter()
        .step_by(4)
        .map(|(t, kib)| format!("{t:.0}s:{}M", kib / 1024))
        .collect();
    eprintln!(
        "{mode}: goprobe RSS over time {}; peak sampled {peak} KiB, report max_rss_kb {max_rss}",
        per_second.join(" ")
    );
    assert!(
        peak < MAX_RSS_KIB && max_rss < MAX_RSS_KIB,
        "goprobe RSS {peak} KiB sampled, {max_rss} KiB max: over {MAX_RSS_KIB} KiB"
    );
    Run {
        truth,
        report,
        goprobe_stderr,
    }
}

/// Exact allocation counting at the highest rate the target reaches, with the stack map
/// overflowing: every allocation is counted or declared lost.
#[test]
fn allocation_flood_in_exact_mode() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = unprobed("overload-alloc", "allocs_per_sec");
    let Run {
        truth,
        report,
        goprobe_stderr,
    } = overload("overload-alloc", &["--alloc", "exact"]);
    let alloc = &report["alloc"];
    let mallocs = u(&truth["mallocs"]);
    let objects = u(&alloc["objects"]);
    let lost = u(&report["goprobe"]["lost_events"]);
    let lost_stacks = u(&report["goprobe"]["lost_stacks"]);
    let unattributed = stackless_objects(alloc);
    eprintln!(
        "Go {GO} overload-alloc on {} Ps: {:.2} M allocations/s under exact mode ({:.2} M/s \
         unprobed), {mallocs} Mallocs in {:.1} s; report: {objects} objects, {lost} lost events, \
         {lost_stacks} lost stacks, {unattributed} objects without a stack",
        truth["workers"],
        truth["allocs_per_sec"].as_f64().unwrap() / 1e6,
        free / 1e6,
        truth["seconds"].as_f64().unwrap(),
    );
    // Whatever the report lacks was counted lost (a lost event is one allocation's site
    // update). goprobe's window is a little wider than the program's (it attached first and
    // ends after the program's last ReadMemStats): 1% for the allocations outside.
    assert!(
        objects as f64 + lost as f64 >= mallocs as f64 * 0.99,
        "{objects} objects + {lost} lost vs Mallocs {mallocs}"
    );
    assert!(
        objects as f64 <= mallocs as f64 * 1.01,
        "{objects} objects vs Mallocs {mallocs}"
    );
    if lost > 0 {
        assert!(
            goprobe_stderr.contains("lost"),
            "lost events not printed: {goprobe_stderr}"
        );
    }
    // 2^17 distinct stacks and 32768 places for them: the stack map overflowed, and the
    // allocations whose stack could not be kept are still counted, under an empty stack.
    let deep = u(&truth["deep_stacks"]);
    assert!(deep > 32768);
    assert!(lost_stacks > 0, "{deep} stacks fit a 32768-stack map?");
    assert!(
        unattributed > 0 && unattributed <= lost_stacks,
        "{unattributed} objects without a stack, {lost_stacks} stacks lost"
    );
    assert!(
        goprobe_stderr.contains("could not be captured"),
        "lost stacks not printed: {goprobe_stderr}"
    );
    let sites = alloc["sites"].as_array().unwrap();
    for f in ["main.allocCell", "main.allocPair"] {
        assert!(
            sites
                .iter()
                .any(|s| s["stack"][0] == f || s["stack"][1] == f),
            "no site for {f}"
        );
    }
}

/// Goroutines created and ended as fast as every P can: created and exited are exact (their
/// counters cannot overflow), whatever the rate.
#[test]
fn goroutine_flood() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = unprobed("overload-goroutines", "per_sec");
    let Run { truth, report, .. } = overload("overload-goroutines", &["--goroutine-sites"]);
    let g = &report["goroutines"];
    let (started, finished) = (u(&truth["started"]), u(&truth["finished"]));
    let runtime: u64 = g["creation_sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["stack"][0]
                .as_str()
                .is_some_and(|f| f.starts_with("runtime."))
        })
        .map(|s| u(&s["count"]))
        .sum();
    eprintln!(
        "Go {GO} overload-goroutines on {} Ps: {:.0} goroutines/s under goprobe ({:.0}/s \
         unprobed); program started {started}, saw {finished} exit; report: created {}, exited \
         {} ({runtime} by the runtime), lost events {}, lost stacks {}",
        truth["gomaxprocs"],
        truth["per_sec"].as_f64().unwrap(),
        free,
        g["created"],
        g["exited"],
        report["goprobe"]["lost_events"],
        report["goprobe"]["lost_stacks"],
    );
    assert_eq!(truth["goroutines_end"], truth["base"], "{truth}");
    // NB: the runtime starts at most one GC mark worker per P (src/runtime/mgc.go
    // gcBgMarkStartWorkers, Go 1.19–1.27); they never exit.
    assert!(runtime <= u(&truth["gomaxprocs"]), "{g:#}");
    assert_eq!(u(&g["created"]), started + runtime, "{truth}");
    assert_eq!(u(&g["exited"]), finished, "{truth}");
    // A handful of `go` statements: the per-stack counts cannot overflow either.
    assert_eq!(report["goprobe"]["lost_events"], 0);
    let sites_total = creation_sites_total(g);
    assert_eq!(sites_total, u(&g["created"]), "sites vs created");
}
