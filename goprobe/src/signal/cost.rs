//! What observing costs and loses: events and stacks the kernel side had to drop, and each BPF
//! program's run count and run time inside the target (`goprobe attach --bpf-stats`).

use serde::{Deserialize, Serialize};

use crate::probe::Probes;

/// One loaded BPF program's counters since it was loaded (only while BPF run-time statistics
/// were on); the report's `goprobe.programs` entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramStats {
    /// The program's name in the BPF object (`gc_start_entry`, `cpu_sample`, …).
    pub name: String,
    /// Times the program ran (`run_cnt`).
    pub hits: u64,
    /// Nanoseconds it ran in total (`run_time_ns`).
    pub run_ns: u64,
}

/// What the kernel side dropped since the probes were loaded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Losses {
    /// STW events dropped (ring buffer or pending-STW map full).
    pub events: u64,
    /// Per-stack counts dropped because the `SITES` map was full.
    pub sites_full: u64,
    /// Stacks that could not be captured (no user stack to walk, or the stack map full).
    pub stacks: u64,
    /// Program runs each signal's per-second budget turned away, by signal
    /// (`probe::budget::SIGNALS` order and names).
    pub skipped: Skipped,
    /// Stacks deleted from the stack map as unreferenced (`goprobe agent`; not a loss).
    pub stacks_evicted: u64,
}

/// Program runs turned away by the per-second budget of each signal (probe/budget.rs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped(pub [u64; goprobe_common::budget_signal::LEN as usize]);

impl Skipped {
    /// (signal name, runs skipped), every signal.
    pub fn by_signal(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        crate::probe::budget::SIGNALS
            .iter()
            .map(|&(name, i)| (name, self.0[i as usize]))
    }

    /// Runs skipped over all signals.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl Losses {
    /// The kernel side's loss counters.
    pub fn read(probes: &Probes) -> Self {
        Self {
            events: probes.lost_events(),
            sites_full: probes.sites_full(),
            stacks: probes.failed_stacks(),
            skipped: Skipped(probes.budget_skipped()),
            stacks_evicted: probes.stacks_evicted(),
        }
    }

    /// Events lost as report.json and the metrics count them: kernel drops, pauses dropped as
    /// `unreadable` by the GC tracker, and full-`SITES` drops (docs/report-schema.md).
    pub fn lost_events(&self, unreadable: u64) -> u64 {
        self.events + unreadable + self.sites_full
    }
}

/// Kernel memory of every BPF map goprobe holds, bytes (their own `memlock` accounting).
pub fn map_bytes() -> u64 {
    crate::probe::stats::map_memory_bytes()
}

/// goprobe's resident memory now, bytes (`/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    // SAFETY: plain sysconf query.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    pages * page
}

/// Every loaded program's counters, by name.
pub fn programs(probes: &Probes) -> Vec<ProgramStats> {
    probes
        .program_stats()
        .map(|(name, hits, run_ns)| ProgramStats {
            name: name.to_owned(),
            hits,
            run_ns,
        })
        .collect()
}
