//! Mark assist time the kernel side aggregated (ebpf/goprobe-ebpf/src/stacks.rs): per allocating
//! stack and per GC cycle.

use std::collections::BTreeMap;

use super::stacks::{Site, StackNamer};
use crate::probe::Probes;

/// Mark assist time of one process since attach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assists {
    /// Nanoseconds per stack that entered `runtime.gcAssistAlloc`.
    pub by_stack: Vec<Site<u64>>,
    /// Nanoseconds per GC cycle (`work.cycles` during the assist).
    pub by_cycle: BTreeMap<u32, u64>,
}

impl Assists {
    /// The assist time of process `pid`, summed over CPUs.
    pub fn read(probes: &Probes, pid: u32, namer: &mut StackNamer) -> Self {
        let raw = probes.assist_totals(pid);
        Self {
            by_stack: namer.sites(probes, raw.by_stack, |ns| ns),
            by_cycle: raw.by_cycle,
        }
    }

    /// Nanoseconds over all stacks.
    pub fn total_ns(&self) -> u64 {
        self.by_stack.iter().map(|s| s.value).sum()
    }
}
