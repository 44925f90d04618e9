//! Reading the per-stack counters every stack-attributed signal shares (`SITES` in
//! ebpf/goprobe-ebpf/src/sites.rs).

use goprobe_common::{CallerStack, SiteCounts, SiteKey, counter};

use super::Probes;

impl Probes {
    /// The counters of signal `kind` ([`goprobe_common::site_kind`]) of process `pid`, per
    /// captured stack, summed over CPUs.
    pub fn sites(&self, pid: u32, kind: u32) -> Vec<(CallerStack, SiteCounts)> {
        self.per_cpu_rows::<SiteKey, SiteCounts>("SITES", pid, |k| k.tgid)
            .into_iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(k, per_cpu)| {
                let sum = per_cpu
                    .iter()
                    .fold(SiteCounts::default(), |s, c| SiteCounts {
                        a: s.a + c.a,
                        b: s.b + c.b,
                    });
                (k.stack, sum)
            })
            .collect()
    }

    /// Per-stack counts lost because the `SITES` map was full.
    pub fn sites_full(&self) -> u64 {
        self.counter(counter::SITES_FULL)
    }
}
