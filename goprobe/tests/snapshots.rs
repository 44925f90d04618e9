//! Pause-triggered snapshots in `goprobe agent`: gcstress `-mode longstw` makes some GC cycles
//! and some ReadMemStats stop-the-worlds long on purpose among ordinary ones, and reports what
//! the runtime measured for each (`MemStats.PauseNs`, the `/sched/pauses/total/other` bucket);
//! with the threshold between the two, exactly the pauses the runtime measured over it get a
//! snapshot each, naming the cycle or the reason and the pause, and the others none.
#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
    time::Duration,
};

use serde_json::Value;
use support::{
    Proc,
    agent::{Agent, sum},
    testprog, u,
};

const LONG: Duration = Duration::from_secs(60);

/// 2^24 ns (16.8 ms): a bucket boundary of the runtime's pause histograms (`timeHistogram`,
/// src/runtime/histogram.go: 4 sub-buckets per power of two), so no bucket straddles it.
const THRESHOLD_NS: u64 = 1 << 24;

const GO: &str = "1.27.3";

fn marker() -> String {
    format!("goprobe-test-snapshots-{}", std::process::id())
}

/// The agent's config: only this test's gcstress, snapshots into `dir` at [`THRESHOLD_NS`].
fn config(dir: &std::path::Path) -> PathBuf {
    let path = std::env::temp_dir().join(format!("goprobe-snapshots-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            "[select]\ninclude_exe = [\"{}\"]\ninclude_cmdline = [\"{}\"]\n\
             [snapshots]\npause_threshold = \"{THRESHOLD_NS}ns\"\ndir = \"{}\"\n\
             window_s = 10\nmax_per_minute = 1000\n",
            testprog("gcstress", GO).display(),
            marker(),
            dir.display()
        ),
    )
    .unwrap();
    path
}

/// The snapshots in `dir`, by file name.
fn snapshots(dir: &std::path::Path) -> BTreeMap<String, (u64, Value)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, (bytes.len() as u64, v))
        })
        .collect()
}

#[test]
fn exactly_the_long_pauses_get_a_snapshot() {
    let dir = std::env::temp_dir().join(format!("goprobe-snapshots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = config(&dir);
    let mut agent = Agent::start(&cfg);
    let mut cmd = Command::new(testprog("gcstress", GO));
    let long_ns = THRESHOLD_NS.to_string();
    cmd.args([
        "-mode", "longstw", "-calls", "4", "-spin-ms", "120", "-linger", "5",
    ])
    .args(["-long-ns", &long_ns])
    .arg(marker())
    .env("GODEBUG", "asyncpreemptoff=1")
    .env("GOMAXPROCS", "2");
    let mut prog = Proc::spawn(cmd);
    prog.wait_stdout("ready", LONG);
    let pid = prog.pid();
    agent.attached(pid, LONG);
    prog.send("start");
    let out = prog.wait_stdout("{", LONG);
    let truth: Value = serde_json::from_str(&out).unwrap();

    // What the runtime measured: cycles and calls at or over the threshold.
    let start = u(&truth["numgc_start"]);
    let pauses: BTreeMap<u64, u64> = truth["pause_ns"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(c, p)| (c.parse().unwrap(), u(p)))
        .collect();
    let long_cycles: BTreeSet<u64> = pauses
        .iter()
        .filter(|&(&c, &p)| c > start && p >= THRESHOLD_NS)
        .map(|(&c, _)| c)
        .collect();
    let made_long: BTreeSet<u64> = truth["long_cycles"]
        .as_array()
        .unwrap()
        .iter()
        .map(u)
        .collect();
    assert_eq!(made_long.len(), 4, "{truth}");
    assert!(
        made_long.is_subset(&long_cycles),
        "cycles made long {made_long:?}, over the threshold {long_cycles:?}: {pauses:?}"
    );
    let calls = truth["stws"].as_array().unwrap();
    assert_eq!(
        u(&truth["other_stws"]),
        calls.len() as u64,
        "stop-the-worlds the program did not make: {truth}"
    );
    let mut long_calls = Vec::new();
    let mut made_long_calls = 0;
    for c in calls {
        assert_eq!(u(&c["count"]), 1, "{c}");
        let (lo, hi) = (u(&c["lo_ns"]), u(&c["hi_ns"]));
        assert!(hi <= THRESHOLD_NS || lo >= THRESHOLD_NS, "straddles: {c}");
        if c["long"].as_bool().unwrap() {
            assert!(lo >= THRESHOLD_NS, "a call made long was not: {c}");
            made_long_calls += 1;
        }
        if lo >= THRESHOLD_NS {
            long_calls.push((lo, hi));
        }
    }
    // Tried until they came out long (a loaded machine can make an ordinary one long too: the
    // runtime's measure decides, below).
    assert_eq!(made_long_calls, 4, "{truth}");
    let ordinary_cycles = pauses.len() - long_cycles.len();
    let ordinary_calls = calls.len() - long_calls.len();

    // Every snapshot is written by the time the agent has drained the last pause (the
    // program lingers): wait for as many as the runtime says, then read the counters.
    let want = long_cycles.len() + long_calls.len();
    let written = |a: &Agent| {
        a.log
            .iter()
            .filter(|l| l.contains("snapshot written") && l.contains(&format!("pid={pid} ")))
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        agent.wait(LONG, |_| true); // takes the lines logged so far
        if written(&agent) >= want || std::time::Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = agent.get("/metrics");
    let pid_s = pid.to_string();
    let counted = |kind: &str| {
        sum(
            &metrics,
            "goprobe_snapshots_total",
            &[("process_pid", &pid_s), ("goprobe_snapshot_reason", kind)],
        )
        .unwrap_or(0.0)
    };
    // Compared with the files below (a snapshot of a cycle before the start would be both).
    let (counted_gc, counted_stw) = (counted("gc"), counted("stw"));

    // After the detach nothing more can come: the files are the whole story.
    let (status, _, err) = prog.finish(LONG);
    assert!(status.success(), "{err}");
    agent.wait(LONG, |l| l.contains(&format!("fleet: detached pid={pid} ")));
    let files = snapshots(&dir);
    let mut gc = BTreeSet::new();
    let mut stw = Vec::new();
    let mut sizes = Vec::new();
    for (name, (bytes, s)) in &files {
        sizes.push(*bytes);
        assert_eq!(s["schema"], "goprobe.snapshot.v1", "{name}");
        assert_eq!(s["report"]["target"]["pid"], pid, "{name}");
        let t = &s["trigger"];
        assert_eq!(u(&t["threshold_ns"]), THRESHOLD_NS);
        let pause = u(&t["pause_ns"]);
        let report = &s["report"];
        let (w0, w1) = (
            report["window"]["start_unix_ns"].as_i64().unwrap(),
            report["window"]["end_unix_ns"].as_i64().unwrap(),
        );
        let at = t["start_unix_ns"].as_i64().unwrap();
        assert!(w0 <= at && at <= w1, "{name}: {at} not in [{w0}, {w1}]");
        assert!(
            report["goroutines"]["samples"]
                .as_array()
                .is_some_and(|s| !s.is_empty()),
            "{name}"
        );
        assert!(s["cpu_seconds"].as_f64().unwrap() > 0.0, "{name}");
        match t["kind"].as_str().unwrap() {
            "gc" => {
                let cycle = u(&t["cycle"]);
                assert!(name.contains(&format!("-gc-{cycle}-")), "{name}");
                assert_eq!(Some(&pause), pauses.get(&cycle), "{name}: cycle {cycle}");
                // The cycle, and the ordinary runtime.GC() cycle before it, are in the window.
                let cycles: Vec<u64> = report["gc"]["cycles"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| u(&c["cycle"]))
                    .collect();
                assert_eq!(cycles.last(), Some(&cycle), "{name}: {cycles:?}");
                assert!(cycles.contains(&(cycle - 1)), "{name}: {cycles:?}");
                assert!(gc.insert(cycle), "two snapshots of cycle {cycle}");
            }
            "stw" => {
                assert_eq!(t["stw_reason"], "ReadMemStats", "{name}");
                assert!(name.contains("-stw-ReadMemStats-"), "{name}");
                let last = report["gc"]["other_stw"]
                    .as_array()
                    .unwrap()
                    .last()
                    .unwrap();
                assert_eq!(u(&last["duration_ns"]), pause, "{name}");
                stw.push((at, pause));
            }
            other => panic!("{name}: kind {other}"),
        }
    }
    // Snapshots of cycles before the start (while the program set itself up) would have to be
    // over the threshold too; the run's long cycles each have exactly one.
    for c in gc.iter().filter(|&&c| c <= start) {
        assert!(pauses[c] >= THRESHOLD_NS, "cycle {c}: {}", pauses[c]);
    }
    let after_start: BTreeSet<u64> = gc.iter().copied().filter(|&c| c > start).collect();
    assert_eq!(after_start, long_cycles, "runtime pauses: {pauses:?}");
    assert_eq!(counted_gc, gc.len() as f64, "goprobe_snapshots_total{{gc}}");
    assert_eq!(
        counted_stw,
        stw.len() as f64,
        "goprobe_snapshots_total{{stw}}"
    );
    stw.sort_unstable();
    assert_eq!(stw.len(), long_calls.len(), "{stw:?} vs {long_calls:?}");
    for ((_, pause), (lo, hi)) in stw.iter().zip(&long_calls) {
        assert!(
            (*lo..*hi).contains(pause),
            "goprobe {pause} ns, runtime [{lo}, {hi})"
        );
    }
    eprintln!(
        "snapshots: {} gc ({:?}), {} stw; ordinary: {ordinary_cycles} cycles, {ordinary_calls} \
         ReadMemStats; long pauses (ms): cycles {:?}, stw {:?}; longest ordinary cycle {:.3} ms; \
         snapshot sizes (bytes) {sizes:?}",
        gc.len(),
        gc,
        stw.len(),
        long_cycles
            .iter()
            .map(|c| pauses[c] as f64 / 1e6)
            .collect::<Vec<_>>(),
        stw.iter().map(|s| s.1 as f64 / 1e6).collect::<Vec<_>>(),
        pauses
            .iter()
            .filter(|(c, _)| !long_cycles.contains(c))
            .map(|(_, &p)| p)
            .max()
            .unwrap_or(0) as f64
            / 1e6,
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(cfg);
}
