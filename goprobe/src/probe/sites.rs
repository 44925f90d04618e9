//! Reading the per-stack counters every stack-attributed signal shares (`SITES` in
//! ebpf/goprobe-ebpf/src/sites.rs).

use goprobe_common::{CallerStack, SiteCounts, SiteKey, counter};

use super::Probes;

impl Probes {
    /// The counters of signal `kind` ([`goprobe_common::site_kind`]) of process `pid`, per
    /// captured stack.
    pub fn sites(&self, pid: u32, kind: u32) -> Vec<(CallerStack, SiteCounts)> {
        self.rows::<SiteKey, SiteCounts>("SITES", pid, |k| k.tgid)
            .into_iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(k, counts)| (k.stack, counts))
            .collect()
    }

    /// Per-stack counts lost because the `SITES` map was full.
    pub fn sites_full(&self) -> u64 {
        self.counter(counter::SITES_FULL)
    }
}
