//! Page faults of the target's threads, by faulting stack (the `page_fault_min`/`_maj` perf
//! event programs count into `SITES`, see [`goprobe_common::site_kind::PAGE_FAULT`]).

use goprobe_common::site_kind;

use super::stacks::{Site, StackNamer};
use crate::probe::Probes;

/// Minor and major faults of one stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub minor: u64,
    pub major: u64,
}

/// The page faults of one process since attach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageFaults {
    pub sites: Vec<Site<FaultCounts>>,
}

impl PageFaults {
    /// The faults of process `pid` (`a` minor, `b` major), summed over CPUs.
    pub fn read(probes: &Probes, pid: u32, namer: &mut StackNamer) -> Self {
        let raw = probes.sites(pid, site_kind::PAGE_FAULT);
        Self {
            sites: namer.sites(probes, raw, |c| FaultCounts {
                minor: c.a,
                major: c.b,
            }),
        }
    }

    /// Minor and major faults over all stacks.
    pub fn totals(&self) -> FaultCounts {
        self.sites
            .iter()
            .fold(FaultCounts::default(), |t, s| FaultCounts {
                minor: t.minor + s.value.minor,
                major: t.major + s.value.major,
            })
    }
}
