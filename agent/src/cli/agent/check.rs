//! `goprobe agent --check`: what the kernel and this process' capabilities allow, then a real
//! load of the BPF programs and the lifecycle tracepoints.

use std::path::Path;

use anyhow::{Result, bail};
use goprobe::{
    privileges,
    probe::{Probes, Scope},
};

/// Prints one line per requirement; fails when one the agent cannot run without is missing.
pub(super) fn run() -> Result<()> {
    let mut failed = Vec::new();
    let mut line = |ok: bool, required: bool, what: &str, detail: String| {
        let mark = match (ok, required) {
            (true, _) => "ok     ",
            (false, true) => "MISSING",
            (false, false) => "absent ",
        };
        println!("{mark} {what:<34} {detail}");
        if !ok && required {
            failed.push(what.to_owned());
        }
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    line(true, false, "kernel", kernel);
    let exists = |p: &str| Path::new(p).exists();
    line(
        exists("/sys/kernel/btf/vmlinux"),
        false,
        "BTF (/sys/kernel/btf/vmlinux)",
        "not needed by goprobe's programs".into(),
    );
    line(
        exists("/sys/bus/event_source/devices/uprobe"),
        true,
        "uprobe PMU",
        "/sys/bus/event_source/devices/uprobe (CONFIG_UPROBE_EVENTS)".into(),
    );
    let tracefs = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .find(|d| exists(&format!("{d}/events/sched/sched_process_exec")));
    line(
        tracefs.is_some(),
        true,
        "sched_process_exec/exit tracepoints",
        tracefs.map_or("tracefs not mounted or no sched events".into(), |d| {
            format!("{d}/events/sched")
        }),
    );
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    line(true, false, "perf_event_paranoid", paranoid);
    let caps = privileges::effective();
    for (bit, name, why) in privileges::NEEDED {
        let has = caps & (1 << bit) != 0;
        line(has, false, name, why.to_string());
    }
    match privileges::check() {
        Ok(()) => line(true, true, "capabilities", "enough to run".into()),
        Err(e) => line(false, true, "capabilities", e.to_string()),
    }
    match Probes::load_with(Scope::Shared).and_then(|mut p| p.watch_lifecycle().map(|_| ())) {
        Ok(()) => line(
            true,
            true,
            "BPF programs",
            "loaded, tracepoints attached".into(),
        ),
        Err(e) => line(false, true, "BPF programs", format!("{e}")),
    }
    if failed.is_empty() {
        println!("\ngoprobe agent can run here.");
        Ok(())
    } else {
        bail!(
            "goprobe agent cannot run here: missing {}",
            failed.join(", ")
        )
    }
}
