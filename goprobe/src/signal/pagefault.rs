//! Page faults of the target: exact totals from the kernel's own per-process counts, and the
//! faulting stacks from a sample (the `page_fault_min`/`_maj` perf event programs count into
//! `SITES`, weighted by each sample's period, see [`goprobe_common::site_kind::PAGE_FAULT`]).
//!
//! The totals are `/proc/<pid>/stat` minflt/majflt now minus at attach
//! (`analysis::process::faults`): what getrusage says, at no cost to the target. The stacks'
//! period-weighted sums estimate the same faults; each stack's estimate is scaled so that the
//! stacks add up to the exact totals, the difference (faults no sample stood for, e.g. in a
//! window too short for one) going to the no-stack site.

use goprobe_common::site_kind;

use super::stacks::{Site, StackNamer};
use crate::{analysis::process, probe::Probes};

/// Minor and major faults of one stack, and the samples they were estimated from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub minor: u64,
    pub major: u64,
    /// Stack samples taken (minor and major).
    pub samples: u64,
}

/// The page faults of one process since attach.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageFaults {
    /// By stack: estimates scaled to sum to `totals`.
    pub sites: Vec<Site<FaultCounts>>,
    /// The kernel's counts since attach (exact); `samples` is the number of stack samples.
    pub totals: FaultCounts,
    /// The samples' own estimate of `totals` (their periods summed), before scaling.
    pub sampled: FaultCounts,
    /// Whether `totals` were read now (exact); false when the process had gone: then they are
    /// the larger of the last read before and the samples' estimate.
    pub current: bool,
    /// Faults per sample asked for (the perf sample period).
    pub period: u32,
}

impl PageFaults {
    /// The faults of process `pid`: its counts now, and its samples summed over CPUs.
    pub fn read(probes: &Probes, pid: u32, period: u32, namer: &mut StackNamer) -> Self {
        let mut sites = Vec::new();
        for (kind, major) in [
            (site_kind::PAGE_FAULT, false),
            (site_kind::PAGE_FAULT_MAJOR, true),
        ] {
            let raw = probes.sites(pid, kind);
            sites.extend(namer.sites(probes, raw, |c| FaultCounts {
                minor: if major { 0 } else { c.a },
                major: if major { c.a } else { 0 },
                samples: c.b,
            }));
        }
        let now = process::faults(pid).ok();
        let (exact, current) = probes
            .faults_since_attach(pid, now)
            .unwrap_or(((0, 0), false));
        // The agent's rows are one take's (an interval) and the kernel's counts are since
        // attach: there the sites keep their sampled estimates (periods summed, unbiased).
        Self::from_samples(sites, exact, current, period, !probes.rows_taken())
    }

    /// Scales the sampled `sites` (with `scale_sites`) to the exact `(minor, major)` totals.
    /// When these are not `current` (the process ended after the last read, which then misses
    /// its last faults), the totals are the larger of them and the samples' estimate.
    fn from_samples(
        mut sites: Vec<Site<FaultCounts>>,
        exact: (u64, u64),
        current: bool,
        period: u32,
        scale_sites: bool,
    ) -> Self {
        let sampled = sum(&sites);
        let exact = if current {
            exact
        } else {
            (exact.0.max(sampled.minor), exact.1.max(sampled.major))
        };
        if scale_sites {
            scale(&mut sites, exact.0, |c| &mut c.minor);
            scale(&mut sites, exact.1, |c| &mut c.major);
        }
        Self {
            sites,
            totals: FaultCounts {
                minor: exact.0,
                major: exact.1,
                samples: sampled.samples,
            },
            sampled,
            current,
            period,
        }
    }

    /// Minor and major faults (exact) and samples over all stacks.
    pub fn totals(&self) -> FaultCounts {
        self.totals
    }

    /// Faults per sample (the effective period), None without samples.
    pub fn mean_period(&self) -> Option<f64> {
        let n = self.sampled.samples;
        (n > 0).then(|| (self.sampled.minor + self.sampled.major) as f64 / n as f64)
    }
}

/// Reads `pid`'s counts now and keeps them, so that they are its totals should it be gone by
/// the next [`PageFaults::read`] (the attach window does this every 100 ms).
pub fn note_totals(probes: &Probes, pid: u32) {
    if let Ok(now) = process::faults(pid) {
        let _ = probes.faults_since_attach(pid, Some(now));
    }
}

fn sum(sites: &[Site<FaultCounts>]) -> FaultCounts {
    sites
        .iter()
        .fold(FaultCounts::default(), |t, s| FaultCounts {
            minor: t.minor + s.value.minor,
            major: t.major + s.value.major,
            samples: t.samples + s.value.samples,
        })
}

/// Scales the field `f` of every site so that they sum to `total` (largest remainders get the
/// rounding); with no weight to scale, `total` goes to the no-stack site.
fn scale(sites: &mut Vec<Site<FaultCounts>>, total: u64, f: impl Fn(&mut FaultCounts) -> &mut u64) {
    let weight: u64 = sites.iter_mut().map(|s| *f(&mut s.value)).sum();
    if weight == 0 {
        if total > 0 {
            let i = match sites.iter().position(|s| s.stack.locations.is_empty()) {
                Some(i) => i,
                None => {
                    sites.push(Site {
                        stack: Default::default(),
                        value: FaultCounts::default(),
                    });
                    sites.len() - 1
                }
            };
            *f(&mut sites[i].value) = total;
        }
        return;
    }
    let mut rest: Vec<(u128, usize)> = Vec::with_capacity(sites.len());
    let mut given = 0u64;
    for (i, s) in sites.iter_mut().enumerate() {
        let v = f(&mut s.value);
        let exact = u128::from(*v) * u128::from(total);
        let share = (exact / u128::from(weight)) as u64;
        rest.push((exact % u128::from(weight), i));
        *v = share;
        given += share;
    }
    rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in rest.iter().take((total - given) as usize) {
        *f(&mut sites[i].value) += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::stacks::test_stack as stack;

    fn site(name: &str, minor: u64, major: u64, samples: u64) -> Site<FaultCounts> {
        Site {
            stack: stack(name),
            value: FaultCounts {
                minor,
                major,
                samples,
            },
        }
    }

    #[test]
    fn stacks_are_scaled_to_the_exact_totals() {
        let sites = vec![site("main.a", 300, 0, 3), site("main.b", 100, 2, 2)];
        let pf = PageFaults::from_samples(sites, (1001, 5), true, 100, true);
        let minor: Vec<u64> = pf.sites.iter().map(|s| s.value.minor).collect();
        // 1001 × 3/4 = 750.75 and × 1/4 = 250.25: the larger remainder gets the extra fault.
        assert_eq!(minor, [751, 250]);
        assert_eq!(pf.sites[1].value.major, 5);
        assert_eq!(
            pf.totals,
            FaultCounts {
                minor: 1001,
                major: 5,
                samples: 5
            }
        );
        assert_eq!(pf.sampled.minor, 400);
        assert_eq!(pf.mean_period(), Some(402.0 / 5.0));
    }

    #[test]
    fn faults_no_sample_stood_for_go_to_the_no_stack_site() {
        let pf = PageFaults::from_samples(vec![site("main.a", 8, 0, 1)], (10, 3), true, 100, true);
        assert_eq!(pf.sites.len(), 2);
        assert!(pf.sites[1].stack.locations.is_empty());
        assert_eq!((pf.sites[1].value.minor, pf.sites[1].value.major), (0, 3));
        assert_eq!(pf.sites[0].value.minor, 10);
        // Gone before the end: the last read (5) missed faults the samples saw.
        let gone =
            PageFaults::from_samples(vec![site("main.a", 64, 0, 2)], (5, 0), false, 32, true);
        assert_eq!((gone.totals.minor, gone.current), (64, false));
        let none = PageFaults::from_samples(Vec::new(), (0, 0), false, 100, true);
        assert!(none.sites.is_empty() && none.mean_period().is_none());
    }
}
