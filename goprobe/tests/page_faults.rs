//! Page faults: exact totals and sampled stacks. The `signals -mode faults` program touches a
//! known number of fresh pages in named functions — `main.touchCopy` through `copy()` (the
//! fault is taken inside the frameless `runtime.memmove`, whose frame-pointer walk skips its
//! caller) and `main.touchStore` directly — and reports its own `getrusage` fault counts over
//! that stretch; `main.readFresh` has the kernel take faults for it (read(2) from /dev/zero into
//! fresh pages). With `-hold` it then waits, idle, while goprobe is stopped.
//!
//! goprobe's totals must be the kernel's count over goprobe's window, read here from
//! /proc/<pid>/stat: no less than from just after attach to just before goprobe is stopped, no
//! more than from before attach to after goprobe ended (the program idles at both ends, so the
//! two are equal or a fault or two apart); and cover getrusage's; the sampled stacks must name the three functions, with estimates as close
//! to the pages each touched as the samples' period allows. For every tested release, stripped
//! too.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use support::{names, u};

use std::time::Duration;

use serde_json::Value;

const RELEASES: &[&str] = &["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"];

/// Faults per stack sample asked for: about 1900 samples of the program's 30,000 faults.
const PERIOD: &str = "16";

/// minflt and majflt of `pid` now (/proc/<pid>/stat fields 10 and 12, after the `(comm)`).
fn proc_faults(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let f: Vec<u64> = stat[stat.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .skip(1)
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    // After ") ": state (3) is skipped; field n is f[n - 4].
    (f[10 - 4], f[12 - 4])
}

/// The kernel's counts over two windows: one inside goprobe's, one around it.
struct Kernel {
    inner: (u64, u64),
    outer: (u64, u64),
}

impl Kernel {
    /// Asserts `pf`'s totals lie between the two windows' counts.
    fn check(&self, pf: &Value, what: &str) {
        let got = (u(&pf["minor"]), u(&pf["major"]));
        eprintln!(
            "{what}: goprobe {got:?}, kernel inside {:?}, around {:?}",
            self.inner, self.outer
        );
        assert!(
            self.inner.0 <= got.0 && got.0 <= self.outer.0,
            "{what}: {got:?} minor/major, kernel {:?}..{:?}",
            self.inner,
            self.outer
        );
        assert!(
            self.inner.1 <= got.1 && got.1 <= self.outer.1,
            "{what}: {pf}"
        );
    }
}

/// The program's result and goprobe's report, goprobe stopped (SIGINT) while the program holds.
fn run(program: &str, go: &str, goprobe_args: &[&str]) -> (Value, Value, Kernel) {
    let mut prog = support::start_testprog(program, go, &["-mode", "faults", "-hold"], &[]);
    let before = proc_faults(prog.pid());
    let mut args = vec!["--json"];
    args.extend_from_slice(goprobe_args);
    let probe = support::attach(prog.pid(), &args);
    let attached = proc_faults(prog.pid());
    prog.send("start");
    let line = prog.wait_stdout("{", Duration::from_secs(120));
    let truth: Value = serde_json::from_str(&line).unwrap();
    let stopping = proc_faults(prog.pid());
    // SAFETY: plain syscall.
    assert_eq!(
        unsafe { libc::kill(probe.pid() as libc::pid_t, libc::SIGINT) },
        0
    );
    let (status, out, stderr) = probe.finish(Duration::from_secs(30));
    assert!(status.success(), "goprobe failed: {stderr}");
    let after = proc_faults(prog.pid());
    prog.send("exit");
    let (status, _, target_stderr) = prog.finish(Duration::from_secs(30));
    assert!(status.success(), "{program} {go}: {target_stderr}");
    let report: Value = serde_json::from_str(&out).expect("goprobe --json output");
    assert!(
        report["target"]["go_version"]
            .as_str()
            .is_some_and(|v| support::is_release(v, go)),
        "{report}"
    );
    let kernel = Kernel {
        inner: (stopping.0 - attached.0, stopping.1 - attached.1),
        outer: (after.0 - before.0, after.1 - before.1),
    };
    (truth, report, kernel)
}

/// The estimate of the sites `pick` selects, and whether it is within 5% + three sample periods
/// of `pages` (a burst of faults is sampled every period: its estimate is off by at most about
/// one period at each end).
fn estimate(pf: &Value, pick: impl Fn(&[&str]) -> bool, pages: u64) -> (u64, bool) {
    let est: u64 = pf["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| pick(&names(&s["stack"])))
        .map(|s| u(&s["minor"]))
        .sum();
    let period = pf["mean_period"].as_f64().unwrap();
    let slack = pages as f64 * 0.05 + 3.0 * period;
    (est, (est as f64 - pages as f64).abs() <= slack)
}

fn check(go: &str, program: &str) {
    // The burst of faults would exceed the default cap of 1000 samples per CPU-second.
    let args = [
        "--cpu-hz",
        "0",
        "--page-fault-period",
        PERIOD,
        "--budget",
        "page_faults=0",
    ];
    let (truth, report, kernel) = run(program, go, &args);
    assert!(
        report["cpu"].is_null(),
        "--cpu-hz 0 still sampled: {report}"
    );
    let pf = &report["page_faults"];
    let (minor, major) = (u(&pf["minor"]), u(&pf["major"]));
    let (minflt, majflt) = (u(&truth["minflt"]), u(&truth["majflt"]));
    let samples = u(&pf["samples"]);
    eprintln!(
        "Go {go} {program}: minor {minor} major {major}; getrusage over the faulting \
         {minflt}/{majflt}; {samples} samples, mean period {}",
        pf["mean_period"]
    );
    assert_eq!(pf["exact_at_end"], true, "{pf}");
    // Exact: the kernel's own count, over goprobe's window.
    kernel.check(pf, &format!("Go {go} {program}"));
    // The window holds getrusage's stretch and little more (the program's JSON printing).
    assert!(
        minor >= minflt && minor - minflt <= 200 && major >= majflt,
        "Go {go} {program}: {minor}/{major} faults in the window, getrusage {minflt}/{majflt}"
    );
    // The sites add up to the totals; the samples were taken at the rate asked for.
    let sites = pf["sites"].as_array().unwrap();
    let site_sum: u64 = sites.iter().map(|s| u(&s["minor"])).sum();
    assert_eq!(site_sum, minor, "Go {go} {program}: sites vs total");
    let site_samples: u64 = sites.iter().map(|s| u(&s["samples"])).sum();
    assert_eq!(site_samples, samples, "{pf}");
    assert_eq!(pf["sample_period"], 16);
    assert!(
        samples >= 100 && samples < minor,
        "Go {go} {program}: {samples} samples of {minor} faults"
    );
    let (lo, hi) = (minor as f64 * 0.8, minor as f64 * 1.2);
    let sampled = u(&pf["sampled_minor"]) as f64;
    assert!(
        (lo..=hi).contains(&sampled),
        "Go {go} {program}: samples stand for {sampled} faults of {minor}"
    );

    let top_stack = names(&sites[0]["stack"]);
    let copy_pages = u(&truth["copy_pages"]);
    eprintln!(
        "  top site {} faults ({copy_pages} pages): {top_stack:?}",
        sites[0]["minor"]
    );
    // NB: the faults are taken in runtime.memmove, a frameless leaf: without goprobe's fix
    // the stack would go from memmove straight to main.runFaults.
    assert!(
        top_stack.contains(&"main.touchCopy"),
        "Go {go} {program}: top site does not name main.touchCopy: {top_stack:?}"
    );
    let (copy, ok) = estimate(pf, |s| s.contains(&"main.touchCopy"), copy_pages);
    assert!(
        ok,
        "Go {go} {program}: {copy} estimated in touchCopy, {copy_pages} pages"
    );
    let store_pages = u(&truth["store_pages"]);
    let (store, ok) = estimate(pf, |s| s.first() == Some(&"main.touchStore"), store_pages);
    assert!(
        ok,
        "Go {go} {program}: {store} estimated in touchStore, {store_pages} pages"
    );
    // Faults the kernel takes in copy_to_user for read(2): the user stack that made the call.
    let read_pages = u(&truth["read_pages"]);
    let (read, ok) = estimate(pf, |s| s.contains(&"main.readFresh"), read_pages);
    assert!(
        ok,
        "Go {go} {program}: {read} estimated under main.readFresh, {read_pages} pages"
    );
}

#[test]
fn page_fault_totals_are_exact_and_samples_name_the_toucher() {
    for go in RELEASES {
        check(go, "signals");
    }
    // Stripped (no .symtab, no DWARF): frames and frameless ranges from the function table.
    check("1.25.5", "signals-sw");
}

/// At the default period the samples are fewer but the totals are still exact, and the
/// per-second cap on page-fault samples, set tiny, turns the rest away and counts them.
#[test]
fn default_period_and_a_tiny_cap_keep_totals_exact() {
    let (_, report, kernel) = run("signals", "1.27.3", &["--cpu-hz", "0"]);
    let pf = &report["page_faults"];
    kernel.check(pf, "default period");
    assert_eq!(pf["sample_period"], 32);
    let samples = u(&pf["samples"]);
    assert!(samples > 0 && samples < u(&pf["minor"]), "{pf}");
    let (_, report, kernel) = run(
        "signals",
        "1.27.3",
        &[
            "--cpu-hz",
            "0",
            "--page-fault-period",
            "1",
            "--budget",
            "page_faults=5",
        ],
    );
    let pf = &report["page_faults"];
    kernel.check(pf, "cap 5");
    let budget = report["goprobe"]["budget"].as_array().unwrap();
    let b = budget
        .iter()
        .find(|b| b["signal"] == "page_faults")
        .unwrap();
    assert_eq!(b["cap_per_cpu_second"], 5);
    let samples = u(&pf["samples"]);
    let skipped = u(&b["skipped"]);
    eprintln!("cap 5: {samples} samples taken, {skipped} skipped: {pf:#}");
    assert!(skipped > 0, "nothing skipped at a cap of 5: {b}");
    // At most 5 per CPU and 2^30 ns window; the burst spans few windows.
    let secs = (u(&report["window"]["end_unix_ns"]) - u(&report["window"]["start_unix_ns"])) as f64
        / (1u64 << 30) as f64;
    // SAFETY: plain sysconf query.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as f64;
    assert!(
        samples as f64 <= 5.0 * cpus * (secs.ceil() + 1.0),
        "{samples} samples in {secs:.1} windows on {cpus} CPUs at a cap of 5"
    );
}
