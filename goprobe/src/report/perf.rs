//! The perf-event parts of the report: page faults and on-CPU samples, by stack.

use serde::{Deserialize, Serialize};

use super::sites::name_sites;
use crate::signal::{cpu::CpuSamples, pagefault};

/// Page faults of the target's threads in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PageFaults {
    pub minor: u64,
    pub major: u64,
    /// By faulting stack, most faults first.
    pub sites: Vec<FaultSite>,
}

/// Page faults of one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub minor: u64,
    pub major: u64,
}

/// On-CPU samples of the target's threads in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Cpu {
    /// Sampling frequency per CPU.
    pub hz: u32,
    pub samples: u64,
    /// By sampled stack, most samples first.
    pub sites: Vec<CpuSite>,
}

/// Samples of one stack.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CpuSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub samples: u64,
}

impl PageFaults {
    /// The report section of one process' page fault records.
    pub fn from_record(p: &pagefault::PageFaults) -> Self {
        let sites: Vec<FaultSite> = name_sites(&p.sites, |c| (c.minor, c.major))
            .into_iter()
            .map(|s| FaultSite {
                stack: s.stack,
                minor: s.a,
                major: s.b,
            })
            .collect();
        Self {
            minor: sites.iter().map(|s| s.minor).sum(),
            major: sites.iter().map(|s| s.major).sum(),
            sites,
        }
    }
}

impl Cpu {
    /// The report section of one process' on-CPU sample records.
    pub fn from_record(c: &CpuSamples) -> Self {
        let hz = c.hz;
        let sites: Vec<CpuSite> = name_sites(&c.sites, |&n| (n, 0))
            .into_iter()
            .map(|s| CpuSite {
                stack: s.stack,
                samples: s.a,
            })
            .collect();
        Self {
            hz,
            samples: sites.iter().map(|s| s.samples).sum(),
            sites,
        }
    }
}

/// The page-fault and CPU lines of the human summary (summary.rs), with at most `n` sites each.
pub(super) fn render_summary(r: &super::Report, n: usize, out: &mut String) {
    use std::{collections::BTreeMap, fmt::Write as _};

    use crate::text::chain::caller_chain;
    // Sites that differ only inside the runtime are one line for people.
    let top = |rows: &mut dyn Iterator<Item = (String, u64)>| -> Vec<(String, u64)> {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for (k, v) in rows {
            *by.entry(k).or_default() += v;
        }
        let mut rows: Vec<_> = by.into_iter().collect();
        rows.sort_by_key(|r| std::cmp::Reverse(r.1));
        rows.truncate(n);
        rows
    };
    if let Some(pf) = &r.page_faults {
        let _ = writeln!(
            out,
            "page faults: {} minor, {} major; top sites:",
            pf.minor, pf.major
        );
        let total = (pf.minor + pf.major).max(1);
        let mut rows = pf
            .sites
            .iter()
            .map(|s| (caller_chain(&s.stack, 3), s.minor + s.major));
        for (chain, n) in top(&mut rows) {
            let pct = n as f64 * 100.0 / total as f64;
            let _ = writeln!(out, "  {n:>9} {pct:>5.1}%  {chain}");
        }
    }
    if let Some(cpu) = &r.cpu {
        let _ = writeln!(
            out,
            "on-CPU samples: {} at {} Hz (about {:.1} CPU-seconds); top functions:",
            cpu.samples,
            cpu.hz,
            cpu.samples as f64 / f64::from(cpu.hz.max(1))
        );
        let total = cpu.samples.max(1);
        let mut rows = cpu.sites.iter().map(|s| {
            // The running function, then who called it (outside the runtime).
            let key = match s.stack.split_first() {
                None => "(no stack)".to_owned(),
                Some((leaf, [])) => leaf.clone(),
                Some((leaf, callers)) => format!("{leaf} ← {}", caller_chain(callers, 2)),
            };
            (key, s.samples)
        });
        for (key, n) in top(&mut rows) {
            let pct = n as f64 * 100.0 / total as f64;
            let _ = writeln!(out, "  {n:>9} {pct:>5.1}%  {key}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Site, Stack, pagefault::FaultCounts};

    #[test]
    fn totals_are_the_sum_of_sites() {
        let stack = |id: u64| {
            if id == 0 {
                Stack::default()
            } else {
                crate::report::sites::tests::stack(&format!("main.f{id}"))
            }
        };
        let c = |minor, major| FaultCounts { minor, major };
        let fault = |id, value| Site {
            stack: stack(id),
            value,
        };
        let pf = PageFaults::from_record(&pagefault::PageFaults {
            sites: vec![fault(1, c(5, 1)), fault(2, c(7, 0)), fault(0, c(2, 0))],
        });
        let site = |id, value| Site {
            stack: stack(id),
            value,
        };
        assert_eq!((pf.minor, pf.major), (14, 1));
        assert_eq!(pf.sites[0].stack, ["main.f2"]);
        let cpu = Cpu::from_record(&CpuSamples {
            hz: 97,
            sites: vec![site(1, 5), site(2, 7), site(0, 2)],
        });
        assert_eq!((cpu.hz, cpu.samples), (97, 14));
        assert_eq!(cpu.sites.last().map(|s| s.stack.len()), Some(0));
    }
}
