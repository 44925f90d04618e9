//! `goprobe doctor` against the situations it diagnoses, created for real: a CPU quota made in a
//! cgroup, GOGC in the environment, builds with `-gcflags=all=-N -l` and `-race`, a goroutine
//! leak; and a healthy program that must get no finding. The numbers doctor gives as evidence are
//! checked against what the runtime (tests/testprogs/doctor's `stats` lines) and the kernel
//! (the cgroup's cpu.stat) say over the same window.

mod support;

use std::{process::Command, time::Duration};

use serde_json::Value;
use support::{Proc, cgroup::CpuCgroup, goprobe, testprog};

/// The newest Go release (cgroup-aware GOMAXPROCS) and one before Go 1.25 (not).
const NEWEST: &str = "1.27.3";
const BEFORE_1_25: &str = "1.24.11";
const SECONDS: &str = "3";

/// Runs `goprobe doctor <pid> --duration 3 --json`; the report.
fn doctor(pid: u32) -> Value {
    let out = goprobe()
        .args(["doctor", &pid.to_string(), "--duration", SECONDS, "--json"])
        .output()
        .expect("run goprobe doctor");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "goprobe doctor failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor JSON: {e}; stderr: {stderr}"))
}

fn ids(report: &Value) -> Vec<&str> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["id"].as_str().expect("id"))
        .collect()
}

fn finding<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} finding: {report:#}"))
}

/// One `stats` line of the test program: what its runtime said at `t`.
#[derive(Clone, Copy, Debug)]
struct Stats {
    t: i64,
    gc: u64,
    goroutines: u64,
}

fn stats(lines: &[String]) -> Vec<Stats> {
    lines
        .iter()
        .filter_map(|l| {
            let mut f = l.strip_prefix("stats ")?.split(' ').map(|kv| {
                let (_, v) = kv.split_once('=').expect("key=value");
                v.parse::<i64>().expect("number")
            });
            Some(Stats {
                t: f.next()?,
                gc: f.next()? as u64,
                goroutines: f.next()? as u64,
            })
        })
        .collect()
}

/// The program's readings just before and just after doctor's window.
fn around_window(prog: &Proc, report: &Value) -> (Stats, Stats) {
    let b = &report["behaviour"];
    let (w0, w1) = (
        b["window_start_unix_ns"].as_i64().expect("start"),
        b["window_end_unix_ns"].as_i64().expect("end"),
    );
    // The program prints every 200 ms: wait for one after the window.
    std::thread::sleep(Duration::from_millis(500));
    let all = stats(&prog.stdout_so_far());
    let before = all.iter().rev().find(|s| s.t <= w0).copied();
    let after = all.iter().find(|s| s.t >= w1).copied();
    before
        .zip(after)
        .unwrap_or_else(|| panic!("no stats lines around [{w0}, {w1}]: {all:?}"))
}

/// The "ready gomaxprocs=N" line's N.
fn ready_gomaxprocs(line: &str) -> u64 {
    line.rsplit_once('=')
        .and_then(|(_, n)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("not a ready line: {line}"))
}

fn start(program: &str, go: &str, mode: &str, env: &[(&str, &str)]) -> (Proc, u64) {
    let mut cmd = Command::new(testprog(program, go));
    cmd.args(["-mode", mode]).envs(env.iter().copied());
    let p = Proc::spawn(cmd);
    let n = ready_gomaxprocs(&p.wait_stdout("ready", Duration::from_secs(30)));
    (p, n)
}

#[test]
fn healthy_program_has_no_findings() {
    let (prog, gomaxprocs) = start("doctor", NEWEST, "healthy", &[]);
    let report = doctor(prog.pid());
    assert_eq!(ids(&report), Vec::<&str>::new(), "{report:#}");
    let s = &report["settings"];
    assert_eq!(s["gomaxprocs"], gomaxprocs);
    assert_eq!(s["go_version"], format!("go{NEWEST}"));
    assert_eq!(s["build"]["race"], false);
    assert_eq!(s["gogc"], 100, "the default, read from the runtime");
    assert_eq!(s["gomemlimit_bytes"], Value::Null, "no limit");
    // The window's GC cycles and goroutines are the runtime's.
    let (before, after) = around_window(&prog, &report);
    let b = &report["behaviour"];
    let cycles = b["gc_cycles"].as_u64().expect("gc_cycles");
    assert!(
        cycles <= after.gc - before.gc,
        "{cycles} cycles, runtime {before:?} → {after:?}"
    );
    let last = b["goroutines"]["last"].as_u64().expect("goroutines");
    assert!(last.abs_diff(after.goroutines) <= 2, "{last} vs {after:?}");
}

#[test]
fn low_gogc_is_gc_too_frequent() {
    let env = [("GOGC", "10"), ("GOMEMLIMIT", "1GiB")];
    let (prog, _) = start("doctor", NEWEST, "gogc", &env);
    let report = doctor(prog.pid());
    let (before, after) = around_window(&prog, &report);
    assert_eq!(ids(&report), ["gc_too_frequent"], "{report:#}");
    let e = &finding(&report, "gc_too_frequent")["evidence"];
    assert_eq!(e["gogc"], 10, "GOGC read from the runtime");
    assert_eq!(report["settings"]["gomemlimit_bytes"], 1u64 << 30);
    // Cycles in the window: at most what the runtime completed between the readings around it,
    // at least what it completed between the readings inside it (200 ms apart).
    let cycles = e["gc_cycles"].as_u64().expect("gc_cycles");
    let runtime = after.gc - before.gc;
    let per_s = e["gc_cycles_per_s"].as_f64().expect("rate");
    let runtime_per_s = runtime as f64 * 1e9 / (after.t - before.t) as f64;
    println!("doctor {cycles} cycles ({per_s:.1}/s), runtime {runtime} ({runtime_per_s:.1}/s)");
    assert!(cycles <= runtime, "{cycles} > runtime's {runtime}");
    assert!(
        (per_s - runtime_per_s).abs() <= 0.15 * runtime_per_s,
        "{per_s:.1}/s vs runtime {runtime_per_s:.1}/s"
    );
    assert!(e["heap_live_bytes"].as_u64().expect("live") >= 8 << 20);
}

#[test]
fn no_optimisation_build_is_optimizations_disabled() {
    let (prog, _) = start("doctor-nl", NEWEST, "healthy", &[]);
    let report = doctor(prog.pid());
    assert_eq!(ids(&report), ["optimizations_disabled"], "{report:#}");
    let f = finding(&report, "optimizations_disabled");
    assert_eq!(f["severity"], "high");
    assert_eq!(f["evidence"]["gcflags"], "all=-N -l");
    assert_eq!(f["evidence"]["no_optimization"], true);
    assert_eq!(f["evidence"]["no_inlining"], true);
}

#[test]
fn race_build_is_race_build_in_production() {
    let (prog, _) = start("doctor-race", NEWEST, "healthy", &[]);
    let report = doctor(prog.pid());
    assert_eq!(ids(&report), ["race_build_in_production"], "{report:#}");
    assert_eq!(report["settings"]["build"]["race"], true);
    assert_eq!(report["settings"]["build"]["cgo"], true);
}

#[test]
fn goroutine_leak_names_the_creating_function() {
    let (prog, _) = start("doctor", NEWEST, "leak", &[]);
    let report = doctor(prog.pid());
    let (before, after) = around_window(&prog, &report);
    assert_eq!(ids(&report), ["goroutine_growth"], "{report:#}");
    let e = &finding(&report, "goroutine_growth")["evidence"];
    assert_eq!(e["creator"], "main.spawnLeakyWorkers", "{e:#}");
    // 50 goroutines every 100 ms; the runtime's count grew at the same rate.
    let per_s = e["growth_per_s"].as_f64().expect("rate");
    let runtime_per_s =
        (after.goroutines - before.goroutines) as f64 * 1e9 / (after.t - before.t) as f64;
    println!("doctor {per_s:.0}/s, runtime {runtime_per_s:.0}/s");
    assert!(
        (per_s - runtime_per_s).abs() <= 0.15 * runtime_per_s,
        "{per_s:.0}/s vs runtime {runtime_per_s:.0}/s"
    );
    let last = e["goroutines_last"].as_u64().expect("last");
    assert!(
        (before.goroutines..=after.goroutines).contains(&last),
        "{last} outside the runtime's {before:?} → {after:?}"
    );
}

/// Go `go` with `GOMAXPROCS` (or none) in a fresh 0.5-CPU cgroup, busy on every P: the
/// report, the program's GOMAXPROCS and the kernel's (periods, throttled) over doctor's run.
fn in_half_cpu_cgroup(go: &str, gomaxprocs: Option<&str>) -> (Value, u64, (u64, u64)) {
    let name = format!("goprobe-doctor-{go}-{}", gomaxprocs.unwrap_or("unset"));
    let cgroup = CpuCgroup::new(&name, 0.5);
    let mut cmd = cgroup.command(&testprog("doctor", go));
    cmd.args(["-mode", "cpu"]).env_remove("GOMAXPROCS");
    if let Some(n) = gomaxprocs {
        cmd.env("GOMAXPROCS", n);
    }
    let prog = Proc::spawn(cmd);
    let n = ready_gomaxprocs(&prog.wait_stdout("ready", Duration::from_secs(30)));
    let (p0, t0) = cgroup.throttling();
    let report = doctor(prog.pid());
    let (p1, t1) = cgroup.throttling();
    drop(prog); // killed before the cgroup is removed
    (report, n, (p1 - p0, t1 - t0))
}

#[test]
fn gomaxprocs_over_the_cpu_quota_before_go_1_25() {
    let (report, gomaxprocs, (periods, throttled)) = in_half_cpu_cgroup(BEFORE_1_25, Some("8"));
    assert_eq!(gomaxprocs, 8);
    let f = finding(&report, "gomaxprocs_exceeds_cpu_quota");
    let e = &f["evidence"];
    println!("{e:#}; kernel: {throttled} of {periods} periods throttled");
    assert_eq!(e["gomaxprocs"], 8);
    assert_eq!(e["cpu_quota"], 0.5);
    assert_eq!(f["severity"], "high");
    // The throttling doctor saw is the kernel's, inside the run's.
    let (dp, dt) = (
        e["periods"].as_u64().expect("periods"),
        e["throttled_periods"].as_u64().expect("throttled"),
    );
    assert!(
        dt > 0 && dt <= throttled,
        "{dt} throttled, kernel {throttled}"
    );
    assert!(dp <= periods, "{dp} periods, kernel {periods}");
    // Always runnable: one 100 ms period after another through the window.
    let window_s = report["behaviour"]["window_s"].as_f64().expect("window");
    assert!(
        (dp as f64 - window_s * 10.0).abs() <= 2.0,
        "{dp} periods in {window_s:.2} s"
    );
    // GC ran, and its stop-the-world pauses fell into throttled periods.
    let pauses = e["pauses"].as_u64().expect("pauses");
    assert!(
        pauses > 0 && e["pauses_throttled"].as_u64() > Some(0),
        "{e:#}"
    );
    let fix = f["fix"].as_str().expect("fix");
    assert!(
        fix.contains("GOMAXPROCS=1") && fix.contains("1.25"),
        "{fix}"
    );
}

#[test]
fn gomaxprocs_within_the_cpu_quota() {
    let (report, gomaxprocs, _) = in_half_cpu_cgroup(BEFORE_1_25, Some("1"));
    assert_eq!(gomaxprocs, 1);
    assert!(
        !ids(&report).contains(&"gomaxprocs_exceeds_cpu_quota"),
        "{report:#}"
    );
    assert_eq!(report["settings"]["cgroup"]["cpu_quota"], 0.5);
}

/// NB: Go 1.25+ sets GOMAXPROCS to max(2, ceil(quota)) (src/runtime/cgroup_linux.go); on a
/// 2-CPU host that equals the CPU count, so this shows no false positive, not the adaptation.
#[test]
fn gomaxprocs_follows_the_quota_from_go_1_25() {
    let (report, gomaxprocs, _) = in_half_cpu_cgroup(NEWEST, None);
    assert_eq!(gomaxprocs, 2, "Go 1.25+ picks max(2, ceil(0.5 CPU))");
    assert!(
        !ids(&report).contains(&"gomaxprocs_exceeds_cpu_quota"),
        "{report:#}"
    );
    assert_eq!(report["settings"]["gomaxprocs"], 2);
}

/// The quota on the parent cgroup, none on the program's own (`cpu:/…-gpanc/child` under a
/// 0.5-CPU `cpu:/…-gpanc`): Go 1.25+ does not follow an ancestor's quota (golang/go#81180), and
/// doctor judges the GOMAXPROCS in effect against the tightest quota on the path.
#[test]
fn gomaxprocs_over_an_ancestors_cpu_quota() {
    let name = "goprobe-doctor-gpanc";
    let parent = CpuCgroup::new(name, 0.5);
    let child = parent.child("child");
    let mut cmd = child.command(&testprog("doctor", NEWEST));
    cmd.args(["-mode", "cpu"]).env_remove("GOMAXPROCS");
    let prog = Proc::spawn(cmd);
    let gomaxprocs = ready_gomaxprocs(&prog.wait_stdout("ready", Duration::from_secs(30)));
    let report = doctor(prog.pid());
    drop(prog); // killed before the cgroups are removed
    assert!(
        gomaxprocs >= 2,
        "a 1-CPU host cannot exceed 0.5 CPU rounded up"
    );
    let cg = &report["settings"]["cgroup"];
    assert_eq!(cg["cpu_quota"], 0.5, "{cg:#}");
    assert_eq!(cg["cpu_quota_cgroup"], format!("/{name}"), "{cg:#}");
    assert_eq!(cg["cpu_quota_inherited"], true, "{cg:#}");
    let f = finding(&report, "gomaxprocs_exceeds_cpu_quota");
    assert_eq!(f["evidence"]["gomaxprocs"], gomaxprocs);
    assert_eq!(f["evidence"]["cpu_quota"], 0.5);
    let fix = f["fix"].as_str().expect("fix");
    assert!(
        fix.starts_with("set GOMAXPROCS=1") && fix.contains(name),
        "{fix}"
    );
    drop(child);
}
