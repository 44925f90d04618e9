//! `goprobe agent --check`: what the kernel and this process' capabilities allow, then a real
//! load of the BPF programs and the lifecycle tracepoints.

use std::path::Path;

use crate::{
    privileges,
    probe::{Probes, Scope},
    text,
};

/// One requirement and whether this host meets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    /// The agent cannot run without it.
    pub required: bool,
    pub detail: String,
}

/// Whether release string `kernel` (`6.18.0-…`) is at least `major.minor`.
fn kernel_at_least(kernel: &str, major: u32, minor: u32) -> bool {
    let mut it = kernel
        .split(['.', '-'])
        .filter_map(|p| p.parse::<u32>().ok());
    (it.next().unwrap_or(0), it.next().unwrap_or(0)) >= (major, minor)
}

/// Every requirement, in the order `goprobe agent --check` prints them; loads the BPF programs
/// and attaches the tracepoints and one uprobe (to goprobe itself) for real.
pub fn run() -> Vec<Check> {
    let mut out = Vec::new();
    let mut line = |ok: bool, required: bool, what: &str, detail: String| {
        out.push(Check {
            what: what.to_owned(),
            ok,
            required,
            detail,
        });
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    line(true, false, "kernel", kernel.clone());
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
    line(
        kernel_at_least(&kernel, 4, 17),
        true,
        "raw tracepoints (sched_process_*)",
        "Linux 4.17+, attached by name (no tracefs needed)".into(),
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
    let loaded = match Probes::load_with(Scope::Shared) {
        Ok(mut p) => match p.watch_lifecycle() {
            Ok(_) => p.try_uprobe(),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match loaded {
        Ok(()) => line(
            true,
            true,
            "BPF programs",
            "loaded; tracepoints and a uprobe attached".into(),
        ),
        Err(e) => line(false, true, "BPF programs", text::error::chain(&e)),
    }
    out
}
