//! One window, two views: `goprobe attach --out-dir DIR --format json,folded` with every
//! stack-attributed signal on, and report.json's totals of each signal equal, exactly, the sums
//! of that signal's folded files in DIR — and stack by stack, each report site carries the value
//! of its folded line. Both are written from the same per-stack counters at the end of the
//! window, so any difference is a bug in one of the two views (a unit, a merge, a trim).
//!
//! The workload is gcstress `-mode mixed` (Go 1.27.3): churn goroutines allocating trees (heap
//! cycles, mark assists, CPU), 50 short-lived goroutines and 256 fresh pages faulted every
//! 100 ms; every total is checked to be > 0, or the equalities would prove nothing.

mod support;

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde_json::Value;
use support::{attach, creation_sites_total, names, start_testprog, u};

const GO: &str = "1.27.3";

/// How long the workload runs under goprobe.
const RUN: Duration = Duration::from_secs(4);

/// The CPU sampling frequency (a prime, as the default 97).
const HZ: u64 = 997;

/// Runs gcstress `-mode mixed` for [`RUN`] under `goprobe attach --out-dir DIR --format
/// json,folded --goroutine-sites --cpu-hz 997` (page faults and `--alloc sampled` are on by
/// default) and returns the report DIR/report.json holds.
fn record(dir: &std::path::Path) -> Value {
    let mut prog = start_testprog("gcstress", GO, &["-mode", "mixed"], &[]);
    let out = dir.display().to_string();
    let hz = HZ.to_string();
    let probe = attach(
        prog.pid(),
        &[
            "--out-dir",
            &out,
            "--format",
            "json,folded",
            "--goroutine-sites",
            "--cpu-hz",
            &hz,
        ],
    );
    prog.send("start");
    std::thread::sleep(RUN);
    prog.send("stop");
    let (status, _, err) = prog.finish(Duration::from_secs(60));
    assert!(status.success(), "gcstress failed: {err}");
    let (status, _, gp_err) = probe.finish(Duration::from_secs(60));
    assert!(status.success(), "goprobe failed: {gp_err}");
    assert!(gp_err.contains("goprobe: wrote"), "{gp_err}");
    let json = std::fs::read_to_string(dir.join("report.json")).expect("report.json");
    let report: Value = serde_json::from_str(&json).expect("report.json parses");
    assert_eq!(report["schema"], "goprobe.report.v2");
    report
}

/// The lines of DIR/NAME.folded: stack (root first, `;`-joined) → value; every line must parse
/// and name a stack once.
fn folded(dir: &std::path::Path, name: &str) -> BTreeMap<String, u64> {
    let path = dir.join(format!("{name}.folded"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = BTreeMap::new();
    for line in text.lines() {
        let (stack, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("{name}.folded: no value in {line:?}"));
        let value: u64 = value
            .parse()
            .unwrap_or_else(|e| panic!("{name}.folded: {line:?}: {e}"));
        let before = lines.insert(stack.to_owned(), value);
        assert!(before.is_none(), "{name}.folded: {stack:?} twice");
    }
    lines
}

/// A report stack (names leaf first) as folded.rs renders it: root first, `;`-joined, each
/// name through its `clean` (`;`, CR and LF become `:`, trailing spaces go; Go names have none
/// of these, so this is the names themselves), `[no stack]` when none was captured.
fn folded_key(stack: &Value) -> String {
    let frames: Vec<String> = names(stack)
        .iter()
        .rev()
        .map(|n| n.replace([';', '\n', '\r'], ":").trim_end().to_owned())
        .collect();
    if frames.is_empty() {
        "[no stack]".to_owned()
    } else {
        frames.join(";")
    }
}

/// The report's `sites` as folded lines would carry them: `value` of each site summed by
/// [`folded_key`] (two report stacks can render alike), zero values left out as folded.rs does.
fn report_lines(sites: &Value, value: impl Fn(&Value) -> u64) -> BTreeMap<String, u64> {
    let mut lines: BTreeMap<String, u64> = BTreeMap::new();
    for site in sites.as_array().expect("sites") {
        *lines.entry(folded_key(&site["stack"])).or_default() += value(site);
    }
    lines.retain(|_, v| *v > 0);
    lines
}

/// `report_total` (what report.json says) equals the sum of the folded file `file`, is > 0, and
/// the folded lines are exactly `by_stack` (the report's sites rendered as folded lines).
fn agree(
    dir: &std::path::Path,
    file: &str,
    what: &str,
    report_total: u64,
    by_stack: &BTreeMap<String, u64>,
) {
    let lines = folded(dir, file);
    let folded_total: u64 = lines.values().sum();
    assert!(
        report_total > 0,
        "{what}: 0 in the report: the test proves nothing"
    );
    assert_eq!(
        report_total, folded_total,
        "{what}: report.json says {report_total}, {file}.folded sums to {folded_total}"
    );
    for (stack, want) in by_stack {
        let got = lines.get(stack).copied().unwrap_or(0);
        assert_eq!(
            *want, got,
            "{what}: report.json has {want} for {stack:?}, {file}.folded has {got}"
        );
    }
    let extra: Vec<(&String, &u64)> = lines
        .iter()
        .filter(|(s, _)| !by_stack.contains_key(*s))
        .collect();
    assert!(
        extra.is_empty(),
        "{what}: {file}.folded lines the report has no site for: {extra:?}"
    );
}

#[test]
fn report_and_folded_profiles_of_one_window_agree() {
    let dir = tempdir("window-agrees");
    let report = record(&dir);

    let alloc = &report["alloc"];
    assert_eq!(alloc["unavailable"], Value::Null, "{alloc:#}");
    let bytes = report_lines(&alloc["sites"], |s| u(&s["bytes"]));
    agree(&dir, "alloc", "alloc bytes", u(&alloc["bytes"]), &bytes);
    let objects = report_lines(&alloc["sites"], |s| u(&s["objects"]));
    let total = u(&alloc["objects"]);
    agree(&dir, "alloc-objects", "alloc objects", total, &objects);

    let assist = &report["gc"]["assist"];
    let ns = report_lines(&assist["sites"], |s| u(&s["ns"]));
    agree(&dir, "assist", "assist ns", u(&assist["total_ns"]), &ns);

    let pf = &report["page_faults"];
    let faults = report_lines(&pf["sites"], |s| u(&s["minor"]) + u(&s["major"]));
    let total = u(&pf["minor"]) + u(&pf["major"]);
    agree(&dir, "pagefaults", "page faults", total, &faults);

    // cpu.folded is in nanoseconds: samples × the period, 1e9 / hz in integer division as
    // output/profile.rs computes it.
    let cpu = &report["cpu"];
    assert_eq!(u(&cpu["hz"]), HZ, "{cpu:#}");
    let period = 1_000_000_000 / HZ;
    let cpu_ns = report_lines(&cpu["sites"], |s| u(&s["samples"]) * period);
    let total = u(&cpu["samples"]) * period;
    agree(&dir, "cpu", "cpu ns", total, &cpu_ns);

    let g = &report["goroutines"];
    let sites_total = creation_sites_total(g);
    let created = report_lines(&g["creation_sites"], |s| u(&s["count"]));
    agree(&dir, "goroutines", "goroutines", sites_total, &created);
    assert!(
        sites_total <= u(&g["created"]),
        "goroutines: creation sites sum to {sites_total}, more than created {}",
        g["created"]
    );
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir(what: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("goprobe-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
