//! On-CPU samples of the target's threads, by running stack (the `cpu_sample` perf event
//! program counts into `SITES`, see [`goprobe_common::site_kind::CPU`]).

use goprobe_common::site_kind;

use super::stacks::{Site, StackNamer};
use crate::probe::Probes;

/// The on-CPU samples of one process since attach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSamples {
    /// Sampling frequency per CPU.
    pub hz: u32,
    /// Samples per stack.
    pub sites: Vec<Site<u64>>,
}

impl CpuSamples {
    /// The samples of process `pid` taken at `hz` (`a` samples), summed over CPUs.
    pub fn read(probes: &Probes, pid: u32, hz: u32, namer: &mut StackNamer) -> Self {
        let raw = probes.sites(pid, site_kind::CPU);
        Self {
            hz,
            sites: namer.sites(probes, raw, |c| c.a),
        }
    }

    /// Samples over all stacks.
    pub fn total(&self) -> u64 {
        self.sites.iter().map(|s| s.value).sum()
    }

    /// Nanoseconds between two samples of one CPU (pprof's `period`).
    pub fn period_ns(&self) -> i64 {
        1_000_000_000 / i64::from(self.hz.max(1))
    }
}
