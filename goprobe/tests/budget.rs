//! The per-second cap on a signal's BPF work: with the goroutine-creation cap set tiny
//! (`--budget goroutines=N`), the `signals -mode goroutine-leak` program's burst of `go`
//! statements (a count the program knows) is stack-sampled at most N times per CPU and 2^30 ns
//! window, every creation is still counted, and the report counts the rest as skipped:
//! created = creation-site total + skipped, exactly.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

mod support;

use std::time::Duration;

use support::{creation_sites_total, u};

const CAP: u64 = 20;

#[test]
fn a_tiny_cap_counts_what_it_skips() {
    let cap = format!("goroutines={CAP}");
    let w = support::watch(
        "signals",
        "1.27.3",
        &["-mode", "goroutine-leak"],
        &[],
        &["--goroutine-sites", "--cpu-hz", "0", "--budget", &cap],
        Duration::from_secs(120),
    );
    let (truth, report) = (&w.truth, &w.report);
    let g = &report["goroutines"];
    let created = u(&g["created"]);
    let sites = creation_sites_total(g);
    let budget = report["goprobe"]["budget"].as_array().unwrap();
    let b = budget.iter().find(|b| b["signal"] == "goroutines").unwrap();
    assert_eq!(u(&b["cap_per_cpu_second"]), CAP, "{b}");
    let skipped = u(&b["skipped"]);
    eprintln!(
        "program started {}, goprobe: created {created}, {sites} with a stack, {skipped} skipped",
        truth["started"]
    );
    // Creations are counted whatever the cap (the program's own count, plus the runtime's
    // mark workers as goroutines.rs checks).
    assert!(created >= u(&truth["started"]), "{g:#}");
    assert!(skipped > 0, "a cap of {CAP} skipped nothing: {b}");
    assert_eq!(sites + skipped, created, "{g:#} {b}");
    let secs = (u(&report["window"]["end_unix_ns"]) - u(&report["window"]["start_unix_ns"])) as f64
        / (1u64 << 30) as f64;
    // SAFETY: plain sysconf query.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) } as f64;
    assert!(
        sites as f64 <= CAP as f64 * cpus * (secs.ceil() + 1.0),
        "{sites} stacks in {secs:.1} windows on {cpus} CPUs at a cap of {CAP}"
    );
    // Every other signal's cap skipped nothing: the summary names only this one.
    for b in budget.iter().filter(|b| b["signal"] != "goroutines") {
        assert_eq!(u(&b["skipped"]), 0, "{b}");
    }
}
