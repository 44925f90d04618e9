//! Page faults by stack: the `signals -mode faults` program touches a known number of fresh
//! pages in named functions — `main.touchCopy` through `copy()` (the fault is taken inside
//! the frameless `runtime.memmove`, whose frame-pointer walk skips its caller) and
//! `main.touchStore` directly — and reports the process's own `getrusage` fault counts over the
//! window; `main.readFresh` has the kernel take faults for it (read(2) from /dev/zero into fresh
//! pages). goprobe must count the same faults and name the three functions, for every tested
//! release, stripped too.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use support::names;

use std::time::Duration;

use serde_json::Value;

const RELEASES: &[&str] = &["1.19", "1.21.13", "1.23.9", "1.25.5", "1.27.3"];

/// Whether `got` is within `pct` percent of `want`.
fn close(got: u64, want: u64, pct: f64) -> bool {
    (got as f64 - want as f64).abs() <= want as f64 * pct / 100.0
}

fn check(go: &str, program: &str) {
    let w = support::watch(
        program,
        go,
        &["-mode", "faults"],
        &[],
        &["--cpu-hz", "0"],
        Duration::from_secs(120),
    );
    let (truth, report) = (&w.truth, &w.report);
    assert!(
        report["cpu"].is_null(),
        "--cpu-hz 0 still sampled: {report}"
    );
    let pf = &report["page_faults"];
    let minor = pf["minor"].as_u64().unwrap();
    let major = pf["major"].as_u64().unwrap();
    let minflt = truth["minflt"].as_u64().unwrap();
    let majflt = truth["majflt"].as_u64().unwrap();
    eprintln!("Go {go} {program}: minor {minor} (getrusage {minflt}), major {major} ({majflt})");
    assert!(
        close(minor, minflt, 5.0),
        "Go {go} {program}: {minor} minor faults, getrusage says {minflt}"
    );
    assert!(
        major.abs_diff(majflt) <= 5,
        "Go {go} {program}: {major} major faults, getrusage says {majflt}"
    );

    let sites = pf["sites"].as_array().unwrap();
    let top = &sites[0];
    let top_stack = names(&top["stack"]);
    let copy_pages = truth["copy_pages"].as_u64().unwrap();
    eprintln!(
        "  top site {} faults ({copy_pages} pages): {top_stack:?}",
        top["minor"]
    );
    // NB: the faults are taken in runtime.memmove, a frameless leaf: without goprobe's fix
    // the stack would go from memmove straight to main.runFaults.
    assert!(
        top_stack.contains(&"main.touchCopy"),
        "Go {go} {program}: top site does not name main.touchCopy: {top_stack:?}"
    );
    assert!(
        close(top["minor"].as_u64().unwrap(), copy_pages, 5.0),
        "Go {go} {program}: top site {}, {copy_pages} pages touched",
        top["minor"]
    );
    let store_pages = truth["store_pages"].as_u64().unwrap();
    let store: u64 = sites
        .iter()
        .filter(|s| names(&s["stack"]).first() == Some(&"main.touchStore"))
        .map(|s| s["minor"].as_u64().unwrap())
        .sum();
    assert!(
        close(store, store_pages, 5.0),
        "Go {go} {program}: {store} faults in main.touchStore, {store_pages} pages touched"
    );
    // Faults the kernel takes in copy_to_user for read(2): the user stack that made the call.
    let read_pages = truth["read_pages"].as_u64().unwrap();
    let read: Vec<&Value> = sites
        .iter()
        .filter(|s| names(&s["stack"]).contains(&"main.readFresh"))
        .collect();
    let read_faults: u64 = read.iter().map(|s| s["minor"].as_u64().unwrap()).sum();
    assert!(
        close(read_faults, read_pages, 5.0),
        "Go {go} {program}: {read_faults} faults under main.readFresh, {read_pages} pages read \
         into: {read:?}"
    );
    eprintln!(
        "  read(2) site: {:?}",
        read.first().map(|s| names(&s["stack"]))
    );
}

#[test]
fn page_faults_match_getrusage_and_name_the_toucher() {
    for go in RELEASES {
        check(go, "signals");
    }
    // Stripped (no .symtab, no DWARF): frames and frameless ranges from the function table.
    check("1.25.5", "signals-sw");
}
