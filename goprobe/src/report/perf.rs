//! The perf-event parts of the report: page faults and on-CPU samples, by stack.

use serde::{Deserialize, Serialize};

use super::sites::name_sites;
use crate::signal::{cost::Skipped, cpu::CpuSamples, pagefault};

/// Page faults of the target's threads in the window.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct PageFaults {
    /// Exact: the kernel's own count for the process (/proc/<pid>/stat, as getrusage) since
    /// attach.
    pub minor: u64,
    pub major: u64,
    /// Whether `minor` and `major` were read at the end of the window (exact); false when the
    /// process had gone by then: they are the larger of goprobe's last read before (which
    /// misses the last faults) and the samples' estimate.
    #[serde(default = "yes")]
    pub exact_at_end: bool,
    /// Stack samples taken (one per `sample_period` faults of a CPU).
    #[serde(default)]
    pub samples: u64,
    /// Faults per sample asked for (`--page-fault-period`).
    #[serde(default)]
    pub sample_period: u32,
    /// Faults per sample: the samples' periods summed, over `samples`; `null` without samples.
    #[serde(default)]
    pub mean_period: Option<f64>,
    /// The samples' own estimate of `minor` and `major` (their periods summed), before the
    /// sites are scaled to the exact totals.
    #[serde(default)]
    pub sampled_minor: u64,
    #[serde(default)]
    pub sampled_major: u64,
    /// By faulting stack, most faults first: estimates from the samples, scaled so that they
    /// sum to `minor` and `major` (faults no sample stood for are under the empty stack).
    pub sites: Vec<FaultSite>,
}

fn yes() -> bool {
    true
}

/// Page faults of one stack (estimated, see [`PageFaults::sites`]).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FaultSite {
    /// Frame names, leaf first; empty when the stack could not be captured.
    pub stack: Vec<String>,
    pub minor: u64,
    pub major: u64,
    /// Samples of this stack the estimate is made from.
    #[serde(default)]
    pub samples: u64,
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

/// One signal's per-second budget and what it skipped (`goprobe.budget`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BudgetUse {
    /// `page_faults`, `cpu`, `alloc`, `goroutines`, `assist` or `stacks`.
    pub signal: String,
    /// Program runs allowed per CPU and second (2^30 ns); 0 is no cap.
    pub cap_per_cpu_second: u32,
    /// Runs that returned early because the cap was reached.
    pub skipped: u64,
}

/// The `goprobe.budget` entries of `caps` (the caps in effect, by signal index) and `skipped`.
pub fn budget_uses(caps: &[u32], skipped: &Skipped) -> Vec<BudgetUse> {
    skipped
        .by_signal()
        .zip(caps.iter().copied())
        .map(|((signal, skipped), cap)| BudgetUse {
            signal: signal.to_owned(),
            cap_per_cpu_second: cap,
            skipped,
        })
        .collect()
}

impl PageFaults {
    /// The report section of one process' page fault records.
    pub fn from_record(p: &pagefault::PageFaults) -> Self {
        let samples: std::collections::HashMap<Vec<String>, u64> =
            name_sites(&p.sites, |c| (c.samples, 0))
                .into_iter()
                .map(|s| (s.stack, s.a))
                .collect();
        let sites: Vec<FaultSite> = name_sites(&p.sites, |c| (c.minor, c.major))
            .into_iter()
            .map(|s| FaultSite {
                samples: samples.get(&s.stack).copied().unwrap_or(0),
                stack: s.stack,
                minor: s.a,
                major: s.b,
            })
            .collect();
        Self {
            minor: p.totals.minor,
            major: p.totals.major,
            exact_at_end: p.current,
            samples: p.sampled.samples,
            sample_period: p.period,
            mean_period: p.mean_period(),
            sampled_minor: p.sampled.minor,
            sampled_major: p.sampled.major,
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
        let period = pf
            .mean_period
            .map_or_else(String::new, |p| format!(", 1 per {p:.0} faults"));
        let _ = writeln!(
            out,
            "page faults: {} minor, {} major ({}); top sites, estimated from {} samples{period}:",
            pf.minor,
            pf.major,
            if pf.exact_at_end {
                "exact"
            } else {
                "estimated: the process ended after goprobe's last count"
            },
            pf.samples
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
    fn totals_are_the_exact_counts_and_sites_keep_their_samples() {
        let stack = |id: u64| {
            if id == 0 {
                Stack::default()
            } else {
                crate::report::sites::tests::stack(&format!("main.f{id}"))
            }
        };
        let c = |minor, major| FaultCounts {
            minor,
            major,
            samples: 1,
        };
        let fault = |id, value| Site {
            stack: stack(id),
            value,
        };
        let pf = PageFaults::from_record(&pagefault::PageFaults {
            sites: vec![fault(1, c(5, 1)), fault(2, c(7, 0)), fault(0, c(2, 0))],
            totals: c(14, 1),
            sampled: c(14, 1),
            current: true,
            period: 32,
        });
        let site = |id, value| Site {
            stack: stack(id),
            value,
        };
        assert_eq!((pf.minor, pf.major), (14, 1));
        assert_eq!(pf.sites[0].stack, ["main.f2"]);
        assert_eq!((pf.samples, pf.sites[0].samples), (1, 1));
        let cpu = Cpu::from_record(&CpuSamples {
            hz: 97,
            sites: vec![site(1, 5), site(2, 7), site(0, 2)],
        });
        assert_eq!((cpu.hz, cpu.samples), (97, 14));
        assert_eq!(cpu.sites.last().map(|s| s.stack.len()), Some(0));
    }
}
